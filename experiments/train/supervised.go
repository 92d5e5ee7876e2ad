package train

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/schollz/progressbar/v3"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// Config is a supervised training run.
type Config struct {
	Arch  string // resnet18, resnet34, resnet50, resnet101
	Width float64
	Stem  string // cifar or imagenet
	Data  DataConfig
	// Epochs 0 writes the untrained ("random") model: the paper's baseline.
	Epochs      int
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
	// Progress receives progress bars and messages (nil: silent).
	Progress io.Writer
}

// Defaults returns the default recipe: SGD momentum 0.9, weight decay 5e-4,
// LR 0.05 with cosine decay, batch 128, crop+flip augmentation.
func Defaults() Config {
	return Config{Arch: "resnet18", Width: 0.25, Stem: "cifar", Data: DataConfig{Name: "fashion-mnist"},
		Epochs: 5, BatchSize: 128, LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Schedule: "cosine",
		Augment: true, Device: torch.CPU, Progress: os.Stderr}
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
	if cfg.Out == "" {
		return nil, errors.New("--out: give the checkpoint file to write")
	}
	if cfg.BatchSize < 2 {
		return nil, fmt.Errorf("--batch-size must be at least 2, got %d", cfg.BatchSize)
	}
	if cfg.Epochs < 0 {
		return nil, fmt.Errorf("--epochs must be ≥ 0, got %d", cfg.Epochs)
	}
	r, err := newRun(cfg.Arch, cfg.Width, cfg.Stem, cfg.Data, cfg.Device, cfg.Epochs, models.Supervised, true)
	if err != nil {
		return nil, err
	}
	trainSet, testSet, netCfg, meta := r.train, r.test, r.net, r.meta
	meta.Recipe = &models.Recipe{Epochs: cfg.Epochs, BatchSize: cfg.BatchSize, Optimizer: "sgd", LR: cfg.LR,
		Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay, Schedule: cfg.Schedule, Augment: augmentName(cfg.Augment),
		TrainSamples: cfg.Data.TrainSamples, LabelNoise: cfg.Data.LabelNoise, Seed: cfg.Seed}
	if cfg.Data.ObjectsVsAnimals {
		meta.Recipe.Labels = "objects-vs-animals"
	}
	if cfg.Data.Task != "" {
		meta.Recipe.Labels = cfg.Data.Task
	}

	if err := torch.ManualSeed(uint64(cfg.Seed)); err != nil {
		return nil, err
	}
	net, err := vision.NewResNet(netCfg)
	if err != nil {
		return nil, err
	}
	defer nn.Free(net)
	res := &Result{Path: cfg.Out}
	if done, err := resumePoint(cfg.Out, meta, net); err != nil {
		return nil, err
	} else if done > 0 {
		res.Resumed = done
		meta.Recipe.EpochsDone = done
		say(cfg.Progress, "resuming %s after epoch %d of %d\n", cfg.Out, done, cfg.Epochs)
	}
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
	total := loader.Len() * cfg.Epochs
	sched, err := optim.NewScheduler(opt, scheduleFor(cfg.Schedule, cfg.LR, total))
	if err != nil {
		return nil, fmt.Errorf("--schedule: %w", err)
	}
	// Fast-forward the schedule past finished epochs.
	for i := 0; i < res.Resumed*loader.Len(); i++ {
		if err := sched.Step(); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	images := 0
	for epoch := res.Resumed; epoch < cfg.Epochs; epoch++ {
		n, err := trainEpoch(net, loader, opt, sched, epoch, cfg)
		images += n
		if err != nil {
			return nil, err
		}
		meta.Recipe.EpochsDone = epoch + 1
		if err := models.Save(cfg.Out, net, meta); err != nil {
			return nil, fmt.Errorf("writing %s: %w", cfg.Out, err)
		}
		if cfg.StopAfter > 0 && epoch+1 >= cfg.StopAfter && epoch+1 < cfg.Epochs {
			res.Seconds = time.Since(start).Seconds()
			res.Stopped = true
			return res, nil
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.ImagesPerSec = float64(images) / res.Seconds
	}
	acc, err := Evaluate(net, testSet, meta.Mean, meta.Std, cfg.BatchSize, cfg.Device, cfg.Progress)
	if err != nil {
		return nil, err
	}
	res.TestAccuracy = acc
	meta.TestAccuracy = &acc
	if err := models.Save(cfg.Out, net, meta); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfg.Out, err)
	}
	return res, nil
}

func augmentName(on bool) string {
	if on {
		return "crop+flip"
	}
	return "none"
}

// trainEpoch runs one epoch and returns the number of images seen.
func trainEpoch(net *vision.ResNet, loader *data.Loader, opt optim.Optimizer, sched *optim.Scheduler, epoch int, cfg Config) (int, error) {
	// One OS thread for the whole epoch: libtorch's thread pools are per OS
	// thread, and a migrating goroutine measurably slows training.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nn.Train(net)
	bar := newBar(cfg.Progress, loader.Len(), fmt.Sprintf("epoch %d/%d", epoch+1, cfg.Epochs))
	var lossSum float64
	var correct, seen int64
	for b, err := range loader.Batches(epoch) {
		if err != nil {
			return int(seen), err
		}
		logits := net.Forward(b.X)
		l, err := optimize(torch.CrossEntropy(logits, b.Y, 0, torch.ReduceMean), opt, sched)
		var c int64
		if err == nil {
			c, err = evaluate.Correct(logits, b.Y)
		}
		n := int64(b.Len())
		b.Close()
		if err != nil {
			return int(seen), fmt.Errorf("training epoch %d: %w", epoch+1, err)
		}
		lossSum += l * float64(n)
		correct += c
		seen += n
		if bar != nil {
			bar.Describe(fmt.Sprintf("epoch %d/%d loss %.3f acc %.1f%%", epoch+1, cfg.Epochs, lossSum/float64(seen), 100*float64(correct)/float64(seen)))
			_ = bar.Add(1)
		}
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(cfg.Progress)
	}
	return int(seen), nil
}

// Evaluate returns the test accuracy (percent) of net on ds, in eval mode.
func Evaluate(net nn.Module, ds *datasets.Dataset, mean, std []float64, batch int, dev torch.Device, progress io.Writer) (float64, error) {
	if batch < 1 {
		batch = 256
	}
	loader, err := data.NewLoader(ds, data.Config{BatchSize: batch, Device: dev, Mean: mean, Std: std})
	if err != nil {
		return 0, err
	}
	nn.Eval(net)
	var tick evaluate.Progress
	if bar := newBar(progress, ds.N, "test accuracy"); bar != nil {
		defer func() { _ = bar.Finish(); fmt.Fprintln(progress) }()
		tick = func(n int) { _ = bar.Add(n) }
	}
	return evaluate.Accuracy(net.Forward, loader, tick)
}

// resumePoint loads an interrupted run's checkpoint into net when it was made
// by the same recipe, returning the number of finished epochs (0: start afresh).
func resumePoint(path string, want models.Meta, net *vision.ResNet) (int, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, nil
	}
	prev, err := models.Load(path, models.LoadOptions{})
	if err != nil {
		return 0, fmt.Errorf("%s exists but cannot be resumed (%v); remove it or choose another --out", path, err)
	}
	defer prev.Free()
	r := prev.Meta.Recipe
	if r == nil || prev.Meta.Objective != want.Objective || prev.Meta.Arch != want.Arch || prev.Meta.Width != want.Width ||
		prev.Meta.Dataset != want.Dataset || r.Seed != want.Recipe.Seed || r.Epochs != want.Recipe.Epochs ||
		r.LR != want.Recipe.LR || r.TrainSamples != want.Recipe.TrainSamples || r.LabelNoise != want.Recipe.LabelNoise {
		return 0, fmt.Errorf("%s exists and was made by a different recipe; remove it or choose another --out", path)
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

func scheduleFor(name string, lr float64, total int) optim.Schedule {
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

func say(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}

func newBar(w io.Writer, total int, what string) *progressbar.ProgressBar {
	if w == nil {
		return nil
	}
	return progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(250*time.Millisecond), progressbar.OptionSetWidth(25),
		progressbar.OptionShowElapsedTimeOnFinish())
}
