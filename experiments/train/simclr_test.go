package train

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/datasets"
	"modelstitch/weights"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

var (
	fashionOnce          sync.Once
	fashionTr, fashionTe *datasets.Dataset
	fashionErr           error
)

// fashion returns the real Fashion-MNIST splits, loaded once, or skips the
// test when the data set is not installed.
func fashion(t *testing.T) (train, test *datasets.Dataset) {
	t.Helper()
	if _, err := os.Stat(fashionDir); err != nil {
		t.Skipf("Fashion-MNIST not installed at %s (apt-get install dataset-fashion-mnist)", fashionDir)
	}
	fashionOnce.Do(func() {
		torch.SetNumThreads(1) // the development machine's cores are shared
		fashionTr, fashionTe, fashionErr = splits.Load(splits.Config{Name: "fashion-mnist"})
	})
	if fashionErr != nil {
		t.Fatal(fashionErr)
	}
	return fashionTr, fashionTe
}

// subset takes a class-balanced subset, failing the test on an error.
func subset(t *testing.T, ds *datasets.Dataset, n int, seed int64) *datasets.Dataset {
	t.Helper()
	s, err := ds.Subset(n, seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// smallSimCLR is a SimCLR run sized for a test on two shared cores.
func smallSimCLR(out string, n, epochs, batch int) SimCLRConfig {
	cfg := SimCLRDefaults()
	cfg.Data = splits.Config{Name: "fashion-mnist", TrainSamples: n, Seed: 1}
	cfg.Epochs, cfg.BatchSize, cfg.Seed, cfg.Out = epochs, batch, 1, out
	cfg.NoProbe, cfg.Progress = true, nil
	return cfg
}

// The short SimCLR run of TestSimCLRLearnsAndBeatsRandomProbe and its probe
// sizes, chosen to take under a minute on one thread.
const (
	simclrTestImages, simclrTestBatch, simclrTestEpochs = 1024, 64, 2
	simclrTestProbeTrain, simclrTestProbeTest           = 2000, 1000
)

// TestSimCLRLearnsAndBeatsRandomProbe trains briefly on real Fashion-MNIST
// images with the recipe of weights/defaults/README.md
// (SimCLRGrayscaleRecipe): the NT-Xent loss must fall, the files must be a
// clean backbone and a separate head, and a linear probe on the result must
// beat one on the very network SimCLR started from, untrained and as built,
// by the same protocol (L-BFGS, weight decay chosen on held-out training
// images).
//
// The untrained network is a strong baseline: in eval mode it still has its
// initial batch-norm statistics (mean 0, variance 1), so its batch norms
// normalise nothing, and on Fashion-MNIST such random features probe far
// above chance. Training replaces those statistics with the data's, and with
// views that leave a shortcut (no brightness/contrast jitter) a short run
// probes below the untrained network (weights/defaults/README.md). With the
// jitter 0.8 of the recipe, these 32 steps probe at 71.10% against the
// untrained network's 68.20% (73.70% with the earlier jitter 0.4, which
// probes lower at the ablation scale and beyond; measured once each, seed 1,
// on one thread).
func TestSimCLRLearnsAndBeatsRandomProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains SimCLR briefly and fits two linear probes")
	}
	trainAll, testAll := fashion(t)
	out := filepath.Join(t.TempDir(), "simclr.pt")
	cfg := SimCLRGrayscaleRecipe()
	cfg.Data = splits.Config{Name: "fashion-mnist", TrainSamples: simclrTestImages, Seed: 1}
	cfg.Epochs, cfg.BatchSize, cfg.Seed, cfg.Out = simclrTestEpochs, simclrTestBatch, 1, out
	cfg.NoProbe, cfg.Progress = true, nil
	var losses []float64
	cfg.OnStep = func(s SimCLRStep) error {
		losses = append(losses, s.Loss)
		return nil
	}
	if _, err := SimCLR(cfg); err != nil {
		t.Fatal(err)
	}
	steps := simclrTestEpochs * (simclrTestImages / simclrTestBatch)
	if len(losses) != steps {
		t.Fatalf("%d steps, want %d (%d images, batch %d, %d epochs)", len(losses), steps, simclrTestImages, simclrTestBatch, simclrTestEpochs)
	}
	first, last := mean(losses[:3]), mean(losses[len(losses)-3:])
	t.Logf("NT-Xent: first steps %.3f, last steps %.3f (chance: ln(%d) = %.3f)", first, last, 2*simclrTestBatch-1, math.Log(float64(2*simclrTestBatch-1)))
	if !(last < first-0.1) {
		t.Errorf("NT-Xent did not fall: first steps %.3f, last steps %.3f", first, last)
	}

	sc, err := models.Load(out, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Free()
	m := sc.Meta
	if m.Objective != models.SimCLR || m.Classes != 0 || sc.Net.HasClassifier() || m.Recipe == nil ||
		m.Recipe.Temperature != cfg.Temperature || m.Recipe.EpochsDone != simclrTestEpochs || m.Dataset != "fashion-mnist" ||
		!strings.Contains(m.Recipe.Augment, "ColorJitter") {
		t.Errorf("backbone metadata %+v recipe %+v", m, m.Recipe)
	}
	ck, err := weights.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ck.State.Keys {
		if strings.HasPrefix(k, "fc.") || strings.HasPrefix(k, "0.") || strings.HasPrefix(k, "2.") {
			t.Errorf("backbone file has key %q", k)
		}
	}
	head, err := weights.Open(HeadPath(out))
	if err != nil {
		t.Fatalf("projection head: %v", err)
	}
	d := sc.Net.FeatureDim()
	want := map[string][]int64{"0.weight": {d, d}, "0.bias": {d}, "2.weight": {128, d}, "2.bias": {128}}
	shapes := head.State.Shapes()
	if len(shapes) != len(want) {
		t.Errorf("head keys %v, want %v", head.State.Keys, want)
	}
	for k, s := range want {
		if got := shapes[k]; len(got) != len(s) || got[0] != s[0] || (len(s) == 2 && got[1] != s[1]) {
			t.Errorf("head %s shape %v, want %v", k, got, s)
		}
	}

	// The network SimCLR started from: the same seed, untrained, as built
	// (what `stitch probe --backbone random` measures).
	random, err := models.NewRandom(m, cfg.Seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer random.Free()
	probeTrain, probeTest := subset(t, trainAll, simclrTestProbeTrain, 7), subset(t, testAll, simclrTestProbeTest, 7)
	// One protocol for both: L-BFGS logistic regression, weight decay chosen
	// on held-out training images.
	lc := LinearProbeConfig{WeightDecays: []float64{1e-4, 1e-3, 1e-2, 1e-1}, Seed: 7}
	probe := func(bb *models.Model) float64 {
		t.Helper()
		p, r, err := ProbeBackboneLBFGS(bb, probeTrain, probeTest, lc, 250, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		p.Free()
		return r.Accuracy
	}
	accRandom, accSimCLR := probe(random), probe(sc)
	t.Logf("linear probe (%d training, %d test images): SimCLR after %d steps %.2f%%, the untrained network it started from %.2f%%",
		probeTrain.N, probeTest.N, steps, accSimCLR, accRandom)
	if !(accSimCLR > accRandom) {
		t.Errorf("probe on the SimCLR backbone (%.2f%%) does not beat the untrained network it started from (%.2f%%)", accSimCLR, accRandom)
	}
}

// TestProbeModelRoundTrip checks that a probe is a plain classifier: saved,
// loaded back with models.Load and evaluated on images, it scores what Probe
// reported.
func TestProbeModelRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains a SimCLR backbone and a probe")
	}
	trainAll, testAll := fashion(t)
	meta := models.MetaFor(vision.ResNetConfig{Depth: 18, Width: 0.25, Stem: vision.StemCIFAR, InChannels: 1})
	meta.Dataset, meta.Mean, meta.Std = "fashion-mnist", trainAll.Mean, trainAll.Std
	bb, err := models.NewRandom(meta, 3, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Free()
	bb.Path = "random-backbone.pt"
	tr, te := subset(t, trainAll, 1000, 3), subset(t, testAll, 500, 3)
	pc := ProbeDefaults()
	pc.Epochs, pc.Progress = 10, nil
	probe, acc, err := Probe(bb, tr, te, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Free()
	if acc < 30 {
		t.Errorf("probe accuracy %.2f%%: not learning (chance is 10%%)", acc)
	}
	if probe.Meta.Objective != models.Probe || probe.Meta.Backbone != bb.Path || probe.Meta.Classes != 10 ||
		probe.Meta.TestAccuracy == nil || *probe.Meta.TestAccuracy != acc {
		t.Errorf("probe metadata %+v", probe.Meta)
	}
	path := filepath.Join(t.TempDir(), "probe.pt")
	if err := models.Save(path, probe.Net, probe.Meta); err != nil {
		t.Fatal(err)
	}
	back, err := models.Load(path, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	if !back.Net.HasClassifier() || back.Meta.Objective != models.Probe || back.Meta.Backbone != bb.Path {
		t.Fatalf("loaded probe: classifier %v, meta %+v", back.Net.HasClassifier(), back.Meta)
	}
	got, err := evaluate.TestAccuracy(back.Net, te, back.Meta.Mean, back.Meta.Std, 128, torch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Folding the standardisation into fc changes rounding only: at most a
	// sample or so may flip.
	if math.Abs(got-acc) > 0.5 {
		t.Errorf("loaded probe classifies at %.2f%%, Probe reported %.2f%%", got, acc)
	}
	// The backbone's weights are in the probe unchanged.
	want := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(bb.Net) {
		want[n.Name] = n.Tensor
	}
	for _, n := range nn.StateDict(back.Net) {
		if strings.HasPrefix(n.Name, "fc.") {
			continue
		}
		if ok, err := torch.AllClose(n.Tensor.To(torch.Float64), want[n.Name].To(torch.Float64), 0, 0); err != nil || !ok {
			t.Errorf("%s differs from the backbone's (err %v)", n.Name, err)
		}
	}
}

// TestSimCLRResume interrupts a run in its second epoch and checks that the
// next run resumes after the first, and that a finished run is not redone.
func TestSimCLRResume(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains SimCLR twice")
	}
	fashion(t)
	out := filepath.Join(t.TempDir(), "resume.pt")
	stop := errors.New("interrupted")
	cfg := smallSimCLR(out, 128, 2, 32)
	cfg.OnStep = func(s SimCLRStep) error {
		if s.Step == 5 {
			return stop
		}
		return nil
	}
	if _, err := SimCLR(cfg); !errors.Is(err, stop) {
		t.Fatalf("interrupted run: error %v, want %v", err, stop)
	}
	m, err := models.Load(out, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Meta.Recipe.EpochsDone != 1 {
		t.Errorf("after the interruption: %d epochs done, want 1", m.Meta.Recipe.EpochsDone)
	}
	m.Free()

	var steps []int
	cfg.OnStep = func(s SimCLRStep) error {
		steps = append(steps, s.Step)
		return nil
	}
	res, err := SimCLR(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 1 || len(steps) != 4 || steps[0] != 4 {
		t.Errorf("resumed run: Resumed %d, steps %v; want 1 and steps 4..7", res.Resumed, steps)
	}
	if _, err := SimCLR(cfg); err == nil || !strings.Contains(err.Error(), "already finished") {
		t.Errorf("re-running a finished run: error %v", err)
	}
	other := cfg
	other.Temperature = 0.1
	if _, err := SimCLR(other); err == nil || !strings.Contains(err.Error(), "different recipe") {
		t.Errorf("resuming with another temperature: error %v", err)
	}
}

func TestSimCLRConfigErrors(t *testing.T) {
	base := smallSimCLR(filepath.Join(t.TempDir(), "x.pt"), 64, 1, 32)
	for name, mod := range map[string]func(*SimCLRConfig){
		"no out":          func(c *SimCLRConfig) { c.Out = "" },
		"batch 1":         func(c *SimCLRConfig) { c.BatchSize = 1 },
		"temperature 0":   func(c *SimCLRConfig) { c.Temperature = 0 },
		"optimizer":       func(c *SimCLRConfig) { c.Optimizer = "lamb" },
		"label noise":     func(c *SimCLRConfig) { c.Data.LabelNoise = 0.1 },
		"negative epochs": func(c *SimCLRConfig) { c.Epochs = -1 },
	} {
		c := base
		mod(&c)
		if _, err := SimCLR(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
