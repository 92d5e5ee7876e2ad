package stitch

import (
	"context"
	"runtime/debug"
	"testing"

	"modelstitch/experiments/results"
	"modelstitch/torch"
)

// TestRunAllFreesEachCut stitches shipped models at three cuts with RunAll
// (least-squares start, CKA) with the garbage collector off and checks that
// the number of live tensors is the same after every cut and back where it
// started at the end: every tensor a cut makes is freed by the cut itself,
// none is left to the collector's cleanups. (Left to them, the evaluation
// batches' intermediates grew the default run by gigabytes per cut: the Go
// heap hardly grows, so the collector seldom runs.)
func TestRunAllFreesEachCut(t *testing.T) {
	bottom := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed2")
	top := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed1")
	tr, te := fashionSplits(t)
	cfg := quickConfig("layer3.1,layer4.1,pool")
	cfg.FitSamples, cfg.LSSamples, cfg.CKASamples = 256, 128, 100
	store, err := results.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := torch.LiveTensors()
	var live []int64
	r := &Runner{Bottom: bottom, Top: top, Train: tr, Test: te, Config: cfg, Store: store,
		OnRow: func(results.Row) { live = append(live, torch.LiveTensors()) }}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after := torch.LiveTensors()
	if len(rows) != 3 || len(live) != 3 {
		t.Fatalf("%d rows, %d counts; want 3", len(rows), len(live))
	}
	for i, n := range live {
		if n != live[0] {
			t.Errorf("after cut %s: %d live tensors, after the first cut %d (%+d)", rows[i].Cut, n, live[0], n-live[0])
		}
	}
	// One tensor may stay: a constant that the batch norm makes once per
	// process, on its first training step.
	if after-before > 1 {
		t.Errorf("%d tensors still live after RunAll returned", after-before)
	}
	t.Logf("live tensors: %d before, %v after each cut, %d at the end", before, live, after)
}
