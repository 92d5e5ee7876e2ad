package inprocess

import (
	"context"
	"fmt"
	"strings"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
)

// stitch fits and scores the stitching layers of a group of units (one
// bottom, top, recipe and seed) in one stitch.Runner call over their cuts,
// handing each finished cut's row to onRow.
func (x *InProcess) stitch(ctx context.Context, p *grid.Plan, us []*grid.Unit, onRow func(row results.Row, testN int)) error {
	u0 := us[0]
	bf, tf := p.Files[u0.Bottom], p.Files[u0.Top]
	top, err := models.Load(tf.Path, models.LoadOptions{Device: x.Device})
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	defer top.Free()
	bottom, err := models.Load(bf.Path, models.LoadOptions{Device: x.Device})
	if err != nil {
		return fmt.Errorf("bottom: %w", err)
	}
	defer bottom.Free()
	dc := x.dataConfig(p.Spec)
	dc.TestSamples = p.Spec.TestSamples // the same test images for every unit (subset seed 0)
	trainSet, testSet, err := splits.Load(dc)
	if err != nil {
		return err
	}
	r := *u0.Recipe
	cuts := make([]string, len(us))
	for i, u := range us {
		cuts[i] = u.Cut
	}
	cfg := stitch.Defaults()
	cfg.Cuts, cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Seed = strings.Join(cuts, ","), r.Epochs, r.Batch, r.LR, r.Seed
	cfg.FitSamples, cfg.LSSamples, cfg.KernelSize, cfg.Init = r.FitSamples, r.LSSamples, r.KernelSize, r.Init
	cfg.FitAugment = r.FitAugment
	cfg.FrozenBN, cfg.CKASamples, cfg.Data, cfg.Progress = r.FrozenBN, r.CKASamples, p.Spec.Data, x.Progress
	cfg.Device = x.Device
	store, err := results.Open("")
	if err != nil {
		return err
	}
	// Each row becomes a unit's record as its cut finishes, so it must be
	// complete then (CompleteRows: the bottom's accuracy comes first).
	runner := &stitch.Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg, Store: store, Context: ctx,
		OnRow: func(row results.Row) { onRow(row, testSet.N) }, CompleteRows: true}
	rows, err := runner.Run()
	if err != nil {
		return err
	}
	if len(rows) != len(us) {
		return fmt.Errorf("stitching at %s gave %d rows, want %d", cfg.Cuts, len(rows), len(us))
	}
	return nil
}
