package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/train"
	"modelstitch/torch"
	"modelstitch/torch/vision"
)

// linearProbeFlags are `stitch probe`'s flags for the L-BFGS protocol and its
// built-in backbones.
func linearProbeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "solver", Value: "lbfgs", Usage: "lbfgs: logistic regression to convergence, weight decay chosen on held-out training images; adam: the older fixed-epoch probe (--epochs, --lr, --weight-decay)"},
		&cli.StringFlag{Name: "weight-decays", Usage: "lbfgs: comma-separated candidate weight decays (default: every decade from 1e-6 to 1e-1)"},
		&cli.Float64Flag{Name: "holdout", Value: 0.1, Usage: "lbfgs: fraction of the training images held out to choose the weight decay"},
		&cli.IntFlag{Name: "max-iter", Value: 500, Usage: "lbfgs: iterations per fit"},
		&cli.StringFlag{Name: "arch", Value: "resnet18", Usage: "--backbone random: resnet18, resnet34, resnet50 or resnet101"},
		&cli.Float64Flag{Name: "width", Value: 0.25, Usage: "--backbone random: width multiplier"},
	}
}

// linearProbeAction runs `stitch probe --solver lbfgs`: --backbone is a
// checkpoint, "random" (an untrained network of --arch/--width/--stem,
// initialised with --seed) or "pixels" (the raw standardised pixels).
func linearProbeAction(c *cli.Context, dev torch.Device) error {
	cfg := train.LinearProbeConfig{HoldOut: c.Float64("holdout"), MaxIter: c.Int("max-iter"), Seed: c.Int64("seed"),
		Progress: newProgress(c.Bool("quiet") || c.Bool("json"))}
	if s := c.String("weight-decays"); s != "" {
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return fmt.Errorf("--weight-decays: %q is not a number", f)
			}
			cfg.WeightDecays = append(cfg.WeightDecays, v)
		}
	}
	which := c.String("backbone")
	var bb *models.Model
	name := c.String("data")
	if which != "random" && which != "pixels" {
		var err error
		if bb, err = models.Load(which, models.LoadOptions{Stem: c.String("stem"), StemPadding: c.Int("stem-padding"), Key: c.String("key"), Device: dev}); err != nil {
			return fmt.Errorf("--backbone: %w", err)
		}
		defer bb.Free()
		warnAbout(bb)
		if name == "" {
			name = bb.Meta.Dataset
		}
		if name == "" {
			return fmt.Errorf("%s does not say which data set it was trained on: pass --data", bb.Path)
		}
	} else if name == "" {
		return fmt.Errorf("--backbone %s: pass --data", which)
	}
	trainSet, testSet, err := splits.Load(splits.Config{Name: name, Dir: c.String("data-dir"), ImageSize: c.Int("image-size"),
		TrainSamples: c.Int("train-samples"), Seed: c.Int64("seed")})
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if which == "random" {
		depth, err := vision.ParseArch(c.String("arch"))
		if err != nil {
			return fmt.Errorf("--arch: %w", err)
		}
		stem := c.String("stem")
		if stem == "" {
			stem = "cifar"
		}
		netCfg := vision.ResNetConfig{Depth: depth, Width: c.Float64("width"), Stem: stem, InChannels: trainSet.C}
		if w := netCfg.Width; !(w > 0) || math.IsInf(w, 0) {
			return fmt.Errorf("--width must be a positive number, got %v", w)
		}
		if err := budget.Check(budget.Run{Net: netCfg, Height: int64(trainSet.H), Width: int64(trainSet.W), Batch: c.Int("batch-size")}, "width", "batch size"); err != nil {
			return invalid.Rename(err, map[string]string{"width": "--width", "batch size": "--batch-size"})
		}
		meta := models.MetaFor(netCfg)
		meta.Dataset, meta.Mean, meta.Std = name, trainSet.Mean, trainSet.Std
		if bb, err = models.NewRandom(meta, c.Int64("seed"), dev); err != nil {
			return fmt.Errorf("--backbone random: %w", err)
		}
		defer bb.Free()
	}

	var res *train.LinearProbeResult
	var probe *models.Model
	label := which
	if which == "pixels" {
		if c.String("out") != "" {
			return fmt.Errorf("--out: a probe on raw pixels is not a ResNet and cannot be written as a checkpoint")
		}
		if res, err = train.ProbePixels(trainSet, testSet, cfg); err != nil {
			return err
		}
	} else {
		if probe, res, err = train.ProbeBackboneLBFGS(bb, trainSet, testSet, cfg, c.Int("batch-size"), dev); err != nil {
			return err
		}
		defer probe.Free()
		label = bb.Path
		if which == "random" {
			label = fmt.Sprintf("random (untrained %s, seed %d)", bb.Net.Config, c.Int64("seed"))
		}
		if out := c.String("out"); out != "" {
			if err := models.Save(out, probe.Net, probe.Meta); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
		}
	}
	p := res.Probe
	if c.Bool("json") {
		scores := make([]map[string]any, len(p.Scores))
		for i, s := range p.Scores {
			scores[i] = map[string]any{"weight_decay": s.WeightDecay, "heldout_accuracy": s.Accuracy, "iterations": s.Iters}
		}
		js := map[string]any{"backbone": label, "data": name, "accuracy": res.Accuracy, "samples": res.TestSamples,
			"train_samples": trainSet.N, "solver": "lbfgs", "weight_decay": p.WeightDecay, "heldout": len(p.HeldOut),
			"train_accuracy": p.TrainAccuracy, "converged": p.Converged, "iterations": p.Iters, "decays": scores}
		if out := c.String("out"); out != "" {
			js["checkpoint"] = out
		}
		return json.NewEncoder(os.Stdout).Encode(js)
	}
	fmt.Printf("linear probe on %s (%s): test accuracy %.2f%% (%d test images; fit on %d)\n", label, name, res.Accuracy, res.TestSamples, trainSet.N)
	fmt.Printf("weight decay %.3g chosen on %d held-out training images; final fit: train accuracy %.2f%%, %d L-BFGS iterations, converged %v\n",
		p.WeightDecay, len(p.HeldOut), p.TrainAccuracy, p.Iters, p.Converged)
	train.WriteDecayScores(os.Stdout, p)
	if out := c.String("out"); out != "" {
		fmt.Printf("probe written to %s\n", out)
	}
	return nil
}
