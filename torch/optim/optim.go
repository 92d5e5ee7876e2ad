// Package optim holds optimizers (SGD, Adam, AdamW) and learning-rate schedules
// over package torch, with PyTorch's update rules and schedule formulas.
//
// An optimizer updates parameter groups; each Group has its own learning rate
// and weight decay. State tensors (momentum buffers, Adam's moments) live for
// the optimizer's lifetime and are freed by Close; the temporaries of a Step
// live in a torch.Scope and are freed before Step returns, so a training loop
// leaks nothing. Updates run under torch.NoGrad; parameters without a gradient
// are skipped, as in PyTorch.
//
// A typical loop:
//
//	opt, err := optim.NewSGD(optim.Params(nn.Parameters(model), 0.1, 5e-4),
//		optim.SGDConfig{Momentum: 0.9, Nesterov: true})
//	...
//	defer opt.Close()
//	sched, err := optim.NewScheduler(opt, optim.CosineAnnealingLR{TMax: steps})
//	for step := 0; step < steps; step++ {
//		s := torch.NewScope()
//		loss := torch.CrossEntropy(model.Forward(s.Track(x)), y, 0, torch.ReduceMean)
//		err = loss.Backward()
//		err = opt.Step()
//		err = opt.ZeroGrad()
//		err = sched.Step()
//		s.Close()
//	}
package optim

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"modelstitch/torch"
)

// Optimizer updates parameters from their gradients.
type Optimizer interface {
	// Step applies one update to every parameter that has a gradient.
	Step() error
	// ZeroGrad drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
	ZeroGrad() error
	// LR returns each group's current learning rate.
	LR() []float64
	// SetLR sets the learning rate: one value sets every group, otherwise give
	// one value per group.
	SetLR(lr ...float64) error
	// Groups returns the parameter groups with their current settings. The
	// slices are copies; changing them does not change the optimizer.
	Groups() []Group
	// Close frees the optimizer's state tensors. Step fails afterwards.
	Close()
}

// MomentumSetter is an optimizer whose momentum a schedule can change: SGD's
// momentum, Adam's β1. OneCycleLR's momentum cycling uses it.
type MomentumSetter interface {
	// Momentum returns the current momentum (SGD) or β1 (Adam).
	Momentum() float64
	// SetMomentum sets the momentum (SGD) or β1 (Adam) used by later steps.
	SetMomentum(m float64) error
}

// Group is a set of parameters that share a learning rate and weight decay.
// Both values are used exactly as given (0 means no weight decay).
type Group struct {
	// Params are the tensors to update: floating-point leaves of the autograd graph.
	Params []*torch.Tensor
	// LR is the learning rate (≥ 0).
	LR float64
	// WeightDecay is the L2 penalty (SGD, Adam) or the decoupled decay rate (AdamW); ≥ 0.
	WeightDecay float64
}

// Params returns a single group holding params with learning rate lr and
// weight decay wd, the common case of one setting for the whole model.
func Params(params []*torch.Tensor, lr, wd float64) []Group {
	return []Group{{Params: params, LR: lr, WeightDecay: wd}}
}

// ErrClosed is returned by Step after Close.
var ErrClosed = errors.New("optim: optimizer is closed")

// core is the bookkeeping every optimizer shares: validated groups and the
// closed flag.
type core struct {
	name   string
	groups []Group
	closed bool
}

// newCore validates groups and copies them. Every parameter must be a live,
// floating-point leaf tensor appearing in only one group.
func newCore(name string, groups []Group) (core, error) {
	c := core{name: name}
	seen := map[*torch.Tensor]string{}
	total := 0
	for gi, g := range groups {
		if err := checkHyper(name, fmt.Sprintf("group %d learning rate", gi), g.LR); err != nil {
			return c, err
		}
		if err := checkHyper(name, fmt.Sprintf("group %d weight decay", gi), g.WeightDecay); err != nil {
			return c, err
		}
		for pi, p := range g.Params {
			where := fmt.Sprintf("group %d parameter %d", gi, pi)
			if p == nil {
				return c, fmt.Errorf("optim: %s: %s is nil", name, where)
			}
			if err := p.Err(); err != nil {
				return c, fmt.Errorf("optim: %s: %s: %w", name, where, err)
			}
			if p.Freed() {
				return c, fmt.Errorf("optim: %s: %s has been freed", name, where)
			}
			if !p.DType().IsFloat() {
				return c, fmt.Errorf("optim: %s: %s is %v; only floating-point tensors can be optimized", name, where, p.DType())
			}
			if !p.IsLeaf() {
				return c, fmt.Errorf("optim: %s: %s is not a leaf tensor (can't optimize a computed value; Detach it or use the original parameter)", name, where)
			}
			if prev, dup := seen[p]; dup {
				return c, fmt.Errorf("optim: %s: %s is also %s; a parameter may appear in one group only", name, where, prev)
			}
			seen[p] = where
			total++
		}
		c.groups = append(c.groups, Group{Params: append([]*torch.Tensor(nil), g.Params...), LR: g.LR, WeightDecay: g.WeightDecay})
	}
	if total == 0 {
		return c, fmt.Errorf("optim: %s: empty parameter list", name)
	}
	return c, nil
}

// checkHyper rejects negative or non-finite hyperparameters.
func checkHyper(opt, what string, v float64) error {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("optim: %s: invalid %s %v (must be finite and ≥ 0)", opt, what, v)
	}
	return nil
}

// LR returns each group's current learning rate.
func (c *core) LR() []float64 {
	lrs := make([]float64, len(c.groups))
	for i, g := range c.groups {
		lrs[i] = g.LR
	}
	return lrs
}

// SetLR sets one learning rate for every group, or one per group.
func (c *core) SetLR(lr ...float64) error {
	if len(lr) != 1 && len(lr) != len(c.groups) {
		return fmt.Errorf("optim: %s: SetLR got %d values for %d groups (give one, or one per group)", c.name, len(lr), len(c.groups))
	}
	for i, v := range lr {
		if err := checkHyper(c.name, fmt.Sprintf("learning rate %d", i), v); err != nil {
			return err
		}
	}
	for i := range c.groups {
		if len(lr) == 1 {
			c.groups[i].LR = lr[0]
		} else {
			c.groups[i].LR = lr[i]
		}
	}
	return nil
}

// Groups returns copies of the parameter groups.
func (c *core) Groups() []Group {
	out := make([]Group, len(c.groups))
	for i, g := range c.groups {
		out[i] = Group{Params: append([]*torch.Tensor(nil), g.Params...), LR: g.LR, WeightDecay: g.WeightDecay}
	}
	return out
}

// ZeroGrad drops the gradient of every parameter.
func (c *core) ZeroGrad() error {
	for _, g := range c.groups {
		for _, p := range g.Params {
			if err := p.ZeroGrad(); err != nil {
				return fmt.Errorf("optim: %s: zero_grad: %w", c.name, err)
			}
		}
	}
	return nil
}

// step runs update for every parameter that has a gradient, inside one scope
// (freed on return) and with gradient recording off. The gradient handed to
// update belongs to the scope.
func (c *core) step(update func(g *Group, p, grad *torch.Tensor, s *torch.Scope) error) error {
	return c.stepGroups(func(g *Group, params, grads []*torch.Tensor, s *torch.Scope) error {
		for i, p := range params {
			if err := update(g, p, grads[i], s); err != nil {
				return fmt.Errorf("parameter %d: %w", slices.Index(g.Params, p), err)
			}
		}
		return nil
	})
}

// stepGroups is step for multi-tensor updates: it calls update once per group
// with the group's parameters that have a gradient and those gradients
// (which belong to the scope).
func (c *core) stepGroups(update func(g *Group, params, grads []*torch.Tensor, s *torch.Scope) error) error {
	if c.closed {
		return ErrClosed
	}
	s := torch.NewScope()
	defer s.Close()
	return torch.NoGrad(func() error {
		for gi := range c.groups {
			g := &c.groups[gi]
			var params, grads []*torch.Tensor
			for pi, p := range g.Params {
				grad := p.Grad()
				if grad == nil {
					continue // no gradient: PyTorch skips the parameter
				}
				s.Track(grad)
				if err := grad.Err(); err != nil {
					return fmt.Errorf("optim: %s step, group %d parameter %d: %w", c.name, gi, pi, err)
				}
				params = append(params, p)
				grads = append(grads, grad)
			}
			if len(params) == 0 {
				continue
			}
			if err := update(g, params, grads, s); err != nil {
				return fmt.Errorf("optim: %s step, group %d: %w", c.name, gi, err)
			}
		}
		return nil
	})
}

// addScaled returns a + alpha·b as a new tensor (PyTorch's a.add(b, alpha=alpha)).
func addScaled(a, b *torch.Tensor, alpha float64) (*torch.Tensor, error) {
	out := a.Clone()
	if err := out.Err(); err != nil {
		return nil, err
	}
	return out, out.AddScaledInPlace(b, alpha)
}

// keep takes a state tensor out of the step's scope, checking for errors.
func keep(s *torch.Scope, t *torch.Tensor) (*torch.Tensor, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	return s.Keep(t), nil
}

// The optimizers implement Optimizer and MomentumSetter.
var (
	_ Optimizer      = (*SGD)(nil)
	_ Optimizer      = (*Adam)(nil)
	_ MomentumSetter = (*SGD)(nil)
	_ MomentumSetter = (*Adam)(nil)
)
