package inprocess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"modelstitch/experiments/grid"
	"modelstitch/torch/vision/datasets"
)

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
	s, err := grid.Load("../testdata/group.toml", Vocabulary())
	if err != nil {
		t.Fatal(err)
	}
	p, err := grid.NewPlan(s, t.TempDir(), CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	var starts []grid.Event
	x := &InProcess{}
	sum, err := grid.Run(context.Background(), p, grid.Options{Exec: x, Cores: 1, OnEvent: func(e grid.Event) {
		if e.Kind == grid.EventStart {
			starts = append(starts, e)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ran != 8 || len(starts) != 4 || len(starts[2].Group) != 4 || len(starts[3].Group) != 2 {
		t.Fatalf("run: %+v, %d starts (want 2 trainings, a group of 4 cuts and one of 2)", sum, len(starts))
	}
	recs, err := grid.ReadRecords(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	stitches := append(append([]*grid.Unit{}, p.PairUnits["a-b"]...), p.PairUnits["a-b-train"]...)
	grouped := map[string]*grid.StitchResult{}
	for _, u := range stitches {
		r, ok := recs.Get(u.ID)
		if !ok || r.Stitch == nil || r.Stitch.CKA == nil || r.Stitch.Cut != u.Cut || r.Stitch.Device != "cpu" || r.CPUSeconds <= 0 {
			t.Fatalf("grouped record of %s: %+v", u.ID, r)
		}
		grouped[u.ID] = r.Stitch
	}
	same := func(how string, u *grid.Unit, got *grid.StitchResult) {
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
	if err := x.ExecuteGroup(context.Background(), p, last, 1, func(r grid.Record) {
		same("with the last cut only", last[n], r.Stitch)
		n++
	}); err != nil || n != len(last) {
		t.Fatalf("group of the last two cuts: %d records, %v", n, err)
	}
	// A cancelled context stops the group before its next cut: the first
	// cut's record is out, the second never starts.
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = x.ExecuteGroup(ctx, p, last, 1, func(r grid.Record) { n++; cancel() })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("cancelled after the first cut: %d records, %v", n, err)
	}
}

// show prints a stitch result's scores with every digit.
func show(r *grid.StitchResult) string {
	f := func(v *float64) string {
		if v == nil {
			return "nil"
		}
		return strconv.FormatFloat(*v, 'g', -1, 64)
	}
	return fmt.Sprintf("top %v bottom %s stitched %v penalty %v direct %s cka %s unbiased %s (%+v)", r.TopAcc, f(r.BottomAcc),
		r.StitchedAcc, r.Penalty, f(r.DirectAcc), f(r.CKA), f(r.CKAUnbiased), *r)
}

// TestCommittedRowsStayUnits checks that every row committed for the
// Fashion-MNIST spec is still one of its units: a change to the spec or to
// how units are identified that would orphan (and so recompute) finished
// work fails here. The exceptions are listed: rows replaced on purpose.
func TestCommittedRowsStayUnits(t *testing.T) {
	const dir = "../../runs/paper-fmnist"
	if _, err := os.Stat(grid.RowsDir(dir)); err != nil {
		t.Skip("no committed rows")
	}
	s, err := grid.Load("../../paper-fmnist.toml", Vocabulary())
	if err != nil {
		t.Fatal(err)
	}
	p, err := grid.NewPlan(s, dir, CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := grid.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if recs.Len() == 0 {
		t.Skip("no committed rows")
	}
	// Experiment 10's random pair under the paper's recipe without
	// augmentation (default init, Adam 1e-3, 2 epochs on 6,000 images): the
	// pair now uses the paper recipe with crop-and-flip.
	replaced := map[string]bool{
		"stitch/random~s1/stem/s0-da22b531": true, "stitch/random~s1/layer1.1/s0-42520b64": true,
		"stitch/random~s1/layer2.1/s0-437b4457": true, "stitch/random~s1/layer3.1/s0-742da16b": true,
		"stitch/random~s1/layer4.1/s0-28b391aa": true,
	}
	for _, r := range recs.All() {
		if _, ok := p.Unit(r.Unit); !ok && !replaced[r.Unit] {
			t.Errorf("committed row %s is no longer a unit of the spec", r.Unit)
		}
	}
}

// TestPaperSpecs checks that the shipped specs parse, validate and plan, and
// that every experiment of the paper is there with a verdict rule.
func TestPaperSpecs(t *testing.T) {
	for _, c := range []struct {
		path        string
		trains      int
		minStitches int
	}{
		{"../../paper-fmnist.toml", 14, 150},
		{"../../paper-full.toml", 16, 200},
	} {
		s, err := grid.Load(c.path, Vocabulary())
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		p, err := grid.NewPlan(s, t.TempDir(), CutPoints)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		trains, stitches := 0, 0
		for _, u := range p.Units {
			if u.Kind == grid.UnitTrain {
				trains++
			} else {
				stitches++
			}
		}
		if trains != c.trains || stitches < c.minStitches {
			t.Errorf("%s: %d train and %d stitch units, want %d and at least %d", c.path, trains, stitches, c.trains, c.minStitches)
		}
		ids := map[string]bool{}
		for _, e := range s.Experiments {
			ids[e.ID] = true
			if e.Rule() == nil || e.Paper == "" {
				t.Errorf("%s: experiment %s has no verdict rule or no paper reading", c.path, e.ID)
			}
		}
		for _, want := range []string{"connectivity", "simclr", "more-data", "width", "training-time", "labels", "kernel", "cka", "error-bars", "recipe"} {
			if !ids[want] {
				t.Errorf("%s: no experiment %q", c.path, want)
			}
		}
		// Equal steps where the spec asks for them.
		for _, m := range s.Models {
			if m.Kind == grid.KindTrain && m.Recipe.Steps > 0 {
				split := m.Recipe.TrainSamples
				if split == 0 {
					split = datasets.TrainSplitSizes()[s.Data]
				}
				if got := m.Recipe.Epochs * m.Recipe.StepsPerEpoch(split); got < m.Recipe.Steps || got >= m.Recipe.Steps+m.Recipe.StepsPerEpoch(split) {
					t.Errorf("%s: model %s takes %d steps for a budget of %d", c.path, m.Name, got, m.Recipe.Steps)
				}
			}
		}
	}
	// The Fashion-MNIST spec's equal-step models take exactly the 10k models' 312 steps.
	s, _ := grid.Load("../../paper-fmnist.toml", Vocabulary())
	for _, name := range []string{"s1", "d5k", "d20k"} {
		r := s.Models[name].Recipe
		if steps := r.Epochs * r.StepsPerEpoch(60000); steps != 312 {
			t.Errorf("paper-fmnist model %s takes %d steps, want 312", name, steps)
		}
	}
}
