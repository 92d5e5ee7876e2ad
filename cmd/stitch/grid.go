package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"modelstitch/experiments/grid"
)

func gridCommand() *cli.Command {
	outFlag := &cli.StringFlag{Name: "out", Usage: "directory of checkpoints and rows (default: the spec's out)"}
	return &cli.Command{
		Name:  "grid",
		Usage: "run a whole set of experiments from a spec file (see experiments/paper-fmnist.toml)",
		Description: "A spec lists models to train (or existing checkpoints), pairs to stitch and the figures and verdicts\n" +
			"of a report. `run` does every unit of work that is not done yet (a killed run resumes), `plan` shows\n" +
			"each unit's state, `report` regenerates the report from the rows.",
		Subcommands: []*cli.Command{
			{
				Name:      "run",
				Usage:     "train and stitch whatever is missing, then regenerate the report",
				ArgsUsage: "SPEC",
				Flags: []cli.Flag{
					outFlag,
					&cli.IntFlag{Name: "jobs", Value: 1, Usage: "units at once (each in a child process with max(1, cores/N) libtorch threads)"},
					&cli.StringFlag{Name: "shard", Usage: "i/n: run only the units whose id hashes to shard i of n"},
					&cli.StringFlag{Name: "phase", Value: grid.PhaseAll, Usage: "train: only train units; stitch: only stitch units (missing models are waited for); all: both"},
					&cli.IntFlag{Name: "cores", Value: runtime.NumCPU(), Usage: "CPU cores to divide between the jobs"},
					&cli.BoolFlag{Name: "no-report", Usage: "do not regenerate the report at the end"},
					&cli.StringFlag{Name: "report", Usage: "report directory (default: the spec's report)"},
				},
				Action: gridRunAction,
			},
			{
				Name:      "plan",
				Usage:     "list every unit and its state (done, missing, waiting)",
				ArgsUsage: "SPEC",
				Flags: []cli.Flag{
					outFlag,
					&cli.StringFlag{Name: "shard", Usage: "i/n: list only shard i's units"},
					&cli.BoolFlag{Name: "json", Usage: "one JSON object per unit on stdout"},
				},
				Action: gridPlanAction,
			},
			{
				Name:      "report",
				Usage:     "regenerate the report (README.md and figures) from the rows",
				ArgsUsage: "SPEC",
				Flags:     []cli.Flag{outFlag, &cli.StringFlag{Name: "report", Usage: "report directory (default: the spec's report)"}},
				Action:    gridReportAction,
			},
			{
				Name:      "unit",
				Usage:     "run one unit in this process and print its record (used by run --jobs)",
				ArgsUsage: "SPEC UNIT-ID",
				Hidden:    true,
				Flags:     []cli.Flag{outFlag, threadsFlag()},
				Action:    gridUnitAction,
			},
			gridSlurmCommand(),
			gridK8sCommand(),
			gridMergeCommand(),
		},
	}
}

// loadPlan reads the spec named by the first argument and plans it.
func loadPlan(c *cli.Context, nargs int) (*grid.Plan, error) {
	if c.Args().Len() != nargs {
		return nil, fmt.Errorf("%s: want %d argument(s) (%s), got %d", c.Command.FullName(), nargs, c.Command.ArgsUsage, c.Args().Len())
	}
	spec, err := grid.Load(c.Args().First())
	if err != nil {
		return nil, err
	}
	return grid.NewPlan(spec, c.String("out"), grid.CutPoints)
}

func gridRunAction(c *cli.Context) error {
	p, err := loadPlan(c, 1)
	if err != nil {
		return err
	}
	shard, err := grid.ParseShard(c.String("shard"))
	if err != nil {
		return err
	}
	phase, err := grid.ParsePhase(c.String("phase"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	defer close(finished) // before stop: the goroutine below then stays quiet
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		select {
		case <-finished:
			return
		default:
		}
		// A second signal kills at once: what is written is atomic.
		stop()
		fmt.Fprintln(os.Stderr, "stopping after the units in flight (training stops at the end of its epoch); interrupt again to kill now")
	}()
	opts := grid.Options{Jobs: c.Int("jobs"), Cores: c.Int("cores"), Shard: shard, Phase: phase}
	if opts.Jobs > 1 {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		opts.Exec = &childExecutor{exe: exe, spec: p.Spec.Path, out: p.Dir}
	} else {
		opts.Exec = &grid.InProcess{}
	}
	start := time.Now()
	opts.OnEvent = func(e grid.Event) {
		switch e.Kind {
		case "start":
			fmt.Fprintf(os.Stderr, "[%d/%d] start  %s\n", e.Done+1, e.Total, e.Unit.ID)
		case "done":
			extra := ""
			if s := e.Record.Stitch; s != nil {
				extra = fmt.Sprintf("penalty %+.2f pp", s.Penalty)
			} else if m := e.Record.Model; m != nil {
				extra = fmt.Sprintf("test accuracy %.2f%%", m.TestAcc)
			}
			fmt.Fprintf(os.Stderr, "[%d/%d] done   %s  %s  (%.0f s, elapsed %s)\n", e.Done, e.Total, e.Unit.ID, extra,
				e.Record.Seconds, time.Since(start).Round(time.Second))
		case "failed":
			fmt.Fprintf(os.Stderr, "[%d/%d] FAILED %s: %v\n", e.Done, e.Total, e.Unit.ID, e.Err)
		}
	}
	sum, runErr := grid.Run(ctx, p, opts)
	if sum != nil {
		fmt.Fprintf(os.Stderr, "%s shard %s: ran %d, already done %d, failed %d, waiting for other shards or phases %d, blocked %d, other shards' %d, other phases' %d; wall %s\n",
			phase, shard, sum.Ran, sum.Skipped, sum.Failed, len(sum.Waiting), len(sum.Blocked), sum.NotOwned, sum.OtherPhase, time.Since(start).Round(time.Second))
	}
	if !c.Bool("no-report") && !errors.Is(runErr, context.Canceled) {
		res, err := grid.Report(p, c.String("report"))
		if err != nil {
			return errors.Join(runErr, fmt.Errorf("report: %w", err))
		}
		fmt.Fprintf(os.Stderr, "report written to %s\n", res.Path)
	}
	if errors.Is(runErr, context.Canceled) {
		return fmt.Errorf("interrupted; the same command resumes (stitch grid plan %s shows what is left)", p.Spec.Path)
	}
	return runErr
}

func gridPlanAction(c *cli.Context) error {
	p, err := loadPlan(c, 1)
	if err != nil {
		return err
	}
	shard, err := grid.ParseShard(c.String("shard"))
	if err != nil {
		return err
	}
	recs, err := grid.ReadRecords(p.Dir)
	if err != nil {
		return err
	}
	states := p.States(recs, shard.N)
	counts := map[string]int{}
	enc := json.NewEncoder(os.Stdout)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	if !c.Bool("json") {
		fmt.Fprintln(tw, "STATE\tSHARD\tKIND\tUNIT\tWAITING FOR")
	}
	for _, st := range states {
		if !shard.Owns(st.ID) {
			continue
		}
		counts[st.State]++
		if c.Bool("json") {
			if err := enc.Encode(st); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\n", st.State, st.Shard, shard.N, st.Kind, st.ID, strings.Join(st.WaitingFor, ","))
	}
	if !c.Bool("json") {
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Printf("%d units: %d done, %d missing, %d waiting (rows in %s)\n", counts[grid.StateDone]+counts[grid.StateMissing]+counts[grid.StateWaiting],
			counts[grid.StateDone], counts[grid.StateMissing], counts[grid.StateWaiting], grid.RowsDir(p.Dir))
	}
	return nil
}

func gridReportAction(c *cli.Context) error {
	p, err := loadPlan(c, 1)
	if err != nil {
		return err
	}
	res, err := grid.Report(p, c.String("report"))
	if err != nil {
		return err
	}
	fmt.Printf("report written to %s (%d figures)\n", res.Path, len(res.Figures))
	return nil
}

// gridUnitAction runs one unit and prints its record as JSON on stdout; the
// parent run appends it to the rows.
func gridUnitAction(c *cli.Context) error {
	p, err := loadPlan(c, 2)
	if err != nil {
		return err
	}
	u, ok := p.Unit(c.Args().Get(1))
	if !ok {
		return fmt.Errorf("no unit %q in %s", c.Args().Get(1), p.Spec.Path)
	}
	threads := c.Int("threads")
	rec, err := (&grid.InProcess{Progress: newProgress(false)}).Execute(c.Context, p, u, max(1, threads))
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(rec)
}

// childExecutor runs each unit as `stitch grid unit` in a child process (its
// own libtorch threads and random generator), logging to OUT/logs/. A
// cancelled context kills the child; what it wrote is atomic, so nothing is
// left half done.
type childExecutor struct {
	exe, spec, out string
}

func (x *childExecutor) Execute(ctx context.Context, p *grid.Plan, u *grid.Unit, threads int) (grid.Record, error) {
	var rec grid.Record
	logDir := filepath.Join(p.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return rec, err
	}
	logPath := filepath.Join(logDir, strings.NewReplacer("/", "_", "~", "_", "@", "_").Replace(u.ID)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return rec, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, x.exe, "grid", "unit", "--out", x.out, "--threads", fmt.Sprint(threads), x.spec, u.ID)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, logf
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return rec, ctx.Err()
		}
		return rec, fmt.Errorf("%v (log: %s)", err, logPath)
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &rec); err != nil {
		return rec, fmt.Errorf("reading the child's record: %w (log: %s)", err, logPath)
	}
	if rec.Unit != u.ID {
		return rec, fmt.Errorf("the child recorded unit %q, not %q", rec.Unit, u.ID)
	}
	return rec, nil
}
