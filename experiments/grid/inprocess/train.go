package inprocess

import (
	"context"
	"os"
	"slices"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/train"
	"modelstitch/internal/atomicfile"
	"modelstitch/torch/vision/datasets"
)

// train makes a model: a supervised or SimCLR run, or a probe.
func (x *InProcess) train(ctx context.Context, p *grid.Plan, u *grid.Unit) (*grid.ModelResult, error) {
	f := p.Files[u.Model]
	m := f.Model
	res := &grid.ModelResult{Name: m.Name, Path: f.Path, Device: x.Device.String()}
	if m.Kind == grid.KindProbe {
		acc, err := x.probe(p, m, f.Path)
		res.TestAcc, res.EpochsBefore = acc, new(int) // always fit here
		return res, err
	}
	r := m.Recipe
	res.Recipe = &r
	dc := x.trainData(p.Spec, r)
	before := epochsDone(f.Path)
	res.EpochsBefore = &before
	if meta, ok := finished(f.Path, r.Epochs); ok {
		// Trained by an earlier run that stopped before recording it: the
		// record's times are not its training's.
		res.TestAcc = *meta.TestAccuracy
		before = r.Epochs
	} else if r.Objective == grid.ObjectiveSimCLR {
		cfg := train.SimCLRDefaults()
		cfg.Arch, cfg.Width, cfg.Stem, cfg.Data = r.Arch, r.Width, r.Stem, dc
		cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.WeightDecay, cfg.Temperature = r.Epochs, r.Batch, r.LR, r.WeightDecay, r.Temperature
		cfg.Seed, cfg.Out, cfg.Progress, cfg.Device, cfg.Probe.Device = r.Seed, f.Path, x.Progress, x.Device, x.Device
		cfg.Probe.Seed, cfg.Probe.Progress, cfg.ProbeSamples = r.Seed, x.Progress, 10000
		cfg.OnStep = func(train.SimCLRStep) error { return ctx.Err() }
		out, err := train.SimCLR(cfg)
		if err != nil {
			return nil, err
		}
		res.TestAcc = out.TestAccuracy
	} else {
		cfg := train.Defaults()
		cfg.Arch, cfg.Width, cfg.Stem, cfg.Data = r.Arch, r.Width, r.Stem, dc
		cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Momentum, cfg.WeightDecay = r.Epochs, r.Batch, r.LR, r.Momentum, r.WeightDecay
		cfg.Schedule, cfg.Augment, cfg.Seed, cfg.Out, cfg.Progress = r.Schedule, r.Augment, r.Seed, f.Path, x.Progress
		cfg.Device = x.Device
		cfg.BNStats = r.BNStats
		// One epoch per call (StopAfter), so that a cancelled context stops
		// between epochs and save_at snapshots are taken: the run resumes
		// from its checkpoint each time, as after an interruption.
		for {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			done := epochsDone(f.Path)
			if slices.Contains(r.SaveAt, done) && done < r.Epochs {
				if err := copyFile(f.Path, grid.SnapshotPath(f.Path, done)); err != nil {
					return nil, err
				}
			}
			cfg.StopAfter = done + 1
			if cfg.StopAfter >= r.Epochs {
				cfg.StopAfter = 0
			}
			out, err := train.Supervised(cfg)
			if err != nil {
				return nil, err
			}
			if !out.Stopped {
				res.TestAcc = out.TestAccuracy
				break
			}
		}
	}
	if meta, ok := finished(f.Path, r.Epochs); ok && meta.TrainAccuracy != nil {
		ta := *meta.TrainAccuracy
		res.TrainAcc = &ta
	}
	for _, e := range r.SaveAt {
		if e < r.Epochs {
			res.Snapshots = append(res.Snapshots, grid.SnapshotPath(f.Path, e))
		}
	}
	split := r.TrainSamples
	if split == 0 {
		split = datasets.TrainSplitSizes()[p.Spec.Data]
	}
	res.Steps = r.Epochs * r.StepsPerEpoch(split)
	return res, nil
}

// trainData is the data a recipe trains on: the spec's data set with the
// recipe's subset, label noise, labels and input normalisation (which the
// model is trained and scored with, and which its checkpoint records).
func (x *InProcess) trainData(s *grid.Spec, r grid.Recipe) splits.Config {
	dc := x.dataConfig(s)
	dc.TrainSamples, dc.LabelNoise, dc.Seed = r.TrainSamples, r.LabelNoise, r.Seed
	dc.Mean, dc.Std = r.Mean, r.Std
	if r.Labels != grid.LabelsOriginal {
		dc.Task = r.Labels
	}
	return dc
}

// finished returns a checkpoint's metadata when it is a finished run of epochs.
func finished(path string, epochs int) (models.Meta, bool) {
	var meta models.Meta
	if _, err := os.Stat(path); err != nil {
		return meta, false
	}
	ck, err := models.Open(path)
	if err != nil || ck.ModelstitchMeta(&meta) != nil || meta.Recipe == nil {
		return meta, false
	}
	return meta, meta.TestAccuracy != nil && (meta.Recipe.EpochsDone >= epochs || epochs == 0)
}

// epochsDone is the number of finished epochs in a checkpoint (0: none).
func epochsDone(path string) int {
	var meta models.Meta
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	ck, err := models.Open(path)
	if err != nil || ck.ModelstitchMeta(&meta) != nil || meta.Recipe == nil {
		return 0
	}
	return meta.Recipe.EpochsDone
}

// probe fits a linear probe on the model's base and writes it to out.
func (x *InProcess) probe(p *grid.Plan, m *grid.Model, out string) (float64, error) {
	base := p.Files[m.Base]
	bb, err := models.Load(base.Path, models.LoadOptions{Device: x.Device})
	if err != nil {
		return 0, err
	}
	defer bb.Free()
	if mean, std := p.Norm(m.Base); mean != nil {
		// The backbone is fed as the spec says; the probe records it.
		bb.Meta.Mean, bb.Meta.Std = mean, std
	}
	dc := x.dataConfig(p.Spec)
	dc.TestSamples = p.Spec.TestSamples
	trainSet, testSet, err := splits.Load(dc)
	if err != nil {
		return 0, err
	}
	if m.ProbeSamples > 0 && m.ProbeSamples < trainSet.N {
		if trainSet, err = trainSet.Subset(m.ProbeSamples, 0); err != nil {
			return 0, err
		}
	}
	cfg := train.ProbeDefaults()
	cfg.Epochs, cfg.Progress, cfg.Device = m.ProbeEpochs, x.Progress, x.Device
	probe, acc, err := train.Probe(bb, trainSet, testSet, cfg)
	if err != nil {
		return 0, err
	}
	defer probe.Free()
	return acc, models.Save(out, probe.Net, probe.Meta)
}

// copyFile copies src to dst atomically (a snapshot of a run's checkpoint).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, b, 0o644)
}
