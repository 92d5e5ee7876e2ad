package optim

import (
	"fmt"
	"math"

	"modelstitch/torch"
)

// AdamConfig holds the settings Adam and AdamW share across groups. The zero
// value means PyTorch's defaults: betas (0.9, 0.999) and eps 1e-8.
type AdamConfig struct {
	// Betas are the decay rates of the first and second moment averages. The
	// zero pair means (0.9, 0.999); any other pair is used as given, so
	// {0, 0.999} turns the first moment off.
	Betas [2]float64
	// Eps is added to the denominator outside the square root; 0 means 1e-8.
	Eps float64
	// AMSGrad uses the maximum of past second moments (Reddi et al.).
	AMSGrad bool
	// Maximize ascends the objective instead of descending it.
	Maximize bool
}

// withDefaults fills in PyTorch's defaults.
func (c AdamConfig) withDefaults() AdamConfig {
	if c.Betas == [2]float64{} {
		c.Betas = [2]float64{0.9, 0.999}
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	return c
}

// adamState is one parameter's state.
type adamState struct {
	step                      int
	expAvg, expAvgSq, maxSqAv *torch.Tensor
}

// Adam is the Adam optimizer (Kingma & Ba) or, made by NewAdamW, AdamW
// (Loshchilov & Hutter), with PyTorch's update for step t:
//
//	g = ∇p + wd·p            (Adam; AdamW instead does p = p·(1 − lr·wd))
//	m = β1·m + (1−β1)·g
//	v = β2·v + (1−β2)·g²
//	p = p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)
//
// with t counted per parameter, from its first step with a gradient.
type Adam struct {
	core
	cfg       AdamConfig
	decoupled bool
	state     map[*torch.Tensor]*adamState
}

// NewAdam returns an Adam optimizer over groups; a group's WeightDecay is an
// L2 penalty added to the gradient (torch.optim.Adam).
func NewAdam(groups []Group, cfg AdamConfig) (*Adam, error) {
	return newAdam("Adam", groups, cfg, false)
}

// NewAdamW returns an AdamW optimizer over groups; a group's WeightDecay is
// decoupled from the gradient: p ← p·(1 − lr·wd) before the Adam step
// (torch.optim.AdamW). Unlike PyTorch's AdamW, whose default weight decay is
// 0.01, the decay is exactly the group's WeightDecay.
func NewAdamW(groups []Group, cfg AdamConfig) (*Adam, error) {
	return newAdam("AdamW", groups, cfg, true)
}

func newAdam(name string, groups []Group, cfg AdamConfig, decoupled bool) (*Adam, error) {
	cfg = cfg.withDefaults()
	for i, b := range cfg.Betas {
		if b < 0 || b >= 1 || math.IsNaN(b) {
			return nil, fmt.Errorf("optim: %s: invalid beta%d %v (must be in [0, 1))", name, i+1, b)
		}
	}
	if err := checkHyper(name, "eps", cfg.Eps); err != nil {
		return nil, err
	}
	c, err := newCore(name, groups)
	if err != nil {
		return nil, err
	}
	return &Adam{core: c, cfg: cfg, decoupled: decoupled, state: map[*torch.Tensor]*adamState{}}, nil
}

// Config returns the optimizer's shared settings, defaults filled in.
func (o *Adam) Config() AdamConfig { return o.cfg }

// Momentum returns β1.
func (o *Adam) Momentum() float64 { return o.cfg.Betas[0] }

// SetMomentum sets β1 for later steps.
func (o *Adam) SetMomentum(b1 float64) error {
	if b1 < 0 || b1 >= 1 || math.IsNaN(b1) {
		return fmt.Errorf("optim: %s: invalid beta1 %v (must be in [0, 1))", o.name, b1)
	}
	o.cfg.Betas[0] = b1
	return nil
}

// StepCount returns how many updates p has received (0 if none).
func (o *Adam) StepCount(p *torch.Tensor) int {
	if st := o.state[p]; st != nil {
		return st.step
	}
	return 0
}

// Moments returns p's first and second moment estimates (nil before p's first
// step). They belong to the optimizer; do not free them.
func (o *Adam) Moments(p *torch.Tensor) (expAvg, expAvgSq *torch.Tensor) {
	if st := o.state[p]; st != nil {
		return st.expAvg, st.expAvgSq
	}
	return nil, nil
}

// Step updates every parameter that has a gradient.
func (o *Adam) Step() error {
	b1, b2, eps := o.cfg.Betas[0], o.cfg.Betas[1], o.cfg.Eps
	return o.step(func(g *Group, p, grad *torch.Tensor, s *torch.Scope) error {
		st := o.state[p]
		if st == nil {
			st = &adamState{}
			var err error
			if st.expAvg, err = keep(s, p.ZerosLike()); err != nil {
				return err
			}
			if st.expAvgSq, err = keep(s, p.ZerosLike()); err != nil {
				st.expAvg.Free()
				return err
			}
			if o.cfg.AMSGrad {
				if st.maxSqAv, err = keep(s, p.ZerosLike()); err != nil {
					torch.FreeAll(st.expAvg, st.expAvgSq)
					return err
				}
			}
			o.state[p] = st
		}
		st.step++
		d := grad
		var err error
		if o.cfg.Maximize {
			d = grad.Neg()
		}
		if g.WeightDecay != 0 {
			if o.decoupled {
				if err := p.MulScalarInPlace(1 - g.LR*g.WeightDecay); err != nil {
					return err
				}
			} else if d, err = addScaled(d, p, g.WeightDecay); err != nil {
				return err
			}
		}
		m, v := st.expAvg, st.expAvgSq
		if err := m.MulScalarInPlace(b1); err != nil {
			return err
		}
		if err := m.AddScaledInPlace(d, 1-b1); err != nil {
			return err
		}
		if err := v.MulScalarInPlace(b2); err != nil {
			return err
		}
		if err := v.AddcmulInPlace(d, d, 1-b2); err != nil {
			return err
		}
		t := float64(st.step)
		bc1 := 1 - math.Pow(b1, t)
		bc2 := 1 - math.Pow(b2, t)
		if st.maxSqAv != nil {
			if err := st.maxSqAv.MaximumInPlace(v); err != nil {
				return err
			}
			v = st.maxSqAv
		}
		// v is optimizer state (unscoped): track its square root so the
		// temporaries stay in the step's scope.
		denom := s.Track(v.Sqrt()).DivScalar(math.Sqrt(bc2))
		if err := denom.AddScalarInPlace(eps); err != nil {
			return err
		}
		return p.AddcdivInPlace(m, denom, -g.LR/bc1)
	})
}

// Close frees the moment estimates.
func (o *Adam) Close() {
	for p, st := range o.state {
		torch.FreeAll(st.expAvg, st.expAvgSq, st.maxSqAv)
		delete(o.state, p)
	}
	o.closed = true
}
