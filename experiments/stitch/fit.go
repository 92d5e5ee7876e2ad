package stitch

import (
	"fmt"

	"modelstitch/experiments/loop"
	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
)

// FitConfig is the stitching layer's training recipe: Adam (0.9, 0.999), no
// weight decay. Without Validate the learning rate LR decays to 0 by a cosine
// over all Epochs' steps and the layer as it ends is kept. With Validate the
// rate is constant and the fit converges on held-out images (plateau): every
// CheckEvery steps the layer is scored by Validate, the most accurate state
// (the start included) is kept, the rate is cut by LRCutFactor after
// Patience checks in which neither the accuracy nor the loss improved, and
// the fit stops at the plateau after LRCuts cuts, or at the cap of Epochs
// epochs.
type FitConfig struct {
	Epochs int
	LR     float64
	// Validate scores the layer (in eval mode) on held-out images: its
	// accuracy (percent) and mean cross-entropy; nil: no validation.
	Validate   func() (acc, loss float64, err error)
	CheckEvery int // steps between checks (0: once per epoch)
	Patience   int // checks without improvement before a cut (at least 1)
	LRCuts     int // cuts before the fit stops at a plateau
}

// withSteps fills CheckEvery (one epoch's steps when 0) and Patience.
func (c FitConfig) withSteps(perEpoch int) FitConfig {
	if c.CheckEvery <= 0 {
		c.CheckEvery = max(1, perEpoch)
	}
	c.Patience = max(1, c.Patience)
	return c
}

// Fit trains only m's stitching layer on the loader's batches, reporting
// progress to report as one stage named stage, and says what it did.
func Fit(m *Model, loader *data.Loader, cfg FitConfig, report progress.Func, stage string) (FitOutcome, error) {
	cfg = cfg.withSteps(loader.Len())
	m.SetFitting(true)
	defer m.SetFitting(false)
	run, err := newFitRun(nn.Parameters(m.Layer), cfg, loader.Len()*cfg.Epochs, m.Layer, m.SetFitting)
	if err != nil {
		return FitOutcome{}, err
	}
	defer run.close()
	res, err := loop.Train(loop.Run{Epochs: cfg.Epochs, StepsPerEpoch: loader.Len(), Optimizer: run.opt, Schedule: run.sched,
		Stage: stage, OneStage: true, Progress: report, OnStep: run.onStep(),
	}, func(epoch int, step func(loop.Batch) error) error {
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				return err
			}
			err = step(loop.Batch{Loss: torch.CrossEntropy(m.Forward(b.X), b.Y, 0, torch.ReduceMean), N: b.Len()})
			b.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	out, err := run.finish(res, err, loader.Len()*cfg.Epochs)
	if err != nil {
		return out, fmt.Errorf("fitting the stitching layer: %w", err)
	}
	return out, nil
}

// LeastSquaresInit sets m's stitching layer to the least-squares map from the
// bottom's activations to the top's own activations at the cut, over the
// loader's samples (direct matching, Csiszárik et al. 2021), reporting
// progress to report as a stage named stage.
func LeastSquaresInit(m *Model, loader *data.Loader, report progress.Func, stage string) error {
	var acc lstsq
	defer acc.free()
	bar := report.Start(stage, "images", loader.Dataset().N)
	err := torch.NoGrad(func() error {
		for b, err := range loader.Batches(0) {
			if err != nil {
				return err
			}
			x := m.Bottom.ForwardTo(b.X, m.bottomCut())
			y := m.TopFeatures(b.X)
			err = torch.FirstError(x, y)
			if err == nil {
				err = acc.add(x, y)
			}
			n := b.Len()
			b.Close()
			if err != nil {
				return err
			}
			bar.Add(n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("least-squares init: %w", err)
	}
	bar.End()
	return acc.solve(m.Layer)
}
