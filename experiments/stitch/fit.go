package stitch

import (
	"fmt"
	"math"
	"runtime"

	"modelstitch/experiments/evaluate"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
	"modelstitch/torch/vision/data"
)

// FitConfig is the stitching layer's training recipe: Adam (0.9, 0.999), no
// weight decay, learning rate LR decayed to 0 by a cosine over all steps.
type FitConfig struct {
	Epochs int
	LR     float64
}

// Fit trains only m's stitching layer on the loader's batches.
func Fit(m *Model, loader *data.Loader, cfg FitConfig, progress evaluate.Progress) error {
	params := nn.Parameters(m.Layer)
	opt, err := optim.NewAdam(optim.Params(params, cfg.LR, 0), optim.AdamConfig{})
	if err != nil {
		return err
	}
	defer opt.Close()
	steps := loader.Len() * cfg.Epochs
	sched, err := optim.NewScheduler(opt, optim.CosineAnnealingLR{TMax: steps})
	if err != nil {
		return err
	}
	// One OS thread for the whole fit: libtorch's thread pools are per OS thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m.SetFitting(true)
	defer m.SetFitting(false)
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				return err
			}
			loss := torch.CrossEntropy(m.Forward(b.X), b.Y, 0, torch.ReduceMean)
			err = loss.Backward()
			if err == nil {
				err = checkLoss(loss)
			}
			if err == nil {
				err = opt.Step()
			}
			if err == nil {
				err = opt.ZeroGrad()
			}
			if err == nil {
				err = sched.Step()
			}
			n := b.Len()
			b.Close()
			if err != nil {
				return fmt.Errorf("fitting the stitching layer (epoch %d): %w", epoch+1, err)
			}
			if progress != nil {
				progress(n)
			}
		}
	}
	return nil
}

// checkLoss stops training on a diverged loss instead of producing garbage.
func checkLoss(loss *torch.Tensor) error {
	v, err := loss.Item()
	if err != nil {
		return err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("loss is %v (diverged; try a lower --lr)", v)
	}
	return nil
}

// LeastSquaresInit sets m's stitching layer to the least-squares map from the
// bottom's activations to the top's own activations at the cut, over the
// loader's samples (direct matching, Csiszárik et al. 2021).
func LeastSquaresInit(m *Model, loader *data.Loader, progress evaluate.Progress) error {
	var acc lstsq
	defer acc.free()
	err := torch.NoGrad(func() error {
		for b, err := range loader.Batches(0) {
			if err != nil {
				return err
			}
			x := m.Bottom.ForwardTo(b.X, m.Cut)
			y := m.Top.ForwardTo(b.X, m.Cut)
			err = torch.FirstError(x, y)
			if err == nil {
				err = acc.add(x, y)
			}
			n := b.Len()
			b.Close()
			if err != nil {
				return err
			}
			if progress != nil {
				progress(n)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("least-squares init: %w", err)
	}
	return acc.solve(m.Layer)
}
