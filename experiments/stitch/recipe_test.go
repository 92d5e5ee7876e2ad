package stitch

import (
	"context"
	"errors"
	"math"
	"testing"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/results"
	"modelstitch/torch"
	"modelstitch/torch/vision/data"
)

// TestRecipes checks the named recipes: the paper's setting field by field,
// the CPU default, and an unknown name refused as the "recipe" setting.
func TestRecipes(t *testing.T) {
	p, err := Recipe(RecipePaper)
	if err != nil {
		t.Fatal(err)
	}
	if p.Init != InitDefault || p.LR != 1e-3 || !p.FitAugment || p.FitSamples != 0 || p.Epochs != PaperEpochs ||
		p.FrozenBN != "eval" || p.BatchSize != 128 || p.KernelSize != 1 {
		t.Errorf("paper recipe %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("paper recipe invalid: %v", err)
	}
	for _, name := range []string{"", RecipeCPU} {
		c, err := Recipe(name)
		if err != nil || c.Init != Defaults().Init || c.LR != Defaults().LR || c.FitAugment || c.FitSamples != Defaults().FitSamples {
			t.Errorf("recipe %q: %+v, %v; want the defaults", name, c, err)
		}
	}
	var bad *invalid.Setting
	if _, err := Recipe("papers"); !errors.As(err, &bad) || bad.Field != "recipe" {
		t.Errorf("unknown recipe: %v, want an invalid recipe setting", err)
	}
}

// TestAugmentedFitSeesNewInputsEachEpoch checks what the fast path's fit
// feeds the stitching layer: with augmentation, the bottom's activations of
// one training image differ from epoch to epoch (a new crop and flip) and
// from the un-augmented image's; without it, they are the cached
// activations of the image as it is, the same every epoch.
func TestAugmentedFitSeesNewInputsEachEpoch(t *testing.T) {
	m := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed2")
	tr, _ := fashionSplits(t)
	sub, err := tr.Subset(64, 3)
	if err != nil {
		t.Fatal(err)
	}
	bottom, err := FoldBatchNorm(m.Net)
	if err != nil {
		t.Fatal(err)
	}
	defer bottom.Close()
	const cut = "layer1.0"
	norm := normOf(m, sub)
	// The un-augmented activations of every image, in data-set order.
	plain, err := data.NewLoader(sub, data.Config{BatchSize: 32, Mean: norm[0], Std: norm[1]})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := NewActivationCache(bottom, plain, CacheOptions{Batch: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Free()
	if err := cache.At(cut); err != nil {
		t.Fatal(err)
	}
	// seen runs one epoch of a fit's inputs and returns each image's activations by index.
	seen := func(augment bool, fitC *ActivationCache, epoch int) map[int]*torch.Tensor {
		r := &Runner{Config: Config{BatchSize: 16, Seed: 3, FitAugment: augment}}
		loader, err := r.fitLoader(sub, norm)
		if err != nil {
			t.Fatal(err)
		}
		if got := loader.Config().Augment != nil; got != augment {
			t.Fatalf("fit augment %v: the loader augments: %v", augment, got)
		}
		in := fitInputs(fitC, bottom, cut)
		out := map[int]*torch.Tensor{}
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				t.Fatal(err)
			}
			h := in(b)
			if err := h.Err(); err != nil {
				t.Fatal(err)
			}
			for i, idx := range b.Index {
				out[idx] = b.Scope.Keep(h.Narrow(0, int64(i), 1).Contiguous())
			}
			b.Close()
		}
		t.Cleanup(func() {
			for _, x := range out {
				x.Free()
			}
		})
		return out
	}
	diff := func(a, b *torch.Tensor) float64 {
		d := a.Sub(b).Abs().Max()
		defer d.Free()
		v, err := d.Item()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	row := func(i int) *torch.Tensor {
		x := cache.Range(i, 1)
		t.Cleanup(x.Free)
		return x
	}

	e0, e1 := seen(true, nil, 0), seen(true, nil, 1)
	if len(e0) != 64 || len(e1) != 64 {
		t.Fatalf("augmented epochs saw %d and %d images, want 64 each", len(e0), len(e1))
	}
	changed, fromPlain := 0, 0
	for i := range 64 {
		if diff(e0[i], e1[i]) > 1e-3 {
			changed++
		}
		if diff(e0[i], row(i)) > 1e-3 {
			fromPlain++
		}
	}
	// A crop offset (25 choices) and a flip (2) repeat with probability 1/50.
	if changed < 56 {
		t.Errorf("augmented fit: %d of 64 images gave other activations in epoch 1 than in epoch 0, want nearly all", changed)
	}
	if fromPlain < 56 {
		t.Errorf("augmented fit: %d of 64 images differ from the un-augmented image, want nearly all", fromPlain)
	}

	p0, p1 := seen(false, cache, 0), seen(false, cache, 1)
	for i := range 64 {
		if d0, d1 := diff(p0[i], row(i)), diff(p1[i], row(i)); d0 != 0 || d1 != 0 {
			t.Errorf("un-augmented fit, image %d: differs from its cached activations by %g (epoch 0) and %g (epoch 1)", i, d0, d1)
		}
	}
}

// TestFitAugmentFastMatchesPlain fits with augmentation on the plain path
// and on the fast path (which cannot cache the fitting activations) and
// compares the rows; both record the setting.
func TestFitAugmentFastMatchesPlain(t *testing.T) {
	bottom := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed2")
	top := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed1")
	tr, te := fashionSplits(t)
	cfg := quickConfig("layer2.1")
	cfg.FitSamples, cfg.LSSamples, cfg.FitAugment = 300, 200, true
	var rows [2]results.Row
	for i, plain := range []bool{true, false} {
		c := cfg
		c.Speed.Plain = plain
		store, err := results.Open("")
		if err != nil {
			t.Fatal(err)
		}
		got, err := (&Runner{Bottom: bottom, Top: top, Train: tr, Test: te, Config: c, Store: store}).Run(context.Background())
		if err != nil {
			t.Fatalf("plain %v: %v", plain, err)
		}
		if len(got) != 1 || !got[0].FitAugment {
			t.Fatalf("plain %v: rows %+v, want one with fit_augment", plain, got)
		}
		rows[i] = got[0]
	}
	t.Logf("augmented fit at layer2.1: penalty %.2f (plain path), %.2f (fast path)", rows[0].Penalty, rows[1].Penalty)
	// Float rounding (folded batch norms, evaluation batches) may flip an
	// image near a boundary: one of 500 test images is 0.2 pp.
	if d := math.Abs(rows[0].Penalty - rows[1].Penalty); d > 0.61 {
		t.Errorf("augmented fit: penalty %.2f on the fast path, %.2f on the plain one", rows[1].Penalty, rows[0].Penalty)
	}
	if *rows[0].DirectAcc != *rows[1].DirectAcc && math.Abs(*rows[0].DirectAcc-*rows[1].DirectAcc) > 0.41 {
		t.Errorf("direct match %.2f (plain) vs %.2f (fast): the least-squares start must see the same un-augmented images", *rows[0].DirectAcc, *rows[1].DirectAcc)
	}
}
