package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/invalid"
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
		&cli.StringFlag{Name: "layer", Value: d.Cuts, Usage: "cut point (stem, layer1.0 … layer4.1, pool), a comma list, or all, in the top's names; networks of different depths are paired at their stages' ends unless --bottom-layer pairs them"},
		&cli.StringFlag{Name: "bottom-layer", Usage: "the bottom's cut for each --layer, one for one (networks of different depths, e.g. --layer layer1.2,layer2.3 --bottom-layer layer1.1,layer2.1)"},
		&cli.StringFlag{Name: "recipe", Value: stitch.RecipeCPU, Usage: fmt.Sprintf("stitching recipe: cpu (the defaults shown here: least-squares start, then Adam 1e-2 on every training image but --val-samples, "+
			"kept at its best on them and stopped at a plateau after --lr-cuts tenfold cuts, or at --epochs), quick (one unvalidated epoch on 6,000 images, for smoke tests) or paper "+
			"(the paper's setting: default init, Adam 1e-3 with cosine decay, crop-and-flip while fitting, the whole training split, %d epochs, eval-mode frozen halves); "+
			"flags given beside it override the recipe's values", stitch.PaperEpochs)},
		&cli.IntFlag{Name: "epochs", Value: d.Epochs, Usage: "epochs of fitting the stitching layer (with validation: the cap)"},
		&cli.IntFlag{Name: "val-samples", Value: d.ValSamples, Usage: "training images held out (class-balanced) to converge the fit on: the start and every --check-every steps are scored there and the best is kept (0: no validation, cosine decay, the end kept)"},
		&cli.IntFlag{Name: "check-every", Value: d.CheckEvery, Usage: "steps between validation checks (0: once per epoch)"},
		&cli.IntFlag{Name: "patience", Value: d.Patience, Usage: "validation checks without improvement before the learning rate is cut tenfold"},
		&cli.IntFlag{Name: "lr-cuts", Value: d.LRCuts, Usage: "tenfold learning-rate cuts before the fit stops at a plateau"},
		&cli.BoolFlag{Name: "control", Usage: "first stitch the top onto itself at every cut with the same recipe (the self-stitch control; it costs about as much again): rows get self_penalty and excess_penalty"},
		&cli.StringFlag{Name: "mean", Usage: "input normalisation of both halves: per-channel means of pixels in [0, 1], comma-separated (over the checkpoints' own)"},
		&cli.StringFlag{Name: "std", Usage: "per-channel standard deviations to go with --mean"},
		&cli.StringFlag{Name: "bottom-mean", Usage: "the bottom's input means (over --mean and its checkpoint's)"},
		&cli.StringFlag{Name: "bottom-std", Usage: "the bottom's input standard deviations"},
		&cli.StringFlag{Name: "top-mean", Usage: "the top's input means (over --mean and its checkpoint's)"},
		&cli.StringFlag{Name: "top-std", Usage: "the top's input standard deviations"},
		&cli.IntFlag{Name: "channels", Usage: "repeat 1-channel (grey) images to this many channels for the models (e.g. 3 for RGB models on Fashion-MNIST)"},
		&cli.IntFlag{Name: "batch-size", Value: d.BatchSize},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "Adam learning rate (with validation: constant, cut on plateaus, divided by k² for a k×k kernel; without: cosine decay to 0)"},
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
		return fmt.Errorf("--top: %w", invalid.Rename(err, map[string]string{"key": "--top-key", "stem": "--top-stem"}))
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
		return fmt.Errorf("--bottom: %w", invalid.Rename(err, map[string]string{"key": "--bottom-key", "stem": "--bottom-stem"}))
	}
	defer bottom.Free()
	warnAbout(bottom)
	trainSet, testSet, err := splits.Load(splits.Config{Name: cfg.Data, Dir: c.String("data-dir"), ImageSize: c.Int("image-size"), TestSamples: c.Int("test-samples"), Seed: cfg.Seed})
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if n := c.Int("channels"); n > 0 {
		if trainSet, err = trainSet.WithChannels(n); err == nil {
			testSet, err = testSet.WithChannels(n)
		}
		if err != nil {
			return fmt.Errorf("--channels: %w", err)
		}
	}
	bottomNorm, topNorm, err := normFlags(c)
	if err != nil {
		return err
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
	bn, tn := (&stitch.Runner{Bottom: bottom, Top: top, Test: testSet, Config: cfg, BottomNorm: bottomNorm, TopNorm: topNorm}).Norms()
	say("input normalisation: bottom %s, top %s", normWhat(bn), normWhat(tn))
	warnNorm("bottom", bottom, bn)
	warnNorm("top", top, tn)
	// Rows printed as they come are complete only if the bottom's accuracy is
	// read at the first cut (the results file gets it either way).
	r := &stitch.Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg, Store: store, CompleteRows: asJSON,
		BottomNorm: bottomNorm, TopNorm: topNorm, Control: c.Bool("control"),
		OnControlRow: func(row results.Row) {
			if !asJSON {
				say("control: cut %-9s top on itself %.2f%%  self-penalty %+.2f pp  (%.0f s)", row.Cut, row.StitchedAcc, row.Penalty, row.Seconds)
			}
		},
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
	rows, err := r.Run(c.Context)
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
	say("wall time %s, peak memory (maxrss) %.0f MiB", time.Since(start).Round(time.Second), float64(budget.PeakResidentBytes())/(1<<20))
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
	over("bottom-layer", func() { cfg.BottomCuts = c.String("bottom-layer") })
	over("val-samples", func() { cfg.ValSamples = c.Int("val-samples") })
	over("check-every", func() { cfg.CheckEvery = c.Int("check-every") })
	over("patience", func() { cfg.Patience = c.Int("patience") })
	over("lr-cuts", func() { cfg.LRCuts = c.Int("lr-cuts") })
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

// normFlags reads --mean/--std and the per-half flags into the halves'
// given normalisations (nil: none given).
func normFlags(c *cli.Context) (bottom, top *results.Norm, err error) {
	pair := func(meanFlag, stdFlag string) (*results.Norm, error) {
		m, s := c.String(meanFlag), c.String(stdFlag)
		if m == "" && s == "" {
			return nil, nil
		}
		if m == "" || s == "" {
			return nil, fmt.Errorf("--%s and --%s go together", meanFlag, stdFlag)
		}
		mean, err := parseFloats(m)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", meanFlag, err)
		}
		std, err := parseFloats(s)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", stdFlag, err)
		}
		if len(mean) != len(std) {
			return nil, fmt.Errorf("--%s has %d values but --%s %d", meanFlag, len(mean), stdFlag, len(std))
		}
		return &results.Norm{Mean: mean, Std: std, Source: stitch.NormGiven}, nil
	}
	both, err := pair("mean", "std")
	if err != nil {
		return nil, nil, err
	}
	if bottom, err = pair("bottom-mean", "bottom-std"); err != nil {
		return nil, nil, err
	}
	if top, err = pair("top-mean", "top-std"); err != nil {
		return nil, nil, err
	}
	if bottom == nil {
		bottom = both
	}
	if top == nil {
		top = both
	}
	return bottom, top, nil
}

// parseFloats reads a comma-separated list of numbers.
func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", strings.TrimSpace(f))
		}
		out = append(out, v)
	}
	return out, nil
}

// normWhat says which normalisation a half gets, and from where.
func normWhat(n results.Norm) string {
	return fmt.Sprintf("mean %v std %v (%s)", n.Mean, n.Std, n.Source)
}

// warnNorm warns loudly when a half's normalisation is a guess: a foreign
// checkpoint on an image folder, with no statistics given.
func warnNorm(half string, m *models.Model, n results.Norm) {
	if n.Source != stitch.NormGuessed {
		return
	}
	fmt.Fprintf(os.Stderr, "\nWARNING: the %s model %s records no input normalisation and image folders have no known statistics:\n"+
		"  it is fed ImageNet's (mean %v, std %v). If it was trained with other statistics, its accuracy and every penalty\n"+
		"  are wrong, and the stitching layer's batch norm hides it. Give them with --%s-mean/--%s-std (or --mean/--std).\n\n",
		half, m.Path, n.Mean, n.Std, half, half)
}
