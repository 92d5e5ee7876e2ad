package optim

import (
	"fmt"

	"modelstitch/torch"
)

// SGDConfig holds the settings SGD shares across groups. The zero value is
// plain SGD (no momentum, no dampening), as PyTorch's defaults.
type SGDConfig struct {
	// Momentum is the momentum factor μ (0 turns momentum off).
	Momentum float64
	// Dampening τ scales new gradients entering the momentum buffer by 1−τ.
	Dampening float64
	// Nesterov uses Nesterov momentum (needs Momentum > 0 and Dampening 0).
	Nesterov bool
	// Maximize ascends the objective instead of descending it.
	Maximize bool
}

// SGD is stochastic gradient descent with PyTorch's torch.optim.SGD update:
//
//	g = ∇p + wd·p
//	b = g                    on a parameter's first step with a gradient
//	b = μ·b + (1−τ)·g        afterwards
//	g = g + μ·b  (Nesterov)  or  g = b
//	p = p − lr·g
type SGD struct {
	core
	cfg SGDConfig
	buf map[*torch.Tensor]*torch.Tensor // momentum buffers
}

// NewSGD returns an SGD optimizer over groups.
func NewSGD(groups []Group, cfg SGDConfig) (*SGD, error) {
	if err := checkHyper("SGD", "momentum", cfg.Momentum); err != nil {
		return nil, err
	}
	if err := checkHyper("SGD", "dampening", cfg.Dampening); err != nil {
		return nil, err
	}
	if cfg.Nesterov && (cfg.Momentum <= 0 || cfg.Dampening != 0) {
		return nil, fmt.Errorf("optim: SGD: Nesterov momentum requires a momentum > 0 and zero dampening")
	}
	c, err := newCore("SGD", groups)
	if err != nil {
		return nil, err
	}
	return &SGD{core: c, cfg: cfg, buf: map[*torch.Tensor]*torch.Tensor{}}, nil
}

// Config returns the optimizer's shared settings (Momentum as last set).
func (o *SGD) Config() SGDConfig { return o.cfg }

// Momentum returns the current momentum factor.
func (o *SGD) Momentum() float64 { return o.cfg.Momentum }

// SetMomentum changes the momentum factor for later steps.
func (o *SGD) SetMomentum(m float64) error {
	if err := checkHyper("SGD", "momentum", m); err != nil {
		return err
	}
	o.cfg.Momentum = m
	return nil
}

// Step updates every parameter that has a gradient. Like torch.optim.SGD
// with foreach=True (its default on CUDA), it updates a group's parameters
// together: a few multi-tensor operations per group rather than a few
// operations per parameter.
func (o *SGD) Step() error {
	mom, damp := o.cfg.Momentum, o.cfg.Dampening
	return o.stepGroups(func(g *Group, params, grads []*torch.Tensor, s *torch.Scope) error {
		d := grads
		var err error
		if o.cfg.Maximize {
			d = make([]*torch.Tensor, len(grads))
			for i, gr := range grads {
				d[i] = gr.Neg()
			}
			if err := torch.FirstError(d...); err != nil {
				return err
			}
		}
		if g.WeightDecay != 0 {
			if d, err = torch.ForeachAddScaled(d, params, g.WeightDecay); err != nil {
				return err
			}
		}
		if mom != 0 {
			bufs := make([]*torch.Tensor, len(params))
			var old, oldD []*torch.Tensor // buffers from earlier steps, and their updates
			for i, p := range params {
				if b := o.buf[p]; b != nil {
					bufs[i] = b
					old = append(old, b)
					oldD = append(oldD, d[i])
					continue
				}
				if bufs[i], err = keep(s, d[i].Clone()); err != nil {
					return err
				}
				o.buf[p] = bufs[i]
			}
			if err := torch.ForeachMulScalarInPlace(old, mom); err != nil {
				return err
			}
			if err := torch.ForeachAddScaledInPlace(old, oldD, 1-damp); err != nil {
				return err
			}
			if o.cfg.Nesterov {
				if d, err = torch.ForeachAddScaled(d, bufs, mom); err != nil {
					return err
				}
			} else {
				d = bufs
			}
		}
		return torch.ForeachAddScaledInPlace(params, d, -g.LR)
	})
}

// MomentumBuffer returns the momentum buffer of p (nil before p's first step
// or without momentum). It belongs to the optimizer; do not free it.
func (o *SGD) MomentumBuffer(p *torch.Tensor) *torch.Tensor { return o.buf[p] }

// Close frees the momentum buffers.
func (o *SGD) Close() {
	for p, b := range o.buf {
		b.Free()
		delete(o.buf, p)
	}
	o.closed = true
}
