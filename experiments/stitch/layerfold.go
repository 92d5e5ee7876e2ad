package stitch

import (
	"fmt"

	"modelstitch/torch"
)

// foldedLayer is a 1×1 stitching layer in evaluation mode as one convolution
// in oneDNN's layout, for the passes that score it (direct match, test): its
// batch norms are affine maps with their running statistics, so
// pre-norm → 1×1 conv → post-norm is x ↦ s₂ ⊙ (W (s₁ ⊙ x + t₁) + b − μ₂) + β₂,
// one 1×1 convolution with weight diag(s₂)·W·diag(s₁) and bias
// s₂ ⊙ (W t₁ + b − μ₂) + β₂ (sᵢ = γᵢ/√(σᵢ²+ε), t₁ = β₁ − μ₁ s₁). A kernel wider
// than 1 is not folded: its zero padding would have to be padded with −t₁/s₁.
type foldedLayer struct {
	packed, b *torch.Tensor
}

// foldLayer folds l as it is now (see foldedLayer); ok is false, with a nil
// error, when l is not a float32 1×1 convolution layer on the CPU with
// eval-mode batch norms, or this libtorch lacks oneDNN.
func foldLayer(l *Layer) (f *foldedLayer, ok bool, err error) {
	c := l.Conv
	if c == nil || c.KernelSize != (torch.Pair{1, 1}) || c.Stride != (torch.Pair{1, 1}) || c.Padding != (torch.Pair{0, 0}) ||
		c.Groups != 1 || l.Pre.UseBatchStats || l.Post.UseBatchStats || !torch.MkldnnAvailable() ||
		c.Weight.DType() != torch.Float32 || c.Weight.Device().Type != torch.DeviceCPU {
		return nil, false, nil
	}
	f = &foldedLayer{}
	err = torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		f64 := func(t *torch.Tensor) *torch.Tensor { return s.Track(t.Ref()).To(torch.Float64) }
		pre, post := l.Pre, l.Post
		s1 := f64(pre.Weight).Div(f64(pre.RunningVar).AddScalar(pre.Eps).Sqrt())
		t1 := f64(pre.Bias).Sub(f64(pre.RunningMean).Mul(s1))
		s2 := f64(post.Weight).Div(f64(post.RunningVar).AddScalar(post.Eps).Sqrt())
		w := f64(c.Weight).Reshape(c.OutChannels, c.InChannels)
		b := w.Mm(t1.Reshape(-1, 1)).Reshape(-1)
		if c.Bias != nil {
			b = b.Add(f64(c.Bias))
		}
		b = b.Sub(f64(post.RunningMean)).Mul(s2).Add(f64(post.Bias))
		w = w.Mul(s2.Reshape(-1, 1)).Mul(s1.Reshape(1, -1)).Reshape(c.OutChannels, c.InChannels, 1, 1)
		f.b = b.To(torch.Float32).Contiguous().Escape()
		f.packed = torch.MkldnnConv2dWeight(w.To(torch.Float32).Contiguous(), c.Stride, c.Padding, c.Dilation, 1).Escape()
		return torch.FirstError(f.b, f.packed)
	})
	if err != nil {
		f.free()
		return nil, false, fmt.Errorf("stitch: folding the stitching layer's batch norms: %w", err)
	}
	return f, true, nil
}

// forward maps bottom activations h (NCHW) to the top's, in oneDNN's layout.
func (f *foldedLayer) forward(h *torch.Tensor) *torch.Tensor {
	return h.ToMkldnn().Then(func(x *torch.Tensor) *torch.Tensor {
		return torch.MkldnnConv2d(x, f.packed, f.b, torch.Pair{1, 1}, torch.Pair{0, 0}, torch.Pair{1, 1}, 1)
	})
}

func (f *foldedLayer) free() { torch.FreeAll(f.packed, f.b) }
