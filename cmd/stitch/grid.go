package main

import (
	"bufio"
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
	"modelstitch/experiments/grid/inprocess"
	"modelstitch/torch"
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
					&cli.BoolFlag{Name: "in-process", Usage: "run the units in this process, one at a time (--jobs 1 only), instead of a child process per unit or group, which returns all of a group's memory when it ends"},
					&cli.StringFlag{Name: "shard", Usage: "i/n: run only the units whose id hashes to shard i of n"},
					&cli.StringFlag{Name: "phase", Value: grid.PhaseAll, Usage: "train: only train units; stitch: only stitch units (missing models are waited for); all: both"},
					&cli.IntFlag{Name: "cores", Value: runtime.NumCPU(), Usage: "CPU cores to divide between the jobs"},
					&cli.BoolFlag{Name: "no-report", Usage: "do not regenerate the report at the end"},
					&cli.StringFlag{Name: "report", Usage: "report directory (default: the spec's report)"},
					&cli.StringFlag{Name: "device", Value: "cpu", Usage: "where the units train and stitch: cpu, cuda or cuda:N (recorded in the rows, not part of a unit's id)"},
				},
				Action: namingFlags(gridRunAction, gridFlagOf),
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
				Action: namingFlags(gridPlanAction, gridFlagOf),
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
				Usage:     "run one unit, or one group of stitch units, in this process and print each record as one JSON line as it is finished (used by run --jobs)",
				ArgsUsage: "SPEC UNIT-ID [UNIT-ID...]",
				Hidden:    true,
				Flags:     []cli.Flag{outFlag, threadsFlag(), deviceFlag()},
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
	spec, err := grid.Load(c.Args().First(), inprocess.Vocabulary())
	if err != nil {
		return nil, err
	}
	return grid.NewPlan(spec, c.String("out"), inprocess.CutPoints)
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
	dev, err := gridDevice(c.String("device"))
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
		fmt.Fprintln(os.Stderr, "stopping after the units in flight (training stops at the end of its epoch, a group of cuts before its next cut); interrupt again to kill now")
	}()
	opts := grid.Options{Jobs: c.Int("jobs"), Cores: c.Int("cores"), Shard: shard, Phase: phase}
	if c.Bool("in-process") && opts.Jobs > 1 {
		return fmt.Errorf("--in-process runs one unit at a time: it needs --jobs 1, got --jobs %d", opts.Jobs)
	}
	if !c.Bool("in-process") {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		opts.Exec = &childExecutor{exe: exe, spec: p.Spec.Path, out: p.Dir, device: dev.String()}
	} else {
		opts.Exec = &inprocess.InProcess{Device: dev}
	}
	start := time.Now()
	opts.OnEvent = func(e grid.Event) {
		switch e.Kind {
		case grid.EventStart:
			if len(e.Group) > 1 {
				cuts := make([]string, len(e.Group))
				for i, u := range e.Group {
					cuts[i] = u.Cut
				}
				more := fmt.Sprintf("%d more cuts", len(e.Group)-1)
				if len(e.Group) == 2 {
					more = "1 more cut"
				}
				fmt.Fprintf(os.Stderr, "[%d/%d] start  %s and %s together (%s)\n", e.Done+1, e.Total, e.Unit.ID, more, strings.Join(cuts, ", "))
			} else {
				fmt.Fprintf(os.Stderr, "[%d/%d] start  %s\n", e.Done+1, e.Total, e.Unit.ID)
			}
		case grid.EventDone:
			extra := ""
			if s := e.Record.Stitch; s != nil {
				extra = fmt.Sprintf("penalty %+.2f pp", s.Penalty)
			} else if m := e.Record.Model; m != nil {
				extra = fmt.Sprintf("test accuracy %.2f%%", m.TestAcc)
			}
			left := ""
			if e.Left > 0 {
				left = fmt.Sprintf(", about %s left", e.Left.Round(time.Second))
			}
			fmt.Fprintf(os.Stderr, "[%d/%d] done   %s  %s  (%.0f s, elapsed %s%s)\n", e.Done, e.Total, e.Unit.ID, extra,
				e.Record.Seconds, time.Since(start).Round(time.Second), left)
		case grid.EventFailed:
			fmt.Fprintf(os.Stderr, "[%d/%d] FAILED %s: %v\n", e.Done, e.Total, e.Unit.ID, e.Err)
		}
	}
	sum, runErr := grid.Run(ctx, p, opts)
	if sum != nil {
		fmt.Fprintf(os.Stderr, "%s shard %s: ran %d, already done %d, failed %d, waiting for other shards or phases %d, blocked %d, other shards' %d, other phases' %d; wall %s\n",
			phase, shard, sum.Ran, sum.Skipped, sum.Failed, len(sum.Waiting), len(sum.Blocked), sum.NotOwned, sum.OtherPhase, time.Since(start).Round(time.Second))
	}
	// A run that did not start (no summary: the folder is another run's, its
	// rows unreadable) changed nothing, so it draws no report either.
	if sum != nil && !c.Bool("no-report") && !errors.Is(runErr, context.Canceled) {
		res, err := grid.Report(p, c.String("report"))
		if err != nil {
			return errors.Join(runErr, fmt.Errorf("report: %w", err))
		}
		if runErr != nil {
			fmt.Fprintf(os.Stderr, "report of the units done so far written to %s\n", res.Path)
		} else {
			fmt.Fprintf(os.Stderr, "report written to %s\n", res.Path)
		}
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
		if !shard.OwnsUnit(st.Unit) {
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
		if n := len(p.Orphans(recs)); n > 0 {
			fmt.Printf("%d row(s) there are not units of this spec; the report lists them and uses them nowhere\n", n)
		}
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

// gridDevice parses and checks a --device value for grid run and grid unit.
func gridDevice(s string) (torch.Device, error) {
	dev, err := torch.ParseDevice(s)
	if err != nil {
		return dev, fmt.Errorf("--device: %w", err)
	}
	if err := torch.CheckDevice(dev); err != nil {
		return dev, fmt.Errorf("--device %s: %w (--device cpu runs on the CPU)", dev, err)
	}
	return dev, nil
}

// gridUnitAction runs one unit, or one group of stitch units (grid.Groups),
// and prints each record as one JSON line on stdout as soon as its unit is
// finished; the parent run appends them to the rows.
func gridUnitAction(c *cli.Context) error {
	if c.Args().Len() < 2 {
		return fmt.Errorf("%s: want SPEC and one or more unit ids, got %d argument(s)", c.Command.FullName(), c.Args().Len())
	}
	dev, err := gridDevice(c.String("device"))
	if err != nil {
		return err
	}
	p, err := loadPlan(c, c.Args().Len())
	if err != nil {
		return err
	}
	var us []*grid.Unit
	for _, id := range c.Args().Slice()[1:] {
		u, ok := p.Unit(id)
		if !ok {
			return fmt.Errorf("no unit %q in %s", id, p.Spec.Path)
		}
		us = append(us, u)
	}
	threads := max(1, c.Int("threads"))
	x := &inprocess.InProcess{Progress: newProgress(false), Device: dev}
	enc := json.NewEncoder(os.Stdout) // one Write per record: a line the parent reads whole
	if len(us) == 1 && us[0].Kind != grid.UnitStitch {
		rec, err := x.Execute(c.Context, p, us[0], threads)
		if err != nil {
			return err
		}
		return enc.Encode(rec)
	}
	var werr error
	err = x.ExecuteGroup(c.Context, p, us, threads, func(rec grid.Record) {
		if e := enc.Encode(rec); e != nil && werr == nil {
			werr = fmt.Errorf("writing the record of %s: %w", rec.Unit, e)
		}
	})
	return errors.Join(err, werr)
}

// childExecutor runs each unit, or group of stitch units, as `stitch grid
// unit` in a child process (its own libtorch threads and random generator),
// logging to OUT/logs/. The child prints each record as its unit finishes;
// a cancelled context kills the child, and the records it printed before
// stay done (what is written is atomic, so nothing is left half done).
type childExecutor struct {
	exe, spec, out, device string
}

// Execute runs one unit in a child process.
func (x *childExecutor) Execute(ctx context.Context, p *grid.Plan, u *grid.Unit, threads int) (grid.Record, error) {
	var got *grid.Record
	err := x.run(ctx, p, []*grid.Unit{u}, threads, func(rec grid.Record) { got = &rec })
	if err == nil && got == nil {
		err = fmt.Errorf("the child printed no record for %s", u.ID)
	}
	if err != nil {
		return grid.Record{}, err
	}
	return *got, nil
}

// ExecuteGroup runs a group of stitch units in one child process.
func (x *childExecutor) ExecuteGroup(ctx context.Context, p *grid.Plan, us []*grid.Unit, threads int, emit func(grid.Record)) error {
	return x.run(ctx, p, us, threads, emit)
}

func (x *childExecutor) run(ctx context.Context, p *grid.Plan, us []*grid.Unit, threads int, emit func(grid.Record)) error {
	logDir := filepath.Join(p.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	// The log is named after the first unit (a group's first cut).
	logPath := filepath.Join(logDir, strings.NewReplacer("/", "_", "~", "_", "@", "_").Replace(us[0].ID)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"grid", "unit", "--out", x.out, "--threads", fmt.Sprint(threads)}
	if x.device != "" {
		args = append(args, "--device", x.device)
	}
	args = append(args, x.spec)
	want := map[string]bool{}
	for _, u := range us {
		args = append(args, u.ID)
		want[u.ID] = true
	}
	cmd := exec.CommandContext(ctx, x.exe, args...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var bad error
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || bad != nil {
			continue
		}
		var rec grid.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			bad = fmt.Errorf("reading the child's record: %w (log: %s)", err, logPath)
			continue
		}
		if !want[rec.Unit] {
			bad = fmt.Errorf("the child recorded unit %q, not one of %d asked for (log: %s)", rec.Unit, len(us), logPath)
			continue
		}
		delete(want, rec.Unit)
		emit(rec)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if werr != nil {
		return fmt.Errorf("%v (log: %s)", werr, logPath)
	}
	if bad == nil && sc.Err() != nil {
		bad = fmt.Errorf("reading the child's records: %w (log: %s)", sc.Err(), logPath)
	}
	return bad
}
