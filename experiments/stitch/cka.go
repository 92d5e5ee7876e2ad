package stitch

import (
	"fmt"
	"math"

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

// UnbiasedLinearCKA returns the debiased linear CKA: the unbiased HSIC
// estimator (Song et al. 2012), as used for CKA by Nguyen et al. (2021),
// between x [n, ...] and y [n, ...]:
//
//	HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))
//
// with K̃, L̃ the Gram matrices of the centred features with zero diagonals,
// and CKA = HSIC₁(K, L)/√(HSIC₁(K, K)·HSIC₁(L, L)). The biased estimator
// ([LinearCKA]) is pulled towards 1 for few samples of wide features; this
// one is not (it can be slightly negative). It needs n ≥ 4.
func UnbiasedLinearCKA(x, y *torch.Tensor) (float64, error) {
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
	if nx < 4 {
		return 0, fmt.Errorf("cka: the unbiased estimator needs at least 4 samples, got %d", nx)
	}
	s := torch.NewScope()
	defer s.Close()
	n := float64(nx)
	offDiag := s.Track(torch.Eye(nx, torch.Options{DType: torch.Float64, Device: x.Device()})).RSubScalar(1)
	gram := func(a *torch.Tensor) *torch.Tensor {
		a = s.Track(a.Ref()).Flatten(1, -1).To(torch.Float64)
		a = a.Sub(a.MeanDims([]int64{0}, true))
		return a.Mm(a.T()).Mul(offDiag)
	}
	hsic := func(k, l *torch.Tensor) *torch.Tensor {
		tr := k.Mul(l).Sum()
		sums := k.Sum().Mul(l.Sum()).DivScalar((n - 1) * (n - 2))
		cross := k.SumDims([]int64{1}, false).Mul(l.SumDims([]int64{1}, false)).Sum().MulScalar(2 / (n - 2))
		return tr.Add(sums).Sub(cross).DivScalar(n * (n - 3))
	}
	k, l := gram(x), gram(y)
	kl, kk, ll := hsic(k, l), hsic(k, k), hsic(l, l)
	if err := torch.FirstError(kl, kk, ll); err != nil {
		return 0, fmt.Errorf("cka: %w", err)
	}
	vkl, err := kl.Item()
	if err != nil {
		return 0, fmt.Errorf("cka: %w", err)
	}
	vkk, _ := kk.Item()
	vll, _ := ll.Item()
	if !(vkk > 0 && vll > 0) {
		return 0, nil // a constant representation: no alignment to speak of
	}
	v := vkl / math.Sqrt(vkk*vll)
	if !finite(v) {
		return 0, nil
	}
	return v, nil
}
