// Package nn holds neural-network modules over package torch: a Module tree
// with PyTorch's dotted parameter and buffer names, train/eval modes, freezing,
// device moves, state dicts, and the layers a ResNet needs.
package nn

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"modelstitch/torch"
)

// Module is a layer or a network of layers. Implementations embed *Base (via
// NewBase) and register their parameters, buffers and children in it.
type Module interface {
	// Forward computes the module's output. Errors travel inside the tensor.
	Forward(x *torch.Tensor) *torch.Tensor
	// ModuleBase returns the module's registry of parameters, buffers and children.
	ModuleBase() *Base
}

// Base is the bookkeeping every module embeds: ordered parameters, buffers and
// child modules, and the training flag.
type Base struct {
	training bool
	params   []slot
	buffers  []slot
	children []child
}

type slot struct {
	name string
	t    **torch.Tensor
}

type child struct {
	name string
	m    Module
}

// NewBase returns an empty registry in training mode, as PyTorch modules start.
func NewBase() *Base { return &Base{training: true} }

// ModuleBase returns b itself, so that embedding *Base satisfies Module.
func (b *Base) ModuleBase() *Base { return b }

// Training reports whether the module is in training mode.
func (b *Base) Training() bool { return b.training }

// RegisterParameter records a trainable tensor under name and turns on its
// gradient. p points at the module's field, so device moves and loads can
// replace the tensor. When the tensor cannot take a gradient (it is not a
// floating-point leaf, or carries an error), the field gets a tensor carrying
// that error instead, which Err and Forward report.
func (b *Base) RegisterParameter(name string, p **torch.Tensor) {
	if *p != nil && (*p).Err() == nil {
		if err := (*p).SetRequiresGrad(true); err != nil {
			(*p).Free()
			*p = torch.ErrTensor(fmt.Errorf("nn: parameter %s: %w", name, err))
		}
	}
	b.params = append(b.params, slot{name, p})
}

// RegisterBuffer records a non-trainable tensor (e.g. running statistics) under name.
func (b *Base) RegisterBuffer(name string, p **torch.Tensor) {
	b.buffers = append(b.buffers, slot{name, p})
}

// RegisterModule records a child module under name and returns it.
func (b *Base) RegisterModule(name string, m Module) Module {
	b.children = append(b.children, child{name, m})
	return m
}

// Named is a tensor with its dotted name.
type Named struct {
	Name   string
	Tensor *torch.Tensor
}

type namedSlot struct {
	name     string
	p        **torch.Tensor
	isBuffer bool
}

// walk visits every parameter and buffer slot in PyTorch's state_dict order:
// a module's own parameters, then its buffers, then each child in turn.
func walk(m Module, prefix string, visit func(s namedSlot)) {
	b := m.ModuleBase()
	for _, s := range b.params {
		visit(namedSlot{prefix + s.name, s.t, false})
	}
	for _, s := range b.buffers {
		visit(namedSlot{prefix + s.name, s.t, true})
	}
	for _, c := range b.children {
		walk(c.m, prefix+c.name+".", visit)
	}
}

// NamedParameters returns every trainable tensor of m with its dotted name.
func NamedParameters(m Module) []Named {
	var out []Named
	walk(m, "", func(s namedSlot) {
		if !s.isBuffer && *s.p != nil {
			out = append(out, Named{s.name, *s.p})
		}
	})
	return out
}

// Parameters returns every parameter of m.
func Parameters(m Module) []*torch.Tensor {
	var out []*torch.Tensor
	for _, n := range NamedParameters(m) {
		out = append(out, n.Tensor)
	}
	return out
}

// TrainableParameters returns the parameters that currently require gradients.
func TrainableParameters(m Module) []*torch.Tensor {
	var out []*torch.Tensor
	for _, p := range Parameters(m) {
		if p.RequiresGrad() {
			out = append(out, p)
		}
	}
	return out
}

// NamedBuffers returns every buffer of m with its dotted name.
func NamedBuffers(m Module) []Named {
	var out []Named
	walk(m, "", func(s namedSlot) {
		if s.isBuffer && *s.p != nil {
			out = append(out, Named{s.name, *s.p})
		}
	})
	return out
}

// StateDict returns parameters and buffers in PyTorch's state_dict order and naming.
// The tensors are m's own (not copies).
func StateDict(m Module) []Named {
	var out []Named
	walk(m, "", func(s namedSlot) {
		if *s.p != nil {
			out = append(out, Named{s.name, *s.p})
		}
	})
	return out
}

// Err returns the first error carried by a parameter or buffer of m (such as
// a constructor's failure to initialise one), naming the entry; nil when
// every tensor is good.
func Err(m Module) error {
	var first error
	walk(m, "", func(s namedSlot) {
		if first != nil || *s.p == nil {
			return
		}
		if err := (*s.p).Err(); err != nil {
			first = fmt.Errorf("%s: %w", s.name, err)
		}
	})
	return first
}

// Shapes returns the shape of every state-dict entry of m, by name, or the
// first entry's error.
func Shapes(m Module) (map[string][]int64, error) {
	out := map[string][]int64{}
	for _, n := range StateDict(m) {
		s, err := n.Tensor.Shape()
		if err != nil {
			return nil, fmt.Errorf("nn: %s: %w", n.Name, err)
		}
		out[n.Name] = s
	}
	return out, nil
}

// NumParameters returns the number of scalar parameters of m.
func NumParameters(m Module) int64 {
	var n int64
	for _, p := range Parameters(m) {
		n += p.Numel()
	}
	return n
}

// Children returns m's direct children with their names.
func Children(m Module) []struct {
	Name   string
	Module Module
} {
	var out []struct {
		Name   string
		Module Module
	}
	for _, c := range m.ModuleBase().children {
		out = append(out, struct {
			Name   string
			Module Module
		}{c.name, c.m})
	}
	return out
}

// Child returns m's direct child called name, or nil.
func Child(m Module, name string) Module {
	for _, c := range m.ModuleBase().children {
		if c.name == name {
			return c.m
		}
	}
	return nil
}

// SetTraining puts m and all its children in training (true) or evaluation mode.
func SetTraining(m Module, on bool) {
	b := m.ModuleBase()
	b.training = on
	for _, c := range b.children {
		SetTraining(c.m, on)
	}
}

// Train puts m in training mode.
func Train(m Module) { SetTraining(m, true) }

// Eval puts m in evaluation mode (BatchNorm uses running statistics, no dropout).
func Eval(m Module) { SetTraining(m, false) }

// SetRequiresGrad turns gradient tracking of all of m's parameters on or off.
func SetRequiresGrad(m Module, on bool) error {
	for _, p := range Parameters(m) {
		if err := p.SetRequiresGrad(on); err != nil {
			return err
		}
	}
	return nil
}

// Freeze stops all of m's parameters from learning (requires_grad off).
func Freeze(m Module) error { return SetRequiresGrad(m, false) }

// ToDevice moves every parameter and buffer of m to device d, keeping which
// parameters require gradients.
func ToDevice(m Module, d torch.Device) error {
	if err := torch.CheckDevice(d); err != nil {
		return err
	}
	var err error
	walk(m, "", func(s namedSlot) {
		if err != nil || *s.p == nil {
			return
		}
		old := *s.p
		if old.Device() == d {
			return
		}
		rg := old.RequiresGrad()
		moved := old.Detach().ToDevice(d)
		if e := moved.Err(); e != nil {
			err = fmt.Errorf("moving %s to %v: %w", s.name, d, e)
			return
		}
		if rg {
			if e := moved.SetRequiresGrad(true); e != nil {
				err = e
				return
			}
		}
		*s.p = moved
		old.Free()
	})
	return err
}

// ZeroGrad drops the accumulated gradients of all of m's parameters.
func ZeroGrad(m Module) error {
	for _, p := range Parameters(m) {
		if err := p.ZeroGrad(); err != nil {
			return err
		}
	}
	return nil
}

// Free releases every parameter and buffer of m now.
func Free(m Module) {
	walk(m, "", func(s namedSlot) {
		if *s.p != nil {
			(*s.p).Free()
		}
	})
}

// LoadError describes a state dict that does not fit a module.
type LoadError struct {
	Missing, Unexpected []string
	WrongShape          []string
}

// Error lists a few of each kind of mismatch and their counts.
func (e *LoadError) Error() string {
	var parts []string
	add := func(what string, xs []string) {
		if len(xs) == 0 {
			return
		}
		shown := xs
		if len(shown) > 5 {
			shown = shown[:5]
		}
		more := ""
		if len(xs) > len(shown) {
			more = fmt.Sprintf(", … %d more", len(xs)-len(shown))
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s%s)", len(xs), what, strings.Join(shown, ", "), more))
	}
	add("missing keys", e.Missing)
	add("unexpected keys", e.Unexpected)
	add("wrong shapes", e.WrongShape)
	return "state dict does not fit the model: " + strings.Join(parts, "; ")
}

// LoadStateDict copies tensors from sd (by dotted name) into m's parameters and
// buffers, converting dtype and device. With strict, every key of m must be in
// sd and sd may hold nothing else; shapes must always match.
func LoadStateDict(m Module, sd map[string]*torch.Tensor, strict bool) error {
	le := &LoadError{}
	seen := map[string]bool{}
	var copyErr error // walk cannot stop early: the first copy error skips the rest
	err := torch.NoGrad(func() error {
		walk(m, "", func(s namedSlot) {
			if *s.p == nil || copyErr != nil {
				return
			}
			src, ok := sd[s.name]
			if !ok {
				le.Missing = append(le.Missing, s.name)
				return
			}
			seen[s.name] = true
			have, err := src.Shape()
			if err != nil {
				copyErr = fmt.Errorf("loading %s: %w", s.name, err)
				return
			}
			want, err := (*s.p).Shape()
			if err != nil {
				copyErr = fmt.Errorf("loading %s: model: %w", s.name, err)
				return
			}
			if !slices.Equal(have, want) {
				le.WrongShape = append(le.WrongShape, fmt.Sprintf("%s: file %v, model %v", s.name, have, want))
				return
			}
			if err := (*s.p).CopyFrom(src); err != nil {
				copyErr = fmt.Errorf("loading %s: %w", s.name, err)
			}
		})
		return copyErr
	})
	if err != nil {
		return err
	}
	for k := range sd {
		if !seen[k] {
			le.Unexpected = append(le.Unexpected, k)
		}
	}
	sort.Strings(le.Unexpected)
	if len(le.WrongShape) > 0 || (strict && (len(le.Missing) > 0 || len(le.Unexpected) > 0)) {
		return le
	}
	return nil
}

// kaimingUniformBound is PyTorch's default bound for Conv and Linear weights:
// kaiming_uniform_(a=√5) gives 1/√fan_in.
func kaimingUniformBound(fanIn int64) float64 { return 1 / math.Sqrt(float64(fanIn)) }
