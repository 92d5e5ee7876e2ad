package vision

import (
	"fmt"
	"math"
)

// Footprint is a ResNet's size worked out from its configuration and input
// size alone, without building it, so that a front end can refuse a network
// that cannot fit before allocating any of it. Counts are float64 because
// an absurd configuration (width 1e6) overflows int64.
type Footprint struct {
	// Params counts the trainable values: convolution and fc weights, fc
	// bias, batch-norm scales and shifts.
	Params float64
	// Buffers counts the batch norms' running means and variances.
	Buffers float64
	// Activations counts the values one image's forward pass produces and
	// training keeps for the backward pass: every convolution's, batch
	// norm's, residual sum's and ReLU's output, and the pooled features.
	Activations float64
	// LargestActivation is the size of the largest single activation of one
	// image (what an inference pass holds at once, twice over).
	LargestActivation float64
}

// Footprint returns the sizes of the ResNet c on inChannels×h×w images
// (InChannels is taken from c). It does not allocate.
func (c ResNetConfig) Footprint(h, w int64) (Footprint, error) {
	c, err := c.normalized()
	if err != nil {
		return Footprint{}, err
	}
	if h < 1 || w < 1 {
		return Footprint{}, fmt.Errorf("vision: image size %d×%d must be positive", h, w)
	}
	var f Footprint
	H, W := float64(h), float64(w)
	act := func(channels float64, copies float64) {
		n := channels * H * W
		f.Activations += copies * n
		f.LargestActivation = math.Max(f.LargestActivation, n)
	}
	conv := func(in, out, k float64) { f.Params += in * out * k * k }
	bn := func(ch float64) { f.Params += 2 * ch; f.Buffers += 2 * ch }
	down := func(k, stride, pad float64) {
		H = math.Floor((H+2*pad-k)/stride) + 1
		W = math.Floor((W+2*pad-k)/stride) + 1
		H, W = math.Max(H, 1), math.Max(W, 1)
	}

	base := math.Round(64 * c.Width)
	k, stride, pad := c.stemGeometry()
	conv(float64(c.InChannels), base, float64(k))
	bn(base)
	down(float64(k), float64(stride), float64(pad))
	act(base, 3) // conv, bn, relu
	if c.Stem != StemCIFAR {
		down(3, 2, 1)
		act(base, 1) // maxpool
	}
	layout := resnetLayouts[c.Depth]
	in := base
	for stage, blocks := range layout.blocks {
		planes := base * math.Pow(2, float64(stage))
		for b := 0; b < blocks; b++ {
			s := 1.0
			if b == 0 && stage > 0 {
				s = 2
			}
			if !layout.bottleneck {
				conv(in, planes, 3)
				bn(planes)
				down(3, s, 1)
				act(planes, 3)
				conv(planes, planes, 3)
				bn(planes)
				act(planes, 4) // conv, bn, sum, relu
				if s != 1 || in != planes {
					conv(in, planes, 1)
					bn(planes)
					act(planes, 2)
				}
				in = planes
				continue
			}
			inner := planes
			if c.WidthPerGroup != 0 {
				inner = planes * float64(c.WidthPerGroup) / 64
			}
			out := planes * 4
			conv(in, inner, 1)
			bn(inner)
			act(inner, 3)
			conv(inner, inner, 3)
			bn(inner)
			down(3, s, 1)
			act(inner, 3)
			conv(inner, out, 1)
			bn(out)
			act(out, 4)
			if s != 1 || in != out {
				conv(in, out, 1)
				bn(out)
				act(out, 2)
			}
			in = out
		}
	}
	f.Activations += in // pooled features
	if c.Classes > 0 {
		f.Params += in*float64(c.Classes) + float64(c.Classes)
		f.Activations += float64(c.Classes)
	}
	return f, nil
}
