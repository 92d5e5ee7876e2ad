package stitch

import (
	"fmt"

	"modelstitch/torch"
)

// LinearCKA returns the linear centred kernel alignment (Kornblith et al. 2019)
// between two sets of activations of the same n inputs, x [n, ...] and y [n, ...]:
// ⟨HKH, HLH⟩ / (‖HKH‖ ‖HLH‖) with K = XXᵀ, L = YYᵀ. It works on n×n Gram
// matrices, so wide activations cost no p×p memory. 1 means the same up to a
// rotation and scale; 0 means unrelated.
func LinearCKA(x, y *torch.Tensor) (float64, error) {
	nx, err := x.Size(0)
	if err != nil {
		return 0, fmt.Errorf("cka: x: %w", err)
	}
	ny, err := y.Size(0)
	if err != nil {
		return 0, fmt.Errorf("cka: y: %w", err)
	}
	if nx != ny {
		return 0, fmt.Errorf("cka: x has %d samples, y has %d", nx, ny)
	}
	s := torch.NewScope()
	defer s.Close()
	gram := func(a *torch.Tensor) *torch.Tensor {
		a = s.Track(a.Ref()).Flatten(1, -1).To(torch.Float64)
		a = a.Sub(a.MeanDims([]int64{0}, true))
		return a.Mm(a.T())
	}
	k, l := gram(x), gram(y)
	hsic := k.Mul(l).Sum()
	den := k.Norm(2, nil, false).Mul(l.Norm(2, nil, false))
	v, err := hsic.Div(den).Item()
	if err != nil {
		return 0, fmt.Errorf("cka: %w", err)
	}
	if !finite(v) {
		return 0, nil // a constant representation: no alignment to speak of
	}
	return v, nil
}
