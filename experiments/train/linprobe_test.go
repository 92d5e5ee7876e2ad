package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/vision"
)

// blobs makes n points in d dimensions around classes random centres
// (spread s), with their labels, as float32 and int64 tensors.
func blobs(n, d, classes int, s float64, seed uint64) (*torch.Tensor, *torch.Tensor) {
	rng := rand.New(rand.NewPCG(seed, 7))
	centres := make([]float64, classes*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	xs := make([]float32, n*d)
	ys := make([]int64, n)
	for i := 0; i < n; i++ {
		c := rng.IntN(classes)
		ys[i] = int64(c)
		for j := 0; j < d; j++ {
			xs[i*d+j] = float32(centres[c*d+j] + s*rng.NormFloat64())
		}
	}
	return torch.FromSlice(xs, int64(n), int64(d)), torch.FromSlice(ys)
}

// The analytic gradient of the probe's objective matches finite differences.
func TestSoftmaxProblemGradient(t *testing.T) {
	x, y := blobs(200, 5, 3, 1.5, 1)
	defer torch.FreeAll(x, y)
	labels, err := y.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	rows := make([]int, 200)
	for i := range rows {
		rows[i] = i
	}
	p, err := newSoftmaxProblem(s, s.Track(x.To(torch.Float64)), labels, rows, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	theta := make([]float64, 3*5+3)
	for i := range theta {
		theta[i] = rng.NormFloat64() * 0.3
	}
	const lambda, h = 0.05, 1e-6
	_, g, err := p.loss(theta, lambda)
	if err != nil {
		t.Fatal(err)
	}
	for i := range theta {
		tp, tm := slices.Clone(theta), slices.Clone(theta)
		tp[i] += h
		tm[i] -= h
		fp, _, _ := p.loss(tp, lambda)
		fm, _, _ := p.loss(tm, lambda)
		if num := (fp - fm) / (2 * h); math.Abs(num-g[i]) > 1e-6 {
			t.Errorf("gradient %d: analytic %g, finite differences %g", i, g[i], num)
		}
	}
}

// Evaluating the objective and the accuracy leaves nothing behind in the
// fit's scope, which holds the features: an L-BFGS fit evaluates them
// thousands of times, and a result kept per evaluation grew a 54,000-row fit
// to 16 GB until the kernel killed it.
func TestSoftmaxProblemKeepsNoTensors(t *testing.T) {
	x, y := blobs(300, 4, 3, 1.5, 2)
	defer torch.FreeAll(x, y)
	labels, err := y.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	rows := make([]int, 300)
	for i := range rows {
		rows[i] = i
	}
	p, err := newSoftmaxProblem(s, s.Track(x.To(torch.Float64)), labels, rows, 3)
	if err != nil {
		t.Fatal(err)
	}
	before := s.Len()
	theta := make([]float64, 3*4+3)
	for range 5 {
		if _, _, err := p.loss(theta, 0.01); err != nil {
			t.Fatal(err)
		}
		if _, err := p.accuracy(theta); err != nil {
			t.Fatal(err)
		}
	}
	if after := s.Len(); after != before {
		t.Errorf("the fit's scope held %d tensors before 5 evaluations and %d after", before, after)
	}
}

// FitLinearProbe reaches the optimum: the gradient of the final objective
// vanishes, and it classifies well-separated blobs almost perfectly.
func TestFitLinearProbeConverges(t *testing.T) {
	x, y := blobs(3000, 20, 5, 1.0, 2)
	defer torch.FreeAll(x, y)
	p, err := FitLinearProbe(x, y, 5, LinearProbeConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Converged {
		t.Errorf("final fit did not converge in %d iterations", p.Iters)
	}
	if len(p.Scores) != len(DefaultWeightDecays()) {
		t.Errorf("%d held-out scores, want one per candidate (%d)", len(p.Scores), len(DefaultWeightDecays()))
	}
	if p.TrainAccuracy < 95 {
		t.Errorf("train accuracy %.2f%% on separated blobs, want ≥ 95%%", p.TrainAccuracy)
	}
	t.Logf("chosen decay %g, %d iterations, train accuracy %.2f%%, scores %+v", p.WeightDecay, p.Iters, p.TrainAccuracy, p.Scores)
}

// The weight decay is chosen on held-out training images only: poisoning the
// test labels changes the test accuracy but not the chosen decay, the
// held-out scores, the held-out rows or the classifier.
func TestLinearProbeDecayChoiceNeverSeesTest(t *testing.T) {
	tr, te := fashion(t)
	train := subset(t, tr, 500, 1)
	test := subset(t, te, 300, 1)
	poisoned, err := test.Take(seq(test.N))
	if err != nil {
		t.Fatal(err)
	}
	for i := range poisoned.Labels {
		poisoned.Labels[i] = (poisoned.Labels[i] + 1) % poisoned.Classes
	}
	meta := models.MetaFor(vision.ResNetConfig{Depth: 18, Width: 0.25, Stem: "cifar", InChannels: 1})
	meta.Mean, meta.Std = train.Mean, train.Std
	bb, err := models.NewRandom(meta, 1, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Free()
	cfg := LinearProbeConfig{WeightDecays: []float64{1e-3, 1e-2, 1e-1, 1}, Seed: 1}
	m1, clean, err := ProbeBackboneLBFGS(bb, train, test, cfg, 250, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m1.Free()
	m2, bad, err := ProbeBackboneLBFGS(bb, train, poisoned, cfg, 250, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m2.Free()
	p, q := clean.Probe, bad.Probe
	if p.WeightDecay != q.WeightDecay || !slices.Equal(p.Scores, q.Scores) || !slices.Equal(p.HeldOut, q.HeldOut) ||
		!slices.Equal(p.W, q.W) || !slices.Equal(p.B, q.B) {
		t.Errorf("poisoned test labels changed the fit: decay %g → %g, scores %v → %v", p.WeightDecay, q.WeightDecay, p.Scores, q.Scores)
	}
	if clean.Accuracy < 50 || bad.Accuracy > clean.Accuracy-30 {
		t.Errorf("test accuracy %.2f%% with true labels, %.2f%% with poisoned ones: the test labels were not used for scoring", clean.Accuracy, bad.Accuracy)
	}
	// The held-out rows are training rows, 10 % of every class.
	counts := make([]int, train.Classes)
	for _, i := range p.HeldOut {
		if i < 0 || i >= train.N {
			t.Fatalf("held-out row %d is not a training row (N=%d)", i, train.N)
		}
		counts[train.Labels[i]]++
	}
	for c, k := range counts {
		if k != 5 {
			t.Errorf("class %d: %d held-out rows of 50, want 5", c, k)
		}
	}
	t.Logf("chosen decay %g; test accuracy %.2f%% (poisoned labels: %.2f%%); scores %+v", p.WeightDecay, clean.Accuracy, bad.Accuracy, p.Scores)
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
