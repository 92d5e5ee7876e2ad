package grid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// resnet18Cuts are a ResNet-18's cut points, for plans made without networks.
var resnet18Cuts = []string{"stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1", "pool"}

// fakePlan plans testdata/tiny.toml into dir with ResNet-18 cuts for every
// model: no network is built.
func fakePlan(t *testing.T, dir string) *Plan {
	t.Helper()
	s, err := Load("testdata/tiny.toml", testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s, dir, func(*ModelFile, *Plan) ([]string, error) { return resnet18Cuts, nil })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rowLines counts the lines of every rows file under dir, and the ids seen.
func rowLines(t *testing.T, dir string) (int, []string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(RowsDir(dir), "*.jsonl"))
	n := 0
	var ids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			if len(l) > 0 {
				n++
			}
		}
	}
	recs, err := ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs.All() {
		ids = append(ids, r.Unit)
	}
	return n, ids
}

func planIDs(p *Plan) []string {
	var ids []string
	for _, u := range p.Units {
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	return ids
}

// fakeExec is an Executor that trains by writing the checkpoint files and
// stitches by returning a record. It fails the training of the models in
// fail.
type fakeExec struct {
	fail map[string]bool
	mu   sync.Mutex
	ran  []string
}

func (x *fakeExec) Execute(ctx context.Context, p *Plan, u *Unit, threads int) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	x.mu.Lock()
	x.ran = append(x.ran, u.ID)
	x.mu.Unlock()
	if u.Kind == UnitStitch {
		return Record{Stitch: &StitchResult{Bottom: u.Bottom, Top: u.Top, Cut: u.Cut, Recipe: *u.Recipe}}, nil
	}
	if x.fail[u.Model] {
		return Record{}, fmt.Errorf("training %s diverged", u.Model)
	}
	f := p.Files[u.Model]
	paths := []string{f.Path}
	for _, e := range f.Model.Recipe.SaveAt {
		paths = append(paths, SnapshotPath(f.Path, e))
	}
	for _, path := range paths {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return Record{}, err
		}
		if err := os.WriteFile(path, []byte("weights"), 0o644); err != nil {
			return Record{}, err
		}
	}
	return Record{Model: &ModelResult{Name: u.Model, Path: f.Path, TestAcc: 90}}, nil
}

// fakeGroupExec runs groups of stitch units, failing at the cut failCut.
type fakeGroupExec struct {
	fakeExec
	failCut string
	groups  [][]string
}

func (x *fakeGroupExec) ExecuteGroup(ctx context.Context, p *Plan, us []*Unit, threads int, emit func(Record)) error {
	if err := CheckGroup(us); err != nil {
		return err
	}
	x.groups = append(x.groups, ids(us))
	for _, u := range us {
		if u.Cut == x.failCut {
			return fmt.Errorf("stitching at %s ran out of memory", u.Cut)
		}
		rec, err := x.Execute(ctx, p, u, threads)
		if err != nil {
			return err
		}
		rec.Unit = u.ID
		emit(rec)
	}
	return nil
}

// TestRunSchedules runs the tiny grid with a fake executor: every unit
// once, models before the stitches that need them; a rerun finds nothing
// to do; a torn last line is cut off and a second writer of the same rows
// file is refused.
func TestRunSchedules(t *testing.T) {
	p := fakePlan(t, t.TempDir())
	want := planIDs(p)
	x := &fakeExec{}
	sum, err := Run(context.Background(), p, Options{Exec: x, Jobs: 2, Cores: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ran != len(want) || sum.Skipped != 0 || len(sum.Waiting)+len(sum.Blocked)+sum.Failed != 0 {
		t.Errorf("first run: %+v", sum)
	}
	at := map[string]int{}
	for i, id := range x.ran {
		at[id] = i
	}
	for _, u := range p.Units {
		for _, d := range u.Deps {
			if at[d] > at[u.ID] {
				t.Errorf("%s ran before %s, which it needs", u.ID, d)
			}
		}
	}
	n, ids := rowLines(t, p.Dir)
	if n != len(want) || !slices.Equal(ids, want) {
		t.Fatalf("run wrote %d lines for units %v, want %v", n, ids, want)
	}
	recs, _ := ReadRecords(p.Dir)
	for _, r := range recs.All() {
		if r.Threads != 2 || r.Time == "" {
			t.Errorf("record %s: %d threads at %q, want 2 (4 cores, 2 jobs) and a time", r.Unit, r.Threads, r.Time)
		}
	}
	if sum, err := Run(context.Background(), p, Options{Exec: x}); err != nil || sum.Ran != 0 || sum.Skipped != len(want) {
		t.Errorf("rerun of a finished grid: %+v, %v", sum, err)
	}
	for _, st := range p.States(recs, 1) {
		if st.State != StateDone {
			t.Errorf("unit %s is %s after the run", st.ID, st.State)
		}
	}

	// A torn last line (a write cut off by a kill) is skipped and cut off.
	f, err := os.OpenFile(filepath.Join(RowsDir(p.Dir), "all.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"unit":"stitch/x~y/stem/s0-dead","kind":"sti`)
	f.Close()
	recs, err = ReadRecords(p.Dir)
	if err != nil || recs.Torn != 1 || recs.Len() != len(want) {
		t.Fatalf("torn line: %v, %d torn, %d records", err, recs.Torn, recs.Len())
	}
	w, err := OpenWriter(p.Dir, Shard{})
	if err != nil {
		t.Fatal(err)
	}
	defer func(wait time.Duration) { lockWait = wait }(lockWait)
	lockWait = 100 * time.Millisecond
	if _, err := OpenWriter(p.Dir, Shard{0, 1}); err == nil || !strings.Contains(err.Error(), "one process per shard") {
		t.Errorf("a second writer of the same file: %v", err)
	}
	w.Close()
	if recs, _ = ReadRecords(p.Dir); recs.Torn != 0 {
		t.Errorf("the writer left the torn line in place")
	}
}

// TestRunCancelResume cancels a run after its first stitch and resumes it:
// the cancelled run records what it finished and nothing else, and the
// resumed one does exactly the rest.
func TestRunCancelResume(t *testing.T) {
	p := fakePlan(t, t.TempDir())
	want := planIDs(p)
	ctx, cancel := context.WithCancel(context.Background())
	stitched := 0
	sum, err := Run(ctx, p, Options{Exec: &fakeExec{}, OnEvent: func(e Event) {
		if e.Kind == EventDone && e.Unit.Kind == UnitStitch {
			stitched++
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v", err)
	}
	n, _ := rowLines(t, p.Dir)
	if stitched != 1 || n != sum.Ran || n >= len(want) || sum.Failed != 0 {
		t.Fatalf("cancelled run: %d stitched, %d lines, summary %+v", stitched, n, sum)
	}
	recs, _ := ReadRecords(p.Dir)
	missing := 0
	for _, s := range p.States(recs, 1) {
		if s.State != StateDone {
			missing++
		}
	}
	if missing != len(want)-n {
		t.Errorf("plan after the cancelled run: %d units not done, want %d", missing, len(want)-n)
	}
	x := &fakeExec{}
	sum, err = Run(context.Background(), p, Options{Exec: x})
	if err != nil {
		t.Fatal(err)
	}
	n2, ids := rowLines(t, p.Dir)
	if n2 != len(want) || !slices.Equal(ids, want) || sum.Skipped != n || sum.Ran != len(want)-n || len(x.ran) != sum.Ran {
		t.Errorf("resumed run: %d lines for units %v (summary %+v, %d executed), want one line each of %v", n2, ids, sum, len(x.ran), want)
	}
}

// TestRunShardsAndPhases runs the tiny grid as two shards, one of them in
// two phases: the union is the whole grid, and a shard reports stitches
// whose models another shard or phase makes as waiting, not failed.
func TestRunShardsAndPhases(t *testing.T) {
	p := fakePlan(t, t.TempDir())
	want := planIDs(p)
	owned := map[string]int{}
	for _, u := range p.Units {
		if (Shard{0, 2}).OwnsUnit(u) {
			owned[u.Kind]++
		}
	}
	run := func(sh Shard, phase string) *Summary {
		t.Helper()
		sum, err := Run(context.Background(), p, Options{Exec: &fakeExec{}, Shard: sh, Phase: phase})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	// The stitch phase with no model made runs nothing and waits for all.
	early := run(Shard{0, 2}, PhaseStitch)
	if early.Ran != 0 || len(early.Waiting) != owned[UnitStitch] || early.OtherPhase != owned[UnitTrain] || owned[UnitTrain] == 0 {
		t.Errorf("stitch phase before training: %+v, want %d waiting and %d left to the train phase", early, owned[UnitStitch], owned[UnitTrain])
	}
	if _, err := Run(context.Background(), p, Options{Exec: &fakeExec{}, Phase: "stich"}); err == nil || !strings.Contains(err.Error(), "phase") {
		t.Errorf("phase stich: %v", err)
	}
	sum0 := run(Shard{0, 2}, "")
	// Shard 1 in two phases: models only, then stitches only.
	sum1 := run(Shard{1, 2}, PhaseTrain)
	sum1s := run(Shard{1, 2}, PhaseStitch)
	if sum1.Ran != sum1s.OtherPhase || sum1s.Ran != sum1.OtherPhase || sum1s.Ran == 0 || len(sum1s.Waiting) != 0 {
		t.Errorf("shard 1 train phase %+v then stitch phase %+v: want each to run what the other left", sum1, sum1s)
	}
	if sum0.NotOwned+sum1.NotOwned != len(want) || sum0.Failed+sum1.Failed != 0 {
		t.Errorf("shards: %+v and %+v", sum0, sum1)
	}
	sum0b := run(Shard{0, 2}, "")
	if len(sum0b.Waiting) != 0 || sum0b.Ran != len(sum0.Waiting) {
		t.Errorf("shard 0 again: ran %d, want the %d it waited for: %+v", sum0b.Ran, len(sum0.Waiting), sum0b)
	}
	n, ids := rowLines(t, p.Dir)
	if n != len(want) || !slices.Equal(ids, want) {
		t.Errorf("shards wrote %d lines for units %v, want one each of %v", n, ids, want)
	}
}

// TestRunBlocked fails the training of one model: the stitches that need
// it are blocked, not run and not failed; the others run; the error names
// the failed unit.
func TestRunBlocked(t *testing.T) {
	p := fakePlan(t, t.TempDir())
	var events []Event
	sum, err := Run(context.Background(), p, Options{Exec: &fakeExec{fail: map[string]bool{"random": true}}, OnEvent: func(e Event) {
		events = append(events, e)
	}})
	randomUnit := p.Files["random"].Unit
	if err == nil || !strings.Contains(err.Error(), "1 units failed") || !strings.Contains(err.Error(), randomUnit+": training random diverged") {
		t.Fatalf("run with a failed model: %v", err)
	}
	blocked := ids(p.PairUnits["random-b"])
	slices.Sort(sum.Blocked)
	slices.Sort(blocked)
	if sum.Failed != 1 || !slices.Equal(sum.Blocked, blocked) || len(sum.Waiting) != 0 || sum.Ran != len(p.Units)-1-len(blocked) {
		t.Errorf("summary %+v, want 1 failed and %v blocked", sum, blocked)
	}
	failed := 0
	for _, e := range events {
		if e.Kind == EventFailed {
			failed++
			if e.Unit.ID != randomUnit || e.Err == nil {
				t.Errorf("failed event %+v", e)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed events, want 1", failed)
	}
}

// TestRunGroups runs the stitch units of a pair and seed as one group: one
// start event naming the group; when a cut fails, the cuts after it fail as
// not run, the cuts before it stay done, and a rerun does only the rest.
func TestRunGroups(t *testing.T) {
	p := fakePlan(t, t.TempDir())
	x := &fakeGroupExec{failCut: "layer4.1"}
	var starts []Event
	sum, err := Run(context.Background(), p, Options{Exec: x, OnEvent: func(e Event) {
		if e.Kind == EventStart {
			starts = append(starts, e)
		}
	}})
	if err == nil {
		t.Fatal("a group with a failing cut: no error")
	}
	groups, ran := 0, 0
	for _, g := range x.groups {
		if len(g) > 1 {
			ran++
		}
	}
	for _, e := range starts {
		if len(e.Group) > 1 {
			groups++
			if e.Unit != e.Group[0] {
				t.Errorf("group start names %s, not its first unit %s", e.Unit.ID, e.Group[0].ID)
			}
		}
	}
	// a-b and random-b: stem and layer4.1 in one group each.
	if groups != ran || groups != 2 {
		t.Errorf("%d group starts for %d groups of several cuts run, want 2", groups, ran)
	}
	var layer41 []string
	for _, u := range p.Units {
		if u.Cut == "layer4.1" {
			layer41 = append(layer41, u.ID)
		}
	}
	if sum.Failed != len(layer41) {
		t.Errorf("%d failed, want the %d layer4.1 units: %+v", sum.Failed, len(layer41), sum)
	}
	for _, e := range sum.Errors {
		if !strings.Contains(e.Error(), "ran out of memory") {
			t.Errorf("error %v: want the cut's own error", e)
		}
	}
	x.failCut = ""
	sum, err = Run(context.Background(), p, Options{Exec: x})
	if err != nil || sum.Ran != len(layer41) {
		t.Errorf("rerun without failures: %+v, %v; want the %d layer4.1 units", sum, err, len(layer41))
	}
	// A group whose first cut fails takes the others with it.
	x2 := &fakeGroupExec{failCut: "stem"}
	p2 := fakePlan(t, t.TempDir())
	sum, _ = Run(context.Background(), p2, Options{Exec: x2})
	notRun := 0
	for _, e := range sum.Errors {
		if strings.Contains(e.Error(), "not run: cut stem of its group failed first") {
			notRun++
		}
	}
	if notRun == 0 {
		t.Errorf("no unit failed as not run after its group's first cut failed: %v", sum.Errors)
	}
}
