package grid

import (
	"context"
	"time"

	"modelstitch/experiments/invalid"
)

// Executor does one unit of work and returns its record (Unit, Kind and the
// result; Run fills in the times). Package inprocess has the one that
// trains and stitches in this process; the stitch command also runs units in
// child processes.
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

// EventKind says what happened to a unit.
type EventKind string

// Kinds of events.
const (
	EventStart  EventKind = "start"  // a unit, or a group of stitch units, started
	EventDone   EventKind = "done"   // a unit's record is written
	EventFailed EventKind = "failed" // a unit failed (or was stopped by a cancel)
)

// Event reports progress of a run.
type Event struct {
	Unit *Unit
	// Group, in an EventStart of a group of stitch units, lists its units
	// (Unit is the first); nil when Unit runs alone.
	Group  []*Unit
	Kind   EventKind
	Record *Record // EventDone
	Err    error   // EventFailed
	// Done and Total count this run's owned units.
	Done, Total int
	// Left estimates the wall time this run has left (see Estimate), in an
	// EventDone or EventFailed; 0 when it cannot tell yet.
	Left time.Duration
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

// ParsePhase checks a phase's name; "" is PhaseAll. A bad one is an
// *invalid.Setting of the field "phase".
func ParsePhase(s string) (string, error) {
	switch s {
	case "", PhaseAll:
		return PhaseAll, nil
	case PhaseTrain, PhaseStitch:
		return s, nil
	}
	return "", invalid.Errorf("phase", "must be %s, %s or %s, got %q", PhaseTrain, PhaseStitch, PhaseAll, s)
}
