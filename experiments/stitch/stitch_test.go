package stitch

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/train"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/datasets"
)

var (
	trainedOnce sync.Once
	trainedPath string
	trainedErr  error
)

// trained returns a small ResNet-18 trained on a real Fashion-MNIST subset,
// made once per test run. With -short it skips the test: training takes
// minutes on a loaded CPU.
func trained(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs a ResNet trained on Fashion-MNIST (minutes)")
	}
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	trainedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stitch-test")
		if err != nil {
			trainedErr = err
			return
		}
		cfg := train.Defaults()
		cfg.Data = splits.Config{Name: "fashion-mnist", TrainSamples: 2000, TestSamples: 500, Seed: 1}
		cfg.Epochs, cfg.BatchSize, cfg.Seed, cfg.Progress = 2, 32, 1, nil
		cfg.Out = filepath.Join(dir, "sup.pt")
		_, trainedErr = train.Supervised(cfg)
		trainedPath = cfg.Out
	})
	if trainedErr != nil {
		t.Fatal(trainedErr)
	}
	return trainedPath
}

func fashionSplits(t *testing.T) (*datasets.Dataset, *datasets.Dataset) {
	tr, te, err := splits.Load(splits.Config{Name: "fashion-mnist", TestSamples: 500, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return tr, te
}

func load(t *testing.T, path string) *models.Model {
	m, err := models.Load(path, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

func quickConfig(cuts string) Config {
	c := Quick()
	c.Cuts, c.Epochs, c.FitSamples, c.BatchSize, c.CKASamples, c.Progress = cuts, 1, 500, 64, 200, nil
	return c
}

func TestSelfStitchHasNoPenalty(t *testing.T) {
	path := trained(t)
	tr, te := fashionSplits(t)
	store, err := results.Open("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := quickConfig("all")
	cfg.Init = InitLeastSquares
	m := load(t, path)
	r := &Runner{Bottom: m, Top: load(t, path), Train: tr, Test: te, Config: cfg, Store: store}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(m.Net.CutPoints()) {
		t.Fatalf("%d rows for %d cuts", len(rows), len(m.Net.CutPoints()))
	}
	for _, row := range rows {
		t.Logf("%-9s top %.1f stitched %.1f direct %.1f penalty %+.2f CKA %.3f", row.Cut, row.TopAcc, row.StitchedAcc, *row.DirectAcc, row.Penalty, *row.CKA)
		// The least-squares map of a model onto itself is the identity: the
		// direct match must reproduce the top model exactly. One epoch of
		// fine-tuning on 500 images may move it a little: on 500 test images
		// one image is 0.2 points, so allow 3.
		if math.Abs(*row.DirectAcc-row.TopAcc) > 0.5 {
			t.Errorf("%s: direct match %.2f%% vs top %.2f%%", row.Cut, *row.DirectAcc, row.TopAcc)
		}
		if math.Abs(row.Penalty) > 3 {
			t.Errorf("%s: self-stitching penalty %.2f pp", row.Cut, row.Penalty)
		}
		if row.CKA == nil || *row.CKA < 0.999 {
			t.Errorf("%s: CKA of a model with itself %v", row.Cut, row.CKA)
		}
	}
}

func TestRandomBottomPenaltyGrowsWithDepth(t *testing.T) {
	path := trained(t)
	tr, te := fashionSplits(t)
	top := load(t, path)
	bottom, err := models.NewRandom(top.Meta, 7, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bottom.Free)
	store, _ := results.Open("")
	cfg := quickConfig("stem,layer4.1")
	cfg.Init, cfg.FitSamples = InitLeastSquares, 1000
	r := &Runner{Bottom: bottom, Top: top, Train: tr, Test: te, Config: cfg, Store: store}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	early, late := rows[0], rows[1]
	t.Logf("random bottom: stem penalty %+.2f, layer4.1 penalty %+.2f (top %.2f%%)", early.Penalty, late.Penalty, early.TopAcc)
	if early.BottomAcc == nil || *early.BottomAcc > 30 {
		t.Errorf("an untrained bottom should be near chance, got %v", early.BottomAcc)
	}
	if late.Penalty < early.Penalty+10 {
		t.Errorf("late penalty %.2f should exceed the stem's %.2f by ≥ 10 pp", late.Penalty, early.Penalty)
	}
	if early.Penalty > 10 {
		t.Errorf("a random bottom should stitch at the stem with a small penalty, got %.2f", early.Penalty)
	}
}

func TestResultsResumeAndFields(t *testing.T) {
	path := trained(t)
	tr, te := fashionSplits(t)
	out := filepath.Join(t.TempDir(), "r.jsonl")
	run := func(cuts string) []results.Row {
		store, err := results.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		r := &Runner{Bottom: load(t, path), Top: load(t, path), Train: tr, Test: te, Config: quickConfig(cuts), Store: store}
		rows, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	first := run("layer1.0")
	second := run("layer1.0,pool")
	a, _ := json.Marshal(first[0])
	b, _ := json.Marshal(second[0])
	if string(a) != string(b) {
		t.Errorf("re-run recomputed a stored cut: %+v vs %+v", second[0], first[0])
	}
	stored, err := results.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 {
		t.Fatalf("%d rows on disk, want 2 (one per cut, none repeated)", len(stored))
	}
	raw, _ := os.ReadFile(out)
	line := strings.SplitN(string(raw), "\n", 2)[0]
	for _, f := range []string{"bottom", "top", "cut", "top_acc", "bottom_acc", "stitched_acc", "penalty", "cka", "init", "epochs", "seed"} {
		if !strings.Contains(line, `"`+f+`":`) {
			t.Errorf("JSON row lacks %q: %s", f, line)
		}
	}
}

func TestBadInputs(t *testing.T) {
	path := trained(t)
	tr, te := fashionSplits(t)
	store, _ := results.Open("")
	bad := quickConfig("layer9.9")
	r := &Runner{Bottom: load(t, path), Top: load(t, path), Train: tr, Test: te, Config: bad, Store: store}
	if _, err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "layer9.9") {
		t.Errorf("unknown cut: %v", err)
	}
	if _, err := models.Load(filepath.Join(t.TempDir(), "missing.pt"), models.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "missing.pt") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := NewLayer([]int64{16, 28, 28}, []int64{32, 14, 14}, 1); err == nil || !strings.Contains(err.Error(), "[16 28 28]") || !strings.Contains(err.Error(), "[32 14 14]") {
		t.Errorf("spatial mismatch should name both shapes: %v", err)
	}
	for _, c := range []Config{{Epochs: 0}, {Epochs: 1, BatchSize: 1}} {
		cc := quickConfig("all")
		cc.Epochs = c.Epochs
		if c.BatchSize != 0 {
			cc.BatchSize = c.BatchSize
		}
		if err := cc.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
}

func TestStitchLayerShapesAndTrainableParams(t *testing.T) {
	l, err := NewLayer([]int64{64, 7, 7}, []int64{32, 7, 7}, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(l)
	want := map[string][]int64{"0.weight": {64}, "1.weight": {32, 64, 3, 3}, "1.bias": {32}, "2.weight": {32}}
	got, err := nn.Shapes(l)
	if err != nil {
		t.Fatal(err)
	}
	for k, s := range want {
		if len(got[k]) != len(s) {
			t.Errorf("%s: %v want %v", k, got[k], s)
		}
	}
	x := torch.Randn([]int64{4, 64, 7, 7})
	y := l.Forward(x)
	if s, err := y.Shape(); err != nil || s[1] != 32 || s[2] != 7 {
		t.Errorf("forward: %v %v", s, err)
	}
	lin, err := NewLayer([]int64{128}, []int64{64}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(lin)
	if s, err := lin.Forward(torch.Randn([]int64{4, 128})).Shape(); err != nil || s[1] != 64 {
		t.Errorf("linear stitch: %v %v", s, err)
	}
}

func TestLinearCKA(t *testing.T) {
	x := torch.Randn([]int64{100, 20})
	q := torch.Randn([]int64{20, 20})
	// An invertible linear map of x is not the same as a rotation, but an
	// isotropic scaling is: CKA is invariant to it.
	same, err := LinearCKA(x, x.MulScalar(3))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(same-1) > 1e-9 {
		t.Errorf("CKA(x, 3x) = %v", same)
	}
	other, err := LinearCKA(x, torch.Randn([]int64{100, 20}))
	if err != nil {
		t.Fatal(err)
	}
	mixed, err := LinearCKA(x, x.Mm(q))
	if err != nil {
		t.Fatal(err)
	}
	if !(other < mixed && mixed < 1) {
		t.Errorf("CKA ordering: independent %.3f, linear map %.3f", other, mixed)
	}
	// A failed activation reports its own error, not a sample count.
	bad := torch.Zeros([]int64{-1})
	if _, err := LinearCKA(bad, x); err == nil || !errors.Is(err, bad.Err()) {
		t.Errorf("CKA of an error tensor: %v, want the tensor's error %v", err, bad.Err())
	}
}

func TestWideBottomIntoThinTop(t *testing.T) {
	path := trained(t)
	tr, te := fashionSplits(t)
	top := load(t, path)
	wide := top.Meta
	wide.Width = 0.5
	bottom, err := models.NewRandom(wide, 3, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bottom.Free)
	store, _ := results.Open("")
	cfg := quickConfig("layer2.0,pool")
	cfg.FitSamples, cfg.CKASamples = 200, 100
	r := &Runner{Bottom: bottom, Top: top, Train: tr, Test: te, Config: cfg, Store: store}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].StitchedAcc <= 0 {
		t.Fatalf("rows %+v", rows)
	}
	t.Logf("width 0.5 (random) into 0.25: layer2.0 %.1f%%, pool %.1f%%", rows[0].StitchedAcc, rows[1].StitchedAcc)
}
