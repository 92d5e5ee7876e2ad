package train

import (
	"fmt"
	"math"

	"modelstitch/torch"
)

// NTXent is SimCLR's normalised temperature-scaled cross-entropy loss over a
// batch of N positive pairs (z1[i], z2[i]), each row a projection of one view
// of image i:
//
//	z   = normalise(cat(z1, z2))            [2N, d], unit rows
//	s   = z·zᵀ / temperature                cosine similarities
//	ℓ_k = −log( exp(s[k,p(k)]) / Σ_{j≠k} exp(s[k,j]) ),  p(k) = k±N (the other view)
//	loss = mean_k ℓ_k over all 2N views
//
// Every other view in the batch (2N−2 of them) is a negative. The result is a
// 0-d tensor that joins z1's scope (intermediates are freed before NTXent
// returns); errors, including mismatched shapes or a non-positive
// temperature, are carried by it.
func NTXent(z1, z2 *torch.Tensor, temperature float64) *torch.Tensor {
	if err := torch.FirstError(z1, z2); err != nil {
		return torch.ErrTensor(err)
	}
	if !(temperature > 0) || math.IsInf(temperature, 0) {
		return torch.ErrTensor(fmt.Errorf("nt-xent: temperature must be a positive number, got %v", temperature))
	}
	s1, err := z1.Shape()
	if err != nil {
		return torch.ErrTensor(err)
	}
	s2, err := z2.Shape()
	if err != nil {
		return torch.ErrTensor(err)
	}
	if len(s1) != 2 || len(s2) != 2 || s1[0] != s2[0] || s1[1] != s2[1] {
		return torch.ErrTensor(fmt.Errorf("nt-xent: want two [N, d] projections of the same shape, got %v and %v", s1, s2))
	}
	n := s1[0]
	if n < 1 {
		return torch.ErrTensor(fmt.Errorf("nt-xent: empty batch"))
	}
	home := z1.Scope()
	s := torch.NewScope()
	defer s.Close()
	a, b := s.Track(z1.Ref()), s.Track(z2.Ref())
	dev := z1.Device()

	z := torch.Normalize(torch.Cat([]*torch.Tensor{a, b}, 0), 2, 1, 1e-12)
	sim := z.Mm(z.T()).DivScalar(temperature)
	self := s.Track(torch.Eye(2*n, torch.Options{DType: torch.Bool, Device: dev}))
	// −∞ on the diagonal removes each view's similarity with itself from the
	// softmax (and from the gradient).
	logits := sim.MaskedFill(self, math.Inf(-1))
	pos := make([]int64, 2*n)
	for k := range pos {
		pos[k] = (int64(k) + n) % (2 * n)
	}
	target := s.Track(torch.FromSlice(pos)).ToDevice(dev)
	loss := torch.CrossEntropy(logits, target, 0, torch.ReduceMean)
	if err := loss.Err(); err != nil {
		return torch.ErrTensor(fmt.Errorf("nt-xent: %w", err))
	}
	s.Keep(loss)
	if home != nil {
		home.Track(loss)
	}
	return loss
}
