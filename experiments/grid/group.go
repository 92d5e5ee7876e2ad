package grid

import (
	"encoding/json"
	"fmt"
	"slices"
)

// GroupKey is what the stitch units that run together share: the bottom,
// the top and the stitching recipe with its seed (everything in a unit's id
// but the cut). Such units load the same models and data, and the frozen
// halves' passes over the images serve all their cuts at once. A train
// unit's key is its id.
//
// Shards are drawn from the key (OwnsUnit), so a shard runs whole groups.
func GroupKey(u *Unit) string {
	if u.Kind != UnitStitch || u.Recipe == nil {
		return u.ID
	}
	js, _ := json.Marshal(u.Recipe)
	return fmt.Sprintf("stitch/%s~%s/s%d-%s", u.Bottom, u.Top, u.Recipe.Seed, shortHash(string(js)))
}

// OwnsUnit reports whether the shard runs the unit: ShardOf(GroupKey(u), N)
// is I, so that the cuts of a group stay together. Every unit belongs to
// exactly one shard.
func (s Shard) OwnsUnit(u *Unit) bool { return s.N <= 1 || ShardOf(GroupKey(u), s.N) == s.I }

// Groups splits units into the groups that run together, in the order of
// each group's first unit: a train unit alone; the stitch units of one
// GroupKey together, in the order of their cuts in the network.
func Groups(units []*Unit) [][]*Unit {
	var out [][]*Unit
	at := map[string]int{}
	for _, u := range units {
		k := GroupKey(u)
		if i, ok := at[k]; ok && u.Kind == UnitStitch {
			out[i] = append(out[i], u)
			continue
		}
		at[k] = len(out)
		out = append(out, []*Unit{u})
	}
	for _, g := range out {
		slices.SortStableFunc(g, func(a, b *Unit) int { return a.CutIndex - b.CutIndex })
	}
	return out
}

// CheckGroup returns an error unless us is one non-empty group of stitch units.
func CheckGroup(us []*Unit) error {
	if len(us) == 0 {
		return fmt.Errorf("grid: empty group of units")
	}
	cuts := map[string]bool{}
	for _, u := range us {
		if u.Kind != UnitStitch {
			return fmt.Errorf("grid: unit %s is a %s unit; only stitch units run in groups", u.ID, u.Kind)
		}
		if k, k0 := GroupKey(u), GroupKey(us[0]); k != k0 {
			return fmt.Errorf("grid: units %s and %s do not share a bottom, top, recipe and seed (%s, %s)", us[0].ID, u.ID, k0, k)
		}
		if cuts[u.Cut] {
			return fmt.Errorf("grid: cut %s twice in the group of %s", u.Cut, u.ID)
		}
		cuts[u.Cut] = true
	}
	return nil
}
