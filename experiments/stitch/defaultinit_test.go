package stitch

import (
	"context"
	"testing"

	"modelstitch/experiments/results"
)

// TestDefaultInitSelfStitchConverges stitches a shipped model into itself
// at a middle cut from PyTorch's default initialisation (the paper's start,
// not the least-squares match) with the paper's optimiser (Adam, cosine
// decay) and crop-and-flip augmentation, on 960 real training images: the
// fitted layer must bring the stitched model close to the top's own
// accuracy. A fit that does not train (a frozen layer, inputs the top cannot
// read) stays near chance: after 40 steps at the paper's LR 1e-3 the
// stitched model was at 20 % (chance 10 %), 70 pp below the top.
//
// The learning rate is 1e-2, not the paper's 1e-3, to converge in a unit
// test's budget (measured on this pair at layer2.1, 500 test images, one
// thread: 120 steps at 1e-2 lost 1.2 pp, 80 steps 2.0, 40 steps 8.2; 320
// steps at 1e-3 still lost 5.8).
func TestDefaultInitSelfStitchConverges(t *testing.T) {
	m := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed1")
	tr, te := fashionSplits(t)
	cfg := Paper()
	cfg.Cuts, cfg.Progress, cfg.CKASamples = "layer2.1", nil, 0
	cfg.FitSamples, cfg.Epochs, cfg.BatchSize, cfg.LR = selfStitchImages, selfStitchEpochs, 32, selfStitchLR
	store, err := results.Open("")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Bottom: m, Top: m, Train: tr, Test: te, Config: cfg, Store: store}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	row := rows[0]
	t.Logf("default init, self-stitch at %s: top %.2f%%, stitched %.2f%%, penalty %+.2f pp (%d images × %d epochs, lr %g)",
		row.Cut, row.TopAcc, row.StitchedAcc, row.Penalty, cfg.FitSamples, cfg.Epochs, cfg.LR)
	if row.DirectAcc != nil || row.Init != InitDefault || !row.FitAugment {
		t.Errorf("row %+v: want the default init with augmentation and no direct match", row)
	}
	if row.Penalty > selfStitchMaxPenalty {
		t.Errorf("self-stitch from the default init: penalty %.2f pp, want ≤ %g (top %.2f%%, stitched %.2f%%)",
			row.Penalty, float64(selfStitchMaxPenalty), row.TopAcc, row.StitchedAcc)
	}
}

// The self-stitch fit's size (measured: see the test's log line).
const (
	selfStitchImages     = 960
	selfStitchEpochs     = 4
	selfStitchLR         = 1e-2
	selfStitchMaxPenalty = 3
)
