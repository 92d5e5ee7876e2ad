package main

// The cluster side of `stitch grid`: `stitch grid slurm`, `stitch grid k8s`
// and `stitch grid merge`. These functions return the commands; the grid
// command lists them among its subcommands.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/cluster"
	"modelstitch/experiments/grid"
	"modelstitch/experiments/shardfile"
)

// stitchBinFlag is --stitch-bin: the stitch executable the jobs run.
func stitchBinFlag(def, defText, where string) cli.Flag {
	return &cli.StringFlag{
		Name:        "stitch-bin",
		Value:       def,
		DefaultText: defText,
		EnvVars:     []string{"STITCH_BIN"},
		Usage:       "the stitch executable the jobs run, " + where,
	}
}

// parseInterspersed parses the flags of a command that has SkipFlagParsing,
// wherever they stand among its arguments (`stitch grid slurm SPEC --out
// DIR` as well as `stitch grid slurm --out DIR SPEC`), into c, and returns
// the other arguments. It reports whether help was asked for, and checks
// that the flags named in required were given.
func parseInterspersed(c *cli.Context, required ...string) (args []string, help bool, err error) {
	bools := map[string]bool{}
	known := map[string]bool{}
	for _, f := range c.Command.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			known[n] = true
			bools[n] = isBool
		}
	}
	raw := c.Args().Slice()
	for i := 0; i < len(raw); i++ {
		a := raw[i]
		if a == "--" {
			args = append(args, raw[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return nil, true, nil
		}
		if !known[name] {
			return nil, false, fmt.Errorf("stitch grid %s: unknown flag %s", c.Command.Name, a)
		}
		if !hasValue {
			if bools[name] {
				value = "true"
			} else if i+1 < len(raw) {
				i++
				value = raw[i]
			} else {
				return nil, false, fmt.Errorf("stitch grid %s: flag %s needs a value", c.Command.Name, a)
			}
		}
		if err := c.Set(name, value); err != nil {
			return nil, false, fmt.Errorf("stitch grid %s: %s %q: %v", c.Command.Name, a, value, err)
		}
	}
	for _, r := range required {
		if !c.IsSet(r) {
			return nil, false, fmt.Errorf("stitch grid %s: --%s is required", c.Command.Name, r)
		}
	}
	return args, false, nil
}

// gridSpecArg parses the command line of a command that takes one SPEC
// (see parseInterspersed) and returns SPEC, or "" when help was shown.
func gridSpecArg(c *cli.Context, required ...string) (string, error) {
	args, help, err := parseInterspersed(c, required...)
	if help {
		return "", cli.ShowCommandHelp(c.Lineage()[1], c.Command.Name)
	}
	if err != nil {
		return "", err
	}
	if len(args) != 1 {
		return "", fmt.Errorf("usage: stitch grid %s SPEC [flags] (got %d arguments)", c.Command.Name, len(args))
	}
	spec := args[0]
	if _, err := os.Stat(spec); err != nil {
		return "", fmt.Errorf("grid spec: %w", err)
	}
	return spec, nil
}

// gridSlurmCommand is `stitch grid slurm SPEC`: it writes (and with
// --submit submits) the Slurm jobs that run the grid.
func gridSlurmCommand() *cli.Command {
	self, _ := os.Executable()
	return &cli.Command{
		Name:      "slurm",
		Usage:     "write (and --submit) Slurm job arrays that run the grid's shards, phase after phase",
		ArgsUsage: "SPEC",
		Description: "Writes train.sbatch and stitch.sbatch (job arrays, task I runs shard I of --shards),\n" +
			"report.sbatch (merge and report), submit.sh (submits them chained by afterok) and\n" +
			"requeue.sh (re-runs array tasks and re-arms the jobs waiting for them).\n" +
			"SPEC, --out and --stitch-bin must be on a file system the nodes share.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "the grid's output directory, on the shared file system (required)"},
			&cli.StringFlag{Name: "dir", Usage: "where to write the scripts (default: OUT/slurm)"},
			&cli.IntFlag{Name: "shards", Value: 4, Usage: "array tasks per phase, each one shard of the grid (at most --max-array-size)"},
			&cli.IntFlag{Name: "max-running", Usage: "run at most this many tasks of an array at once (0: no limit)"},
			&cli.IntFlag{Name: "max-array-size", Value: cluster.DefaultMaxArraySize, Usage: "the cluster's MaxArraySize (scontrol show config): array task ids must be below it"},
			&cli.IntFlag{Name: "gpus", Usage: "GPUs per task (sbatch --gpus)"},
			&cli.IntFlag{Name: "cpus-per-task", Value: 4, Usage: "CPUs per task (sbatch --cpus-per-task)"},
			&cli.StringFlag{Name: "mem", Usage: "memory per task, e.g. 32G (sbatch --mem)"},
			&cli.StringFlag{Name: "time", Usage: "time limit per task, e.g. 4:00:00 (sbatch --time)"},
			&cli.StringFlag{Name: "partition", Usage: "sbatch --partition"},
			&cli.StringFlag{Name: "account", Usage: "sbatch --account"},
			&cli.StringFlag{Name: "job-name", Value: "stitch", Usage: "job name prefix"},
			&cli.StringFlag{Name: "setup", Usage: "shell commands each job runs first, e.g. 'module load cuda/12.4'"},
			&cli.StringFlag{Name: "run-args", Usage: "more arguments for 'stitch grid run', split as a shell does (quotes and backslashes; nothing expanded), e.g. '--device cuda'"},
			stitchBinFlag(self, "this executable", "as the nodes see it"),
			&cli.BoolFlag{Name: "submit", Usage: "submit the jobs with sbatch once written"},
		},
		SkipFlagParsing: true, // flags may follow SPEC; see parseInterspersed
		HideHelpCommand: true,
		Action:          namingFlags(gridSlurmAction, gridSlurmFlagOf),
	}
}

func gridSlurmAction(c *cli.Context) error {
	spec, err := gridSpecArg(c, "out")
	if err != nil || spec == "" {
		return err
	}
	abs := func(flag, p string) (string, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", flag, p, err)
		}
		return a, nil
	}
	if spec, err = abs("SPEC", spec); err != nil {
		return err
	}
	out, err := abs("--out", c.String("out"))
	if err != nil {
		return err
	}
	bin := c.String("stitch-bin")
	if bin == "" {
		return fmt.Errorf("--stitch-bin: cannot tell where this executable is; name it")
	}
	if strings.ContainsRune(bin, '/') {
		if bin, err = abs("--stitch-bin", bin); err != nil {
			return err
		}
	}
	dir := c.String("dir")
	if dir == "" {
		dir = filepath.Join(out, "slurm")
	}
	runArgs, err := splitWords(c.String("run-args"))
	if err != nil {
		return fmt.Errorf("--run-args: %w", err)
	}
	s, err := cluster.WriteSlurm(cluster.SlurmOptions{
		Grid:         cluster.Grid{Bin: bin, Spec: spec, Out: out, RunArgs: runArgs},
		Dir:          dir,
		JobName:      c.String("job-name"),
		Shards:       c.Int("shards"),
		MaxRunning:   c.Int("max-running"),
		MaxArraySize: c.Int("max-array-size"),
		GPUs:         c.Int("gpus"),
		CPUsPerTask:  c.Int("cpus-per-task"),
		Mem:          c.String("mem"),
		Time:         c.String("time"),
		Partition:    c.String("partition"),
		Account:      c.String("account"),
		Setup:        c.String("setup"),
	})
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s, %s, %s, %s and %s\n", s.Phases["train"], s.Phases["stitch"], s.Report, s.Submit, s.Requeue)
	if !c.Bool("submit") {
		fmt.Printf("submit with: bash %s\n", s.Submit)
		return nil
	}
	jobs, err := cluster.SubmitSlurm(context.Background(), s)
	if err != nil {
		return err
	}
	fmt.Printf("submitted: train array %s, stitch array %s (after train), report %s (after stitch); ids in %s\n",
		jobs.Phases["train"], jobs.Phases["stitch"], jobs.Report, s.Jobs)
	fmt.Printf("re-run a task with: bash %s JOBID_TASK\n", s.Requeue)
	return nil
}

// gridK8sCommand is `stitch grid k8s SPEC`: it writes the Kubernetes
// manifests that run the grid.
func gridK8sCommand() *cli.Command {
	return &cli.Command{
		Name:      "k8s",
		Usage:     "write Kubernetes manifests (an Indexed Job per phase) that run the grid's shards",
		ArgsUsage: "SPEC",
		Description: "Writes spec-configmap.yaml (SPEC), pvc.yaml (unless --claim), job-train.yaml and\n" +
			"job-stitch.yaml (Indexed Jobs: pod I runs shard I of --shards), job-report.yaml (merge\n" +
			"and report) and run.sh, which applies each Job after the one before has completed.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "image", Usage: "container image holding stitch (required)"},
			&cli.StringFlag{Name: "dir", Value: "k8s", Usage: "where to write the manifests"},
			&cli.StringFlag{Name: "name", Value: "stitch-grid", Usage: "name prefix of the objects"},
			&cli.StringFlag{Name: "namespace", Usage: "namespace (default: kubectl's)"},
			&cli.IntFlag{Name: "shards", Value: 4, Usage: fmt.Sprintf("indexes per phase, each one shard of the grid (at most %d)", cluster.MaxIndexedCompletions)},
			&cli.IntFlag{Name: "parallelism", Usage: "pods of a phase at once (0: all shards)"},
			&cli.IntFlag{Name: "retries", Value: 3, Usage: "retries of each failed index (backoffLimitPerIndex)"},
			&cli.IntFlag{Name: "gpus", Usage: "nvidia.com/gpu per pod"},
			&cli.StringFlag{Name: "cpu", Usage: "CPU request per pod, e.g. 4"},
			&cli.StringFlag{Name: "memory", Usage: "memory request and limit per pod, e.g. 16Gi"},
			&cli.StringFlag{Name: "claim", Usage: "an existing PersistentVolumeClaim for checkpoints and results (default: create NAME-data)"},
			&cli.StringFlag{Name: "storage", Value: "20Gi", Usage: "size of the claim created"},
			&cli.StringFlag{Name: "storage-class", Usage: "storage class of the claim created (it needs ReadWriteMany)"},
			&cli.StringFlag{Name: "mount", Value: "/data", Usage: "where the claim is mounted in the pods"},
			&cli.StringFlag{Name: "out", Usage: "the grid's output directory in the pods, under --mount (default: MOUNT/NAME)"},
			&cli.StringFlag{Name: "pull-policy", Usage: "imagePullPolicy: Always, IfNotPresent or Never"},
			&cli.StringSliceFlag{Name: "node-selector", Usage: "KEY=VALUE node label the pods need (repeatable)"},
			&cli.StringFlag{Name: "run-args", Usage: "more arguments for 'stitch grid run', split as a shell does (quotes and backslashes; nothing expanded), e.g. '--device cuda'"},
			stitchBinFlag("stitch", "stitch", "as the image has it"),
		},
		SkipFlagParsing: true, // flags may follow SPEC; see parseInterspersed
		HideHelpCommand: true,
		Action:          namingFlags(gridK8sAction, gridK8sFlagOf),
	}
}

func gridK8sAction(c *cli.Context) error {
	spec, err := gridSpecArg(c, "image")
	if err != nil || spec == "" {
		return err
	}
	name := c.String("name")
	out := c.String("out")
	if out == "" {
		out = strings.TrimSuffix(c.String("mount"), "/") + "/" + name
	}
	sel := map[string]string{}
	for _, kv := range c.StringSlice("node-selector") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--node-selector %q: want KEY=VALUE", kv)
		}
		sel[k] = v
	}
	runArgs, err := splitWords(c.String("run-args"))
	if err != nil {
		return fmt.Errorf("--run-args: %w", err)
	}
	m, err := cluster.WriteK8s(cluster.K8sOptions{
		Grid:         cluster.Grid{Bin: c.String("stitch-bin"), Spec: spec, Out: out, RunArgs: runArgs},
		Dir:          c.String("dir"),
		Name:         name,
		Namespace:    c.String("namespace"),
		Image:        c.String("image"),
		PullPolicy:   c.String("pull-policy"),
		Shards:       c.Int("shards"),
		Parallelism:  c.Int("parallelism"),
		Retries:      c.Int("retries"),
		GPUs:         c.Int("gpus"),
		CPU:          c.String("cpu"),
		Memory:       c.String("memory"),
		Claim:        c.String("claim"),
		Storage:      c.String("storage"),
		StorageClass: c.String("storage-class"),
		MountPath:    c.String("mount"),
		NodeSelector: sel,
	})
	if err != nil {
		return err
	}
	fmt.Printf("wrote the manifests to %s\nrun with: bash %s\n", m.Dir, m.Run)
	return nil
}

// gridMergeCommand is `stitch grid merge --out DIR`: it merges the shards'
// row files into DIR/merged.jsonl, each unit once.
func gridMergeCommand() *cli.Command {
	return &cli.Command{
		Name:  "merge",
		Usage: "merge the shards' rows (OUT/rows/shard-I-of-N.jsonl) into OUT/" + shardfile.MergedName + ", each unit once",
		Description: "Every line must be a row that `stitch grid report` reads, or nothing is merged and the error names\n" +
			"the file and line (a torn last line, from an interrupted write, is skipped). Of the copies of one\n" +
			"unit the first wins: files with fewer shards first, then by shard, rows in file order; units\n" +
			"whose copies differ are named.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "the grid's output directory"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("stitch grid merge takes no arguments, got %q", c.Args().First())
			}
			st, err := grid.MergeRows(c.String("out"))
			if err != nil {
				return err
			}
			fmt.Printf("merged %d units from %d shard files into %s (%d duplicate rows dropped, %d of them differing; %d torn last lines skipped)\n",
				st.Unique, st.Files, filepath.Join(c.String("out"), shardfile.MergedName), st.Duplicates, st.Conflicts, st.Torn)
			if len(st.ConflictIDs) > 0 {
				ids := make([]string, len(st.ConflictIDs))
				for i, id := range st.ConflictIDs {
					ids[i] = fmt.Sprintf("%q", id)
				}
				fmt.Printf("units whose copies differ (the first copy kept): %s\n", strings.Join(ids, ", "))
			}
			return nil
		},
	}
}
