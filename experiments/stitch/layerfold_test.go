package stitch

import (
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// TestFoldedLayerMatchesLayer compares the stitching layer folded into one
// convolution in oneDNN's layout with the layer itself in eval mode, with
// batch norms whose running statistics and affine parameters are far from
// their defaults; a 3×3 layer and a pooled (linear) layer are not folded.
func TestFoldedLayerMatchesLayer(t *testing.T) {
	if !torch.MkldnnAvailable() {
		t.Skip("this libtorch was built without oneDNN")
	}
	if err := torch.ManualSeed(3); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	l, err := NewLayer([]int64{16, 7, 7}, []int64{24, 7, 7}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(l)
	err = torch.NoGrad(func() error {
		for _, bn := range []*nn.BatchNorm{l.Pre, l.Post} {
			n := bn.Features
			for _, c := range []struct {
				dst         *torch.Tensor
				scale, base float64
			}{{bn.RunningMean, 2, -1}, {bn.RunningVar, 3, 0.1}, {bn.Weight, 2, -1}, {bn.Bias, 4, -2}} {
				v := s.Track(s.Track(torch.Rand([]int64{n})).MulScalar(c.scale).AddScalar(c.base))
				if err := c.dst.CopyFrom(v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	nn.SetTraining(l, false)
	f, ok, err := foldLayer(l)
	if err != nil || !ok {
		t.Fatalf("foldLayer: ok %v, %v", ok, err)
	}
	defer f.free()
	x := s.Track(torch.Randn([]int64{5, 16, 7, 7}))
	err = torch.NoGrad(func() error {
		want := s.Track(l.Forward(x))
		got := s.Track(f.forward(x))
		if !got.IsMkldnn() {
			t.Error("the folded layer's output is not in oneDNN's layout")
		}
		diff := s.Track(s.Track(s.Track(got.ToDense()).Sub(want)).Abs().Max())
		scale := s.Track(s.Track(want.Abs()).Max())
		d, err := diff.Item()
		if err != nil {
			return err
		}
		m, err := scale.Item()
		if err != nil {
			return err
		}
		t.Logf("largest difference %.3g of largest value %.3g", d, m)
		if d > 1e-5*m {
			t.Errorf("folded layer differs from the layer by %.3g (largest value %.3g)", d, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in, out []int64
		k       int64
	}{{[]int64{16, 7, 7}, []int64{24, 7, 7}, 3}, {[]int64{16}, []int64{24}, 1}} {
		l, err := NewLayer(c.in, c.out, c.k)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := foldLayer(l); ok || err != nil {
			t.Errorf("layer %v→%v kernel %d: folded (ok %v, %v), want it left alone", c.in, c.out, c.k, ok, err)
		}
		nn.Free(l)
	}
}
