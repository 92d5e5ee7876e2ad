package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
	"modelstitch/torch"
)

// The shipped default models (weights/defaults), stitched when no flags are given.
const (
	defaultBottom = "embedded:fmnist-resnet18-w0.25-sup-seed2"
	defaultTop    = "embedded:fmnist-resnet18-w0.25-sup-seed1"
)

func stitchFlags() []cli.Flag {
	d := stitch.Defaults()
	flags := []cli.Flag{
		&cli.StringFlag{Name: "bottom", Value: defaultBottom, Usage: "checkpoint whose bottom layers are used, or \"random\" (an untrained copy of the top's architecture, batch-norm running statistics mean 0 / variance 1; for statistics from data write one with: stitch train --epochs 0 --bn-stats data)"},
		&cli.StringFlag{Name: "top", Value: defaultTop, Usage: "checkpoint whose top layers are used (needs a classifier, or --probe)"},
		&cli.StringFlag{Name: "layer", Value: d.Cuts, Usage: "cut point (stem, layer1.0 … layer4.1, pool), a comma list, or all"},
		&cli.StringFlag{Name: "recipe", Value: stitch.RecipeCPU, Usage: fmt.Sprintf("stitching recipe: cpu (the defaults shown here: least-squares start, 1 epoch of Adam 1e-2 on 6,000 images) or paper "+
			"(the paper's setting: default init, Adam 1e-3 with cosine decay, crop-and-flip while fitting, the whole training split, %d epochs, eval-mode frozen halves); "+
			"flags given beside it override the recipe's values", stitch.PaperEpochs)},
		&cli.IntFlag{Name: "epochs", Value: d.Epochs, Usage: "epochs of fitting the stitching layer"},
		&cli.IntFlag{Name: "batch-size", Value: d.BatchSize},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "Adam learning rate (cosine decay to 0)"},
		&cli.Int64Flag{Name: "seed", Value: d.Seed},
		&cli.IntFlag{Name: "fit-samples", Value: d.FitSamples, Usage: "fit the stitching layer on a class-balanced subset of N training images (0: all)"},
		&cli.BoolFlag{Name: "fit-augment", Value: d.FitAugment, Usage: "crop and flip the fitting images, drawn afresh every epoch (--fit-augment=false turns off the paper recipe's)"},
		&cli.Int64Flag{Name: "kernel-size", Value: d.KernelSize, Usage: "stitching convolution's kernel size (odd)"},
		&cli.StringFlag{Name: "init", Value: d.Init, Usage: "least-squares (start from the direct match, reported as direct_acc, then fine-tune) or default (PyTorch init, as the paper; alone it is not the paper's setting: see --recipe paper)"},
		&cli.StringFlag{Name: "frozen-bn", Value: d.FrozenBN, Usage: "eval (frozen means frozen) or train (batch statistics, as the paper's scripts)"},
		&cli.IntFlag{Name: "ls-samples", Value: d.LSSamples, Usage: "training images the least-squares start is solved on (0: all fitting images)"},
		&cli.IntFlag{Name: "test-samples", Usage: "score on a class-balanced subset of N test images (0: the whole test split)"},
		&cli.IntFlag{Name: "cka-samples", Value: d.CKASamples, Usage: "test images used for linear CKA (0: skip CKA)"},
		&cli.BoolFlag{Name: "probe", Usage: "fit a linear probe on a top model that has no classifier"},
		&cli.StringFlag{Name: "bottom-stem", Usage: "override the bottom's inferred stem (cifar or imagenet)"},
		&cli.StringFlag{Name: "top-stem", Usage: "override the top's inferred stem (cifar or imagenet)"},
		keyFlag("bottom-key", "the bottom's file"), keyFlag("top-key", "the top's file"),
		&cli.StringFlag{Name: "out", Value: "results/stitch.jsonl", Usage: "JSON Lines results, appended per cut; a re-run skips cuts already there"},
		&cli.StringFlag{Name: "plot", Usage: "plot of penalty and CKA per cut (.png or .svg; empty: none) (default: beside --out, with .png for its extension)"},
		&cli.BoolFlag{Name: "json", Usage: "print the rows as JSON Lines on stdout instead of a table"},
		&cli.BoolFlag{Name: "quiet", Usage: "no progress bars"},
		deviceFlag(), threadsFlag(),
		// Speed switches (stitch.Speed): every optimisation is on unless switched off.
		&cli.BoolFlag{Name: "plain-stitch", Usage: "stitch one cut at a time without sharing work between cuts (turns off all of the below)"},
		&cli.BoolFlag{Name: "no-fold-bn", Usage: "keep the frozen halves' batch norms instead of folding them into their convolutions"},
		&cli.BoolFlag{Name: "no-mkldnn", Usage: "keep evaluation and cache filling in the plain NCHW layout instead of oneDNN's, and the scored stitching layer unfolded (CPU)"},
		&cli.BoolFlag{Name: "no-cache", Usage: "recompute the bottom's activations for every batch instead of keeping them across epochs and cuts"},
		&cli.BoolFlag{Name: "half-cache", Usage: "keep cached activations as float16 (half the memory, rounded)"},
		&cli.IntFlag{Name: "eval-batch-size", Usage: "batch size of evaluation and cache filling (0: --batch-size on the CPU, 4 × it on CUDA)"},
		&cli.IntFlag{Name: "workers", Usage: "goroutines sharing evaluation, cache filling and the top's half of each fitting batch, each with its share of --threads (0: one per thread on the CPU, 1 on CUDA; 1: one with all the threads)"},
		&cli.StringFlag{Name: "memory-budget", Usage: "cap on cached activations, e.g. 2GiB (empty: none); caches that do not fit are recomputed"},
	}
	return append(flags, dataFlags(d.Data)...)
}

func stitchAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return fmt.Errorf("unexpected argument %q (use --bottom FILE --top FILE, or a subcommand: train, eval, inspect, probe)", c.Args().First())
	}
	dev, err := setup(c)
	if err != nil {
		return err
	}
	cfg, err := recipeConfig(c)
	if err != nil {
		return err
	}
	cfg.Device = dev
	cfg.Progress = newProgress(c.Bool("quiet"))
	cfg.Speed = stitch.Speed{Plain: c.Bool("plain-stitch"), NoFoldBN: c.Bool("no-fold-bn"), NoMkldnn: c.Bool("no-mkldnn"), NoCache: c.Bool("no-cache"),
		HalfCache: c.Bool("half-cache"), EvalBatchSize: c.Int("eval-batch-size"), Workers: c.Int("workers")}
	if cfg.Speed.MemoryBudget, err = stitch.ParseBytes(c.String("memory-budget")); err != nil {
		return fmt.Errorf("--memory-budget: %w", err)
	}
	if err := cfg.Speed.Validate(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The outputs are checked before any work, so a run never computes a cut it cannot keep.
	store, err := results.Open(c.String("out"))
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, n := range store.Notes() {
		fmt.Fprintf(os.Stderr, "note: %s\n", n)
	}
	if p := plotPath(c); p != "" {
		if err := results.CheckPlotPath(p); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	start := time.Now()
	top, err := models.Load(c.String("top"), models.LoadOptions{Stem: c.String("top-stem"), Key: c.String("top-key"), Device: dev})
	if err != nil {
		return fmt.Errorf("--top: %w", err)
	}
	defer top.Free()
	warnAbout(top)
	var bottom *models.Model
	if c.String("bottom") == "random" {
		bottom, err = models.NewRandom(top.Meta, cfg.Seed, dev)
	} else {
		bottom, err = models.Load(c.String("bottom"), models.LoadOptions{Stem: c.String("bottom-stem"), Key: c.String("bottom-key"), Device: dev})
	}
	if err != nil {
		return fmt.Errorf("--bottom: %w", err)
	}
	defer bottom.Free()
	warnAbout(bottom)
	trainSet, testSet, err := splits.Load(splits.Config{Name: cfg.Data, Dir: c.String("data-dir"), ImageSize: c.Int("image-size"), TestSamples: c.Int("test-samples"), Seed: cfg.Seed})
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if top.Net.HasClassifier() && top.Meta.Classes != testSet.Classes && !c.Bool("probe") {
		return fmt.Errorf("--top %s has %d classes but --data %s has %d: pass --probe to fit a linear probe for this data on it", top.Path, top.Meta.Classes, cfg.Data, testSet.Classes)
	}
	if !top.Net.HasClassifier() || top.Meta.Classes != testSet.Classes {
		if !c.Bool("probe") {
			return fmt.Errorf("--top %s is %s: it has no classifier to stitch into; pass --probe to fit a linear probe on it first", top.Path, top.Description)
		}
		if err := fitProbe(top, trainSet, testSet, cfg); err != nil {
			return fmt.Errorf("--probe: %w", err)
		}
	}
	say := cfg.Progress.Notef
	say("bottom: %s (%s)\ntop:    %s (%s)\ndata:   %s, %d train / %d test images; fitting on %s%s",
		bottom.Path, bottom.Description, top.Path, top.Description, cfg.Data, trainSet.N, testSet.N, fitWhat(cfg.FitSamples, trainSet.N), augmentWhat(cfg.FitAugment))
	asJSON := c.Bool("json")
	// Rows printed as they come are complete only if the bottom's accuracy is
	// read at the first cut (the results file gets it either way).
	r := &stitch.Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg, Store: store, CompleteRows: asJSON,
		OnRow: func(row results.Row) {
			if asJSON {
				_ = json.NewEncoder(os.Stdout).Encode(row)
				return
			}
			cka := "-"
			if row.CKA != nil {
				cka = fmt.Sprintf("%.3f", *row.CKA)
			}
			say("cut %-9s stitched %.2f%%  top %.2f%%  penalty %+.2f pp  CKA %s  (%.0f s)", row.Cut, row.StitchedAcc, row.TopAcc, row.Penalty, cka, row.Seconds)
		}}
	rows, err := r.Run()
	if len(rows) > 0 && !asJSON {
		fmt.Printf("\n%s → %s on %s (penalty = top accuracy − stitched accuracy, percentage points)\n", bottom.Name, top.Name, cfg.Data)
		_ = results.WriteTable(os.Stdout, rows)
	}
	// A plot asked for and not written fails the run, after the rows are kept.
	var plotErr error
	if plot := plotPath(c); len(rows) > 0 && plot != "" {
		title := fmt.Sprintf("stitching %s → %s (%s)", bottom.Name, top.Name, cfg.Data)
		if perr := results.PlotPenalty(plot, title, []results.Series{{Label: bottom.Name + " → " + top.Name, Rows: rows}}); perr != nil {
			plotErr = fmt.Errorf("--plot: %w", perr)
		} else {
			say("plot written to %s", plot)
		}
	}
	if plotErr != nil {
		if c.String("out") != "" {
			plotErr = fmt.Errorf("%w (the rows are in %s)", plotErr, c.String("out"))
		}
		if err == nil {
			return plotErr
		}
		err = errors.Join(err, plotErr)
	}
	if errors.Is(err, torch.ErrOutOfMemory) {
		return fmt.Errorf("%w\nout of memory: the rows of finished cuts are kept; --memory-budget SIZE caps the cached activations (the rest are recomputed), --no-cache keeps none, fewer --fit-samples need less", err)
	}
	if err != nil {
		return err
	}
	if c.String("out") != "" {
		say("results in %s", c.String("out"))
	}
	say("wall time %s, peak memory (maxrss) %.0f MiB", time.Since(start).Round(time.Second), float64(stitch.PeakRSS())/(1<<20))
	return nil
}

// recipeConfig is the --recipe's settings with every stitching flag given
// on the command line put over them (a flag left out keeps the recipe's value,
// not the default shown in the help).
func recipeConfig(c *cli.Context) (stitch.Config, error) {
	cfg, err := stitch.Recipe(c.String("recipe"))
	if err != nil {
		return cfg, err
	}
	over := func(name string, set func()) {
		if c.IsSet(name) {
			set()
		}
	}
	cfg.Cuts, cfg.Seed, cfg.Data = c.String("layer"), c.Int64("seed"), c.String("data")
	over("epochs", func() { cfg.Epochs = c.Int("epochs") })
	over("batch-size", func() { cfg.BatchSize = c.Int("batch-size") })
	over("lr", func() { cfg.LR = c.Float64("lr") })
	over("fit-samples", func() { cfg.FitSamples = c.Int("fit-samples") })
	over("fit-augment", func() { cfg.FitAugment = c.Bool("fit-augment") })
	over("kernel-size", func() { cfg.KernelSize = c.Int64("kernel-size") })
	over("init", func() { cfg.Init = c.String("init") })
	over("frozen-bn", func() { cfg.FrozenBN = c.String("frozen-bn") })
	over("cka-samples", func() { cfg.CKASamples = c.Int("cka-samples") })
	over("ls-samples", func() { cfg.LSSamples = c.Int("ls-samples") })
	return cfg, nil
}

func fitWhat(n, all int) string {
	if n <= 0 || n >= all {
		return "all training images"
	}
	return fmt.Sprintf("%d training images", n)
}

func augmentWhat(on bool) string {
	if on {
		return ", cropped and flipped afresh every epoch"
	}
	return ""
}

// plotPath is --plot, or when it is not given, the plot beside --out.
func plotPath(c *cli.Context) string {
	if c.IsSet("plot") {
		return c.String("plot")
	}
	return plotBeside(c.String("out"))
}

// plotBeside is the default plot of results file out: out with the extension
// .png ("" when there is no results file).
func plotBeside(out string) string {
	if out == "" {
		return ""
	}
	return strings.TrimSuffix(out, filepath.Ext(out)) + ".png"
}
