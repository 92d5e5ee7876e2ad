package train

import (
	"errors"
	"math"
	"path/filepath"
	"testing"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/data"
)

// TestRecomputeBNStats recomputes an untrained ResNet's batch-norm
// statistics on real Fashion-MNIST images and checks the stem's against the
// same statistics computed by hand from its convolution's output: the mean
// of the per-batch means and of the per-batch unbiased variances (equal
// batches, each weighted equally).
func TestRecomputeBNStats(t *testing.T) {
	needFashionMNIST(t)
	tr, _, err := splits.Load(splits.Config{Name: "fashion-mnist", TrainSamples: 256, TestSamples: 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := torch.ManualSeed(5); err != nil {
		t.Fatal(err)
	}
	net, err := vision.NewResNet(vision.ResNetConfig{Depth: 18, Width: 0.25, Stem: vision.StemCIFAR, InChannels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := data.NewLoader(tr, data.Config{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	bns := BatchNorms(net)
	if len(bns) != 1+8*2+3 { // stem, two per block, three downsampling shortcuts
		t.Fatalf("%d batch norms in a ResNet-18, want 20", len(bns))
	}
	if err := RecomputeBNStats(net, loader, nil, ""); err != nil {
		t.Fatal(err)
	}
	var means, vars []*torch.Tensor
	err = torch.NoGrad(func() error {
		for b, err := range loader.Batches(0) {
			if err != nil {
				return err
			}
			h := b.Scope.Keep(net.Conv1.Forward(b.X))
			means = append(means, b.Scope.Keep(h.MeanDims([]int64{0, 2, 3}, false)))
			vars = append(vars, b.Scope.Keep(h.Var([]int64{0, 2, 3}, true, false)))
			h.Free()
			b.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(means) != 4 {
		t.Fatalf("%d batches, want 4", len(means))
	}
	wantMean, wantVar := torch.Stack(means, 0).MeanDims([]int64{0}, false), torch.Stack(vars, 0).MeanDims([]int64{0}, false)
	defer torch.FreeAll(append(append(means, vars...), wantMean, wantVar)...)
	got := [2][]float32{toSlice(t, net.BN1.RunningMean), toSlice(t, net.BN1.RunningVar)}
	want := [2][]float32{toSlice(t, wantMean), toSlice(t, wantVar)}
	for i, what := range []string{"running mean", "running var"} {
		for c := range want[i] {
			if d := math.Abs(float64(got[i][c] - want[i][c])); d > 1e-4*(1+math.Abs(float64(want[i][c]))) {
				t.Errorf("stem %s channel %d: %g, want %g", what, c, got[i][c], want[i][c])
			}
		}
	}
	// Every batch norm moved off its initial statistics, and the momentum is back.
	for i, bn := range bns {
		m, v := toSlice(t, bn.RunningMean), toSlice(t, bn.RunningVar)
		if m[0] == 0 && v[0] == 1 {
			t.Errorf("batch norm %d kept its initial statistics", i)
		}
		if bn.Momentum != 0.1 {
			t.Errorf("batch norm %d: momentum %g after the pass, want 0.1", i, bn.Momentum)
		}
	}
	if net.Training() {
		t.Error("the network is left in training mode")
	}
}

// TestSupervisedZeroEpochsDataBNStats writes the untrained model with
// batch-norm statistics from data and checks its metadata says so, its
// weights are the initial-statistics model's, and its statistics are not;
// bn stats "data" with training epochs is refused.
func TestSupervisedZeroEpochsDataBNStats(t *testing.T) {
	needFashionMNIST(t)
	dir := t.TempDir()
	write := func(name, bnStats string) *models.Model {
		cfg := smallConfig(t, filepath.Join(dir, name))
		cfg.Data.TrainSamples, cfg.Data.TestSamples = 256, 200
		cfg.Epochs, cfg.BNStats = 0, bnStats
		if _, err := Supervised(cfg); err != nil {
			t.Fatalf("bn stats %q: %v", bnStats, err)
		}
		m, err := models.Load(cfg.Out, models.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Free)
		return m
	}
	initial, fromData := write("initial.pt", ""), write("data.pt", BNStatsData)
	if initial.Meta.Recipe.BNStats != "" || fromData.Meta.Recipe.BNStats != BNStatsData {
		t.Errorf("metadata bn_stats %q and %q, want \"\" and %q", initial.Meta.Recipe.BNStats, fromData.Meta.Recipe.BNStats, BNStatsData)
	}
	if d := maxDiff(t, initial.Net.Conv1.Weight, fromData.Net.Conv1.Weight); d != 0 {
		t.Errorf("the two untrained models' stem weights differ by %g: the same seed must give the same weights", d)
	}
	if m := toSlice(t, initial.Net.BN1.RunningMean); m[0] != 0 {
		t.Errorf("initial statistics: stem running mean %g, want 0", m[0])
	}
	if m := toSlice(t, fromData.Net.BN1.RunningMean); m[0] == 0 {
		t.Error("data statistics: the stem's running mean is still 0")
	}
	cfg := smallConfig(t, filepath.Join(dir, "trained.pt"))
	cfg.BNStats = BNStatsData
	var bad *invalid.Setting
	if _, err := Supervised(cfg); !errors.As(err, &bad) || bad.Field != "bn stats" {
		t.Errorf("bn stats data with 1 epoch: %v, want an invalid bn stats setting", err)
	}
}

func toSlice(t *testing.T, x *torch.Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func maxDiff(t *testing.T, a, b *torch.Tensor) float64 {
	t.Helper()
	d := a.Sub(b).Abs().Max()
	defer d.Free()
	v, err := d.Item()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
