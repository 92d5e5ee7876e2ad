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
	cuts := make([]string, len(us))
	for i, u := range us {
		cuts[i] = u.Cut
	}
	cfg := stitchConfig(*u0.Recipe)
	cfg.Cuts, cfg.Data, cfg.Progress, cfg.Device = strings.Join(cuts, ","), p.Spec.Data, x.Progress, x.Device
	// Each row becomes a unit's record as its cut finishes, so it must be
	// complete then (CompleteRows: the bottom's accuracy comes first). The
	// records are the grid's results: the runner keeps nothing (no Store).
	runner := &stitch.Runner{Bottom: bottom, Top: top, Train: trainSet, Test: testSet, Config: cfg,
		OnRow: func(row results.Row) { onRow(row, testSet.N) }, CompleteRows: true,
		BottomNorm: givenNorm(p, u0.Bottom), TopNorm: givenNorm(p, u0.Top)}
	rows, err := runner.Run(ctx)
	if err != nil {
		return err
	}
	if len(rows) != len(us) {
		return fmt.Errorf("stitching at %s gave %d rows, want %d", cfg.Cuts, len(rows), len(us))
	}
	return nil
}

// stitchConfig is a grid stitching recipe (with its seed) as the stitching
// package's settings; the cuts, data, device and progress are the caller's.
func stitchConfig(r grid.StitchRecipe) stitch.Config {
	cfg := stitch.Defaults()
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Seed = r.Epochs, r.Batch, r.LR, r.Seed
	cfg.FitSamples, cfg.LSSamples, cfg.KernelSize, cfg.Init = r.FitSamples, r.LSSamples, r.KernelSize, r.Init
	cfg.FitAugment, cfg.FrozenBN, cfg.CKASamples = r.FitAugment, r.FrozenBN, r.CKASamples
	cfg.ValSamples, cfg.CheckEvery, cfg.Patience, cfg.LRCuts = r.ValSamples, r.CheckEvery, r.Patience, r.LRCuts
	return cfg
}

// givenNorm is the input normalisation the spec gives a model reference, as
// the Runner takes it (nil: none given).
func givenNorm(p *grid.Plan, ref string) *results.Norm {
	mean, std := p.Norm(ref)
	if mean == nil {
		return nil
	}
	return &results.Norm{Mean: mean, Std: std}
}
