package stitch

import (
	"fmt"
	"slices"
	"strings"

	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
)

// Frozen is a frozen ResNet's evaluation-mode forward pass split at its cut
// points, so that activations at one cut can be carried to the next one
// (Between) without starting again from the images. With Folded, every batch
// norm (running statistics) is folded into the convolution before it: an
// eval-mode batch norm is the affine map y = γ(x−μ)/√(σ²+ε) + β per channel,
// so conv→bn is one convolution with weight W·s and bias (b−μ)·s + β,
// s = γ/√(σ²+ε). Forward and backward then skip every batch norm.
//
// A Frozen reads Net's weights when it is made; later changes to Net are not
// seen (make a new one). It is for frozen halves in eval mode only: batch
// statistics (FrozenBN "train") cannot be folded.
type Frozen struct {
	// Net is the network this pass was made from.
	Net *vision.ResNet
	// Folded says whether batch norms were folded into the convolutions.
	Folded bool
	stages []frozenStage
	owned  []*torch.Tensor // folded weights and biases, oneDNN weights
	convs  []*foldedConv
	// mkldnn: passes without gradients run in oneDNN's layout (UseMkldnn).
	mkldnn bool
}

type frozenStage struct {
	name string
	f    func(*torch.Tensor) *torch.Tensor
}

// foldedConv is a convolution with a batch norm folded in.
type foldedConv struct {
	w, b                      *torch.Tensor
	packed                    *torch.Tensor // w reordered for oneDNN (UseMkldnn), or nil
	stride, padding, dilation torch.Pair
	groups                    int64
}

func (c *foldedConv) forward(x *torch.Tensor) *torch.Tensor {
	if c.packed != nil && x.IsMkldnn() {
		return torch.MkldnnConv2d(x, c.packed, c.b, c.stride, c.padding, c.dilation, c.groups)
	}
	return torch.Conv2d(x, c.w, c.b, c.stride, c.padding, c.dilation, c.groups)
}

// FoldBatchNorm returns net's forward pass with every batch norm folded into
// the convolution before it (see Frozen). net itself is not changed.
func FoldBatchNorm(net *vision.ResNet) (*Frozen, error) { return NewFrozen(net, true) }

// NewFrozen returns net's evaluation-mode forward pass split at its cut
// points, with batch norms folded into convolutions when fold is set. Without
// fold it runs net's own modules (put net in eval mode first).
func NewFrozen(net *vision.ResNet, fold bool) (*Frozen, error) {
	if net == nil {
		return nil, fmt.Errorf("stitch: frozen network: nil ResNet")
	}
	f := &Frozen{Net: net, Folded: fold}
	var err error
	conv := func(c *nn.Conv2d, bn *nn.BatchNorm) func(*torch.Tensor) *torch.Tensor {
		if !fold {
			return func(x *torch.Tensor) *torch.Tensor { return c.Forward(x).Then(bn.Forward) }
		}
		fc, e := f.fold(c, bn)
		if e != nil && err == nil {
			err = e
		}
		return fc.forward
	}
	relu := (*torch.Tensor).ReluInPlace
	stemConv := conv(net.Conv1, net.BN1)
	imagenet := net.Config.Stem == vision.StemImageNet
	f.stages = append(f.stages, frozenStage{"stem", func(x *torch.Tensor) *torch.Tensor {
		h := stemConv(x).Then(relu)
		if imagenet {
			h = h.Then(func(t *torch.Tensor) *torch.Tensor {
				return torch.MaxPool2d(t, torch.P(3), torch.P(2), torch.P(1), torch.P(1), false)
			})
		}
		return h
	}})
	for i, l := range []*nn.Sequential{net.Layer1, net.Layer2, net.Layer3, net.Layer4} {
		for j, m := range l.Layers {
			name := fmt.Sprintf("layer%d.%d", i+1, j)
			var fwd func(*torch.Tensor) *torch.Tensor
			switch b := m.(type) {
			case *vision.BasicBlock:
				if !fold {
					fwd = b.Forward
					break
				}
				c1, c2 := conv(b.Conv1, b.BN1), conv(b.Conv2, b.BN2)
				ds, e := f.shortcut(b.Downsample, conv)
				if e != nil && err == nil {
					err = e
				}
				fwd = func(x *torch.Tensor) *torch.Tensor {
					return addRelu(c1(x).Then(relu).Then(c2), ds, x)
				}
			case *vision.Bottleneck:
				if !fold {
					fwd = b.Forward
					break
				}
				c1, c2, c3 := conv(b.Conv1, b.BN1), conv(b.Conv2, b.BN2), conv(b.Conv3, b.BN3)
				ds, e := f.shortcut(b.Downsample, conv)
				if e != nil && err == nil {
					err = e
				}
				fwd = func(x *torch.Tensor) *torch.Tensor {
					return addRelu(c1(x).Then(relu).Then(c2).Then(relu).Then(c3), ds, x)
				}
			default:
				if err == nil {
					err = fmt.Errorf("stitch: frozen network: %s is a %T, not a ResNet block", name, m)
				}
			}
			f.stages = append(f.stages, frozenStage{name, fwd})
		}
	}
	f.stages = append(f.stages, frozenStage{"pool", func(h *torch.Tensor) *torch.Tensor {
		p := torch.AdaptiveAvgPool2d(h, torch.P(1))
		if p.IsMkldnn() {
			p = p.Then((*torch.Tensor).ToDense)
		}
		return p.Then(func(t *torch.Tensor) *torch.Tensor { return t.Flatten(1, -1) })
	}})
	if err == nil {
		names := make([]string, len(f.stages))
		for i, st := range f.stages {
			names[i] = st.name
		}
		if got, want := strings.Join(names, ","), strings.Join(net.CutPoints(), ","); got != want {
			err = fmt.Errorf("stitch: frozen network: cut points %s differ from the network's %s", got, want)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// shortcut returns a block's shortcut: nil for the identity, else the folded
// downsampling convolution.
func (f *Frozen) shortcut(ds *nn.Sequential, conv func(*nn.Conv2d, *nn.BatchNorm) func(*torch.Tensor) *torch.Tensor) (func(*torch.Tensor) *torch.Tensor, error) {
	if ds == nil {
		return nil, nil
	}
	if len(ds.Layers) != 2 {
		return nil, fmt.Errorf("stitch: frozen network: downsample has %d layers, want conv and batch norm", len(ds.Layers))
	}
	c, ok1 := ds.Layers[0].(*nn.Conv2d)
	bn, ok2 := ds.Layers[1].(*nn.BatchNorm)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("stitch: frozen network: downsample is %T, %T; want conv and batch norm", ds.Layers[0], ds.Layers[1])
	}
	return conv(c, bn), nil
}

// addRelu returns relu(out + shortcut(x)) in out's memory (shortcut nil: x).
func addRelu(out *torch.Tensor, shortcut func(*torch.Tensor) *torch.Tensor, x *torch.Tensor) *torch.Tensor {
	sc := x
	if shortcut != nil {
		sc = shortcut(x)
	}
	err := out.AddInPlace(sc)
	if sc != x {
		sc.Free()
	}
	if err != nil {
		out.Free()
		return torch.ErrTensor(err)
	}
	return out.Then((*torch.Tensor).ReluInPlace)
}

// fold computes the convolution equal to c followed by bn in eval mode, in
// float64 and stored in c's dtype on c's device.
func (f *Frozen) fold(c *nn.Conv2d, bn *nn.BatchNorm) (*foldedConv, error) {
	out := &foldedConv{stride: c.Stride, padding: c.Padding, dilation: c.Dilation, groups: c.Groups}
	err := torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		f64 := func(t *torch.Tensor) *torch.Tensor { return s.Track(t.Ref()).To(torch.Float64) }
		dt := c.Weight.DType()
		dev := c.Weight.Device()
		scale := f64(bn.Weight).Div(f64(bn.RunningVar).AddScalar(bn.Eps).Sqrt())
		w := f64(c.Weight).Mul(scale.Reshape(-1, 1, 1, 1))
		shift := f64(bn.Bias).Sub(f64(bn.RunningMean).Mul(scale))
		if c.Bias != nil {
			shift = shift.Add(f64(c.Bias).Mul(scale))
		}
		out.w = w.ToDeviceDType(dev, dt).Contiguous().Escape()
		out.b = shift.ToDeviceDType(dev, dt).Contiguous().Escape()
		f.owned = append(f.owned, out.w, out.b)
		f.convs = append(f.convs, out)
		return torch.FirstError(out.w, out.b)
	})
	if err != nil {
		return nil, fmt.Errorf("stitch: folding a batch norm of %d channels: %w", bn.Features, err)
	}
	return out, nil
}

// UseMkldnn makes the passes that run without gradients (torch.NoGrad) run
// in oneDNN's layout: each pass converts its input once, runs every
// convolution with a weight reordered once here, and converts back at the end
// (torch/mkldnn.go). Passes with gradients (fitting through the top) keep the
// plain layout. It needs folded batch norms, float32 weights on the CPU and a
// libtorch built with oneDNN; it reports why not otherwise, and the Frozen
// keeps working as before.
func (f *Frozen) UseMkldnn() error {
	switch {
	case !f.Folded:
		return fmt.Errorf("stitch: oneDNN layout needs folded batch norms")
	case !torch.MkldnnAvailable():
		return fmt.Errorf("stitch: this libtorch was built without oneDNN")
	}
	for _, c := range f.convs {
		if d, dt := c.w.Device(), c.w.DType(); d.Type != torch.DeviceCPU || dt != torch.Float32 {
			return fmt.Errorf("stitch: oneDNN layout needs float32 weights on the CPU, not %v on %v", dt, d)
		}
	}
	for _, c := range f.convs {
		if c.packed != nil {
			continue
		}
		p := torch.MkldnnConv2dWeight(c.w, c.stride, c.padding, c.dilation, c.groups)
		if err := p.Err(); err != nil {
			return fmt.Errorf("stitch: reordering a convolution weight for oneDNN: %w", err)
		}
		c.packed = p.Escape()
		f.owned = append(f.owned, c.packed)
	}
	f.mkldnn = true
	return nil
}

// Close frees the folded weights. The Frozen must not be used afterwards.
func (f *Frozen) Close() {
	torch.FreeAll(f.owned...)
	f.owned = nil
}

// CutPoints returns the cut names in forward order: the network's own (its
// stages are built one per cut point and checked against them).
func (f *Frozen) CutPoints() []string { return f.Net.CutPoints() }

func (f *Frozen) index(cut string) (int, error) {
	if i := slices.Index(f.CutPoints(), cut); i >= 0 {
		return i, nil
	}
	return -1, fmt.Errorf("stitch: %v has no cut point %q; valid cuts: %s", f.Net.Config, cut, strings.Join(f.CutPoints(), ", "))
}

// Between carries activations h at cut from ("" for the input images) to
// cut to, which must not come before from. It never frees h; with from == to
// it returns a new reference to h.
func (f *Frozen) Between(h *torch.Tensor, from, to string) *torch.Tensor {
	i := -1
	if from != "" {
		var err error
		if i, err = f.index(from); err != nil {
			return torch.ErrTensor(err)
		}
	}
	j, err := f.index(to)
	if err != nil {
		return torch.ErrTensor(err)
	}
	if j < i {
		return torch.ErrTensor(fmt.Errorf("stitch: cannot run backwards from %s to %s", from, to))
	}
	return f.run(h, f.stages[i+1:j+1])
}

// ForwardTo returns the activations at cut for images x.
func (f *Frozen) ForwardTo(x *torch.Tensor, cut string) *torch.Tensor { return f.Between(x, "", cut) }

// ForwardFrom returns the logits for activations h at cut.
func (f *Frozen) ForwardFrom(h *torch.Tensor, cut string) *torch.Tensor {
	if f.Net.FC == nil {
		return torch.ErrTensor(fmt.Errorf("stitch: %v has no classifier (fc)", f.Net.Config))
	}
	k, err := f.index(cut)
	if err != nil {
		return torch.ErrTensor(err)
	}
	out := f.run(h, f.stages[k+1:])
	if out == h {
		return f.Net.FC.Forward(h)
	}
	return out.Then(f.Net.FC.Forward)
}

// Forward returns the logits for images x.
func (f *Frozen) Forward(x *torch.Tensor) *torch.Tensor {
	if len(f.stages) == 0 {
		return torch.ErrTensor(fmt.Errorf("stitch: empty frozen network"))
	}
	first := f.stages[0].name
	return f.ForwardTo(x, first).Then(func(h *torch.Tensor) *torch.Tensor { return f.ForwardFrom(h, first) })
}

// run applies stages in turn, freeing intermediates but never x; with no
// stages it returns a new reference to x. With UseMkldnn, gradients off and
// an x that does not require one, the pass converts x to oneDNN's layout once
// and its result back once (the pool stage converts before flattening).
func (f *Frozen) run(x *torch.Tensor, stages []frozenStage) *torch.Tensor {
	if len(stages) == 0 {
		if x.IsMkldnn() {
			return x.ToDense()
		}
		return x.Ref()
	}
	h := x
	if f.mkldnn && !x.IsMkldnn() && !torch.GradEnabled() && x.Err() == nil && !x.RequiresGrad() && x.DType() == torch.Float32 && x.Device().Type == torch.DeviceCPU {
		h = x.ToMkldnn()
	}
	for _, s := range stages {
		if h == x {
			h = s.f(h)
		} else {
			h = h.Then(s.f)
		}
	}
	if h.IsMkldnn() {
		h = h.Then((*torch.Tensor).ToDense)
	}
	return h
}
