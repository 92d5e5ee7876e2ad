package stitch

import (
	"context"
	"math"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
)

// TestSelfStitchControl stitches the shipped seed-2 model into the shipped
// seed-1 model (both converged) with the control on, by the converged recipe
// on a smaller budget: the control's rows are in the store, the pair's rows
// carry the self-penalty and the excess over it, and a converged top
// stitched onto itself loses or gains at most a few tenths of a point.
func TestSelfStitchControl(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: fits stitching layers on Fashion-MNIST")
	}
	trainSet, testSet, err := splits.Load(splits.Config{Name: "fashion-mnist", TestSamples: 2000, Seed: 1})
	if err != nil {
		t.Skip(err)
	}
	top, err := models.Load("embedded:fmnist-resnet18-w0.25-sup-seed1", models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Free()
	bottom, err := models.Load("embedded:fmnist-resnet18-w0.25-sup-seed2", models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bottom.Free()
	cfg := Defaults()
	cfg.Cuts, cfg.FitSamples, cfg.ValSamples, cfg.CKASamples, cfg.Progress = "layer3.1,pool", 4000, 2000, 0, nil
	store, err := results.Open("")
	if err != nil {
		t.Fatal(err)
	}
	var control []results.Row
	r := &Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg, Store: store, Control: true,
		OnControlRow: func(row results.Row) { control = append(control, row) }}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(control) != 2 || len(rows) != 2 {
		t.Fatalf("%d control rows and %d rows, want 2 and 2", len(control), len(rows))
	}
	for i, row := range rows {
		c := control[i]
		if c.Bottom != top.Name || c.Top != top.Name || c.Cut != row.Cut {
			t.Errorf("control row %d is %s → %s at %s, want the top onto itself at %s", i, c.Bottom, c.Top, c.Cut, row.Cut)
		}
		if _, ok := store.Done(c); !ok {
			t.Errorf("control row at %s not in the store", c.Cut)
		}
		if row.SelfPenalty == nil || row.ExcessPenalty == nil || *row.SelfPenalty != c.Penalty ||
			math.Abs(*row.ExcessPenalty-(row.Penalty-c.Penalty)) > 1e-9 {
			t.Errorf("%s: self %v excess %v, want the control's %.2f and the difference", row.Cut, row.SelfPenalty, row.ExcessPenalty, c.Penalty)
			continue
		}
		t.Logf("%s: penalty %+.2f, self %+.2f, excess %+.2f (%d steps, stop %s)", row.Cut, row.Penalty, *row.SelfPenalty, *row.ExcessPenalty, row.FitSteps, row.Stop)
		if math.Abs(c.Penalty) > 0.4 {
			t.Errorf("%s: the converged top stitched onto itself scores %+.2f points off its own accuracy, want within 0.4", row.Cut, c.Penalty)
		}
	}
}
