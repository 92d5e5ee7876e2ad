package grid

import (
	"reflect"
	"testing"
	"time"
)

// TestGroupsAndShards checks the grouping of the tiny plan's stitch units
// (one group per pair and seed, cuts in network order, train units alone)
// and that shards own whole groups and every unit exactly once.
func TestGroupsAndShards(t *testing.T) {
	p := fakePlan(t, t.TempDir())
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
