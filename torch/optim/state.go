package optim

import (
	"fmt"
	"slices"

	"modelstitch/torch"
)

// ParamState is one parameter's optimizer state, for saving with a
// checkpoint and restoring when training resumes.
type ParamState struct {
	// Group and Index locate the parameter: Groups()[Group].Params[Index].
	Group, Index int
	// Step is the number of updates the parameter has received (Adam; 0 for SGD).
	Step int
	// Tensors are the state tensors by PyTorch's names: "momentum_buffer"
	// (SGD); "exp_avg", "exp_avg_sq" and, with AMSGrad, "max_exp_avg_sq" (Adam).
	Tensors map[string]*torch.Tensor
}

// Stateful is an optimizer whose state can be saved and restored, so that a
// resumed run updates its parameters exactly as the uninterrupted run would.
type Stateful interface {
	// State returns the state of every parameter that has any, in group and
	// parameter order. The tensors belong to the optimizer: do not free
	// them, and copy them before the next Step if they must stay as they are.
	State() []ParamState
	// LoadState replaces the optimizer's state by copies of the given
	// states' tensors (checked against their parameters' shapes, and moved
	// to their devices and dtypes); parameters without a state start afresh.
	// On error the optimizer's state is left as it was.
	LoadState(states []ParamState) error
}

var (
	_ Stateful = (*SGD)(nil)
	_ Stateful = (*Adam)(nil)
)

// forEachParam calls f with every parameter and its group and index.
func (c *core) forEachParam(f func(g, i int, p *torch.Tensor)) {
	for gi, g := range c.groups {
		for pi, p := range g.Params {
			f(gi, pi, p)
		}
	}
}

// param returns the parameter a state is for, or an error naming it.
func (c *core) param(s ParamState) (*torch.Tensor, error) {
	if s.Group < 0 || s.Group >= len(c.groups) || s.Index < 0 || s.Index >= len(c.groups[s.Group].Params) {
		return nil, fmt.Errorf("optim: %s: state for group %d parameter %d, which the optimizer does not have", c.name, s.Group, s.Index)
	}
	return c.groups[s.Group].Params[s.Index], nil
}

// copyFor returns a copy of src made like p (p's device and dtype), after
// checking that src has p's shape. It belongs to no scope.
func (c *core) copyFor(s ParamState, name string, p, src *torch.Tensor) (*torch.Tensor, error) {
	where := fmt.Sprintf("optim: %s: group %d parameter %d %s", c.name, s.Group, s.Index, name)
	if src == nil {
		return nil, fmt.Errorf("%s: missing", where)
	}
	want, err := p.Shape()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	got, err := src.Shape()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if !slices.Equal(want, got) {
		return nil, fmt.Errorf("%s has shape %v but the parameter has %v", where, got, want)
	}
	var out *torch.Tensor
	err = torch.NoGrad(func() error {
		out = p.ZerosLike()
		if err := out.Err(); err != nil {
			return err
		}
		return out.CopyFrom(src)
	})
	if err != nil {
		out.Free()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return out, nil
}

// State returns the momentum buffers.
func (o *SGD) State() []ParamState {
	var out []ParamState
	o.forEachParam(func(g, i int, p *torch.Tensor) {
		if b := o.buf[p]; b != nil {
			out = append(out, ParamState{Group: g, Index: i, Tensors: map[string]*torch.Tensor{"momentum_buffer": b}})
		}
	})
	return out
}

// LoadState replaces the momentum buffers by copies of states'.
func (o *SGD) LoadState(states []ParamState) error {
	if o.closed {
		return ErrClosed
	}
	buf := map[*torch.Tensor]*torch.Tensor{}
	fail := func(err error) error {
		for _, b := range buf {
			b.Free()
		}
		return err
	}
	for _, s := range states {
		p, err := o.param(s)
		if err != nil {
			return fail(err)
		}
		b, err := o.copyFor(s, "momentum_buffer", p, s.Tensors["momentum_buffer"])
		if err != nil {
			return fail(err)
		}
		if old := buf[p]; old != nil {
			old.Free()
		}
		buf[p] = b
	}
	for _, b := range o.buf {
		b.Free()
	}
	o.buf = buf
	return nil
}

// State returns the moment estimates and step counts.
func (o *Adam) State() []ParamState {
	var out []ParamState
	o.forEachParam(func(g, i int, p *torch.Tensor) {
		st := o.state[p]
		if st == nil {
			return
		}
		ts := map[string]*torch.Tensor{"exp_avg": st.expAvg, "exp_avg_sq": st.expAvgSq}
		if st.maxSqAv != nil {
			ts["max_exp_avg_sq"] = st.maxSqAv
		}
		out = append(out, ParamState{Group: g, Index: i, Step: st.step, Tensors: ts})
	})
	return out
}

// LoadState replaces the moment estimates and step counts by copies of states'.
func (o *Adam) LoadState(states []ParamState) error {
	if o.closed {
		return ErrClosed
	}
	state := map[*torch.Tensor]*adamState{}
	free := func(st *adamState) { torch.FreeAll(st.expAvg, st.expAvgSq, st.maxSqAv) }
	fail := func(err error) error {
		for _, st := range state {
			free(st)
		}
		return err
	}
	for _, s := range states {
		p, err := o.param(s)
		if err != nil {
			return fail(err)
		}
		if s.Step < 1 {
			return fail(fmt.Errorf("optim: %s: group %d parameter %d: step count %d (a saved state has at least one step)", o.name, s.Group, s.Index, s.Step))
		}
		st := &adamState{step: s.Step}
		names := []string{"exp_avg", "exp_avg_sq"}
		if o.cfg.AMSGrad {
			names = append(names, "max_exp_avg_sq")
		}
		for _, name := range names {
			t, err := o.copyFor(s, name, p, s.Tensors[name])
			if err != nil {
				free(st)
				return fail(err)
			}
			switch name {
			case "exp_avg":
				st.expAvg = t
			case "exp_avg_sq":
				st.expAvgSq = t
			default:
				st.maxSqAv = t
			}
		}
		if old := state[p]; old != nil {
			free(old)
		}
		state[p] = st
	}
	for _, st := range o.state {
		free(st)
	}
	o.state = state
	return nil
}
