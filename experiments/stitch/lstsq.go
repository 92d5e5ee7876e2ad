package stitch

import (
	"fmt"
	"math"

	"modelstitch/torch"
)

// lstsq accumulates the normal equations of the direct-matching problem
// (Csiszárik et al. 2021): every pixel of the bottom's activations is a
// sample x ∈ R^C1 to be mapped onto the top's own activations y ∈ R^C2 at the
// same place, y ≈ x·W + b.
type lstsq struct {
	c1, c2   int64
	xtx, xty *torch.Tensor // float64 [C1+1, C1+1] and [C1+1, C2] (last row/column: the constant 1)
}

// rows flattens [N,C,H,W] or [N,C] activations to [samples, C] float64.
func rows(t *torch.Tensor) *torch.Tensor {
	s, err := t.Shape()
	if err != nil {
		return torch.ErrTensor(err)
	}
	if len(s) == 4 {
		return t.Permute(0, 2, 3, 1).Reshape(-1, s[1]).To(torch.Float64)
	}
	return t.To(torch.Float64)
}

// add accumulates one batch of bottom activations x and top activations y.
func (a *lstsq) add(x, y *torch.Tensor) error {
	p, err := normalProducts(x, y)
	if err != nil {
		return err
	}
	defer p.free()
	return a.addProducts(p)
}

// products is one batch's share of the normal equations: XᵀX and XᵀY of the
// batch's rows, X with the constant column.
type products struct{ xtx, xty *torch.Tensor }

func (p products) free() { torch.FreeAll(p.xtx, p.xty) }

// normalProducts computes one batch's products (freed by the caller). It
// reads only its arguments, so batches may be computed side by side.
func normalProducts(x, y *torch.Tensor) (products, error) {
	s := torch.NewScope()
	defer s.Close()
	xr := s.Track(rows(x))
	yr := s.Track(rows(y))
	ones := xr.Narrow(1, 0, 1).OnesLike()
	aug := torch.Cat([]*torch.Tensor{xr, ones}, 1)
	p := products{s.Keep(aug.T().Mm(aug)), s.Keep(aug.T().Mm(yr))}
	if err := torch.FirstError(p.xtx, p.xty); err != nil {
		p.free()
		return products{}, err
	}
	return p, nil
}

// addProducts adds one batch's products to the sums (in the order batches
// are added, so the sums do not depend on who computed them).
func (a *lstsq) addProducts(p products) error {
	if a.xtx == nil {
		c1, err := p.xtx.Size(0)
		if err != nil {
			return err
		}
		c2, err := p.xty.Size(1)
		if err != nil {
			return err
		}
		a.c1, a.c2 = c1-1, c2
		// p's tensors are in no scope and carry no graph (products are
		// computed without gradients): copies of them are the sums.
		a.xtx, a.xty = p.xtx.Clone(), p.xty.Clone()
		return torch.FirstError(a.xtx, a.xty)
	}
	if err := a.xtx.AddInPlace(p.xtx); err != nil {
		return err
	}
	return a.xty.AddInPlace(p.xty)
}

func (a *lstsq) free() { torch.FreeAll(a.xtx, a.xty) }

// solve returns the least-squares map and the statistics needed to set the
// stitching layer's batch norms so the whole layer computes x·W + b exactly.
func (a *lstsq) solve(l *Layer) error {
	if a.xtx == nil {
		return fmt.Errorf("stitch: least-squares init saw no data")
	}
	s := torch.NewScope()
	defer s.Close()
	xtx, xty := s.Track(a.xtx.Ref()), s.Track(a.xty.Ref())
	c1 := a.c1
	sol := xtx.Pinverse().Mm(xty) // [C1+1, C2]
	w := sol.Narrow(0, 0, c1)     // [C1, C2]
	b := sol.Select(0, c1)        // [C2]
	n := xtx.Select(0, c1).Select(0, c1)
	mu := xtx.Select(0, c1).Narrow(0, 0, c1).Div(n)     // [C1]
	exx := xtx.Narrow(0, 0, c1).Narrow(1, 0, c1).Div(n) // [C1, C1]
	cov := exx.Sub(mu.Unsqueeze(1).Mm(mu.Unsqueeze(0))) // [C1, C1]
	varX := cov.Diagonal().ClampMin(0)                  // [C1]
	eps := l.Pre.Eps
	sx := varX.AddScalar(eps).Sqrt()                                // [C1]
	wNorm := w.Mul(sx.Unsqueeze(1))                                 // W' = diag(σ) W
	bNorm := mu.Unsqueeze(0).Mm(w).Squeeze(0).Add(b)                // b' = μW + b: the mean of z
	varZ := w.Mul(cov.Mm(w)).SumDims([]int64{0}, false).ClampMin(0) // diag(Wᵀ Cov W)
	if err := torch.FirstError(wNorm, bNorm, varZ, sx); err != nil {
		return fmt.Errorf("stitch: least-squares init: %w", err)
	}
	dev := l.Pre.Weight.Device()
	f32 := func(t *torch.Tensor) *torch.Tensor { return t.ToDeviceDType(dev, torch.Float32) }
	err := torch.NoGrad(func() error {
		var err error
		set := func(dst, src *torch.Tensor) {
			if err == nil {
				err = dst.CopyFrom(f32(src))
			}
		}
		set(l.Pre.RunningMean, mu)
		set(l.Pre.RunningVar, varX)
		if err == nil {
			err = l.Pre.Weight.Fill(1)
		}
		if err == nil {
			err = l.Pre.Bias.Fill(0)
		}
		mw, mb := l.Map()
		if l.Conv != nil {
			k, kerr := mw.Size(2)
			if err == nil {
				err = kerr
			}
			if err == nil {
				err = mw.Fill(0)
			}
			centre := s.Track(mw.Narrow(2, k/2, 1)).Narrow(3, k/2, 1).Squeeze(3).Squeeze(2) // [C2, C1] view
			set(centre, wNorm.T())
		} else {
			set(mw, wNorm.T())
		}
		set(mb, bNorm)
		set(l.Post.RunningMean, bNorm)
		set(l.Post.RunningVar, varZ)
		set(l.Post.Weight, varZ.AddScalar(l.Post.Eps).Sqrt())
		set(l.Post.Bias, bNorm)
		return err
	})
	if err != nil {
		return fmt.Errorf("stitch: least-squares init: %w", err)
	}
	return nil
}

// finite reports whether v is a usable number.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
