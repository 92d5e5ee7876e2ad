package stitch

import (
	"fmt"

	"modelstitch/experiments/loop"
	"modelstitch/experiments/progress"
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

// Fit trains only m's stitching layer on the loader's batches, reporting
// progress to report as one stage named stage.
func Fit(m *Model, loader *data.Loader, cfg FitConfig, report progress.Func, stage string) error {
	params := nn.Parameters(m.Layer)
	opt, err := optim.NewAdam(optim.Params(params, cfg.LR, 0), optim.AdamConfig{})
	if err != nil {
		return err
	}
	defer opt.Close()
	sched, err := optim.NewScheduler(opt, optim.CosineAnnealingLR{TMax: loader.Len() * cfg.Epochs})
	if err != nil {
		return err
	}
	m.SetFitting(true)
	defer m.SetFitting(false)
	_, err = loop.Train(loop.Run{Epochs: cfg.Epochs, StepsPerEpoch: loader.Len(), Optimizer: opt, Schedule: sched,
		Stage: stage, OneStage: true, Progress: report,
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
	if err != nil {
		return fmt.Errorf("fitting the stitching layer: %w", err)
	}
	return nil
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
			x := m.Bottom.ForwardTo(b.X, m.Cut)
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
