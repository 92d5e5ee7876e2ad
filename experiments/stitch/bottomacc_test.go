package stitch

import (
	"context"
	"path/filepath"
	"testing"

	"modelstitch/experiments/results"
)

// TestBottomAccuracyFromTheLastCut checks RunAll's bottom accuracy, read
// from the test cache at the last cut to do: rows written before it is known
// get it in the results file, equal to the plain path's full pass; a run
// stopped before its last cut leaves rows without it, which the next run
// completes, whether it has cuts left to do or not. With CompleteRows every
// row handed to OnRow has it.
func TestBottomAccuracyFromTheLastCut(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: fits stitching layers at several cuts")
	}
	bottom := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed2")
	top := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed1")
	tr, te := fashionSplits(t)
	cfg := quickConfig("layer3.1,layer4.1")
	cfg.FitSamples, cfg.CKASamples = 128, 0
	complete := false
	run := func(out, cuts string, speed Speed, stopAfterFirst bool) ([]results.Row, []results.Row, error) {
		c := cfg
		c.Cuts, c.Speed = cuts, speed
		store, err := results.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var reported []results.Row
		r := &Runner{Bottom: bottom, Top: top, Train: tr, Test: te, Config: c, Store: store,
			OnRow: func(row results.Row) {
				reported = append(reported, row)
				if stopAfterFirst {
					cancel()
				}
			}, CompleteRows: complete}
		rows, err := r.Run(ctx)
		return rows, reported, err
	}
	dir := t.TempDir()
	plain, _, err := run("", cfg.Cuts, Speed{Plain: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := *plain[0].BottomAcc

	out := filepath.Join(dir, "all.jsonl")
	rows, reported, err := run(out, cfg.Cuts, Speed{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if reported[0].BottomAcc != nil {
		t.Errorf("the first row was reported with bottom accuracy %v before the last cut", *reported[0].BottomAcc)
	}
	stored, err := results.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range [][]results.Row{rows, stored} {
		if len(set) != 2 {
			t.Fatalf("%d rows, want 2", len(set))
		}
		for _, row := range set {
			if row.BottomAcc == nil || *row.BottomAcc != want {
				t.Errorf("cut %s: bottom accuracy %v, want the plain path's %.2f", row.Cut, row.BottomAcc, want)
			}
		}
	}

	// CompleteRows: every row is complete when handed over.
	complete = true
	if _, reported, err = run("", cfg.Cuts, Speed{}, false); err != nil {
		t.Fatal(err)
	}
	for _, row := range reported {
		if row.BottomAcc == nil || *row.BottomAcc != want {
			t.Errorf("CompleteRows: cut %s reported with bottom accuracy %v, want %.2f", row.Cut, row.BottomAcc, want)
		}
	}
	complete = false

	// Stopped after the first cut: its row lacks the accuracy until a later run.
	for _, later := range []string{cfg.Cuts, "layer3.1"} {
		out := filepath.Join(dir, later+".jsonl")
		if _, _, err := run(out, cfg.Cuts, Speed{}, true); err == nil {
			t.Fatal("a stopped run returned no error")
		}
		stored, err := results.Read(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != 1 || stored[0].BottomAcc != nil {
			t.Fatalf("after the stop: %d rows, bottom accuracy %v; want 1 row without it", len(stored), stored[0].BottomAcc)
		}
		if _, _, err := run(out, later, Speed{}, false); err != nil {
			t.Fatal(err)
		}
		if stored, err = results.Read(out); err != nil {
			t.Fatal(err)
		}
		for _, row := range stored {
			if row.BottomAcc == nil || *row.BottomAcc != want {
				t.Errorf("re-run with cuts %s: cut %s has bottom accuracy %v, want %.2f", later, row.Cut, row.BottomAcc, want)
			}
		}
	}
}
