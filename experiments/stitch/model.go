package stitch

import (
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
)

// Model is a stitched network: Top above Cut, fed by Bottom below Cut through
// Layer. Only Layer learns.
type Model struct {
	Bottom, Top *vision.ResNet
	Cut         string
	// BottomCut is where the bottom is cut when it is not Cut (a bottom of
	// another depth; "": Cut).
	BottomCut string
	Layer     *Layer
	// BatchStats runs the frozen halves' BatchNorms on batch statistics while
	// fitting (the paper authors' scripts); otherwise they stay in eval mode.
	BatchStats bool
	// TopInput, when set, maps a batch normalised for the bottom to the same
	// images normalised for the top (its own mean and std), for the top's own
	// activations (least-squares target, CKA); nil: the two share a normalisation.
	TopInput func(*torch.Tensor) *torch.Tensor
}

// TopFeatures returns the top's own activations at the cut for a batch x
// normalised for the bottom (see TopInput).
func (m *Model) TopFeatures(x *torch.Tensor) *torch.Tensor {
	if m.TopInput != nil {
		x = m.TopInput(x)
	}
	return m.Top.ForwardTo(x, m.Cut)
}

// BottomFeatures returns the bottom's activations at the cut, without
// recording gradients (the bottom is frozen).
func (m *Model) BottomFeatures(x *torch.Tensor) *torch.Tensor {
	var h *torch.Tensor
	_ = torch.NoGrad(func() error { h = m.Bottom.ForwardTo(x, m.bottomCut()); return nil }) // h carries any error
	return h
}

// Forward computes the stitched network's logits.
func (m *Model) Forward(x *torch.Tensor) *torch.Tensor {
	return m.FromFeatures(m.BottomFeatures(x))
}

// FromFeatures runs the stitching layer and the top on bottom activations h.
func (m *Model) FromFeatures(h *torch.Tensor) *torch.Tensor {
	return m.Top.ForwardFrom(m.Layer.Forward(h), m.Cut)
}

// SetFitting puts the model in fitting mode (true) or evaluation mode: the
// stitching layer trains; the halves stay in eval mode unless BatchStats.
func (m *Model) SetFitting(on bool) {
	nn.SetTraining(m.Bottom, on && m.BatchStats)
	nn.SetTraining(m.Top, on && m.BatchStats)
	nn.SetTraining(m.Layer, on)
}

// bottomCut is the cut of the bottom.
func (m *Model) bottomCut() string {
	if m.BottomCut != "" {
		return m.BottomCut
	}
	return m.Cut
}
