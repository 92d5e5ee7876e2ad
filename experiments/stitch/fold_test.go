package stitch

import (
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// maxAbsDiff returns max |a−b|.
func maxAbsDiff(t *testing.T, a, b *torch.Tensor) float64 {
	t.Helper()
	v, err := a.Sub(b).Abs().Max().Item()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkFolded compares the folded and unfolded passes of net (in eval mode)
// at every cut, carried cut to cut, and the logits, on images x.
func checkFolded(t *testing.T, net *vision.ResNet, x *torch.Tensor) {
	t.Helper()
	nn.Eval(net)
	folded, err := FoldBatchNorm(net)
	if err != nil {
		t.Fatal(err)
	}
	defer folded.Close()
	plain, err := NewFrozen(net, false)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	// The same folded pass in oneDNN's layout, where this libtorch has it.
	mk, err := FoldBatchNorm(net)
	if err != nil {
		t.Fatal(err)
	}
	defer mk.Close()
	if err := mk.UseMkldnn(); err != nil {
		t.Logf("no oneDNN pass checked: %v", err)
		mk = nil
	}
	s := torch.NewScope()
	defer s.Close()
	worst, worstMk := 0.0, 0.0
	err = torch.NoGrad(func() error {
		prevF, prevP, prevM, prev := x, x, x, ""
		for _, cut := range net.CutPoints() {
			want := s.Track(net.ForwardTo(x, cut))
			gotP := s.Track(plain.Between(prevP, prev, cut))
			gotF := s.Track(folded.Between(prevF, prev, cut))
			if err := torch.FirstError(want, gotP, gotF); err != nil {
				return err
			}
			if d := maxAbsDiff(t, want, gotP); d != 0 {
				t.Errorf("%s: unfolded Frozen differs from the network by %g", cut, d)
			}
			scale, _ := want.Abs().Max().Item()
			d := maxAbsDiff(t, want, gotF)
			if d > 1e-5*max(1, scale) {
				t.Errorf("%s: folded differs by %g (activations up to %g)", cut, d, scale)
			}
			worst = max(worst, d/max(1, scale))
			if mk != nil {
				gotM := s.Track(mk.Between(prevM, prev, cut))
				if err := gotM.Err(); err != nil {
					return err
				}
				if gotM.IsMkldnn() {
					t.Errorf("%s: the oneDNN pass returned a tensor in oneDNN's layout", cut)
				}
				d := maxAbsDiff(t, want, gotM)
				if d > 1e-5*max(1, scale) {
					t.Errorf("%s: folded in oneDNN's layout differs by %g (activations up to %g)", cut, d, scale)
				}
				worstMk = max(worstMk, d/max(1, scale))
				prevM = gotM
			}
			prevF, prevP, prev = gotF, gotP, cut
		}
		if net.HasClassifier() {
			want := s.Track(net.Forward(x))
			got := s.Track(folded.Forward(x))
			gotFrom := s.Track(folded.ForwardFrom(s.Track(folded.ForwardTo(x, "layer2.0")), "layer2.0"))
			if err := torch.FirstError(want, got, gotFrom); err != nil {
				return err
			}
			outs := map[string]*torch.Tensor{"Forward": got, "ForwardFrom(layer2.0)": gotFrom}
			if mk != nil {
				outs["oneDNN Forward"] = s.Track(mk.Forward(x))
				outs["oneDNN ForwardFrom(layer2.0)"] = s.Track(mk.ForwardFrom(s.Track(folded.ForwardTo(x, "layer2.0")), "layer2.0"))
			}
			for what, g := range outs {
				if err := g.Err(); err != nil {
					return err
				}
				scale, _ := want.Abs().Max().Item()
				d := maxAbsDiff(t, want, g)
				if d > 1e-5*max(1, scale) {
					t.Errorf("folded %s logits differ by %g (logits up to %g)", what, d, scale)
				}
				t.Logf("%s logits: |folded − unfolded| ≤ %.3g, logits up to %.3g", what, d, scale)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: largest |folded − unfolded| / max(1, max|activation|) over all cuts %.3g (oneDNN layout %.3g)", net.Config, worst, worstMk)
	if mk != nil {
		checkMkldnnGrad(t, folded, mk, x)
	}
}

// checkMkldnnGrad checks that a Frozen in oneDNN's layout keeps the plain
// layout where gradients are on: the top's input gradient from layer2.0 (as
// in fitting) equals the plain folded pass's.
func checkMkldnnGrad(t *testing.T, folded, mk *Frozen, x *torch.Tensor) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	var h *torch.Tensor
	if err := torch.NoGrad(func() error { h = s.Track(folded.ForwardTo(x, "layer2.0")); return h.Err() }); err != nil {
		t.Fatal(err)
	}
	grad := func(f *Frozen) *torch.Tensor {
		in := s.Track(h.Detach())
		if err := in.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		out := s.Track(f.ForwardFrom(in, "layer2.0"))
		if out.IsMkldnn() {
			t.Error("with gradients on, the oneDNN Frozen returned a tensor in oneDNN's layout")
		}
		if err := s.Track(out.Square().Sum()).Backward(); err != nil {
			t.Fatal(err)
		}
		g := in.Grad()
		if g == nil {
			t.Fatal("no gradient reached the input")
		}
		return s.Track(g)
	}
	want, got := grad(folded), grad(mk)
	if d := maxAbsDiff(t, want, got); d != 0 {
		t.Errorf("input gradient with the oneDNN Frozen differs by %g from the plain one", d)
	}
}

// TestFoldBatchNormShipped folds a shipped trained ResNet-18 (real running
// statistics) and compares every cut with the unfolded network.
func TestFoldBatchNormShipped(t *testing.T) {
	m, err := models.Load("embedded:fmnist-resnet18-w0.25-sup-seed1", models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	tr, _ := fashionSplits(t)
	x := fashionImages(t, tr, 64)
	defer x.Free()
	checkFolded(t, m.Net, x)
}

// TestFoldBatchNormBottleneck folds a small ResNet-50 (bottleneck blocks,
// downsampling shortcuts, ImageNet stem) whose batch norms were given
// running statistics and affine parameters far from the defaults.
func TestFoldBatchNormBottleneck(t *testing.T) {
	if err := torch.ManualSeed(3); err != nil {
		t.Fatal(err)
	}
	net, err := vision.NewResNet(vision.ResNetConfig{Depth: 50, Width: 0.125, InChannels: 3, Classes: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(net)
	err = torch.NoGrad(func() error {
		for _, p := range nn.NamedBuffers(net) {
			switch {
			case hasSuffix(p.Name, "running_mean"):
				if err := p.Tensor.FillNormal(0, 0.5, nil); err != nil {
					return err
				}
			case hasSuffix(p.Name, "running_var"):
				if err := p.Tensor.FillUniform(0.2, 3, nil); err != nil {
					return err
				}
			}
		}
		for _, p := range nn.NamedParameters(net) {
			if hasSuffix(p.Name, "bn1.weight") || hasSuffix(p.Name, "bn3.bias") || hasSuffix(p.Name, "downsample.1.weight") {
				if err := p.Tensor.FillUniform(0.3, 1.5, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	x := torch.Randn([]int64{4, 3, 64, 64})
	defer x.Free()
	checkFolded(t, net, x)
}

// fashionImages returns the first n images of ds, normalised with its own statistics.
func fashionImages(t *testing.T, ds *datasets.Dataset, n int) *torch.Tensor {
	t.Helper()
	l, err := data.NewLoader(ds, data.Config{BatchSize: n})
	if err != nil {
		t.Fatal(err)
	}
	for b, err := range l.Batches(0) {
		if err != nil {
			t.Fatal(err)
		}
		x := b.Scope.Keep(b.X)
		b.Close()
		return x
	}
	t.Fatal("no batch")
	return nil
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

func TestFrozenErrors(t *testing.T) {
	if _, err := NewFrozen(nil, true); err == nil {
		t.Error("nil network: no error")
	}
	net, err := vision.NewResNet(vision.ResNetConfig{Depth: 18, Width: 0.125, Stem: "cifar", InChannels: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(net)
	f, err := FoldBatchNorm(net)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x := torch.Randn([]int64{2, 1, 8, 8})
	defer x.Free()
	for what, got := range map[string]*torch.Tensor{
		"unknown cut":   f.ForwardTo(x, "layer9.9"),
		"backwards":     f.Between(x, "layer2.0", "layer1.0"),
		"no classifier": f.ForwardFrom(x, "pool"),
	} {
		if got.Err() == nil {
			t.Errorf("%s: no error", what)
			got.Free()
		}
	}
}
