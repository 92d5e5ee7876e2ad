package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/train"
	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
)

// trainCommand is `stitch train`.
func trainCommand() *cli.Command {
	d, sd, vd := train.Defaults(), train.SimCLRDefaults(), train.DefaultSimCLRViews()
	flags := []cli.Flag{
		&cli.StringFlag{Name: "objective", Value: "supervised", Usage: "supervised (cross-entropy) or simclr (self-supervised; ends with a linear probe)"},
		&cli.Float64Flag{Name: "temperature", Value: sd.Temperature, Usage: "simclr: NT-Xent temperature"},
		&cli.BoolFlag{Name: "head-bn", Usage: "simclr: batch norm in the projection head (Linear-BN-ReLU-Linear)"},
		&cli.Float64Flag{Name: "crop-min", Value: vd.CropMin, Usage: "simclr: own views (one-channel data): smallest random-resized-crop area, in (0, 1] (1: no crop); setting any view flag replaces the default views, the others then taking the defaults' values"},
		&cli.BoolFlag{Name: "flip", Value: vd.Flip, Usage: "simclr own views: horizontal flip"},
		&cli.Float64Flag{Name: "jitter", Value: vd.Jitter, Usage: "simclr own views: brightness/contrast jitter strength"},
		&cli.Float64Flag{Name: "jitter-p", Value: 0.8, Usage: "simclr own views: probability of jitter"},
		&cli.Float64Flag{Name: "noise", Value: vd.NoiseStd, Usage: "simclr own views: Gaussian pixel noise std"},
		&cli.Float64Flag{Name: "erase", Value: vd.EraseP, Usage: "simclr own views: random erasing probability"},
		&cli.StringFlag{Name: "probe-solver", Value: "lbfgs", Usage: "simclr: final probe by lbfgs (logistic regression to convergence, weight decay chosen on held-out training images) or adam (--probe-epochs)"},
		&cli.BoolFlag{Name: "no-probe", Usage: "simclr: skip the final linear probe (measure with stitch probe)"},
		&cli.IntFlag{Name: "probe-epochs", Value: sd.Probe.Epochs, Usage: "simclr: epochs of the final linear probe"},
		&cli.IntFlag{Name: "probe-samples", Usage: "simclr: fit the final linear probe on a class-balanced subset of N training images (0: all)"},
		&cli.StringFlag{Name: "arch", Value: d.Arch, Usage: "resnet18, resnet34, resnet50 or resnet101"},
		&cli.Float64Flag{Name: "width", Value: d.Width, Usage: "width multiplier of the base 64 channels (0.25, 0.5, 1, 2 ...)"},
		&cli.StringFlag{Name: "stem", Value: d.Stem, Usage: "cifar (3×3 conv, no maxpool) or imagenet (7×7/2 conv + maxpool)"},
		&cli.IntFlag{Name: "train-samples", Usage: "train on a class-balanced subset of N images (0: all)"},
		&cli.Float64Flag{Name: "label-noise", Usage: "replace this fraction of training labels with random ones"},
		&cli.StringFlag{Name: "labels", Value: "original", Usage: "original, or a relabelling task: " + strings.Join(datasets.Tasks(), ", ") + " (objects-vs-animals: CIFAR-10's two-class task; clothing-vs-accessories: Fashion-MNIST's)"},
		&cli.IntFlag{Name: "epochs", Value: d.Epochs, Usage: "epochs (0 writes the untrained random model)"},
		&cli.StringFlag{Name: "bn-stats", Value: train.BNStatsInitial, Usage: "with --epochs 0: the untrained model's batch-norm running statistics, initial (mean 0, variance 1, as PyTorch makes them) or data (recomputed on the training images)"},
		&cli.IntFlag{Name: "batch-size", Value: d.BatchSize, Usage: fmt.Sprintf("images per batch (simclr default %d, each seen as two views)", sd.BatchSize)},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: fmt.Sprintf("SGD learning rate (simclr: Adam, default %g)", sd.LR)},
		&cli.Float64Flag{Name: "momentum", Value: d.Momentum},
		&cli.Float64Flag{Name: "weight-decay", Value: d.WeightDecay, Usage: fmt.Sprintf("(simclr default %g)", sd.WeightDecay)},
		&cli.StringFlag{Name: "schedule", Value: d.Schedule, Usage: "cosine, onecycle, step or constant"},
		&cli.BoolFlag{Name: "augment", Value: d.Augment, Usage: "random crop and flip"},
		&cli.Int64Flag{Name: "seed", Value: 0},
		&cli.StringFlag{Name: "out", Required: true, Usage: "checkpoint to write (.pt, loads in PyTorch)"},
		&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object on stdout"},
		deviceFlag(), threadsFlag(),
	}
	flags = append(flags, dataFlags(d.Data.Name)...)
	return &cli.Command{
		Name:   "train",
		Usage:  "train a ResNet, supervised or with SimCLR (resumes an interrupted run)",
		Flags:  flags,
		Action: namingFlags(trainAction, trainFlagOf),
	}
}

func trainAction(c *cli.Context) error {
	dev, err := setup(c)
	if err != nil {
		return err
	}
	if err := results.CheckWritable(c.String("out")); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if c.IsSet("bn-stats") && (c.String("objective") != "supervised" || c.Int("epochs") != 0) {
		return fmt.Errorf("--bn-stats applies to the untrained supervised model (--epochs 0)")
	}
	switch c.String("objective") {
	case "supervised":
	case "simclr":
		return simclrAction(c, dev)
	default:
		return fmt.Errorf("--objective must be supervised or simclr, got %q", c.String("objective"))
	}
	cfg := train.Defaults()
	cfg.Arch, cfg.Width, cfg.Stem = c.String("arch"), c.Float64("width"), c.String("stem")
	cfg.Data = splits.Config{Name: c.String("data"), Dir: c.String("data-dir"), ImageSize: c.Int("image-size"), TrainSamples: c.Int("train-samples"),
		LabelNoise: c.Float64("label-noise"), Seed: c.Int64("seed")}
	switch c.String("labels") {
	case "original":
	case datasets.TaskObjectsVsAnimals:
		cfg.Data.ObjectsVsAnimals = true
	default:
		if !slices.Contains(datasets.Tasks(), c.String("labels")) {
			return fmt.Errorf("--labels must be original or one of %s, got %q", strings.Join(datasets.Tasks(), ", "), c.String("labels"))
		}
		cfg.Data.Task = c.String("labels")
	}
	cfg.Epochs, cfg.BatchSize, cfg.LR = c.Int("epochs"), c.Int("batch-size"), c.Float64("lr")
	cfg.Momentum, cfg.WeightDecay, cfg.Schedule = c.Float64("momentum"), c.Float64("weight-decay"), c.String("schedule")
	cfg.Augment, cfg.Seed, cfg.Device, cfg.Out = c.Bool("augment"), c.Int64("seed"), dev, c.String("out")
	cfg.BNStats, cfg.Progress = c.String("bn-stats"), newProgress(false)
	res, err := train.Supervised(cfg)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"checkpoint": res.Path, "accuracy": res.TestAccuracy,
			"seconds": res.Seconds, "images_per_sec": res.ImagesPerSec, "resumed_epochs": res.Resumed})
	}
	fmt.Printf("%s: test accuracy %.2f%% (%.0f s, %.0f images/s)\n", res.Path, res.TestAccuracy, res.Seconds, res.ImagesPerSec)
	return nil
}

// simclrAction runs `stitch train --objective simclr`. Flags left unset take
// SimCLR's defaults rather than the supervised ones shown in --help.
func simclrAction(c *cli.Context, dev torch.Device) error {
	cfg := train.SimCLRDefaults()
	cfg.Arch, cfg.Width, cfg.Stem = c.String("arch"), c.Float64("width"), c.String("stem")
	if c.IsSet("label-noise") || c.String("labels") != "original" {
		return fmt.Errorf("--objective simclr uses no labels: --label-noise and --labels apply to supervised training")
	}
	cfg.Data = splits.Config{Name: c.String("data"), Dir: c.String("data-dir"), ImageSize: c.Int("image-size"), TrainSamples: c.Int("train-samples"), Seed: c.Int64("seed")}
	cfg.Epochs = c.Int("epochs")
	if c.IsSet("batch-size") {
		cfg.BatchSize = c.Int("batch-size")
	}
	if c.IsSet("lr") {
		cfg.LR = c.Float64("lr")
	}
	if c.IsSet("weight-decay") {
		cfg.WeightDecay = c.Float64("weight-decay")
	}
	cfg.Temperature, cfg.Seed, cfg.Device, cfg.Out = c.Float64("temperature"), c.Int64("seed"), dev, c.String("out")
	cfg.HeadBN, cfg.NoProbe = c.Bool("head-bn"), c.Bool("no-probe")
	switch c.String("probe-solver") {
	case "lbfgs":
		cfg.LinearProbe = &train.LinearProbeConfig{}
	case "adam":
	default:
		return fmt.Errorf("--probe-solver must be lbfgs or adam, got %q", c.String("probe-solver"))
	}
	if c.IsSet("crop-min") || c.IsSet("flip") || c.IsSet("jitter") || c.IsSet("jitter-p") || c.IsSet("noise") || c.IsSet("erase") {
		cfg.Views = &train.SimCLRViews{CropMin: c.Float64("crop-min"), Flip: c.Bool("flip"), Jitter: c.Float64("jitter"),
			JitterP: c.Float64("jitter-p"), NoiseStd: c.Float64("noise"), EraseP: c.Float64("erase")}
	}
	cfg.Probe.Epochs, cfg.Probe.Seed, cfg.ProbeSamples = c.Int("probe-epochs"), c.Int64("seed"), c.Int("probe-samples")
	cfg.Progress = newProgress(false)
	res, err := train.SimCLR(cfg)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"checkpoint": res.Path, "head": train.HeadPath(res.Path),
			"accuracy": res.TestAccuracy, "accuracy_is": "linear probe", "seconds": res.Seconds,
			"images_per_sec": res.ImagesPerSec, "resumed_epochs": res.Resumed})
	}
	fmt.Printf("%s: linear probe test accuracy %.2f%% (SimCLR %.0f s, %.0f images/s, each as two views; head in %s)\n",
		res.Path, res.TestAccuracy, res.Seconds, res.ImagesPerSec, train.HeadPath(res.Path))
	return nil
}
