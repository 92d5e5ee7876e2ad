package train

import (
	"math"

	"modelstitch/experiments/invalid"
	"modelstitch/torch/vision/data"
)

// SimCLRViews describes the augmentation that makes SimCLR's two views of a
// one-channel image, for recipes other than data.SimCLRAugment's (set
// SimCLRConfig.Views). The transforms run in this order: random resized crop,
// horizontal flip, brightness/contrast jitter, Gaussian noise, random erasing.
type SimCLRViews struct {
	// CropMin is the smallest crop area (fraction of the image) of the random
	// resized crop, in (0, 1]; 1 turns the crop off.
	CropMin float64
	// Flip mirrors half the views left to right.
	Flip bool
	// Jitter is the maximum relative brightness and contrast change, applied
	// to a view with probability JitterP (0: none).
	Jitter, JitterP float64
	// NoiseStd is the standard deviation of added Gaussian pixel noise (0: none).
	NoiseStd float64
	// EraseP is the probability of erasing a rectangle of 2–20 % of the view.
	EraseP float64
}

// DefaultSimCLRViews is data.SimCLRAugment's recipe for one-channel images,
// written as a SimCLRViews.
func DefaultSimCLRViews() SimCLRViews {
	return SimCLRViews{CropMin: 0.2, Flip: true, NoiseStd: 0.05, EraseP: 0.5}
}

// Transform checks v and returns the transform it describes.
func (v SimCLRViews) Transform() (data.Transform, error) {
	in01 := func(x float64) bool { return x >= 0 && x <= 1 }
	switch {
	case !(v.CropMin > 0 && v.CropMin <= 1):
		return nil, invalid.Errorf("crop min", "must be in (0, 1], got %g", v.CropMin)
	case !(v.Jitter >= 0) || math.IsInf(v.Jitter, 0):
		return nil, invalid.Errorf("jitter", "must be finite and ≥ 0, got %g", v.Jitter)
	case !in01(v.JitterP):
		return nil, invalid.Errorf("jitter probability", "must be in [0, 1], got %g", v.JitterP)
	case !(v.NoiseStd >= 0) || math.IsInf(v.NoiseStd, 0):
		return nil, invalid.Errorf("noise", "must be finite and ≥ 0, got %g", v.NoiseStd)
	case !in01(v.EraseP):
		return nil, invalid.Errorf("erase", "must be in [0, 1], got %g", v.EraseP)
	}
	var ts []data.Transform
	if v.CropMin < 1 {
		ts = append(ts, data.RandomResizedCrop{Scale: [2]float64{v.CropMin, 1}})
	}
	if v.Flip {
		ts = append(ts, data.HorizontalFlip{P: 0.5})
	}
	if v.Jitter > 0 && v.JitterP > 0 {
		ts = append(ts, data.ColorJitter{Brightness: v.Jitter, Contrast: v.Jitter, P: v.JitterP})
	}
	if v.NoiseStd > 0 {
		ts = append(ts, data.GaussianNoise{Std: v.NoiseStd})
	}
	if v.EraseP > 0 {
		ts = append(ts, data.RandomErasing{P: v.EraseP, Scale: [2]float64{0.02, 0.2}})
	}
	return data.Compose(ts...), nil
}
