package main

import (
	"github.com/urfave/cli/v2"

	"modelstitch/experiments/invalid"
)

// The flags that set each library setting, by the setting's field name
// (invalid.Setting), per command.
var (
	stitchFlagOf = map[string]string{
		"epochs": "--epochs", "batch size": "--batch-size", "learning rate": "--lr", "fit samples": "--fit-samples",
		"init": "--init", "frozen bn": "--frozen-bn", "cka samples": "--cka-samples", "ls samples": "--ls-samples",
		"cuts": "--layer", "kernel size": "--kernel-size", "test samples": "--test-samples",
		"eval batch size": "--eval-batch-size", "workers": "--workers", "memory budget": "--memory-budget", "recipe": "--recipe",
		"val samples": "--val-samples", "check every": "--check-every", "patience": "--patience", "lr cuts": "--lr-cuts",
		"bottom norm": "--bottom-mean/--bottom-std (or --mean/--std)", "top norm": "--top-mean/--top-std (or --mean/--std)",
	}
	trainFlagOf = map[string]string{
		"arch": "--arch", "width": "--width", "stem": "--stem", "epochs": "--epochs", "batch size": "--batch-size", "learning rate": "--lr",
		"schedule": "--schedule", "out": "--out", "train samples": "--train-samples", "label noise": "--label-noise",
		"objects vs animals": "--labels objects-vs-animals", "temperature": "--temperature", "probe epochs": "--probe-epochs",
		"crop min": "--crop-min", "bn stats": "--bn-stats", "jitter": "--jitter", "jitter probability": "--jitter-p", "noise": "--noise", "erase": "--erase",
	}
	probeFlagOf = map[string]string{
		"probe epochs": "--epochs", "batch size": "--batch-size", "learning rate": "--lr", "weight decay": "--weight-decay",
		"train samples": "--train-samples", "stem": "--stem", "stem padding": "--stem-padding",
		"weight decays": "--weight-decays", "holdout": "--holdout", "max iter": "--max-iter",
	}
)

// namingFlags wraps a command's action so that an error about a library
// setting names the flag that sets it.
func namingFlags(action cli.ActionFunc, flagOf map[string]string) cli.ActionFunc {
	return func(c *cli.Context) error {
		return invalid.Rename(action(c), flagOf)
	}
}
