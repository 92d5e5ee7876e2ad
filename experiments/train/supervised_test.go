package train

import (
	"os"
	"path/filepath"
	"testing"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/datasets"
)

const fmnistDir = "/usr/share/datasets/fashion-mnist"

func needFashionMNIST(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(fmnistDir, "train-labels-idx1-ubyte.gz")); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
}

// smallConfig is a quick run on a real Fashion-MNIST subset.
func smallConfig(t *testing.T, out string) Config {
	cfg := Defaults()
	cfg.Data = splits.Config{Name: "fashion-mnist", TrainSamples: 1000, TestSamples: 1000, Seed: 3}
	cfg.Epochs, cfg.BatchSize, cfg.Seed, cfg.Out, cfg.Progress = 1, 32, 3, out, nil
	return cfg
}

func TestSupervisedLearnsFashionMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains a ResNet")
	}
	needFashionMNIST(t)
	out := filepath.Join(t.TempDir(), "m.pt")
	res, err := Supervised(smallConfig(t, out))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1000 images, 1 epoch: test accuracy %.2f%%, %.0f images/s", res.TestAccuracy, res.ImagesPerSec)
	if res.TestAccuracy < 35 {
		t.Errorf("test accuracy %.2f%% is not well above chance (10%%)", res.TestAccuracy)
	}
	m, err := models.Load(out, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if m.Meta.TestAccuracy == nil || *m.Meta.TestAccuracy != res.TestAccuracy {
		t.Errorf("checkpoint metadata accuracy %v, want %v", m.Meta.TestAccuracy, res.TestAccuracy)
	}
	// One epoch of 1,000 images: the running training accuracy is recorded,
	// above chance and, this early, not a memorised 100 %.
	if ta := m.Meta.TrainAccuracy; ta == nil || *ta <= 10 || *ta >= 100 {
		t.Errorf("checkpoint metadata training accuracy %v, want a percentage above chance", ta)
	}
	if m.Meta.Recipe == nil || m.Meta.Recipe.TrainSamples != 1000 || m.Meta.Recipe.Seed != 3 || m.Meta.Dataset != "fashion-mnist" {
		t.Errorf("metadata does not record the recipe: %+v", m.Meta)
	}
	acc, err := evaluate.TestAccuracy(m.Net, mustTest(t), m.Meta.Mean, m.Meta.Std, 256, torch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acc != res.TestAccuracy {
		t.Errorf("reloaded model scores %.2f%%, training reported %.2f%%", acc, res.TestAccuracy)
	}
}

func mustTest(t *testing.T) *datasets.Dataset {
	_, test, err := splits.Load(splits.Config{Name: "fashion-mnist", TestSamples: 1000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	return test
}

func TestSupervisedDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains two ResNets")
	}
	needFashionMNIST(t)
	dir := t.TempDir()
	var sds [2]map[string][]float32
	for i := range sds {
		cfg := smallConfig(t, filepath.Join(dir, []string{"a.pt", "b.pt"}[i]))
		cfg.Data.TrainSamples, cfg.Data.TestSamples = 200, 100
		if _, err := Supervised(cfg); err != nil {
			t.Fatal(err)
		}
		m, err := models.Load(cfg.Out, models.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sds[i] = map[string][]float32{}
		for _, n := range nn.StateDict(m.Net) {
			v, err := n.Tensor.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			sds[i][n.Name] = v
		}
		m.Free()
	}
	for k, a := range sds[0] {
		b := sds[1][k]
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("same seed, different weights: %s[%d] = %v vs %v", k, j, a[j], b[j])
			}
		}
	}
}

func TestSupervisedResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains a ResNet in two runs")
	}
	needFashionMNIST(t)
	out := filepath.Join(t.TempDir(), "r.pt")
	cfg := smallConfig(t, out)
	cfg.Data.TrainSamples, cfg.Data.TestSamples, cfg.Epochs, cfg.StopAfter = 200, 100, 2, 1
	res, err := Supervised(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped {
		t.Fatal("StopAfter did not stop the run")
	}
	m, err := models.Load(out, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Meta.Recipe.EpochsDone != 1 || m.Meta.TestAccuracy != nil {
		t.Errorf("interrupted checkpoint: epochs done %d, accuracy %v", m.Meta.Recipe.EpochsDone, m.Meta.TestAccuracy)
	}
	m.Free()
	cfg.StopAfter = 0
	res, err = Supervised(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 1 {
		t.Errorf("resumed after %d epochs, want 1", res.Resumed)
	}
	if _, err := Supervised(cfg); err == nil {
		t.Error("training into a finished checkpoint should say it is finished")
	}
	other := cfg
	other.LR = 0.01
	other.Out = out
	if _, err := Supervised(other); err == nil {
		t.Error("a different recipe into an existing checkpoint should be refused")
	}
}

// TestSupervisedZeroEpochsWritesUntrained checks that 0 epochs (the untrained
// network, e.g. the random bottom) writes a model under every schedule,
// instead of refusing a schedule over 0 steps.
func TestSupervisedZeroEpochsWritesUntrained(t *testing.T) {
	needFashionMNIST(t)
	for _, sched := range []string{"cosine", "onecycle", "step", "constant"} {
		out := filepath.Join(t.TempDir(), "untrained.pt")
		cfg := smallConfig(t, out)
		cfg.Epochs, cfg.Schedule = 0, sched
		if _, err := Supervised(cfg); err != nil {
			t.Fatalf("schedule %s, 0 epochs: %v", sched, err)
		}
		if _, err := os.Stat(out); err != nil {
			t.Fatalf("schedule %s, 0 epochs: no model written: %v", sched, err)
		}
	}
}

// TestSupervisedResumeIsBitIdentical: training stopped after epoch 1 and
// resumed to epoch 2 gives the very weights (every tensor, every bit) of the
// uninterrupted 2-epoch run: the momentum buffers and the random generator
// are kept beside the checkpoint (before they were not, and 102 of 122
// tensors differed).
func TestSupervisedResumeIsBitIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains a ResNet three times over")
	}
	needFashionMNIST(t)
	dir := t.TempDir()
	cfg := smallConfig(t, filepath.Join(dir, "straight.pt"))
	cfg.Data.TrainSamples, cfg.Data.TestSamples, cfg.Epochs = 200, 100, 2
	straight, err := Supervised(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Out, cfg.StopAfter = filepath.Join(dir, "resumed.pt"), 1
	if _, err := Supervised(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Out + ".state"); err != nil {
		t.Fatalf("no optimizer state beside the interrupted checkpoint: %v", err)
	}
	if err := torch.ManualSeed(999); err != nil { // as a new process would have it
		t.Fatal(err)
	}
	cfg.StopAfter = 0
	resumed, err := Supervised(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Resumed != 1 {
		t.Fatalf("resumed after %d epochs, want 1", resumed.Resumed)
	}
	if _, err := os.Stat(cfg.Out + ".state"); !os.IsNotExist(err) {
		t.Errorf("the state file outlived the finished run (%v)", err)
	}
	load := func(path string) map[string][]float32 {
		m, err := models.Load(path, models.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		out := map[string][]float32{}
		for _, n := range nn.StateDict(m.Net) {
			if out[n.Name], err = n.Tensor.Float32s(); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	a, b := load(straight.Path), load(resumed.Path)
	differ := 0
	for k, v := range a {
		for i := range v {
			if b[k][i] != v[i] {
				differ++
				break
			}
		}
	}
	if differ > 0 || len(a) != len(b) {
		t.Errorf("%d of %d tensors differ between the uninterrupted and the resumed run", differ, len(a))
	}
	if straight.TestAccuracy != resumed.TestAccuracy {
		t.Errorf("test accuracy %.2f%% uninterrupted, %.2f%% resumed", straight.TestAccuracy, resumed.TestAccuracy)
	}
}
