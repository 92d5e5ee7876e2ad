package train

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/models"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/data"
)

// Config is a supervised training run.
type Config struct {
	Arch  string // resnet18, resnet34, resnet50, resnet101
	Width float64
	Stem  string // cifar or imagenet
	Data  splits.Config
	// Epochs 0 writes the untrained ("random") model: the paper's baseline.
	Epochs int
	// BNStats is the untrained model's batch-norm statistics: BNStatsInitial
	// ("" too: mean 0, variance 1 as PyTorch initialises them) or BNStatsData
	// (recomputed on the training images, un-augmented). Only with Epochs 0.
	BNStats     string
	BatchSize   int
	LR          float64
	Momentum    float64
	WeightDecay float64
	// Schedule: cosine, onecycle, step (×0.2 at 50% and 75%) or constant.
	Schedule string
	Augment  bool
	Seed     int64
	Device   torch.Device
	Out      string
	// StopAfter > 0 ends the run after that many epochs of the schedule, leaving
	// a checkpoint that a later run with the same recipe resumes (as after an
	// interruption).
	StopAfter int
	// Progress receives progress events (nil: none).
	Progress progress.Func
}

// Defaults returns the default recipe: SGD momentum 0.9, weight decay 5e-4,
// LR 0.05 with cosine decay, batch 128, crop+flip augmentation.
func Defaults() Config {
	return Config{Arch: "resnet18", Width: 0.25, Stem: "cifar", Data: splits.Config{Name: "fashion-mnist"},
		Epochs: 5, BatchSize: 128, LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Schedule: "cosine",
		Augment: true, Device: torch.CPU}
}

// Result summarises a finished run.
type Result struct {
	Path         string
	TestAccuracy float64 // percent
	Seconds      float64
	ImagesPerSec float64
	Resumed      int  // epochs found done in an earlier, interrupted run
	Stopped      bool // ended early by StopAfter; TestAccuracy is not set
}

// Supervised trains a ResNet with cross-entropy and writes it to cfg.Out after
// every epoch, so an interrupted run resumes from its last finished epoch.
func Supervised(cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r, err := newRun(cfg.Arch, cfg.Width, cfg.Stem, cfg.Data, cfg.Device, cfg.Epochs, models.Supervised, true)
	if err != nil {
		return nil, err
	}
	slots := 0
	if cfg.Momentum != 0 {
		slots = 1
	}
	// A batch never holds more than the data set.
	if err := r.fits(min(cfg.BatchSize, r.train.N), 1, slots, cfg.Epochs > 0); err != nil {
		return nil, err
	}
	trainSet, netCfg, meta := r.train, r.net, r.meta
	meta.Recipe = cfg.recipe()

	if err := torch.ManualSeed(uint64(cfg.Seed)); err != nil {
		return nil, err
	}
	net, err := vision.NewResNet(netCfg)
	if err != nil {
		return nil, err
	}
	defer nn.Free(net)
	if err := nn.ToDevice(net, cfg.Device); err != nil {
		return nil, err
	}

	var aug data.Transform
	if cfg.Augment {
		aug = data.StandardAugment(trainSet)
	}
	loader, err := data.NewLoader(trainSet, data.Config{BatchSize: cfg.BatchSize, Shuffle: true, Seed: cfg.Seed,
		DropLast: trainSet.N > cfg.BatchSize, Device: cfg.Device, Augment: aug})
	if err != nil {
		return nil, err
	}
	opt, err := optim.NewSGD(optim.Params(nn.Parameters(net), cfg.LR, cfg.WeightDecay), optim.SGDConfig{Momentum: cfg.Momentum})
	if err != nil {
		return nil, err
	}
	defer opt.Close()
	sched, err := optim.NewScheduler(opt, scheduleFor(cfg.Schedule, cfg.LR, loader.Len()*cfg.Epochs))
	if err != nil {
		return nil, invalid.Wrap("schedule", err)
	}

	lr, err := loop.Train(loop.Run{
		Epochs: cfg.Epochs, StepsPerEpoch: loader.Len(), Optimizer: opt, Schedule: sched,
		Resume: func() (int, error) {
			done, err := resumePoint(cfg.Out, meta, net)
			meta.Recipe.EpochsDone = done
			return done, err
		},
		Save: func(done int) error {
			meta.Recipe.EpochsDone = done
			if err := models.Save(cfg.Out, net, meta); err != nil {
				return fmt.Errorf("writing %s: %w", cfg.Out, err)
			}
			return nil
		},
		StateFile: loop.StatePath(cfg.Out), StopAfter: cfg.StopAfter, What: cfg.Out, Progress: cfg.Progress,
	}, func(epoch int, step func(loop.Batch) error) error {
		nn.Train(net)
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				return err
			}
			logits := net.Forward(b.X)
			err = step(loop.Batch{Loss: torch.CrossEntropy(logits, b.Y, 0, torch.ReduceMean), N: b.Len(), Logits: logits, Labels: b.Y})
			b.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	res := &Result{Path: cfg.Out, Resumed: lr.Resumed, Seconds: lr.Seconds, Stopped: lr.Stopped}
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	if res.Stopped {
		return res, nil
	}
	if res.Seconds > 0 {
		res.ImagesPerSec = float64(lr.Samples) / res.Seconds
	}
	if lr.Scored {
		trainAcc := lr.LastEpochAccuracy
		meta.TrainAccuracy = &trainAcc
	}
	if res.TestAccuracy, err = cfg.finish(net, r, meta); err != nil {
		return nil, err
	}
	return res, nil
}

// check refuses a configuration no run can follow.
func (cfg Config) check() error {
	if err := checkRun(cfg.Out, cfg.BatchSize, cfg.Epochs, ""); err != nil {
		return err
	}
	if err := checkBNStats(cfg.BNStats, cfg.Epochs); err != nil {
		return err
	}
	if !slices.Contains(Schedules, cfg.Schedule) {
		// It used to fall back to cosine silently and record the bad name in the checkpoint.
		return invalid.Errorf("schedule", "must be one of %s, got %q", strings.Join(Schedules, ", "), cfg.Schedule)
	}
	return nil
}

// recipe is the run's recipe as its checkpoint records it.
func (cfg Config) recipe() *models.Recipe {
	rec := &models.Recipe{Epochs: cfg.Epochs, BatchSize: cfg.BatchSize, Optimizer: "sgd", LR: cfg.LR,
		Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay, Schedule: cfg.Schedule, Augment: augmentName(cfg.Augment),
		TrainSamples: cfg.Data.TrainSamples, LabelNoise: cfg.Data.LabelNoise, Seed: cfg.Seed}
	if cfg.BNStats == BNStatsData {
		rec.BNStats = BNStatsData
	}
	if cfg.Data.ObjectsVsAnimals {
		rec.Labels = "objects-vs-animals"
	}
	if cfg.Data.Task != "" {
		rec.Labels = cfg.Data.Task
	}
	return rec
}

// finish ends a run whose epochs are all done: it recomputes the batch-norm
// statistics if asked, measures the test accuracy and writes the
// checkpoint with it.
func (cfg Config) finish(net *vision.ResNet, r *run, meta models.Meta) (float64, error) {
	if cfg.BNStats == BNStatsData {
		plain, err := data.NewLoader(r.train, data.Config{BatchSize: cfg.BatchSize, Device: cfg.Device})
		if err != nil {
			return 0, err
		}
		if err := RecomputeBNStats(net, plain, cfg.Progress, "batch-norm statistics on the training images"); err != nil {
			return 0, err
		}
	}
	acc, err := evaluate.TestAccuracy(net, r.test, meta.Mean, meta.Std, cfg.BatchSize, cfg.Device, cfg.Progress)
	if err != nil {
		return 0, err
	}
	meta.TestAccuracy = &acc
	if err := models.Save(cfg.Out, net, meta); err != nil {
		return 0, fmt.Errorf("writing %s: %w", cfg.Out, err)
	}
	return acc, nil
}

func augmentName(on bool) string {
	if on {
		return "crop+flip"
	}
	return "none"
}

// resumePoint loads an interrupted run's checkpoint into net when it was made
// by the same recipe, returning the number of finished epochs (0: start afresh).
func resumePoint(path string, want models.Meta, net *vision.ResNet) (int, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, nil
	}
	prev, err := models.Load(path, models.LoadOptions{})
	if err != nil {
		return 0, invalid.Errorf("out", "%s exists but cannot be resumed (%v); remove it or choose another file", path, err)
	}
	defer prev.Free()
	r := prev.Meta.Recipe
	if r == nil || prev.Meta.Objective != want.Objective || prev.Meta.Arch != want.Arch || prev.Meta.Width != want.Width ||
		prev.Meta.Dataset != want.Dataset || r.Seed != want.Recipe.Seed || r.Epochs != want.Recipe.Epochs ||
		r.LR != want.Recipe.LR || r.TrainSamples != want.Recipe.TrainSamples || r.LabelNoise != want.Recipe.LabelNoise {
		return 0, invalid.Errorf("out", "%s exists and was made by a different recipe; remove it or choose another file", path)
	}
	if r.EpochsDone >= want.Recipe.Epochs && prev.Meta.TestAccuracy != nil {
		return r.EpochsDone, fmt.Errorf("%s is already finished (test accuracy %.2f%%); remove it to train again", path, *prev.Meta.TestAccuracy)
	}
	sd := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(prev.Net) {
		sd[n.Name] = n.Tensor
	}
	if err := nn.LoadStateDict(net, sd, true); err != nil {
		return 0, err
	}
	return r.EpochsDone, nil
}

// Schedules are the learning-rate schedules Config.Schedule may name.
var Schedules = []string{"cosine", "onecycle", "step", "constant"}

func scheduleFor(name string, lr float64, total int) optim.Schedule {
	if total < 1 {
		// No steps (0 epochs: the untrained network): any schedule is the
		// constant one, and a cosine or one-cycle over 0 steps is refused by optim.
		return optim.Constant{}
	}
	switch name {
	case "onecycle":
		return optim.OneCycleLR{TotalSteps: total}
	case "step":
		return optim.MultiStepLR{Milestones: []int{total / 2, total * 3 / 4}, Gamma: 0.2}
	case "constant":
		return optim.Constant{}
	default:
		return optim.CosineAnnealingLR{TMax: total}
	}
}
