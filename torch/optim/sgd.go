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

// Step updates every parameter that has a gradient.
func (o *SGD) Step() error {
	mom, damp := o.cfg.Momentum, o.cfg.Dampening
	return o.step(func(g *Group, p, grad *torch.Tensor, s *torch.Scope) error {
		d := grad
		var err error
		if o.cfg.Maximize {
			d = grad.Neg()
		}
		if g.WeightDecay != 0 {
			if d, err = addScaled(d, p, g.WeightDecay); err != nil {
				return err
			}
		}
		if mom != 0 {
			b := o.buf[p]
			if b == nil {
				if b, err = keep(s, d.Clone()); err != nil {
					return err
				}
				o.buf[p] = b
			} else {
				if err := b.MulScalarInPlace(mom); err != nil {
					return err
				}
				if err := b.AddScaledInPlace(d, 1-damp); err != nil {
					return err
				}
			}
			if o.cfg.Nesterov {
				if d, err = addScaled(d, b, mom); err != nil {
					return err
				}
			} else {
				d = b
			}
		}
		return p.AddScaledInPlace(d, -g.LR)
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
