package stitch

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"modelstitch/experiments/loop"
	"modelstitch/experiments/results"
	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// scripted returns a validation function that answers accs in turn (with
// a constant loss) and records the layer's weight at each call.
func scripted(t *testing.T, lin *nn.Linear, accs []float64) (func() (float64, float64, error), *[]float64) {
	seen := &[]float64{}
	i := 0
	return func() (float64, float64, error) {
		if i >= len(accs) {
			t.Fatalf("validation called %d times, scripted %d", i+1, len(accs))
		}
		v, err := lin.Weight.Item()
		if err != nil {
			return 0, 0, err
		}
		*seen = append(*seen, v)
		i++
		return accs[i-1], 1, nil
	}, seen
}

// setWeight writes v into the one-weight layer, as a fit's step would.
func setWeight(t *testing.T, lin *nn.Linear, v float64) {
	t.Helper()
	w := torch.FromSlice([]float32{float32(v)}, 1, 1)
	defer w.Free()
	if err := torch.NoGrad(func() error { return lin.Weight.CopyFrom(w) }); err != nil {
		t.Fatal(err)
	}
}

// TestPlateauKeepsBestCutsAndStops drives the plateau by hand: a real
// one-weight layer whose weight is the step number, and scripted validation
// scores. It must keep the best state (the start when nothing beats it), cut
// the rate after Patience stale checks and go back to the best state there,
// and stop after LRCuts cuts.
func TestPlateauKeepsBestCutsAndStops(t *testing.T) {
	lin := nn.NewLinear(1, 1, false)
	defer nn.Free(lin)
	setWeight(t, lin, 0)
	// checks at steps 0 (start), 10, 20, 30, 40, 50, 60, 70
	accs := []float64{50, 60, 55, 58, 61, 59, 60, 60}
	validate, seen := scripted(t, lin, accs)
	cfg := FitConfig{Validate: validate, CheckEvery: 10, Patience: 2, LRCuts: 1}
	p, err := newPlateau(cfg, lin, func(bool) {})
	if err != nil {
		t.Fatal(err)
	}
	defer p.free()
	var stopAt int
	var scales []float64
	for step := 1; step <= 200; step++ {
		setWeight(t, lin, float64(step))
		err := p.onStep(loop.Step{Step: step - 1})
		if errors.Is(err, errConverged) {
			stopAt = step
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if step%10 == 0 {
			scales = append(scales, p.scale)
		}
	}
	if err := p.finish(true); err != nil {
		t.Fatal(err)
	}
	// 60 at step 10; 55, 58 stale → cut at 30 (back to step 10's weight);
	// 61 at step 40 is best; 59, 60 stale → second plateau with the one cut
	// spent: stop at step 60.
	if stopAt != 60 {
		t.Errorf("stopped at step %d, want 60 (scores %v)", stopAt, accs)
	}
	if want := []float64{1, 1, 0.1, 0.1, 0.1}; !slices.Equal(scales, want) {
		t.Errorf("rate multipliers after each check %v, want %v", scales, want)
	}
	out := p.out
	if out.BestStep != 40 || out.ValAcc != 61 || out.StartValAcc != 50 || out.LRCuts != 1 || out.Stop != StopConverged {
		t.Errorf("outcome %+v, want best step 40 at 61 from 50, 1 cut, converged", out)
	}
	w, err := lin.Weight.Item()
	if err != nil {
		t.Fatal(err)
	}
	if w != 40 {
		t.Errorf("kept weight %v, want step 40's", w)
	}
	if (*seen)[0] != 0 || (*seen)[1] != 10 {
		t.Errorf("scored weights %v: want the start (0) first, then step 10's", *seen)
	}

	// Nothing beats the start: the start comes back.
	setWeight(t, lin, 0)
	validate, _ = scripted(t, lin, []float64{70, 60, 60, 60, 60})
	p2, err := newPlateau(FitConfig{Validate: validate, CheckEvery: 5, Patience: 2, LRCuts: 1}, lin, func(bool) {})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.free()
	for step := 1; step <= 20; step++ {
		setWeight(t, lin, float64(step))
		if err := p2.onStep(loop.Step{Step: step - 1}); errors.Is(err, errConverged) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := p2.finish(true); err != nil {
		t.Fatal(err)
	}
	if w, _ := lin.Weight.Item(); w != 0 || p2.out.BestStep != 0 || p2.out.ValAcc != 70 {
		t.Errorf("weight %v, outcome %+v: want the start back (weight 0, best step 0, 70)", w, p2.out)
	}
}

// TestKernelLR checks the rate scaling by the kernel's area.
func TestKernelLR(t *testing.T) {
	for _, c := range []struct {
		k    int64
		want float64
	}{{1, 1e-2}, {3, 1e-2 / 9}, {7, 1e-2 / 49}} {
		if got := KernelLR(1e-2, c.k); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("KernelLR(1e-2, %d) = %g, want %g", c.k, got, c.want)
		}
	}
}

// TestValidatedFitNeverEndsBelowStart fits a real stitching layer with a
// learning rate far too large: unvalidated, the fit ends far below its
// least-squares start; validated, it keeps a layer at least as good as the
// start on the held-out images, and its test score stays near the direct
// match.
func TestValidatedFitNeverEndsBelowStart(t *testing.T) {
	path := trained(t)
	trainSet, testSet := fashionSplits(t)
	m := load(t, path)
	run := func(validated bool) results.Row {
		cfg := quickConfig("layer3.1")
		cfg.LR, cfg.CKASamples = 5, 0
		if validated {
			cfg.ValSamples, cfg.CheckEvery, cfg.Patience, cfg.LRCuts = 500, 4, 1, 0
		}
		store, err := results.Open("")
		if err != nil {
			t.Fatal(err)
		}
		r := &Runner{Bottom: m, Top: m, Train: trainSet, Test: testSet, Config: cfg, Store: store}
		rows, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rows[0]
	}
	plain, validated := run(false), run(true)
	if plain.StitchedAcc > *plain.DirectAcc-5 {
		t.Fatalf("the unvalidated fit at LR 5 ends at %.2f%% from a %.2f%% start: the test needs a fit that ends below its start", plain.StitchedAcc, *plain.DirectAcc)
	}
	if validated.ValAcc == nil || validated.StartValAcc == nil || validated.BestStep == nil {
		t.Fatalf("validated row lacks its outcome: %+v", validated.Scores)
	}
	if *validated.ValAcc < *validated.StartValAcc {
		t.Errorf("validated fit kept %.2f%% on validation, below its start %.2f%%", *validated.ValAcc, *validated.StartValAcc)
	}
	if validated.StitchedAcc < *validated.DirectAcc-1 {
		t.Errorf("validated fit scores %.2f%% on test, more than a point below its start %.2f%%", validated.StitchedAcc, *validated.DirectAcc)
	}
	if validated.Stop != StopConverged || validated.ValSamples != 500 || validated.FitSamples != 500 {
		t.Errorf("stop %q, val samples %d, fit samples %d: want converged, 500, 500", validated.Stop, validated.ValSamples, validated.FitSamples)
	}
	if plain.Key() == validated.Key() {
		t.Error("validated and unvalidated rows share a key")
	}
}

// TestPlateauLossKeepsItGoing: with the accuracy flat, a validation loss
// still falling by more than MinLossGain is progress (no cut, no stop);
// once it levels off the plateau cuts and stops, keeping the start, whose
// accuracy nothing beat.
func TestPlateauLossKeepsItGoing(t *testing.T) {
	lin := nn.NewLinear(1, 1, false)
	defer nn.Free(lin)
	losses := []float64{1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7}
	i := 0
	validate := func() (float64, float64, error) {
		i++
		return 80, losses[i-1], nil
	}
	p, err := newPlateau(FitConfig{Validate: validate, CheckEvery: 1, Patience: 2, LRCuts: 1}, lin, func(bool) {})
	if err != nil {
		t.Fatal(err)
	}
	defer p.free()
	stop := 0
	for step := 1; step < len(losses); step++ {
		if err := p.onStep(loop.Step{Step: step - 1}); errors.Is(err, errConverged) {
			stop = step
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// falling to step 3; steps 4, 5 stale → cut; 6, 7 stale → stop at 7.
	if stop != 7 || p.out.LRCuts != 1 {
		t.Errorf("stopped at step %d after %d cuts, want step 7 after 1", stop, p.out.LRCuts)
	}
	// Equal accuracy, lower loss: the lowest-loss state of that accuracy is kept.
	if p.out.BestStep != 3 || p.out.ValAcc != 80 {
		t.Errorf("kept step %d at %.0f%%, want step 3 (the lowest loss at 80%%)", p.out.BestStep, p.out.ValAcc)
	}
}
