package grid

// exec.go is the only file of the package that calls the training, stitching
// and model-loading code (experiments/train, experiments/stitch,
// experiments/results, experiments/models): everything else works on the
// plan and the records.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"modelstitch/experiments/models"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
	"modelstitch/experiments/train"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
)

// InProcess runs units in this process, one at a time (libtorch's random
// generator is global, so two units at once would not be reproducible; run
// units in child processes for parallel jobs). A cancelled context stops
// training at the next epoch (SimCLR: the next step); a stitch unit, one cut,
// finishes first.
type InProcess struct {
	// Progress, when set, receives the libraries' progress events.
	Progress progress.Func
	mu       sync.Mutex
}

// Execute runs one unit with the given number of libtorch threads.
func (x *InProcess) Execute(ctx context.Context, p *Plan, u *Unit, threads int) (rec Record, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	// libtorch's thread count belongs to the OS thread: keep this unit on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	torch.SetNumThreads(threads)
	rec = Record{Unit: u.ID, Kind: u.Kind}
	cpu0 := cpuSeconds()
	defer func() { rec.CPUSeconds = cpuSeconds() - cpu0 }()
	switch u.Kind {
	case UnitTrain:
		rec.Model, err = x.train(ctx, p, u)
	case UnitStitch:
		rec.Stitch, err = x.stitch(p, u)
	default:
		err = fmt.Errorf("unknown unit kind %q", u.Kind)
	}
	return rec, err
}

// cpuSeconds is the processor time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func (x *InProcess) dataConfig(s *Spec) splits.Config {
	return splits.Config{Name: s.Data, Dir: s.DataDir}
}

// train makes a model: a supervised or SimCLR run, or a probe.
func (x *InProcess) train(ctx context.Context, p *Plan, u *Unit) (*ModelResult, error) {
	f := p.Files[u.Model]
	m := f.Model
	res := &ModelResult{Name: m.Name, Path: f.Path}
	if m.Kind == KindProbe {
		acc, err := x.probe(p, m, f.Path)
		res.TestAcc = acc
		return res, err
	}
	r := m.Recipe
	res.Recipe = &r
	dc := x.dataConfig(p.Spec)
	dc.TrainSamples, dc.LabelNoise, dc.Seed = r.TrainSamples, r.LabelNoise, r.Seed
	if r.Labels != "original" {
		dc.Task = r.Labels
	}
	if meta, ok := finished(f.Path, r.Epochs); ok {
		// Trained by an earlier run that stopped before recording it.
		res.TestAcc = *meta.TestAccuracy
	} else if r.Objective == ObjectiveSimCLR {
		cfg := train.SimCLRDefaults()
		cfg.Arch, cfg.Width, cfg.Stem, cfg.Data = r.Arch, r.Width, r.Stem, dc
		cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.WeightDecay, cfg.Temperature = r.Epochs, r.Batch, r.LR, r.WeightDecay, r.Temperature
		cfg.Seed, cfg.Out, cfg.Progress = r.Seed, f.Path, x.Progress
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
				if err := copyAtomic(f.Path, SnapshotPath(f.Path, done)); err != nil {
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
	for _, e := range r.SaveAt {
		if e < r.Epochs {
			res.Snapshots = append(res.Snapshots, SnapshotPath(f.Path, e))
		}
	}
	split := r.TrainSamples
	if split == 0 {
		split = trainSplitSizes[p.Spec.Data]
	}
	res.Steps = r.Epochs * r.StepsPerEpoch(split)
	return res, nil
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

// copyAtomic copies src to dst through a temporary file and a rename.
func copyAtomic(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// probe fits a linear probe on the model's base and writes it to out.
func (x *InProcess) probe(p *Plan, m *Model, out string) (float64, error) {
	base := p.Files[m.Base]
	bb, err := models.Load(base.Path, models.LoadOptions{})
	if err != nil {
		return 0, err
	}
	defer bb.Free()
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
	cfg.Epochs, cfg.Progress = m.ProbeEpochs, x.Progress
	probe, acc, err := train.Probe(bb, trainSet, testSet, cfg)
	if err != nil {
		return 0, err
	}
	defer probe.Free()
	return acc, models.Save(out, probe.Net, probe.Meta)
}

// stitch fits and scores one stitching layer.
func (x *InProcess) stitch(p *Plan, u *Unit) (*StitchResult, error) {
	bf, tf := p.Files[u.Bottom], p.Files[u.Top]
	top, err := models.Load(tf.Path, models.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("top: %w", err)
	}
	defer top.Free()
	bottom, err := models.Load(bf.Path, models.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("bottom: %w", err)
	}
	defer bottom.Free()
	dc := x.dataConfig(p.Spec)
	dc.TestSamples = p.Spec.TestSamples // the same test images for every unit (subset seed 0)
	trainSet, testSet, err := splits.Load(dc)
	if err != nil {
		return nil, err
	}
	r := *u.Recipe
	cfg := stitch.Defaults()
	cfg.Cuts, cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Seed = u.Cut, r.Epochs, r.Batch, r.LR, r.Seed
	cfg.FitSamples, cfg.LSSamples, cfg.KernelSize, cfg.Init = r.FitSamples, r.LSSamples, r.KernelSize, r.Init
	cfg.FitAugment = r.FitAugment
	cfg.FrozenBN, cfg.CKASamples, cfg.Data, cfg.Progress = r.FrozenBN, r.CKASamples, p.Spec.Data, x.Progress
	store, err := results.Open("")
	if err != nil {
		return nil, err
	}
	runner := &stitch.Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg, Store: store}
	rows, err := runner.Run()
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("stitching at %s gave %d rows, want 1", u.Cut, len(rows))
	}
	row := rows[0]
	return &StitchResult{Bottom: u.Bottom, Top: u.Top, BottomPath: bf.Path, TopPath: tf.Path, Cut: row.Cut,
		CutIndex: row.CutIndex, Recipe: r, Scores: row.Scores, FitSamples: row.FitSamples,
		TestSamples: testSet.N, Data: row.Data, Device: row.Device}, nil
}

// CutPoints lists the cut points of a model's architecture, in order. A
// trained model's come from its recipe; an existing checkpoint's from its
// metadata or, failing that, its weights' shapes.
func CutPoints(f *ModelFile, p *Plan) ([]string, error) {
	m := f.Model
	for m.Kind == KindProbe || m.Kind == KindSnapshot {
		m = p.Spec.Models[m.Base]
	}
	var cfg vision.ResNetConfig
	switch m.Kind {
	case KindTrain:
		depth, err := vision.ParseArch(m.Recipe.Arch)
		if err != nil {
			return nil, err
		}
		cfg = vision.ResNetConfig{Depth: depth, Stem: m.Recipe.Stem}
	default:
		path := m.Checkpoint
		if f.Model.Kind == KindCheckpoint {
			path = f.Path
		}
		ck, err := models.Open(path)
		if err != nil {
			return nil, err
		}
		var meta models.Meta
		if ck.ModelstitchMeta(&meta) == nil {
			if cfg, err = meta.Config(); err != nil {
				return nil, fmt.Errorf("model %s: %w", path, err)
			}
		} else if cfg, _, err = vision.InferResNetConfig(ck.State.Shapes()); err != nil {
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
	}
	// The cut names do not depend on the width or the classes: build the
	// thinnest network of the same depth and stem.
	cfg.Width, cfg.Classes, cfg.InChannels = 1.0/64, 0, 1
	net, err := vision.NewResNet(cfg)
	if err != nil {
		return nil, err
	}
	defer nn.Free(net)
	return net.CutPoints(), nil
}
