package stitch

import (
	"fmt"
	"slices"
	"strings"

	"modelstitch/experiments/invalid"
	"modelstitch/torch/vision"
)

// pairCuts returns the top's cuts and, for each, the bottom's (the same
// names when the two networks have the same cut points). topSpec is a cut,
// a comma list or "all" in the top's names; bottomSpec, when not empty, lists
// the bottom's cuts one for one (explicit pairs, for networks of different
// depths). Without it, networks of different depths are paired at the ends
// of their stages (stem, the last block of each stage, pool): "all" means
// those, and a block inside a stage is refused, since the same name is not
// the same place in a deeper stage (ResNet-50's layer1.1 is mid-stage,
// ResNet-18's the stage's end).
func pairCuts(bottom, top *vision.ResNet, topSpec, bottomSpec string) (topCuts, bottomCuts []string, err error) {
	bottomAll, topAll := bottom.CutPoints(), top.CutPoints()
	if bottomSpec != "" {
		if topCuts, err = top.ParseCuts(topSpec); err != nil {
			return nil, nil, invalid.Wrap("cuts", err)
		}
		if bottomCuts, err = bottom.ParseCuts(bottomSpec); err != nil {
			return nil, nil, invalid.Wrap("bottom cuts", fmt.Errorf("bottom model: %w", err))
		}
		if len(bottomCuts) != len(topCuts) {
			return nil, nil, invalid.Errorf("bottom cuts", "lists %d cuts (%s) for the top's %d (%s): pair them one for one",
				len(bottomCuts), strings.Join(bottomCuts, ","), len(topCuts), strings.Join(topCuts, ","))
		}
		return topCuts, bottomCuts, nil
	}
	if slices.Equal(bottomAll, topAll) {
		if topCuts, err = top.ParseCuts(topSpec); err != nil {
			return nil, nil, invalid.Wrap("cuts", err)
		}
		return topCuts, topCuts, nil
	}
	bottomEnds, topEnds := stageEnds(bottomAll), stageEnds(topAll)
	if len(bottomEnds) != len(topEnds) {
		return nil, nil, invalid.Errorf("bottom cuts", "the bottom has %d stages and the top %d: pair their cuts one for one", len(bottomEnds), len(topEnds))
	}
	for _, f := range strings.Split(topSpec, ",") {
		f = strings.TrimSpace(f)
		switch i := slices.Index(topEnds, f); {
		case f == "":
		case f == "all":
			topCuts, bottomCuts = append(topCuts, topEnds...), append(bottomCuts, bottomEnds...)
		case i >= 0:
			topCuts, bottomCuts = append(topCuts, f), append(bottomCuts, bottomEnds[i])
		case slices.Contains(topAll, f):
			return nil, nil, invalid.Errorf("cuts", "%s is inside a stage of the top (%v), and the bottom (%v) has other stage lengths: "+
				"cut at a stage's end (%s) or pair the cuts one for one", f, top.Config, bottom.Config, strings.Join(topEnds, ", "))
		default:
			_, err := top.ParseCuts(f)
			return nil, nil, invalid.Wrap("cuts", err)
		}
	}
	if len(topCuts) == 0 {
		return nil, nil, invalid.Errorf("cuts", "no cut points in %q; valid: all, %s", topSpec, strings.Join(topEnds, ", "))
	}
	return topCuts, bottomCuts, nil
}

// stageEnds returns the cut points that end a stage: the stem, each layer's
// last block, and pool.
func stageEnds(cuts []string) []string {
	var out []string
	for i, c := range cuts {
		stage, _, inLayer := strings.Cut(c, ".")
		if !inLayer {
			out = append(out, c)
			continue
		}
		if i+1 == len(cuts) || !strings.HasPrefix(cuts[i+1], stage+".") {
			out = append(out, c)
		}
	}
	return out
}
