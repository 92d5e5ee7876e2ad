package train

import (
	"flag"
	"os"
	"testing"
	"time"

	"modelstitch/experiments/models"
	"modelstitch/torch"
)

var (
	xN   = flag.Int("xn", 1024, "")
	xE   = flag.Int("xe", 3, "")
	xB   = flag.Int("xb", 128, "")
	xLR  = flag.Float64("xlr", 1e-3, "")
	xOpt = flag.String("xopt", "adam", "")
	xWD  = flag.Float64("xwd", 1e-6, "")
	xT   = flag.Float64("xt", 0.5, "")
)

func TestTmpExplore(t *testing.T) {
	torch.SetNumThreads(2)
	out := t.TempDir() + "/x.pt"
	cfg := SimCLRDefaults()
	cfg.Data.TrainSamples, cfg.Data.Seed = *xN, 1
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Optimizer, cfg.WeightDecay, cfg.Temperature = *xE, *xB, *xLR, *xOpt, *xWD, *xT
	cfg.Seed, cfg.Out, cfg.NoProbe, cfg.Progress = 1, out, true, nil
	start := time.Now()
	res, err := SimCLR(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("simclr %.0fs %.0f img/s", time.Since(start).Seconds(), res.ImagesPerSec)
	tr, te, _ := LoadSplits(DataConfig{Name: "fashion-mnist", TrainSamples: 2000, Seed: 7})
	te, _ = te.Subset(1000, 7)
	m, err := models.Load(out, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pc := ProbeDefaults()
	pc.LR, pc.Progress = 1e-2, nil
	_, acc, err := Probe(m, tr, te, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: probe %.2f", os.Args[1:], acc)
}
