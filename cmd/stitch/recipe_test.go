package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/stitch"
)

// recipeOf parses a stitch command line and returns the settings it asks for.
func recipeOf(t *testing.T, args ...string) (stitch.Config, error) {
	t.Helper()
	var cfg stitch.Config
	app := &cli.App{Name: "stitch", Flags: stitchFlags(), Action: func(c *cli.Context) error {
		var err error
		cfg, err = recipeConfig(c)
		return err
	}}
	err := app.Run(append([]string{"stitch"}, args...))
	return cfg, err
}

// TestRecipeFlag checks --recipe: paper gives the paper's setting, flags
// beside it override it (a flag left out keeps the recipe's value, not the
// help's default), cpu and no flag give the defaults, and a bad name is an
// error naming the flag.
func TestRecipeFlag(t *testing.T) {
	paper, err := recipeOf(t, "--recipe", "paper")
	if err != nil {
		t.Fatal(err)
	}
	want := stitch.Paper()
	if paper.Init != want.Init || paper.LR != want.LR || paper.Epochs != want.Epochs || paper.FitSamples != 0 ||
		!paper.FitAugment || paper.FrozenBN != "eval" || paper.BatchSize != want.BatchSize {
		t.Errorf("--recipe paper: %+v, want %+v", paper, want)
	}
	over, err := recipeOf(t, "--recipe", "paper", "--epochs", "3", "--fit-samples", "6000", "--fit-augment=false", "--lr", "0.002")
	if err != nil {
		t.Fatal(err)
	}
	if over.Epochs != 3 || over.FitSamples != 6000 || over.FitAugment || over.LR != 0.002 || over.Init != stitch.InitDefault {
		t.Errorf("--recipe paper with overrides: %+v", over)
	}
	for _, args := range [][]string{nil, {"--recipe", "cpu"}} {
		d, err := recipeOf(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		def := stitch.Defaults()
		if d.Init != def.Init || d.LR != def.LR || d.Epochs != def.Epochs || d.FitSamples != def.FitSamples || d.FitAugment {
			t.Errorf("%v: %+v, want the defaults", args, d)
		}
	}
	aug, err := recipeOf(t, "--fit-augment")
	if err != nil || !aug.FitAugment || aug.Init != stitch.InitLeastSquares {
		t.Errorf("--fit-augment alone: %+v, %v", aug, err)
	}
	err = run([]string{"stitch", "--recipe", "papr", "--quiet", "--out", "", "--plot", ""})
	if err == nil || !strings.Contains(err.Error(), "--recipe") {
		t.Errorf("--recipe papr: %v, want an error naming --recipe", err)
	}
}

// TestBNStatsFlag checks that --bn-stats is refused where it cannot apply
// (a trained model) and that a bad value names the flag.
func TestBNStatsFlag(t *testing.T) {
	out := t.TempDir() + "/x.pt"
	for _, args := range [][]string{
		{"train", "--out", out, "--epochs", "2", "--bn-stats", "data"},
		{"train", "--out", out, "--epochs", "0", "--bn-stats", "batch"},
	} {
		err := run(append([]string{"stitch"}, args...))
		if err == nil || !strings.Contains(err.Error(), "--bn-stats") {
			t.Errorf("stitch %s: %v, want an error naming --bn-stats", strings.Join(args, " "), err)
		}
	}
}
