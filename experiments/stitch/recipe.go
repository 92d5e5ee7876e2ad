package stitch

import (
	"modelstitch/experiments/invalid"
	"modelstitch/torch"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// Recipe names: the stitching settings a run starts from (Recipe).
const (
	// RecipeCPU is the converged CPU default (Defaults).
	RecipeCPU = "cpu"
	// RecipeQuick is one unvalidated epoch on 6,000 images (Quick), for smoke tests.
	RecipeQuick = "quick"
	// RecipePaper is the paper's own stitching setting (Paper).
	RecipePaper = "paper"
)

// PaperEpochs is the number of epochs Paper fits for. The paper states
// Adam at 1e-3 with cosine decay but, in the notes this project works from
// (docs/method.md), no number of epochs; 30 passes over the whole augmented
// training split is this project's choice, enough for the loss to level off.
const PaperEpochs = 30

// Paper returns the paper's stitching setting: PyTorch's default
// initialisation of the stitching layer, Adam (0.9, 0.999, no weight decay)
// at LR 1e-3 with cosine decay to 0, batch 128, crop-and-flip augmentation
// of the fitting images (data.StandardAugment), the whole training split,
// PaperEpochs epochs, and frozen halves in eval mode (running statistics).
// CKA and the device are Defaults'.
//
// It is far slower than Defaults on a CPU (the whole split, every epoch
// recomputing the bottom on freshly augmented images); experiment specs
// that cannot afford it keep its other settings and say what they cut.
func Paper() Config {
	c := Defaults()
	c.Init, c.LR, c.Epochs, c.BatchSize = InitDefault, 1e-3, PaperEpochs, 128
	c.FitSamples, c.FitAugment, c.FrozenBN, c.KernelSize = 0, true, "eval", 1
	c.ValSamples, c.CheckEvery, c.Patience, c.LRCuts = 0, 0, 0, 0
	return c
}

// Recipe returns the named recipe's settings ("cpu", "quick" or "paper"; ""
// is "cpu"); an unknown name is an *invalid.Setting for "recipe".
func Recipe(name string) (Config, error) {
	switch name {
	case "", RecipeCPU:
		return Defaults(), nil
	case RecipeQuick:
		return Quick(), nil
	case RecipePaper:
		return Paper(), nil
	}
	return Config{}, invalid.Errorf("recipe", "must be %q, %q or %q, got %q", RecipeCPU, RecipeQuick, RecipePaper, name)
}

// selectData splits the training split into the fitting images and the
// held-out validation images (class-balanced, ValSamples of them; nil
// without validation), then takes FitSamples of the fitting images
// (class-balanced; 0: all).
func (r *Runner) selectData() (fit, val *datasets.Dataset, err error) {
	cfg := r.Config
	fit = r.Train
	if cfg.ValSamples > 0 {
		if cfg.ValSamples >= r.Train.N {
			return nil, nil, invalid.Errorf("val samples", "%d leaves no training images to fit on (the split has %d)", cfg.ValSamples, r.Train.N)
		}
		valIdx, err := r.Train.SubsetIndices(cfg.ValSamples, cfg.Seed+1)
		if err != nil {
			return nil, nil, invalid.Wrap("val samples", err)
		}
		if val, err = r.Train.Take(valIdx); err != nil {
			return nil, nil, invalid.Wrap("val samples", err)
		}
		if fit, err = r.Train.Take(complement(valIdx, r.Train.N)); err != nil {
			return nil, nil, err
		}
	}
	if cfg.FitSamples > 0 && cfg.FitSamples < fit.N {
		if fit, err = fit.Subset(cfg.FitSamples, cfg.Seed); err != nil {
			return nil, nil, invalid.Wrap("fit samples", err)
		}
	}
	return fit, val, nil
}

// complement returns the indices in [0, n) that sorted is without.
func complement(sorted []int, n int) []int {
	out := make([]int, 0, n-len(sorted))
	j := 0
	for i := range n {
		if j < len(sorted) && sorted[j] == i {
			j++
			continue
		}
		out = append(out, i)
	}
	return out
}

// fitLoader returns the shuffled loader of the fitting images, normalised by
// norm, with crop-and-flip augmentation (a new draw every epoch) when the
// config asks for it.
func (r *Runner) fitLoader(ds *datasets.Dataset, norm [2][]float64) (*data.Loader, error) {
	var aug data.Transform
	if r.Config.FitAugment {
		aug = data.StandardAugment(ds)
	}
	return data.NewLoader(ds, data.Config{BatchSize: r.Config.BatchSize, Shuffle: true, Seed: r.Config.Seed,
		DropLast: ds.N > r.Config.BatchSize, Device: r.Config.Device, Mean: norm[0], Std: norm[1], Augment: aug})
}

// fitInputs returns how a fitting batch becomes the bottom's activations at
// cut: rows of the fitting cache (the same un-augmented activations every
// epoch), or, with fitC nil (augmented fitting, or no cache), the bottom run
// on the batch's own images, which an augmenting loader crops and flips
// afresh each epoch. The result is tracked by the batch's scope.
func fitInputs(fitC *ActivationCache, bottom *Frozen, cut string) func(b *data.Batch) *torch.Tensor {
	if fitC != nil {
		return func(b *data.Batch) *torch.Tensor {
			return b.Scope.Track(fitC.Rows(append([]int(nil), b.Index...)))
		}
	}
	return func(b *data.Batch) *torch.Tensor {
		var h *torch.Tensor
		_ = torch.NoGrad(func() error { h = bottom.ForwardTo(b.X, cut); return nil }) // h carries any error
		return h
	}
}
