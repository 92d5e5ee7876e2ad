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
	if _, err := samples(x, y, 0); err != nil {
		return 0, err
	}
	s := torch.NewScope()
	defer s.Close()
	k, l := s.Track(exactGram(x)), s.Track(exactGram(y))
	return biasedCKA(k, l)
}

// samples returns the number of samples of x and y, which must agree and,
// when least is 4, be at least 4 (the unbiased estimator's minimum).
func samples(x, y *torch.Tensor, least int64) (int64, error) {
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
	if nx < least {
		return 0, fmt.Errorf("cka: the unbiased estimator needs at least 4 samples, got %d", nx)
	}
	return nx, nil
}

// exactGram returns the float64 Gram matrix [n, n] of a's samples (rows of
// a flattened to [n, p]) centred on their mean.
func exactGram(a *torch.Tensor) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()
	a = s.Track(a.Ref()).Flatten(1, -1).To(torch.Float64)
	a = a.Sub(a.MeanDims([]int64{0}, true))
	return a.Mm(a.T()).Escape()
}

// fastGram is exactGram computed in float32 and returned as float64 (entries
// within about 1e-6 of exactGram's, relative to the largest). On the CPU the
// product runs as a 1×1 convolution (weights a, batch a: out[i, j] = a_i·a_j),
// which goes to oneDNN: libtorch's CPU matrix products go to the system BLAS,
// which on Debian is the reference implementation (about 2 GFLOP/s, 4× slower
// than the convolution for the default 500 samples at the stem).
func fastGram(a *torch.Tensor) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()
	n, err := a.Size(0)
	if err != nil {
		return torch.ErrTensor(err)
	}
	a = s.Track(a.Ref()).Flatten(1, -1).To(torch.Float32)
	a = a.Sub(a.MeanDims([]int64{0}, true))
	var g *torch.Tensor
	if a.Device().IsCUDA() {
		g = a.Mm(a.T())
	} else {
		w := a.Reshape(n, -1, 1, 1)
		g = torch.Conv2d(w, w, nil, torch.P(1), torch.P(0), torch.P(1), 1).Reshape(n, n)
	}
	return g.To(torch.Float64).Escape()
}

// biasedCKA is LinearCKA from the centred Gram matrices k and l.
func biasedCKA(k, l *torch.Tensor) (float64, error) {
	s := torch.NewScope()
	defer s.Close()
	k, l = s.Track(k.Ref()), s.Track(l.Ref())
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

// CKAs returns LinearCKA and, for at least 4 samples, UnbiasedLinearCKA of x
// and y (nil for fewer), from one Gram matrix per side computed in float32
// (fastGram): the values agree with the float64 functions' to about 1e-6, at
// a quarter of their cost or less.
func CKAs(x, y *torch.Tensor) (float64, *float64, error) {
	n, err := samples(x, y, 0)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 {
		return 0, nil, fmt.Errorf("cka: no samples")
	}
	s := torch.NewScope()
	defer s.Close()
	k, l := s.Track(fastGram(x)), s.Track(fastGram(y))
	if err := torch.FirstError(k, l); err != nil {
		return 0, nil, fmt.Errorf("cka: %w", err)
	}
	b, err := biasedCKA(k, l)
	if err != nil || n < 4 {
		return b, nil, err // the unbiased estimator needs 4 samples
	}
	u, err := unbiasedCKA(k, l, n)
	if err != nil {
		return 0, nil, err
	}
	return b, &u, nil
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
	n, err := samples(x, y, 4)
	if err != nil {
		return 0, err
	}
	s := torch.NewScope()
	defer s.Close()
	k, l := s.Track(exactGram(x)), s.Track(exactGram(y))
	return unbiasedCKA(k, l, n)
}

// unbiasedCKA is UnbiasedLinearCKA from the centred Gram matrices k and l of
// nx ≥ 4 samples.
func unbiasedCKA(k, l *torch.Tensor, nx int64) (float64, error) {
	s := torch.NewScope()
	defer s.Close()
	n := float64(nx)
	offDiag := s.Track(torch.Eye(nx, torch.Options{DType: torch.Float64, Device: k.Device()})).RSubScalar(1)
	k, l = s.Track(k.Ref()).Mul(offDiag), s.Track(l.Ref()).Mul(offDiag)
	hsic := func(k, l *torch.Tensor) *torch.Tensor {
		tr := k.Mul(l).Sum()
		sums := k.Sum().Mul(l.Sum()).DivScalar((n - 1) * (n - 2))
		cross := k.SumDims([]int64{1}, false).Mul(l.SumDims([]int64{1}, false)).Sum().MulScalar(2 / (n - 2))
		return tr.Add(sums).Sub(cross).DivScalar(n * (n - 3))
	}
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
