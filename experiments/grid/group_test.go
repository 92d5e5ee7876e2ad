package grid

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"modelstitch/torch/vision/datasets"
)

// TestGroupsAndShards checks the grouping of the tiny plan's stitch units
// (one group per pair and seed, cuts in network order, train units alone)
// and that shards own whole groups and every unit exactly once.
func TestGroupsAndShards(t *testing.T) {
	s, err := Load("testdata/tiny.toml", testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s, t.TempDir(), CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	gs := Groups(p.Units)
	var sizes []int
	for _, g := range gs {
		sizes = append(sizes, len(g))
		for i, u := range g {
			if GroupKey(u) != GroupKey(g[0]) {
				t.Errorf("group of %s holds %s (keys %s, %s)", g[0].ID, u.ID, GroupKey(g[0]), GroupKey(u))
			}
			if i > 0 && u.CutIndex <= g[i-1].CutIndex {
				t.Errorf("group of %s: cut %s after %s", g[0].ID, u.Cut, g[i-1].Cut)
			}
		}
	}
	// a, b, long, random alone; then a-b (two cuts), early-b (one), random-b (two).
	if want := []int{1, 1, 1, 1, 2, 1, 2}; !reflect.DeepEqual(sizes, want) {
		t.Errorf("group sizes %v, want %v", sizes, want)
	}
	if err := CheckGroup(append(append([]*Unit{}, gs[4]...), gs[5][0])); err == nil {
		t.Errorf("two pairs' units accepted as one group")
	}
	if err := CheckGroup(gs[0]); err == nil {
		t.Errorf("a train unit accepted in a group")
	}
	for n := 1; n <= 4; n++ {
		for _, g := range gs {
			owner := -1
			for _, u := range g {
				owners := 0
				for i := range n {
					if (Shard{i, n}).OwnsUnit(u) {
						owners++
						if owner >= 0 && owner != i {
							t.Errorf("%d shards: group of %s split between shards %d and %d", n, g[0].ID, owner, i)
						}
						owner = i
					}
				}
				if owners != 1 {
					t.Errorf("%d shards: %s has %d owners", n, u.ID, owners)
				}
			}
		}
	}
}

// TestGroupedRowsEqualSingle stitches one pair at four cuts as one group
// (one Runner call: one bottom pass, shared caches) and another at two cuts
// with batch statistics (the Runner's plain path), then each cut alone and
// the last two cuts of the first pair as a group of their own, and checks
// that every cut's stitch result is the same to the bit whichever cuts ran
// with it: each cut reseeds the generator, the fitting subset and batch
// order are pure functions of the seed, and the cached activations at a cut
// are computed by the same operations on the same batches however the cache
// got there.
func TestGroupedRowsEqualSingle(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and stitches real models; runs without -short")
	}
	if _, err := os.Stat(filepath.Join(datasets.DefaultFashionMNISTDir, "train-images-idx3-ubyte.gz")); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	s, err := Load("testdata/group.toml", testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s, t.TempDir(), CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	var starts []Event
	x := &InProcess{}
	sum, err := Run(context.Background(), p, Options{Exec: x, Cores: 1, OnEvent: func(e Event) {
		if e.Kind == EventStart {
			starts = append(starts, e)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ran != 8 || len(starts) != 4 || len(starts[2].Group) != 4 || len(starts[3].Group) != 2 {
		t.Fatalf("run: %+v, %d starts (want 2 trainings, a group of 4 cuts and one of 2)", sum, len(starts))
	}
	recs, err := ReadRecords(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	stitches := append(append([]*Unit{}, p.PairUnits["a-b"]...), p.PairUnits["a-b-train"]...)
	grouped := map[string]*StitchResult{}
	for _, u := range stitches {
		r, ok := recs.Get(u.ID)
		if !ok || r.Stitch == nil || r.Stitch.CKA == nil || r.Stitch.Cut != u.Cut || r.Stitch.Device != "cpu" || r.CPUSeconds <= 0 {
			t.Fatalf("grouped record of %s: %+v", u.ID, r)
		}
		grouped[u.ID] = r.Stitch
	}
	same := func(how string, u *Unit, got *StitchResult) {
		t.Helper()
		if want := grouped[u.ID]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s differs from the grouped run's row:\n got  %s\n want %s", how, u.ID, show(got), show(want))
		}
	}
	for _, u := range stitches {
		r, err := x.Execute(context.Background(), p, u, 1)
		if err != nil {
			t.Fatal(err)
		}
		same("alone", u, r.Stitch)
	}
	last := p.PairUnits["a-b"][2:]
	var n int
	if err := x.ExecuteGroup(context.Background(), p, last, 1, func(r Record) {
		same("with the last cut only", last[n], r.Stitch)
		n++
	}); err != nil || n != len(last) {
		t.Fatalf("group of the last two cuts: %d records, %v", n, err)
	}
	// A cancelled context stops the group before its next cut: the first
	// cut's record is out, the second never starts.
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = x.ExecuteGroup(ctx, p, last, 1, func(r Record) { n++; cancel() })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("cancelled after the first cut: %d records, %v", n, err)
	}
}

// show prints a stitch result's scores with every digit.
func show(r *StitchResult) string {
	f := func(v *float64) string {
		if v == nil {
			return "nil"
		}
		return strconv.FormatFloat(*v, 'g', -1, 64)
	}
	return fmt.Sprintf("top %v bottom %s stitched %v penalty %v direct %s cka %s unbiased %s (%+v)", r.TopAcc, f(r.BottomAcc),
		r.StitchedAcc, r.Penalty, f(r.DirectAcc), f(r.CKA), f(r.CKAUnbiased), *r)
}

// TestEstimate checks the time-left estimate: unknown while a kind with
// units left has none finished, then units left × mean time / jobs.
func TestEstimate(t *testing.T) {
	units := []*Unit{{Kind: UnitTrain}, {Kind: UnitStitch}, {Kind: UnitStitch}, {Kind: UnitStitch}, {Kind: UnitStitch}}
	e := NewEstimate(units, 2)
	if e.Left() != 0 {
		t.Errorf("nothing finished: %v left, want 0 (unknown)", e.Left())
	}
	e.Finished(UnitStitch, 30)
	if e.Left() != 0 {
		t.Errorf("no train unit finished but one left: %v, want 0 (unknown)", e.Left())
	}
	e.Finished(UnitTrain, 100)
	e.Finished(UnitStitch, 50)
	// Two stitch units left at a mean of 40 s, two jobs: 40 s.
	if got := e.Left(); got != 40*time.Second {
		t.Errorf("left %v, want 40s", got)
	}
	e.Failed(UnitStitch)
	if got := e.Left(); got != 20*time.Second {
		t.Errorf("after a failure: left %v, want 20s", got)
	}
}
