package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
	"modelstitch/experiments/train"
	"modelstitch/torch/vision/datasets"
)

// probeCommand is `stitch probe`.
func probeCommand() *cli.Command {
	d := train.ProbeDefaults()
	flags := []cli.Flag{
		&cli.StringFlag{Name: "backbone", Required: true, Usage: "model whose frozen pooled features are probed (a backbone, or a classifier whose fc is ignored); random: an untrained --arch/--width/--stem network seeded with --seed; pixels: the raw standardised pixels"},
		&cli.StringFlag{Name: "out", Usage: "write the probe as a classifier checkpoint (the backbone plus fc; a valid --top)"},
		&cli.StringFlag{Name: "stem", Usage: "override the backbone's inferred stem (cifar or imagenet)"},
		keyFlag("key", "the backbone's file"), stemPaddingFlag("stem-padding"),
		&cli.IntFlag{Name: "epochs", Value: d.Epochs, Usage: "epochs over the cached features"},
		&cli.IntFlag{Name: "batch-size", Value: d.BatchSize},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "Adam learning rate (cosine decay to 0)"},
		&cli.Float64Flag{Name: "weight-decay", Value: d.WeightDecay},
		&cli.IntFlag{Name: "train-samples", Usage: "fit on a class-balanced subset of N training images (0: all)"},
		&cli.Int64Flag{Name: "seed", Value: d.Seed},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object on stdout: accuracy (percent) and samples (test images)"},
		&cli.BoolFlag{Name: "quiet", Usage: "no progress bars"},
		deviceFlag(), threadsFlag(),
	}
	return &cli.Command{
		Name:   "probe",
		Usage:  "fit a linear probe on a backbone's frozen features and report its test accuracy",
		Flags:  append(append(flags, linearProbeFlags()...), dataFlags("")...),
		Action: namingFlags(probeAction, probeFlagOf),
	}
}

func probeAction(c *cli.Context) error {
	dev, err := setup(c)
	if err != nil {
		return err
	}
	if b := c.Int("batch-size"); b < 1 {
		return fmt.Errorf("--batch-size must be at least 1, got %d", b)
	}
	if out := c.String("out"); out != "" {
		if err := results.CheckWritable(out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	switch c.String("solver") {
	case "lbfgs":
		return linearProbeAction(c, dev)
	case "adam":
		if b := c.String("backbone"); b == "random" || b == "pixels" {
			return fmt.Errorf("--backbone %s needs --solver lbfgs", b)
		}
	default:
		return fmt.Errorf("--solver must be lbfgs or adam, got %q", c.String("solver"))
	}
	bb, err := models.Load(c.String("backbone"), models.LoadOptions{Stem: c.String("stem"), StemPadding: c.Int("stem-padding"), Key: c.String("key"), Device: dev})
	if err != nil {
		return fmt.Errorf("--backbone: %w", err)
	}
	defer bb.Free()
	warnAbout(bb)
	name := c.String("data")
	if name == "" {
		name = bb.Meta.Dataset
	}
	if name == "" {
		return fmt.Errorf("%s does not say which data set it was trained on: pass --data", bb.Path)
	}
	trainSet, testSet, err := splits.Load(splits.Config{Name: name, Dir: c.String("data-dir"), ImageSize: c.Int("image-size"),
		TrainSamples: c.Int("train-samples"), Seed: c.Int64("seed")})
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	cfg := train.ProbeDefaults()
	cfg.Epochs, cfg.BatchSize, cfg.LR = c.Int("epochs"), c.Int("batch-size"), c.Float64("lr")
	cfg.WeightDecay, cfg.Seed, cfg.Device = c.Float64("weight-decay"), c.Int64("seed"), dev
	cfg.Progress = newProgress(c.Bool("quiet") || c.Bool("json"))
	probe, acc, err := train.Probe(bb, trainSet, testSet, cfg)
	if err != nil {
		return err
	}
	defer probe.Free()
	if out := c.String("out"); out != "" {
		if err := models.Save(out, probe.Net, probe.Meta); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if c.Bool("json") {
		js := map[string]any{"backbone": bb.Path, "data": name, "accuracy": acc, "samples": testSet.N, "train_samples": trainSet.N}
		if out := c.String("out"); out != "" {
			js["checkpoint"] = out
		}
		return json.NewEncoder(os.Stdout).Encode(js)
	}
	fmt.Printf("linear probe on %s (%s): test accuracy %.2f%% (%d test images; fit on %d)\n", bb.Path, name, acc, testSet.N, trainSet.N)
	if out := c.String("out"); out != "" {
		fmt.Printf("probe written to %s\n", out)
	}
	return nil
}

// fitProbe turns top, a backbone without a classifier, into a classifier by
// fitting a linear probe on the stitching run's training images (the same
// class-balanced --fit-samples subset the stitching layer is fit on) and
// measuring it on its test images; top's network, metadata and description
// are replaced in place.
func fitProbe(top *models.Model, trainSet, testSet *datasets.Dataset, cfg stitch.Config) error {
	if cfg.FitSamples > 0 && cfg.FitSamples < trainSet.N {
		sub, err := trainSet.Subset(cfg.FitSamples, cfg.Seed)
		if err != nil {
			return err
		}
		trainSet = sub
	}
	pc := train.ProbeDefaults()
	pc.Seed, pc.Device, pc.Progress = cfg.Seed, cfg.Device, cfg.Progress
	probe, acc, err := train.Probe(top, trainSet, testSet, pc)
	if err != nil {
		return err
	}
	top.Free()
	top.Net, top.Meta, top.Description = probe.Net, probe.Meta, probe.Description
	top.Notes = append(top.Notes, fmt.Sprintf("linear probe fit on %d training images: %.2f%% test accuracy", trainSet.N, acc))
	cfg.Progress.Notef("top %s is now %s: test accuracy %.2f%%", top.Path, top.Description, acc)
	return nil
}
