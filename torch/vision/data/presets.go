package data

import (
	"strings"

	"modelstitch/torch/vision/datasets"
)

// largeImage is the image side above which presets treat a data set as ImageNet-like
// (random resized crops) rather than small (padded crops).
const largeImage = 64

// flips reports whether mirroring keeps ds's labels meaningful: everything but digits.
func flips(ds *datasets.Dataset) bool { return !strings.HasPrefix(strings.ToLower(ds.Name), "mnist") }

// StandardAugment returns the usual supervised augmentation for ds, the paper's
// "random crop + flip":
//
//   - images up to 64 pixels: a random crop after zero padding (4 pixels for 32×32
//     CIFAR, side/8 for larger ones, 2 for smaller ones such as 28×28 Fashion-MNIST)
//     and a horizontal flip with probability 0.5;
//   - larger, ImageNet-like images: a random resized crop (scale 0.08–1, ratio 3/4–4/3)
//     and the flip.
//
// Data sets whose name starts with "mnist" (digits) are not flipped.
func StandardAugment(ds *datasets.Dataset) Transform {
	side := min(ds.H, ds.W)
	var crop Transform
	switch {
	case side > largeImage:
		crop = RandomResizedCrop{Scale: [2]float64{0.08, 1}}
	case side >= 32:
		crop = RandomCropPad{Pad: side / 8}
	default:
		crop = RandomCropPad{Pad: 2}
	}
	if !flips(ds) {
		return crop
	}
	return Compose(crop, HorizontalFlip{P: 0.5})
}

// SimCLRAugment returns the SimCLR augmentation for ds, to be applied twice per batch
// (Config.Views = 2, or [TwoViews]):
//
//   - colour data: a random resized crop (scale 0.08–1 for images larger than 64
//     pixels, 0.2–1 for small ones such as CIFAR), a horizontal flip (p 0.5), colour
//     jitter 0.4/0.4/0.4/0.1 with p 0.8, and grayscale with p 0.2;
//   - grayscale data: a random resized crop (scale 0.2–1), the flip (not for "mnist"
//     digits), Gaussian noise of std 0.05, and random erasing (p 0.5, area 2–20%).
func SimCLRAugment(ds *datasets.Dataset) Transform {
	side := min(ds.H, ds.W)
	scale := [2]float64{0.2, 1}
	if side > largeImage {
		scale = [2]float64{0.08, 1}
	}
	crop := RandomResizedCrop{Scale: scale}
	var flip Transform
	if flips(ds) {
		flip = HorizontalFlip{P: 0.5}
	}
	if ds.C == 3 {
		return Compose(crop, flip,
			ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, P: 0.8},
			RandomGrayscale{P: 0.2})
	}
	return Compose(crop, flip,
		GaussianNoise{Std: 0.05},
		RandomErasing{P: 0.5, Scale: [2]float64{0.02, 0.2}})
}
