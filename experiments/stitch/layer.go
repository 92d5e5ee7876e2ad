// Package stitch implements model stitching (Bansal, Nakkiran & Barak 2021):
// the bottom of one frozen network feeds the top of another through a small
// trainable stitching layer, fit on the training set and scored on the test set.
package stitch

import (
	"fmt"

	"modelstitch/experiments/invalid"
	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// Layer is the paper's stitching layer: BatchNorm2d → k×k Conv2d → BatchNorm2d
// between residual blocks, BatchNorm1d → Linear → BatchNorm1d after pooling.
type Layer struct {
	*nn.Base
	Pre  *nn.BatchNorm
	Conv *nn.Conv2d // set for spatial activations
	Lin  *nn.Linear // set for pooled activations
	Post *nn.BatchNorm
}

// NewLayer makes a stitching layer from bottom activations of shape in to top
// activations of shape out (both without the batch dimension: [C,H,W] or [C]).
// Channel counts may differ; spatial sizes must match.
func NewLayer(in, out []int64, kernel int64) (*Layer, error) {
	if err := CheckLayer(in, out, kernel); err != nil {
		return nil, err
	}
	l := &Layer{Base: nn.NewBase()}
	switch {
	case len(in) == 3 && len(out) == 3:
		l.Pre = nn.NewBatchNorm2d(in[0])
		l.Conv = nn.NewConv2d(in[0], out[0], kernel, nn.Conv2dConfig{Padding: kernel / 2})
		l.Post = nn.NewBatchNorm2d(out[0])
		l.RegisterModule("0", l.Pre)
		l.RegisterModule("1", l.Conv)
		l.RegisterModule("2", l.Post)
	case len(in) == 1 && len(out) == 1:
		l.Pre = nn.NewBatchNorm1d(in[0])
		l.Lin = nn.NewLinear(in[0], out[0], true)
		l.Post = nn.NewBatchNorm1d(out[0])
		l.RegisterModule("0", l.Pre)
		l.RegisterModule("1", l.Lin)
		l.RegisterModule("2", l.Post)
	}
	if err := nn.Err(l); err != nil {
		nn.Free(l)
		return nil, fmt.Errorf("stitch: layer %v → %v: %w", in, out, err)
	}
	return l, nil
}

// CheckLayer says whether NewLayer can stitch activations of shape in into
// out with the given kernel, without allocating: the kernel is a positive odd
// number no wider than twice the activations' side less one (a wider kernel
// only adds taps that see the zero padding, and --kernel-size 1001 ran for
// hours), and the spatial sizes match.
func CheckLayer(in, out []int64, kernel int64) error {
	if kernel < 1 || kernel%2 == 0 {
		return fmt.Errorf("stitch: %w", invalid.Errorf("kernel size", "must be a positive odd number, got %d", kernel))
	}
	switch {
	case len(in) == 3 && len(out) == 3:
		if in[1] != out[1] || in[2] != out[2] {
			return fmt.Errorf("stitch: spatial sizes differ: bottom gives %v, top expects %v (C×H×W); stitch at cuts where H×W match", in, out)
		}
		if most := 2*max(in[1], in[2]) - 1; kernel > most {
			return fmt.Errorf("stitch: %w", invalid.Errorf("kernel size", "%d is wider than the %d×%d activations allow (at most %d: a wider kernel only sees padding)", kernel, in[1], in[2], most))
		}
	case len(in) == 1 && len(out) == 1:
	default:
		return fmt.Errorf("stitch: cannot stitch activations of shape %v into %v (need both C×H×W or both C)", in, out)
	}
	return nil
}

// Forward maps bottom activations to top activations.
func (l *Layer) Forward(x *torch.Tensor) *torch.Tensor {
	x = l.Pre.Forward(x)
	if l.Conv != nil {
		x = l.Conv.Forward(x)
	} else {
		x = l.Lin.Forward(x)
	}
	return l.Post.Forward(x)
}

// Map returns the layer's linear map's weight and bias.
func (l *Layer) Map() (w, b *torch.Tensor) {
	if l.Conv != nil {
		return l.Conv.Weight, l.Conv.Bias
	}
	return l.Lin.Weight, l.Lin.Bias
}
