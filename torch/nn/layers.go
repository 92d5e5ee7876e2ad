package nn

import (
	"fmt"
	"math"
	"sync"

	"modelstitch/torch"
)

// Conv2d is a 2-D convolution layer (weight [out, in/groups, kh, kw], optional bias).
type Conv2d struct {
	*Base
	Weight, Bias              *torch.Tensor
	Stride, Padding, Dilation torch.Pair
	Groups                    int64
	InChannels, OutChannels   int64
	KernelSize                torch.Pair
}

// Conv2dConfig holds Conv2d's options; zero values mean PyTorch's defaults
// (stride 1, padding 0, dilation 1, groups 1, with bias unless NoBias).
type Conv2dConfig struct {
	Stride, Padding, Dilation int64
	Groups                    int64
	NoBias                    bool
}

// uniformInit returns a tensor of the given shape drawn from U(−bound, bound),
// or a tensor carrying the error that prevented it: constructors keep such a
// tensor in the module, where Err and Forward report it.
func uniformInit(shape []int64, bound float64) *torch.Tensor {
	t := torch.Empty(shape)
	if err := t.FillUniform(-bound, bound, nil); err != nil {
		t.Free()
		return torch.ErrTensor(fmt.Errorf("nn: initialising a %v tensor: %w", shape, err))
	}
	return t
}

// NewConv2d makes a square-kernel convolution with PyTorch's default
// initialisation. A failure (e.g. a negative size) stays in the module's
// tensors: see Err.
func NewConv2d(in, out, kernel int64, cfg Conv2dConfig) *Conv2d {
	if cfg.Stride == 0 {
		cfg.Stride = 1
	}
	if cfg.Dilation == 0 {
		cfg.Dilation = 1
	}
	if cfg.Groups == 0 {
		cfg.Groups = 1
	}
	c := &Conv2d{Base: NewBase(), Stride: torch.P(cfg.Stride), Padding: torch.P(cfg.Padding),
		Dilation: torch.P(cfg.Dilation), Groups: cfg.Groups, InChannels: in, OutChannels: out,
		KernelSize: torch.P(kernel)}
	fanIn := in / cfg.Groups * kernel * kernel
	bound := kaimingUniformBound(fanIn)
	c.Weight = uniformInit([]int64{out, in / cfg.Groups, kernel, kernel}, bound)
	c.RegisterParameter("weight", &c.Weight)
	if !cfg.NoBias {
		c.Bias = uniformInit([]int64{out}, bound)
		c.RegisterParameter("bias", &c.Bias)
	}
	return c
}

// Forward convolves x [N, in, H, W].
func (c *Conv2d) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Conv2d(x, c.Weight, c.Bias, c.Stride, c.Padding, c.Dilation, c.Groups)
}

// BatchNorm normalises over the batch (and spatial positions for 2-D inputs),
// with learnable scale and shift and running statistics for evaluation. It
// serves as BatchNorm1d (inputs [N, C]) and BatchNorm2d ([N, C, H, W]).
type BatchNorm struct {
	*Base
	Weight, Bias                        *torch.Tensor
	RunningMean, RunningVar, NumBatches *torch.Tensor
	Momentum, Eps                       float64
	Features                            int64
	// UseBatchStats forces batch statistics even in evaluation mode when set.
	UseBatchStats bool
}

// NewBatchNorm makes a batch norm over c features with PyTorch's defaults
// (weight 1, bias 0, momentum 0.1, eps 1e-5). A failure stays in the
// module's tensors: see Err.
func NewBatchNorm(c int64) *BatchNorm {
	b := &BatchNorm{Base: NewBase(), Momentum: 0.1, Eps: 1e-5, Features: c}
	b.Weight = torch.Ones([]int64{c})
	b.Bias = torch.Zeros([]int64{c})
	b.RunningMean = torch.Zeros([]int64{c})
	b.RunningVar = torch.Ones([]int64{c})
	b.NumBatches = torch.Zeros([]int64{}, torch.Options{DType: torch.Int64})
	b.RegisterParameter("weight", &b.Weight)
	b.RegisterParameter("bias", &b.Bias)
	b.RegisterBuffer("running_mean", &b.RunningMean)
	b.RegisterBuffer("running_var", &b.RunningVar)
	b.RegisterBuffer("num_batches_tracked", &b.NumBatches)
	return b
}

// NewBatchNorm2d is NewBatchNorm, named as in PyTorch for image features.
func NewBatchNorm2d(c int64) *BatchNorm { return NewBatchNorm(c) }

// NewBatchNorm1d is NewBatchNorm, named as in PyTorch for vector features.
func NewBatchNorm1d(c int64) *BatchNorm { return NewBatchNorm(c) }

// Forward normalises x; in training mode it updates the running statistics.
func (b *BatchNorm) Forward(x *torch.Tensor) *torch.Tensor {
	training := b.Training() || b.UseBatchStats
	if b.Training() && b.NumBatches != nil {
		if err := torch.NoGrad(func() error { return b.NumBatches.AddInPlace(int64One()) }); err != nil {
			return torch.ErrTensor(fmt.Errorf("nn: batch norm: counting batches: %w", err))
		}
	}
	return torch.BatchNorm(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, training, b.Momentum, b.Eps)
}

var (
	oneOnce sync.Once
	one     *torch.Tensor
)

// int64One returns a shared 0-dim int64 CPU tensor holding 1, to add to
// num_batches_tracked: an in-place add of a float scalar cannot update an
// int64 tensor ("result type Float can't be cast to ... Long"), and a 0-dim
// CPU tensor adds to a tensor on any device.
func int64One() *torch.Tensor {
	oneOnce.Do(func() {
		v := torch.FromSlice([]int64{1})
		one = v.Reshape() // 0-dim view; v's own handle would be garbage
		v.Free()
	})
	return one
}

// Linear is a fully connected layer y = x·Wᵀ + b.
type Linear struct {
	*Base
	Weight, Bias *torch.Tensor
	In, Out      int64
}

// NewLinear makes a linear layer with PyTorch's default initialisation; bias
// optional. A failure stays in the module's tensors: see Err.
func NewLinear(in, out int64, bias bool) *Linear {
	l := &Linear{Base: NewBase(), In: in, Out: out}
	bound := kaimingUniformBound(in)
	l.Weight = uniformInit([]int64{out, in}, bound)
	l.RegisterParameter("weight", &l.Weight)
	if bias {
		l.Bias = uniformInit([]int64{out}, bound)
		l.RegisterParameter("bias", &l.Bias)
	}
	return l
}

// Forward applies the layer to x [N, in].
func (l *Linear) Forward(x *torch.Tensor) *torch.Tensor { return torch.Linear(x, l.Weight, l.Bias) }

// Func wraps a parameter-free function as a module (ReLU, pooling, flatten ...).
type Func struct {
	*Base
	Name string
	F    func(*torch.Tensor) *torch.Tensor
}

// NewFunc makes a parameter-free module from f.
func NewFunc(name string, f func(*torch.Tensor) *torch.Tensor) *Func {
	return &Func{Base: NewBase(), Name: name, F: f}
}

// Forward applies the function.
func (f *Func) Forward(x *torch.Tensor) *torch.Tensor { return f.F(x) }

// NewReLU returns a ReLU module.
func NewReLU() *Func { return NewFunc("ReLU", (*torch.Tensor).Relu) }

// NewIdentity returns a module that passes its input through.
func NewIdentity() *Func {
	return NewFunc("Identity", func(x *torch.Tensor) *torch.Tensor { return x })
}

// NewMaxPool2d returns a max-pooling module.
func NewMaxPool2d(kernel, stride, padding int64) *Func {
	return NewFunc(fmt.Sprintf("MaxPool2d(%d,%d,%d)", kernel, stride, padding), func(x *torch.Tensor) *torch.Tensor {
		return torch.MaxPool2d(x, torch.P(kernel), torch.P(stride), torch.P(padding), torch.P(1), false)
	})
}

// NewAdaptiveAvgPool2d returns a module averaging to an h×w output.
func NewAdaptiveAvgPool2d(h, w int64) *Func {
	return NewFunc(fmt.Sprintf("AdaptiveAvgPool2d(%d,%d)", h, w), func(x *torch.Tensor) *torch.Tensor {
		return torch.AdaptiveAvgPool2d(x, torch.Pair{h, w})
	})
}

// NewFlatten returns a module flattening all but the batch dimension.
func NewFlatten() *Func {
	return NewFunc("Flatten", func(x *torch.Tensor) *torch.Tensor { return x.Flatten(1, -1) })
}

// Sequential runs its children in order; they are named "0", "1", ... as in PyTorch.
type Sequential struct {
	*Base
	Layers []Module
}

// NewSequential chains modules.
func NewSequential(ms ...Module) *Sequential {
	s := &Sequential{Base: NewBase()}
	for _, m := range ms {
		s.Append(m)
	}
	return s
}

// Append adds a module at the end.
func (s *Sequential) Append(m Module) {
	s.RegisterModule(fmt.Sprint(len(s.Layers)), m)
	s.Layers = append(s.Layers, m)
}

// Forward runs every layer in turn, freeing each intermediate result as soon
// as the next layer has used it (never the input x).
func (s *Sequential) Forward(x *torch.Tensor) *torch.Tensor {
	h := x
	for _, m := range s.Layers {
		if h == x {
			h = m.Forward(h)
		} else {
			h = h.Then(m.Forward)
		}
	}
	return h
}

// KaimingNormalFanOut initialises a conv weight as torchvision's ResNet does:
// kaiming_normal_(mode="fan_out", nonlinearity="relu"), std = √(2/fan_out).
func KaimingNormalFanOut(w *torch.Tensor) error {
	s, err := w.Shape()
	if err != nil {
		return fmt.Errorf("nn: kaiming init: %w", err)
	}
	if len(s) < 2 {
		return fmt.Errorf("nn: kaiming init needs a weight with ≥ 2 dims, got %v", s)
	}
	fanOut := s[0]
	for _, k := range s[2:] {
		fanOut *= k
	}
	return torch.NoGrad(func() error { return w.FillNormal(0, math.Sqrt(2/float64(fanOut)), nil) })
}
