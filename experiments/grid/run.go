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

// GroupExecutor is an Executor that also runs a group of stitch units (see
// Groups: one bottom, top, recipe and seed, several cuts) at once, sharing the
// models, the data and the frozen halves' passes between the cuts. Run uses
// it for stitch units when the executor has it.
type GroupExecutor interface {
	Executor
	// ExecuteGroup runs the units, calling emit with each unit's record as
	// soon as that unit is finished. It returns an error when it could not
	// finish them all; the records emitted stay valid.
	ExecuteGroup(ctx context.Context, p *Plan, us []*Unit, threads int, emit func(Record)) error
}

// Options configure Run.
type Options struct {
	// Jobs is how many units (or groups of stitch units) run at once (default 1).
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
	Unit *Unit
	// Group, in a "start" event of a group of stitch units, lists its units
	// (Unit is the first); nil when Unit runs alone.
	Group  []*Unit
	Kind   string // "start", "done", "failed"
	Record *Record
	Err    error
	// Done and Total count this run's owned units.
	Done, Total int
	// Left estimates the wall time this run has left (see Estimate), in a
	// "done" or "failed" event; 0 when it cannot tell yet.
	Left time.Duration
}

// Estimate predicts the wall time left of a run: for each kind of unit, the
// units left times the mean wall time of the units of that kind finished so
// far (a group's first cut carries its loading, so the mean includes a
// group's share of it), all divided by the jobs running at once. It returns
// 0 while some kind with units left has none finished.
type Estimate struct {
	jobs  int
	left  map[string]int
	secs  map[string]float64
	count map[string]int
}

// NewEstimate starts an estimate for the given units run jobs at a time.
func NewEstimate(units []*Unit, jobs int) *Estimate {
	e := &Estimate{jobs: max(1, jobs), left: map[string]int{}, secs: map[string]float64{}, count: map[string]int{}}
	for _, u := range units {
		e.left[u.Kind]++
	}
	return e
}

// Finished counts a unit of kind as done in seconds of wall time.
func (e *Estimate) Finished(kind string, seconds float64) {
	e.left[kind]--
	e.secs[kind] += seconds
	e.count[kind]++
}

// Failed counts a unit of kind as no longer left, without a time.
func (e *Estimate) Failed(kind string) { e.left[kind]-- }

// Left is the estimated wall time left (0: not known yet, or nothing left).
func (e *Estimate) Left() time.Duration {
	total := 0.0
	for k, n := range e.left {
		if n <= 0 {
			continue
		}
		if e.count[k] == 0 {
			return 0
		}
		total += float64(n) * e.secs[k] / float64(e.count[k])
	}
	return time.Duration(total / float64(e.jobs) * float64(time.Second))
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
// When the executor is a GroupExecutor, the missing stitch units of one
// bottom, top, recipe and seed run together (Groups), and a shard owns whole
// groups (Shard.OwnsUnit). Each finished unit's record is appended (one line,
// synced) before the next is reported, so a killed run loses at most the
// units in flight (of a group: the cut in flight) and a rerun does exactly
// those again. Cancelling ctx stops starting units and stops those in flight
// as soon as the executor can (a child process is killed).
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
	var units []*Unit
	for _, u := range p.Units {
		if !opts.Shard.OwnsUnit(u) {
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
		units = append(units, u)
	}
	total := len(units)
	est := NewEstimate(units, opts.Jobs)
	group, grouped := opts.Exec.(GroupExecutor)
	var todo [][]*Unit // tasks: one unit, or a group of stitch units
	if grouped {
		todo = Groups(units)
	} else {
		for _, u := range units {
			todo = append(todo, []*Unit{u})
		}
	}
	failed := map[string]bool{}
	running := 0
	// A task sends one msg per unit (a record or an error) and waits for
	// its handled channel to close (the record written and reported), then
	// sends one with end set.
	type msg struct {
		u       *Unit
		rec     Record
		err     error
		end     bool
		handled chan struct{}
	}
	msgs := make(chan msg)
	runTask := func(us []*Unit) {
		last := time.Now()
		send := func(u *Unit, rec Record, err error) {
			now := time.Now()
			rec.Unit, rec.Kind = u.ID, u.Kind
			rec.Seconds, rec.Threads = now.Sub(last).Seconds(), threads
			rec.Time = now.UTC().Format(time.RFC3339)
			last = now
			m := msg{u: u, rec: rec, err: err, handled: make(chan struct{})}
			msgs <- m
			<-m.handled // so a group goes on only once its last record is written
		}
		defer func() { msgs <- msg{end: true} }()
		if !grouped || us[0].Kind != UnitStitch {
			rec, err := opts.Exec.Execute(ctx, p, us[0], threads)
			send(us[0], rec, err)
			return
		}
		emitted := map[string]bool{}
		err := group.ExecuteGroup(ctx, p, us, threads, func(rec Record) {
			for _, u := range us {
				if u.ID == rec.Unit && !emitted[u.ID] {
					emitted[u.ID] = true
					send(u, rec, nil)
					return
				}
			}
		})
		// The units left: the first is the one that failed (or was in
		// flight when the run was cancelled); the others never started.
		var first *Unit
		for _, u := range us {
			if emitted[u.ID] {
				continue
			}
			switch {
			case first == nil && err == nil:
				send(u, Record{}, errors.New("its group's run ended without its record"))
			case first == nil:
				send(u, Record{}, err)
			case ctx.Err() != nil:
				continue // cancelled: not started, not failed
			default:
				send(u, Record{}, fmt.Errorf("not run: cut %s of its group failed first", first.Cut))
			}
			if first == nil {
				first = u
			}
		}
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
			if !opts.Shard.OwnsUnit(du) || !inPhase(du) {
				return false, true, "waiting"
			}
			return false, false, ""
		}
		return true, false, ""
	}
	ids := func(us []*Unit) []string {
		out := make([]string, len(us))
		for i, u := range us {
			out[i] = u.ID
		}
		return out
	}
	done := 0
	// handle writes and reports one unit's outcome.
	handle := func(r msg) {
		if r.err == nil {
			r.err = w.Append(r.rec)
		}
		if r.err != nil {
			failed[r.u.ID] = true
			est.Failed(r.u.Kind)
			if ctx.Err() == nil {
				sum.Failed++
				sum.Errors = append(sum.Errors, fmt.Errorf("%s: %w", r.u.ID, r.err))
			}
			if opts.OnEvent != nil {
				opts.OnEvent(Event{Unit: r.u, Kind: "failed", Err: r.err, Done: done, Total: total, Left: est.Left()})
			}
			return
		}
		recs.add(r.rec)
		est.Finished(r.u.Kind, r.rec.Seconds)
		done++
		sum.Ran++
		if opts.OnEvent != nil {
			rec := r.rec
			opts.OnEvent(Event{Unit: r.u, Kind: "done", Record: &rec, Done: done, Total: total, Left: est.Left()})
		}
	}
	for len(todo) > 0 || running > 0 {
		// Start what can start.
		var rest [][]*Unit
		for _, us := range todo {
			if ctx.Err() != nil {
				rest = append(rest, us)
				continue
			}
			// A group's units share their models: the first speaks for all.
			ok, never, why := ready(us[0])
			switch {
			case never && why == "waiting":
				sum.Waiting = append(sum.Waiting, ids(us)...)
			case never:
				sum.Blocked = append(sum.Blocked, ids(us)...)
			case ok && running < opts.Jobs:
				running++
				if opts.OnEvent != nil {
					e := Event{Unit: us[0], Kind: "start", Done: done, Total: total}
					if len(us) > 1 {
						e.Group = us
					}
					opts.OnEvent(e)
				}
				go runTask(us)
			default:
				rest = append(rest, us)
			}
		}
		todo = rest
		if running == 0 {
			break // nothing running and nothing startable: cancelled, or only waiting units remain
		}
		r := <-msgs
		if r.end {
			running--
			continue
		}
		handle(r)
		close(r.handled)
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	if len(sum.Errors) > 0 {
		lines := make([]string, len(sum.Errors))
		for i, e := range sum.Errors {
			lines[i] = e.Error()
		}
		return sum, fmt.Errorf("%d units failed:\n  %s", len(sum.Errors), strings.Join(lines, "\n  "))
	}
	return sum, nil
}
