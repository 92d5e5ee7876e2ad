package inprocess

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"modelstitch/experiments/grid"
	"modelstitch/torch/vision/datasets"
)

// tinyPlan plans testdata/tiny.toml into dir.
func tinyPlan(t *testing.T, dir string) *grid.Plan {
	t.Helper()
	if _, err := os.Stat(filepath.Join(datasets.DefaultFashionMNISTDir, "train-images-idx3-ubyte.gz")); err != nil {
		if _, err2 := os.Stat(filepath.Join(datasets.DefaultFashionMNISTDir, "train-images-idx3-ubyte")); err2 != nil {
			t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
		}
	}
	s, err := grid.Load("../testdata/tiny.toml", Vocabulary())
	if err != nil {
		t.Fatal(err)
	}
	p, err := grid.NewPlan(s, dir, CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rowLines counts the lines of every rows file under dir, and the ids seen.
func rowLines(t *testing.T, dir string) (int, []string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(grid.RowsDir(dir), "*.jsonl"))
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
	recs, err := grid.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs.All() {
		ids = append(ids, r.Unit)
	}
	return n, ids
}

func planIDs(p *grid.Plan) []string {
	var ids []string
	for _, u := range p.Units {
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestRunCancelResumeShardsReport trains and stitches the tiny grid for real:
// once uninterrupted; once cancelled after its first stitch and resumed; once
// as two shards. Every way ends with exactly one row per unit, the same set of
// units, and a report with figures. (Package grid's tests check the same
// scheduling in -short mode with a fake executor.)
func TestRunCancelResumeShardsReport(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and stitches real models end to end; runs without -short")
	}
	whole := tinyPlan(t, t.TempDir())
	want := planIDs(whole)
	if len(want) != 4+5 { // a, b, random, long; a-b ×2, random-b ×2, early-b ×1
		t.Fatalf("tiny plan has %d units: %v", len(want), want)
	}
	for _, u := range whole.Units {
		if u.Kind == grid.UnitStitch && u.Bottom == "long@1" && (len(u.Deps) != 2 || !strings.HasPrefix(u.Deps[0], "train/long-")) {
			t.Errorf("snapshot unit %s depends on %v, want the long run and b", u.ID, u.Deps)
		}
	}

	// Uninterrupted.
	sum, err := grid.Run(context.Background(), whole, grid.Options{Exec: &InProcess{}, Cores: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ran != len(want) || sum.Skipped != 0 {
		t.Errorf("first run: %+v", sum)
	}
	n, ids := rowLines(t, whole.Dir)
	if n != len(want) || !slices.Equal(ids, want) {
		t.Fatalf("uninterrupted run wrote %d lines for units %v, want %v", n, ids, want)
	}
	recs, _ := grid.ReadRecords(whole.Dir)
	for _, r := range recs.All() {
		if r.Kind == grid.UnitStitch && (r.Stitch == nil || r.Stitch.TestSamples != 200 || r.Stitch.CKA == nil || r.Threads != 2) {
			t.Errorf("stitch record %+v lacks what was asked for", r)
		}
		if r.Kind == grid.UnitTrain && (r.Model == nil || r.Model.TestAcc <= 0) {
			t.Errorf("train record %+v has no accuracy", r)
		}
	}
	if _, err := os.Stat(grid.SnapshotPath(whole.Files["long"].Path, 1)); err != nil {
		t.Errorf("no epoch-1 snapshot of the long run: %v", err)
	}
	// Trained here in full: the records' times are the training's. The same
	// checkpoints found finished by a fresh run are adopted, and say so.
	adopt := t.TempDir()
	for _, r := range recs.All() {
		if r.Kind != grid.UnitTrain {
			continue
		}
		if b := r.Model.EpochsBefore; b == nil || *b != 0 || grid.TrainCost(whole.Files[r.Model.Name].Model, r) != grid.CostKnown {
			t.Errorf("train record of %s: epochs before %v", r.Model.Name, b)
		}
		paths, _ := filepath.Glob(strings.TrimSuffix(whole.Files[r.Model.Name].Path, ".pt") + "*")
		for _, path := range paths {
			b, err := os.ReadFile(path)
			if err == nil {
				err = os.MkdirAll(filepath.Join(adopt, "models"), 0o755)
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(adopt, "models", filepath.Base(path)), b, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	ap := tinyPlan(t, adopt)
	if _, err := grid.Run(context.Background(), ap, grid.Options{Exec: &InProcess{}, Phase: grid.PhaseTrain}); err != nil {
		t.Fatal(err)
	}
	arecs, _ := grid.ReadRecords(adopt)
	for _, r := range arecs.All() {
		m := ap.Files[r.Model.Name].Model
		if b := r.Model.EpochsBefore; b == nil || *b != m.Recipe.Epochs || (m.Recipe.Epochs > 0 && grid.TrainCost(m, r) != grid.CostAdopted) {
			t.Errorf("adopted record of %s: epochs before %v, cost %s", r.Model.Name, b, grid.TrainCost(m, r))
		}
	}
	// A second run finds nothing to do.
	if sum, err := grid.Run(context.Background(), whole, grid.Options{Exec: &InProcess{}}); err != nil || sum.Ran != 0 || sum.Skipped != len(want) {
		t.Errorf("rerun of a finished grid: %+v, %v", sum, err)
	}
	states := whole.States(recs, 1)
	for _, st := range states {
		if st.State != grid.StateDone {
			t.Errorf("unit %s is %s after the run", st.ID, st.State)
		}
	}

	// Cancelled after the first stitch, then resumed.
	dir := t.TempDir()
	p := tinyPlan(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	stitched := 0
	sum, err = grid.Run(ctx, p, grid.Options{Exec: &InProcess{}, OnEvent: func(e grid.Event) {
		if e.Kind == grid.EventDone && e.Unit.Kind == grid.UnitStitch {
			stitched++
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v", err)
	}
	n, _ = rowLines(t, dir)
	if stitched != 1 || n != sum.Ran || n >= len(want) {
		t.Fatalf("cancelled run: %d stitched, %d lines, summary %+v", stitched, n, sum)
	}
	recs, _ = grid.ReadRecords(dir)
	st := p.States(recs, 1)
	missing := 0
	for _, s := range st {
		if s.State != grid.StateDone {
			missing++
		}
	}
	if missing != len(want)-n {
		t.Errorf("plan after the cancelled run: %d units not done, want %d", missing, len(want)-n)
	}
	sum, err = grid.Run(context.Background(), p, grid.Options{Exec: &InProcess{}})
	if err != nil {
		t.Fatal(err)
	}
	n, ids = rowLines(t, dir)
	if n != len(want) || !slices.Equal(ids, want) || sum.Skipped+sum.Ran != len(want) {
		t.Errorf("resumed run: %d lines for units %v (summary %+v), want one line each of %v", n, ids, sum, want)
	}

	// Two shards: the union is the whole grid; a shard reports stitches whose
	// models the other shard makes as waiting, not failed.
	sdir := t.TempDir()
	sp := tinyPlan(t, sdir)
	owned := map[string]int{}
	for _, u := range sp.Units {
		if (grid.Shard{I: 0, N: 2}).OwnsUnit(u) {
			owned[u.Kind]++
		}
	}
	// The stitch phase with no model made runs nothing and waits for all.
	early, err := grid.Run(context.Background(), sp, grid.Options{Exec: &InProcess{}, Shard: grid.Shard{I: 0, N: 2}, Phase: grid.PhaseStitch})
	if err != nil {
		t.Fatal(err)
	}
	if early.Ran != 0 || len(early.Waiting) != owned[grid.UnitStitch] || early.OtherPhase != owned[grid.UnitTrain] || owned[grid.UnitTrain] == 0 {
		t.Errorf("stitch phase before training: %+v, want %d waiting and %d left to the train phase", early, owned[grid.UnitStitch], owned[grid.UnitTrain])
	}
	if _, err := grid.Run(context.Background(), sp, grid.Options{Exec: &InProcess{}, Phase: "stich"}); err == nil || !strings.Contains(err.Error(), "phase") {
		t.Errorf("phase stich: %v", err)
	}
	sum0, err := grid.Run(context.Background(), sp, grid.Options{Exec: &InProcess{}, Shard: grid.Shard{I: 0, N: 2}})
	if err != nil {
		t.Fatal(err)
	}
	// Shard 1 in two phases: models only, then stitches only.
	sum1, err := grid.Run(context.Background(), sp, grid.Options{Exec: &InProcess{}, Shard: grid.Shard{I: 1, N: 2}, Phase: grid.PhaseTrain})
	if err != nil {
		t.Fatal(err)
	}
	sum1s, err := grid.Run(context.Background(), sp, grid.Options{Exec: &InProcess{}, Shard: grid.Shard{I: 1, N: 2}, Phase: grid.PhaseStitch})
	if err != nil {
		t.Fatal(err)
	}
	if sum1.Ran != sum1s.OtherPhase || sum1s.Ran != sum1.OtherPhase || sum1s.Ran == 0 || len(sum1s.Waiting) != 0 {
		t.Errorf("shard 1 train phase %+v then stitch phase %+v: want each to run what the other left", sum1, sum1s)
	}
	if sum0.NotOwned+sum1.NotOwned != len(want) || sum0.Failed+sum1.Failed != 0 {
		t.Errorf("shards: %+v and %+v", sum0, sum1)
	}
	sum0b, err := grid.Run(context.Background(), sp, grid.Options{Exec: &InProcess{}, Shard: grid.Shard{I: 0, N: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum0b.Waiting) != 0 || sum0b.Ran != len(sum0.Waiting) {
		t.Errorf("shard 0 again: ran %d, want the %d it waited for: %+v", sum0b.Ran, len(sum0.Waiting), sum0b)
	}
	n, ids = rowLines(t, sdir)
	if n != len(want) || !slices.Equal(ids, want) {
		t.Errorf("shards wrote %d lines for units %v, want one each of %v", n, ids, want)
	}

	// The report: every experiment's figure and table, verdicts, recipes.
	rdir := t.TempDir()
	res, err := grid.Report(whole, rdir)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Figures) != 4 {
		t.Errorf("report figures %v, want PNG and SVG of 2 experiments", res.Figures)
	}
	for _, fig := range res.Figures {
		if fi, err := os.Stat(fig); err != nil || fi.Size() < 1000 {
			t.Errorf("figure %s: %v", fig, err)
		}
	}
	md, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"## 1. Two seeds and a random bottom", "**Verdict: holds.**", "figures/connectivity.png", "linear CKA per cut",
		"| `a-b` |", "## Models", "## Pairs and stitching recipes", "## Wall time", "snapshots at epochs [1]"} {
		if !bytes.Contains(md, []byte(w)) {
			t.Errorf("report lacks %q", w)
		}
	}
	if res.Verdicts["connectivity"] != grid.Holds || res.Verdicts["time"] != "no rule" {
		t.Errorf("verdicts %v", res.Verdicts)
	}
	// On an empty directory the report says "not yet run".
	res, err = grid.Report(tinyPlan(t, t.TempDir()), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	md, _ = os.ReadFile(res.Path)
	if res.Verdicts["connectivity"] != grid.NotYetRun || !bytes.Contains(md, []byte("not yet run")) || len(res.Figures) != 0 {
		t.Errorf("report of nothing: %v, %d figures", res.Verdicts, len(res.Figures))
	}
}
