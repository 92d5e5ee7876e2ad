package grid

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Executor does one unit of work and returns its record (Unit, Kind and the
// result; Run fills in the times). exec.go has the in-process one; the stitch
// command also runs units in child processes.
type Executor interface {
	Execute(ctx context.Context, p *Plan, u *Unit, threads int) (Record, error)
}

// Options configure Run.
type Options struct {
	// Jobs is how many units run at once (default 1).
	Jobs int
	// Cores is the number of CPU cores to divide between jobs (default
	// runtime.NumCPU()); each job gets max(1, Cores/Jobs) libtorch threads.
	Cores int
	Shard Shard
	// Phase limits the run to one kind of unit: PhaseTrain, PhaseStitch or
	// PhaseAll (the default, also for ""). A cluster runs every shard's
	// train phase before any stitch phase starts.
	Phase string
	Exec  Executor
	// OnEvent, if set, hears of every unit started, finished or failed.
	OnEvent func(Event)
}

// Event reports progress of a run.
type Event struct {
	Unit   *Unit
	Kind   string // "start", "done", "failed"
	Record *Record
	Err    error
	// Done and Total count this run's owned units.
	Done, Total int
}

// Summary is what a run did.
type Summary struct {
	Ran, Skipped, Failed int
	// Waiting lists units this shard owns that need models another shard or
	// phase makes.
	Waiting []string
	// Blocked lists units whose models failed to train.
	Blocked []string
	// NotOwned counts units that belong to other shards.
	NotOwned int
	// OtherPhase counts this shard's units left to another phase.
	OtherPhase int
	Errors     []error
}

// Phases of a run (Options.Phase).
const (
	PhaseAll    = "all"
	PhaseTrain  = UnitTrain  // only train units
	PhaseStitch = UnitStitch // only stitch units; missing models are waited for, not made
)

// ParsePhase checks a --phase value; "" is PhaseAll.
func ParsePhase(s string) (string, error) {
	switch s {
	case "", PhaseAll:
		return PhaseAll, nil
	case PhaseTrain, PhaseStitch:
		return s, nil
	}
	return "", fmt.Errorf("--phase must be %s, %s or %s, got %q", PhaseTrain, PhaseStitch, PhaseAll, s)
}

// Run trains and stitches every unit the shard owns that has no record yet,
// at most opts.Jobs at a time, a stitch unit only after its models exist.
// Each finished unit's record is appended (one line, synced) before the next
// is reported, so a killed run loses at most the units in flight and a rerun
// does exactly those again. Cancelling ctx stops starting units and stops
// those in flight as soon as the executor can (a child process is killed).
func Run(ctx context.Context, p *Plan, opts Options) (*Summary, error) {
	if opts.Exec == nil {
		return nil, errors.New("grid: no executor")
	}
	if opts.Jobs < 1 {
		opts.Jobs = 1
	}
	if opts.Cores < 1 {
		opts.Cores = runtime.NumCPU()
	}
	if opts.Shard.N < 1 {
		opts.Shard = Shard{0, 1}
	}
	phase, err := ParsePhase(opts.Phase)
	if err != nil {
		return nil, err
	}
	inPhase := func(u *Unit) bool { return phase == PhaseAll || u.Kind == phase }
	threads := max(1, opts.Cores/opts.Jobs)
	recs, err := ReadRecords(p.Dir)
	if err != nil {
		return nil, err
	}
	w, err := OpenWriter(p.Dir, opts.Shard)
	if err != nil {
		return nil, err
	}
	defer w.Close()

	sum := &Summary{}
	var todo []*Unit
	for _, u := range p.Units {
		if !opts.Shard.Owns(u.ID) {
			sum.NotOwned++
			continue
		}
		if !inPhase(u) {
			sum.OtherPhase++
			continue
		}
		if _, ok := p.Done(recs, u); ok {
			sum.Skipped++
			continue
		}
		todo = append(todo, u)
	}
	total := len(todo)
	failed := map[string]bool{}
	running := map[string]bool{}
	type result struct {
		u   *Unit
		rec Record
		err error
	}
	results := make(chan result)
	runOne := func(u *Unit) {
		start := time.Now()
		rec, err := opts.Exec.Execute(ctx, p, u, threads)
		rec.Unit, rec.Kind = u.ID, u.Kind
		rec.Seconds, rec.Threads = time.Since(start).Seconds(), threads
		rec.Time = time.Now().UTC().Format(time.RFC3339)
		results <- result{u, rec, err}
	}
	// ready reports whether u can start now, and whether it never can (a
	// model it needs failed, or another shard or phase makes it and it is
	// not made yet).
	ready := func(u *Unit) (ok, never bool, why string) {
		for _, d := range u.Deps {
			du := p.byID[d]
			if _, done := p.Done(recs, du); done {
				continue
			}
			if failed[d] {
				return false, true, "blocked"
			}
			if !opts.Shard.Owns(d) || !inPhase(du) {
				return false, true, "waiting"
			}
			return false, false, ""
		}
		return true, false, ""
	}
	done := 0
	for len(todo) > 0 || len(running) > 0 {
		// Start what can start.
		var rest []*Unit
		for _, u := range todo {
			if ctx.Err() != nil {
				rest = append(rest, u)
				continue
			}
			ok, never, why := ready(u)
			switch {
			case never && why == "waiting":
				sum.Waiting = append(sum.Waiting, u.ID)
			case never:
				sum.Blocked = append(sum.Blocked, u.ID)
			case ok && len(running) < opts.Jobs:
				running[u.ID] = true
				if opts.OnEvent != nil {
					opts.OnEvent(Event{Unit: u, Kind: "start", Done: done, Total: total})
				}
				go runOne(u)
			default:
				rest = append(rest, u)
			}
		}
		todo = rest
		if len(running) == 0 {
			break // nothing running and nothing startable: cancelled, or only waiting units remain
		}
		r := <-results
		delete(running, r.u.ID)
		if r.err == nil {
			r.err = w.Append(r.rec)
		}
		if r.err != nil {
			failed[r.u.ID] = true
			if ctx.Err() == nil {
				sum.Failed++
				sum.Errors = append(sum.Errors, fmt.Errorf("%s: %w", r.u.ID, r.err))
			}
			if opts.OnEvent != nil {
				opts.OnEvent(Event{Unit: r.u, Kind: "failed", Err: r.err, Done: done, Total: total})
			}
			continue
		}
		recs.add(r.rec)
		done++
		sum.Ran++
		if opts.OnEvent != nil {
			rec := r.rec
			opts.OnEvent(Event{Unit: r.u, Kind: "done", Record: &rec, Done: done, Total: total})
		}
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	if len(sum.Errors) > 0 {
		msgs := make([]string, len(sum.Errors))
		for i, e := range sum.Errors {
			msgs[i] = e.Error()
		}
		return sum, fmt.Errorf("%d units failed:\n  %s", len(sum.Errors), strings.Join(msgs, "\n  "))
	}
	return sum, nil
}
