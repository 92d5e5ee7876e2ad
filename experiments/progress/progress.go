// Package progress reports how far long computations have got, as events
// handed to a callback; it draws nothing. A front end (cmd/stitch) renders the
// events: a bar on a terminal, one line per finished stage in a log.
package progress

import (
	"fmt"
	"time"
)

// Event is one report: either a stage's progress (Stage set) or a one-off
// Note.
type Event struct {
	// Stage names what is being done: "epoch 2/5", "test accuracy".
	Stage string
	// Done of Total Units are finished (Total 0: unknown).
	Done, Total int
	// Unit is what Done and Total count: "batches", "images", "steps".
	Unit string
	// Elapsed is the time since the stage began.
	Elapsed time.Duration
	// Detail holds the stage's running figures, e.g. "loss 0.412 acc 85.1%".
	Detail string
	// End marks a stage's last event.
	End bool
	// Note, when set, is a message rather than a stage's progress, e.g.
	// "resuming x.pt after epoch 2 of 5".
	Note string
}

// Func receives events. A nil Func discards them; its methods may be called
// on nil.
type Func func(Event)

// Notef reports a message.
func (f Func) Notef(format string, args ...any) {
	if f != nil {
		f(Event{Note: fmt.Sprintf(format, args...)})
	}
}

// Start begins a stage of total units and returns its tracker.
func (f Func) Start(stage, unit string, total int) *Stage {
	return &Stage{f: f, ev: Event{Stage: stage, Unit: unit, Total: total}, start: time.Now()}
}

// Stage tracks one stage of a computation. Its methods do nothing when it
// was started from a nil Func.
type Stage struct {
	f     Func
	ev    Event
	start time.Time
}

// Add counts n more units done and reports the stage's progress.
func (s *Stage) Add(n int) {
	if s == nil || s.f == nil || s.ev.End {
		return
	}
	s.ev.Done += n
	s.ev.Elapsed = time.Since(s.start)
	s.f(s.ev)
}

// SetDetail sets the running figures reported with the next event.
func (s *Stage) SetDetail(format string, args ...any) {
	if s == nil || s.f == nil {
		return
	}
	s.ev.Detail = fmt.Sprintf(format, args...)
}

// End reports the stage finished (once; later calls do nothing).
func (s *Stage) End() {
	if s == nil || s.f == nil || s.ev.End {
		return
	}
	s.ev.End = true
	s.ev.Elapsed = time.Since(s.start)
	s.f(s.ev)
}
