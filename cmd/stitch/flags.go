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
		"bottom cuts": "--bottom-layer", "val samples": "--val-samples", "check every": "--check-every", "patience": "--patience", "lr cuts": "--lr-cuts",
		"bottom norm": "--bottom-mean/--bottom-std (or --mean/--std)", "top norm": "--top-mean/--top-std (or --mean/--std)",
		"out": "--out",
	}
	trainFlagOf = map[string]string{
		"arch": "--arch", "width": "--width", "stem": "--stem", "epochs": "--epochs", "batch size": "--batch-size", "learning rate": "--lr",
		"schedule": "--schedule", "out": "--out", "train samples": "--train-samples", "label noise": "--label-noise",
		"objects vs animals": "--labels objects-vs-animals", "temperature": "--temperature", "probe epochs": "--probe-epochs",
		"crop min": "--crop-min", "bn stats": "--bn-stats", "jitter": "--jitter", "jitter probability": "--jitter-p", "noise": "--noise", "erase": "--erase",
	}
	// checkpointFlagOf names the settings of reading one checkpoint
	// (models.LoadOptions, weights.ReadOptions) for eval and inspect.
	checkpointFlagOf = map[string]string{"key": "--key", "stem": "--stem", "stem padding": "--stem-padding"}
	gridFlagOf       = map[string]string{"phase": "--phase", "shard": "--shard"}
	probeFlagOf      = map[string]string{
		"probe epochs": "--epochs", "batch size": "--batch-size", "learning rate": "--lr", "weight decay": "--weight-decay",
		"train samples": "--train-samples", "stem": "--stem", "stem padding": "--stem-padding",
		"weight decays": "--weight-decays", "holdout": "--holdout", "max iter": "--max-iter", "key": "--key",
	}
	// gridSlurmFlagOf and gridK8sFlagOf name the flags of `stitch grid slurm`
	// and `stitch grid k8s` (experiments/cluster's fields).
	gridSlurmFlagOf = map[string]string{
		"shards": "--shards", "max running": "--max-running", "max array size": "--max-array-size", "gpus": "--gpus",
		"cpus per task": "--cpus-per-task", "job name": "--job-name", "mem": "--mem", "time": "--time",
		"partition": "--partition", "account": "--account", "log dir": "--out (its logs folder)",
		"stitch bin": "--stitch-bin", "out": "--out", "dir": "--dir", "spec": "SPEC", "run args": "--run-args",
	}
	gridK8sFlagOf = map[string]string{
		"name": "--name", "namespace": "--namespace", "claim": "--claim", "image": "--image", "pull policy": "--pull-policy",
		"shards": "--shards", "parallelism": "--parallelism", "retries": "--retries", "gpus": "--gpus",
		"cpu": "--cpu", "memory": "--memory", "storage": "--storage", "mount": "--mount", "out": "--out",
		"dir": "--dir", "stitch bin": "--stitch-bin", "spec": "SPEC", "run args": "--run-args",
	}
)

// namingFlags wraps a command's action so that an error about a library
// setting names the flag that sets it.
func namingFlags(action cli.ActionFunc, flagOf map[string]string) cli.ActionFunc {
	return func(c *cli.Context) error {
		return invalid.Rename(action(c), flagOf)
	}
}
