package grid

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

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
	s, err := newScheduler(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	defer s.w.Close()
	s.loop(s.tasks(s.missing()))
	return s.sum, s.err()
}

// scheduler is the state of one Run: what is done, failed and running, and
// the channel the running tasks report on.
type scheduler struct {
	ctx     context.Context
	p       *Plan
	opts    Options
	threads int // libtorch threads per job
	recs    *Records
	w       *Writer
	sum     *Summary
	est     *Estimate
	// group is the executor when it runs groups of stitch units (nil: one
	// unit at a time).
	group   GroupExecutor
	failed  map[string]bool
	running int
	// done counts the units finished by this run, out of total.
	done, total int
	outcomes    chan outcome
}

// outcome is what a task sends: one per unit (a record or an error), then
// one with end set when the task is over.
type outcome struct {
	u   *Unit
	rec Record
	err error
	end bool
	// handled is closed once the record is written and reported: a task
	// waits for it, so that a group goes on only once its last record is
	// written.
	handled chan struct{}
}

// readiness says whether a unit can start now.
type readiness int

const (
	ready   readiness = iota // every model it needs exists
	notYet                   // a model it needs is being made by this run
	blocked                  // a model it needs failed to train
	waiting                  // a model it needs is made by another shard or phase
)

// newScheduler checks the options, fills in their defaults, reads the
// records and opens the shard's writer.
func newScheduler(ctx context.Context, p *Plan, opts Options) (*scheduler, error) {
	if opts.Exec == nil {
		return nil, errors.New("grid: no executor")
	}
	opts.Jobs = max(1, opts.Jobs)
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
	opts.Phase = phase
	recs, err := ReadRecords(p.Dir)
	if err != nil {
		return nil, err
	}
	w, err := OpenWriter(p.Dir, opts.Shard)
	if err != nil {
		return nil, err
	}
	s := &scheduler{ctx: ctx, p: p, opts: opts, threads: max(1, opts.Cores/opts.Jobs), recs: recs, w: w,
		sum: &Summary{}, failed: map[string]bool{}, outcomes: make(chan outcome)}
	s.group, _ = opts.Exec.(GroupExecutor)
	return s, nil
}

// inPhase reports whether the run's phase includes u.
func (s *scheduler) inPhase(u *Unit) bool { return s.opts.Phase == PhaseAll || u.Kind == s.opts.Phase }

// missing lists the units this run is to do, counting the others in the
// summary: another shard's, another phase's, or done already.
func (s *scheduler) missing() []*Unit {
	var units []*Unit
	for _, u := range s.p.Units {
		switch {
		case !s.opts.Shard.OwnsUnit(u):
			s.sum.NotOwned++
		case !s.inPhase(u):
			s.sum.OtherPhase++
		case s.isDone(u):
			s.sum.Skipped++
		default:
			units = append(units, u)
		}
	}
	s.total = len(units)
	s.est = NewEstimate(units, s.opts.Jobs)
	return units
}

// isDone reports whether u has its record (and its checkpoints).
func (s *scheduler) isDone(u *Unit) bool {
	_, ok := s.p.Done(s.recs, u)
	return ok
}

// tasks splits the units into what runs at once: a group of stitch units
// when the executor runs groups, else one unit each.
func (s *scheduler) tasks(units []*Unit) [][]*Unit {
	if s.group != nil {
		return Groups(units)
	}
	out := make([][]*Unit, len(units))
	for i, u := range units {
		out[i] = []*Unit{u}
	}
	return out
}

// loop starts what can start, then handles what the running tasks report,
// until every task has run or can never run here.
func (s *scheduler) loop(todo [][]*Unit) {
	for len(todo) > 0 || s.running > 0 {
		todo = s.startReady(todo)
		if s.running == 0 {
			return // nothing running and nothing startable: cancelled, or only waiting units remain
		}
		o := <-s.outcomes
		if o.end {
			s.running--
			continue
		}
		s.handle(o)
		close(o.handled)
	}
}

// startReady starts the tasks that can start, within the jobs allowed,
// files those that never can here under Waiting or Blocked, and returns
// the rest.
func (s *scheduler) startReady(todo [][]*Unit) [][]*Unit {
	var rest [][]*Unit
	for _, us := range todo {
		if s.ctx.Err() != nil {
			rest = append(rest, us)
			continue
		}
		// A group's units share their models: the first speaks for all.
		switch r := s.readiness(us[0]); {
		case r == waiting:
			s.sum.Waiting = append(s.sum.Waiting, ids(us)...)
		case r == blocked:
			s.sum.Blocked = append(s.sum.Blocked, ids(us)...)
		case r == ready && s.running < s.opts.Jobs:
			s.start(us)
		default:
			rest = append(rest, us)
		}
	}
	return rest
}

// readiness says whether u can start now, or why not.
func (s *scheduler) readiness(u *Unit) readiness {
	for _, d := range u.Deps {
		du := s.p.byID[d]
		switch {
		case s.isDone(du):
			continue
		case s.failed[d]:
			return blocked
		case !s.opts.Shard.OwnsUnit(du) || !s.inPhase(du):
			return waiting
		}
		return notYet
	}
	return ready
}

// start reports a task's start and runs it in a goroutine of its own.
func (s *scheduler) start(us []*Unit) {
	s.running++
	e := Event{Unit: us[0], Kind: EventStart, Done: s.done, Total: s.total}
	if len(us) > 1 {
		e.Group = us
	}
	s.report(e)
	go s.run(us)
}

// run executes one task, sending each unit's outcome and then the end.
func (s *scheduler) run(us []*Unit) {
	defer func() { s.outcomes <- outcome{end: true} }()
	send := s.sender()
	if s.group == nil || us[0].Kind != UnitStitch {
		rec, err := s.opts.Exec.Execute(s.ctx, s.p, us[0], s.threads)
		send(us[0], rec, err)
		return
	}
	emitted := map[string]bool{}
	err := s.group.ExecuteGroup(s.ctx, s.p, us, s.threads, func(rec Record) {
		for _, u := range us {
			if u.ID == rec.Unit && !emitted[u.ID] {
				emitted[u.ID] = true
				send(u, rec, nil)
				return
			}
		}
	})
	s.unfinished(us, emitted, err, send)
}

// sender returns the function a task sends a unit's outcome with: it stamps
// the record with the unit, its wall time since the task's previous record
// and the threads, and waits until the outcome is handled.
func (s *scheduler) sender() func(u *Unit, rec Record, err error) {
	last := time.Now()
	return func(u *Unit, rec Record, err error) {
		now := time.Now()
		rec.Unit, rec.Kind = u.ID, u.Kind
		rec.Seconds, rec.Threads = now.Sub(last).Seconds(), s.threads
		rec.Time = now.UTC().Format(time.RFC3339)
		last = now
		o := outcome{u: u, rec: rec, err: err, handled: make(chan struct{})}
		s.outcomes <- o
		<-o.handled
	}
}

// unfinished sends the outcome of a group's units that emitted no record:
// the first is the one that failed (or was in flight when the run was
// cancelled); the others never started, and fail with it unless the run
// was cancelled.
func (s *scheduler) unfinished(us []*Unit, emitted map[string]bool, err error, send func(*Unit, Record, error)) {
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
		case s.ctx.Err() != nil:
			continue // cancelled: not started, not failed
		default:
			send(u, Record{}, fmt.Errorf("not run: cut %s of its group failed first", first.Cut))
		}
		if first == nil {
			first = u
		}
	}
}

// handle writes and reports one unit's outcome.
func (s *scheduler) handle(o outcome) {
	if o.err == nil {
		o.err = s.w.Append(o.rec)
	}
	if o.err != nil {
		s.failed[o.u.ID] = true
		s.est.Failed(o.u.Kind)
		if s.ctx.Err() == nil {
			s.sum.Failed++
			s.sum.Errors = append(s.sum.Errors, fmt.Errorf("%s: %w", o.u.ID, o.err))
		}
		s.report(Event{Unit: o.u, Kind: EventFailed, Err: o.err, Done: s.done, Total: s.total, Left: s.est.Left()})
		return
	}
	s.recs.add(o.rec)
	s.est.Finished(o.u.Kind, o.rec.Seconds)
	s.done++
	s.sum.Ran++
	rec := o.rec
	s.report(Event{Unit: o.u, Kind: EventDone, Record: &rec, Done: s.done, Total: s.total, Left: s.est.Left()})
}

// report hands an event to Options.OnEvent, if set.
func (s *scheduler) report(e Event) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e)
	}
}

// err is the run's error: the context's when cancelled, else one listing
// every failed unit.
func (s *scheduler) err() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if len(s.sum.Errors) == 0 {
		return nil
	}
	lines := make([]string, len(s.sum.Errors))
	for i, e := range s.sum.Errors {
		lines[i] = e.Error()
	}
	return fmt.Errorf("%d units failed:\n  %s", len(s.sum.Errors), strings.Join(lines, "\n  "))
}

// ids lists the units' ids.
func ids(us []*Unit) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}
