// Package inprocess runs a grid's units in this process: it is where the
// grid meets libtorch. Its InProcess executor trains models (supervised,
// SimCLR, linear probes) and stitches groups of cuts with experiments/train
// and experiments/stitch; CutPoints lists a model's cut points from its
// network; Vocabulary is what the training code accepts, for checking specs.
// Package grid itself plans, schedules and reports without libtorch.
package inprocess

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
)

// InProcess runs units in this process, one at a time (libtorch's random
// generator is global, so two units at once would not be reproducible; run
// units in child processes for parallel jobs). A cancelled context stops
// training at the next epoch (SimCLR: the next step); stitching stops before
// its next cut (the cut in progress finishes first).
type InProcess struct {
	// Progress, when set, receives the libraries' progress events.
	Progress progress.Func
	// Device is where models are trained and stitched (the zero value is the
	// CPU). It is recorded in the rows but is not part of a unit's id: a row
	// made on one device counts as done on any other (see docs/grid.md).
	Device torch.Device
	mu     sync.Mutex
}

// begin takes the executor and this OS thread for one unit or group and
// sets libtorch's thread count; the returned function releases them.
func (x *InProcess) begin(threads int) func() {
	x.mu.Lock()
	// libtorch's thread count belongs to the OS thread: keep the run on one.
	runtime.LockOSThread()
	torch.SetNumThreads(threads)
	return func() {
		runtime.UnlockOSThread()
		x.mu.Unlock()
	}
}

// Execute runs one unit with the given number of libtorch threads. A stitch
// unit runs as a group of one (ExecuteGroup), so that its row is made
// exactly as it would be among the other cuts of its pair.
func (x *InProcess) Execute(ctx context.Context, p *grid.Plan, u *grid.Unit, threads int) (rec grid.Record, err error) {
	if u.Kind == grid.UnitStitch {
		var got *grid.Record
		err := x.ExecuteGroup(ctx, p, []*grid.Unit{u}, threads, func(r grid.Record) { got = &r })
		if err == nil && got == nil {
			err = fmt.Errorf("stitching %s made no row", u.ID)
		}
		if err != nil {
			return grid.Record{Unit: u.ID, Kind: u.Kind}, err
		}
		return *got, nil
	}
	defer x.begin(threads)()
	if err := ctx.Err(); err != nil {
		return grid.Record{}, err
	}
	rec = grid.Record{Unit: u.ID, Kind: u.Kind}
	cpu0 := cpuSeconds()
	defer func() { rec.CPUSeconds = cpuSeconds() - cpu0 }()
	switch u.Kind {
	case grid.UnitTrain:
		rec.Model, err = x.train(ctx, p, u)
	default:
		err = fmt.Errorf("unknown unit kind %q", u.Kind)
	}
	return rec, err
}

// ExecuteGroup stitches a group of units (Groups: one bottom, top, recipe
// and seed) in one stitch.Runner call over all their cuts: the models and
// the data are loaded once, the halves' own accuracies measured once, and
// the frozen halves' passes over the images shared between the cuts. Each
// cut's record goes to emit as soon as the cut is finished; its CPUSeconds
// is the processor time since the previous record (the first one's includes
// the loading). A cancelled context stops before the next cut.
func (x *InProcess) ExecuteGroup(ctx context.Context, p *grid.Plan, us []*grid.Unit, threads int, emit func(grid.Record)) error {
	if err := grid.CheckGroup(us); err != nil {
		return err
	}
	defer x.begin(threads)()
	if err := ctx.Err(); err != nil {
		return err
	}
	cpu0 := cpuSeconds()
	byCut := map[string]*grid.Unit{}
	for _, u := range us {
		byCut[u.Cut] = u
	}
	return x.stitch(ctx, p, us, func(row results.Row, testN int) {
		u := byCut[row.Cut]
		rec := grid.Record{Unit: u.ID, Kind: u.Kind, Stitch: &grid.StitchResult{Bottom: u.Bottom, Top: u.Top,
			BottomPath: p.Files[u.Bottom].Path, TopPath: p.Files[u.Top].Path, BottomSHA256: row.BottomSHA256, TopSHA256: row.TopSHA256,
			Cut: row.Cut, CutIndex: row.CutIndex,
			Recipe: *u.Recipe, Scores: row.Scores.Rounded(), FitSamples: row.FitSamples, TestSamples: testN, Data: row.Data,
			Device: row.Device}}
		now := cpuSeconds()
		rec.CPUSeconds, cpu0 = now-cpu0, now
		emit(rec)
	})
}

// cpuSeconds is the processor time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// dataConfig is the spec's data set as every unit reads it: the images'
// size and channels are the spec's.
func (x *InProcess) dataConfig(s *grid.Spec) splits.Config {
	return splits.Config{Name: s.Data, Dir: s.DataDir, ImageSize: s.ImageSize, Channels: s.Channels}
}
