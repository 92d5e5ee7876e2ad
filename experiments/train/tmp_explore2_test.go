package train

import (
	"flag"
	"testing"
	"time"

	"modelstitch/experiments/models"
	"modelstitch/torch"
)

var xEvery = flag.Int("xevery", 16, "")

func TestTmpExplore2(t *testing.T) {
	torch.SetNumThreads(2)
	out := t.TempDir() + "/x.pt"
	cfg := SimCLRDefaults()
	cfg.Data.TrainSamples, cfg.Data.Seed = *xN, 1
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Optimizer, cfg.WeightDecay, cfg.Temperature = *xE, *xB, *xLR, *xOpt, *xWD, *xT
	cfg.Seed, cfg.Out, cfg.NoProbe, cfg.Progress = 1, out, true, nil
	tr, te, _ := LoadSplits(DataConfig{Name: "fashion-mnist", TrainSamples: 2000, Seed: 7})
	te, _ = te.Subset(1000, 7)
	start := time.Now()
	var losses float64
	var k int
	cfg.OnStep = func(s SimCLRStep) error {
		losses += s.Loss
		k++
		if (s.Step+1)%*xEvery == 0 {
			pc := ProbeDefaults()
			pc.LR, pc.Progress = 1e-2, nil
			_, acc, err := Probe(&models.Model{Name: "x", Net: s.Backbone, Meta: models.Meta{Mean: []float64{0.286}, Std: []float64{0.353}}}, tr, te, pc)
			if err != nil {
				return err
			}
			t.Logf("step %d (%.0fs): loss %.3f probe %.2f", s.Step+1, time.Since(start).Seconds(), losses/float64(k), acc)
			losses, k = 0, 0
		}
		return nil
	}
	if _, err := SimCLR(cfg); err != nil {
		t.Fatal(err)
	}
}
