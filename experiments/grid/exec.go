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
	"strings"
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
// training at the next epoch (SimCLR: the next step); stitching stops before
// its next cut (the cut in progress finishes first).
type InProcess struct {
	// Progress, when set, receives the libraries' progress events.
	Progress progress.Func
	// Device is where models are trained and stitched (the zero value is the
	// CPU). It is recorded in the rows but is not part of a unit's id: a row
	// made on one device counts as done on any other (see docs/grid.md).
	Device torch.Device
	mu     sync.Mutex
}

// begin takes the executor and this OS thread for one unit or group and
// sets libtorch's thread count; the returned function releases them.
func (x *InProcess) begin(threads int) func() {
	x.mu.Lock()
	// libtorch's thread count belongs to the OS thread: keep the run on one.
	runtime.LockOSThread()
	torch.SetNumThreads(threads)
	return func() {
		runtime.UnlockOSThread()
		x.mu.Unlock()
	}
}

// Execute runs one unit with the given number of libtorch threads. A stitch
// unit runs as a group of one (ExecuteGroup), so that its row is made
// exactly as it would be among the other cuts of its pair.
func (x *InProcess) Execute(ctx context.Context, p *Plan, u *Unit, threads int) (rec Record, err error) {
	if u.Kind == UnitStitch {
		var got *Record
		err := x.ExecuteGroup(ctx, p, []*Unit{u}, threads, func(r Record) { got = &r })
		if err == nil && got == nil {
			err = fmt.Errorf("stitching %s made no row", u.ID)
		}
		if err != nil {
			return Record{Unit: u.ID, Kind: u.Kind}, err
		}
		return *got, nil
	}
	defer x.begin(threads)()
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	rec = Record{Unit: u.ID, Kind: u.Kind}
	cpu0 := cpuSeconds()
	defer func() { rec.CPUSeconds = cpuSeconds() - cpu0 }()
	switch u.Kind {
	case UnitTrain:
		rec.Model, err = x.train(ctx, p, u)
	default:
		err = fmt.Errorf("unknown unit kind %q", u.Kind)
	}
	return rec, err
}

// ExecuteGroup stitches a group of units (Groups: one bottom, top, recipe
// and seed) in one stitch.Runner call over all their cuts: the models and
// the data are loaded once, the halves' own accuracies measured once, and
// the frozen halves' passes over the images shared between the cuts. Each
// cut's record goes to emit as soon as the cut is finished; its CPUSeconds
// is the processor time since the previous record (the first one's includes
// the loading). A cancelled context stops before the next cut.
func (x *InProcess) ExecuteGroup(ctx context.Context, p *Plan, us []*Unit, threads int, emit func(Record)) error {
	if err := checkGroup(us); err != nil {
		return err
	}
	defer x.begin(threads)()
	if err := ctx.Err(); err != nil {
		return err
	}
	cpu0 := cpuSeconds()
	byCut := map[string]*Unit{}
	for _, u := range us {
		byCut[u.Cut] = u
	}
	return x.stitch(ctx, p, us, func(row results.Row, testN int) {
		u := byCut[row.Cut]
		rec := Record{Unit: u.ID, Kind: u.Kind, Stitch: &StitchResult{Bottom: u.Bottom, Top: u.Top,
			BottomPath: p.Files[u.Bottom].Path, TopPath: p.Files[u.Top].Path, Cut: row.Cut, CutIndex: row.CutIndex,
			Recipe: *u.Recipe, Scores: row.Scores.Rounded(), FitSamples: row.FitSamples, TestSamples: testN, Data: row.Data,
			Device: row.Device}}
		now := cpuSeconds()
		rec.CPUSeconds, cpu0 = now-cpu0, now
		emit(rec)
	})
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
	res := &ModelResult{Name: m.Name, Path: f.Path, Device: x.Device.String()}
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
	bb, err := models.Load(base.Path, models.LoadOptions{Device: x.Device})
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
	cfg.Epochs, cfg.Progress, cfg.Device = m.ProbeEpochs, x.Progress, x.Device
	probe, acc, err := train.Probe(bb, trainSet, testSet, cfg)
	if err != nil {
		return 0, err
	}
	defer probe.Free()
	return acc, models.Save(out, probe.Net, probe.Meta)
}

// stitch fits and scores the stitching layers of a group of units (one
// bottom, top, recipe and seed) in one stitch.Runner call over their cuts,
// handing each finished cut's row to onRow.
func (x *InProcess) stitch(ctx context.Context, p *Plan, us []*Unit, onRow func(row results.Row, testN int)) error {
	u0 := us[0]
	bf, tf := p.Files[u0.Bottom], p.Files[u0.Top]
	top, err := models.Load(tf.Path, models.LoadOptions{Device: x.Device})
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	defer top.Free()
	bottom, err := models.Load(bf.Path, models.LoadOptions{Device: x.Device})
	if err != nil {
		return fmt.Errorf("bottom: %w", err)
	}
	defer bottom.Free()
	dc := x.dataConfig(p.Spec)
	dc.TestSamples = p.Spec.TestSamples // the same test images for every unit (subset seed 0)
	trainSet, testSet, err := splits.Load(dc)
	if err != nil {
		return err
	}
	r := *u0.Recipe
	cuts := make([]string, len(us))
	for i, u := range us {
		cuts[i] = u.Cut
	}
	cfg := stitch.Defaults()
	cfg.Cuts, cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Seed = strings.Join(cuts, ","), r.Epochs, r.Batch, r.LR, r.Seed
	cfg.FitSamples, cfg.LSSamples, cfg.KernelSize, cfg.Init = r.FitSamples, r.LSSamples, r.KernelSize, r.Init
	cfg.FitAugment = r.FitAugment
	cfg.FrozenBN, cfg.CKASamples, cfg.Data, cfg.Progress = r.FrozenBN, r.CKASamples, p.Spec.Data, x.Progress
	cfg.Device = x.Device
	store, err := results.Open("")
	if err != nil {
		return err
	}
	// Each row becomes a unit's record as its cut finishes, so it must be
	// complete then (CompleteRows: the bottom's accuracy comes first).
	runner := &stitch.Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg, Store: store, Context: ctx,
		OnRow: func(row results.Row) { onRow(row, testSet.N) }, CompleteRows: true}
	rows, err := runner.Run()
	if err != nil {
		return err
	}
	if len(rows) != len(us) {
		return fmt.Errorf("stitching at %s gave %d rows, want %d", cfg.Cuts, len(rows), len(us))
	}
	return nil
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
