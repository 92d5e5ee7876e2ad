package torch_test

import (
	"strings"
	"testing"

	"modelstitch/torch"
)

// TestMkldnnConvMatchesConv2d runs a small network's operations (strided and
// 1×1 convolutions with bias, relu_, add_, pooling) in oneDNN's layout and
// compares them with the plain NCHW operations.
func TestMkldnnConvMatchesConv2d(t *testing.T) {
	if !torch.MkldnnAvailable() {
		t.Skip("this libtorch was built without oneDNN")
	}
	if err := torch.ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Randn([]int64{5, 3, 12, 12}))
	w1, b1 := s.Track(torch.Randn([]int64{8, 3, 3, 3})), s.Track(torch.Randn([]int64{8}))
	w2 := s.Track(torch.Randn([]int64{8, 3, 1, 1}))
	one, two, zero := torch.P(1), torch.P(2), torch.P(0)
	err := torch.NoGrad(func() error {
		// Plain: relu(conv3×3/2(x) + conv1×1/2(x)), then pooled.
		want := s.Track(torch.Conv2d(x, w1, b1, two, one, one, 1).ReluInPlace())
		if err := want.AddInPlace(s.Track(torch.Conv2d(x, w2, nil, two, zero, one, 1))); err != nil {
			return err
		}
		wantPool := s.Track(torch.AdaptiveAvgPool2d(want, torch.P(1)))

		xm := s.Track(x.ToMkldnn())
		if !xm.IsMkldnn() || x.IsMkldnn() {
			t.Errorf("IsMkldnn: %v for the converted tensor, %v for the plain one", xm.IsMkldnn(), x.IsMkldnn())
		}
		p1 := s.Track(torch.MkldnnConv2dWeight(w1, two, one, one, 1))
		p2 := s.Track(torch.MkldnnConv2dWeight(w2, two, zero, one, 1))
		got := s.Track(torch.MkldnnConv2d(xm, p1, b1, two, one, one, 1).ReluInPlace())
		if err := got.AddInPlace(s.Track(torch.MkldnnConv2d(xm, p2, nil, two, zero, one, 1))); err != nil {
			return err
		}
		gotPool := s.Track(torch.AdaptiveAvgPool2d(got, torch.P(1)))
		if !got.IsMkldnn() || !gotPool.IsMkldnn() {
			t.Errorf("results left oneDNN's layout: conv %v, pool %v", got.IsMkldnn(), gotPool.IsMkldnn())
		}
		for _, c := range []struct {
			what      string
			want, got *torch.Tensor
		}{{"conv, relu_, add_", want, got}, {"adaptive average pool", wantPool, gotPool}} {
			dense := s.Track(c.got.ToDense())
			shape, err := dense.Shape()
			if err != nil {
				return err
			}
			wshape, _ := c.want.Shape()
			if len(shape) != len(wshape) {
				t.Fatalf("%s: shape %v, want %v", c.what, shape, wshape)
			}
			d, err := s.Track(dense.Sub(c.want).Abs().Max()).Item()
			if err != nil {
				return err
			}
			if d > 1e-4 {
				t.Errorf("%s: oneDNN layout differs from NCHW by %g", c.what, d)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMkldnnErrors: misuse is an error naming the operation, not a crash.
func TestMkldnnErrors(t *testing.T) {
	if !torch.MkldnnAvailable() {
		t.Skip("this libtorch was built without oneDNN")
	}
	s := torch.NewScope()
	defer s.Close()
	w := s.Track(torch.Randn([]int64{4, 3, 3, 3}))
	one := torch.P(1)
	for name, got := range map[string]*torch.Tensor{
		// An input of 5 channels for a weight that takes 3.
		"mkldnn_convolution": torch.MkldnnConv2d(s.Track(s.Track(torch.Randn([]int64{2, 5, 8, 8})).ToMkldnn()),
			s.Track(torch.MkldnnConv2dWeight(w, one, one, one, 1)), nil, one, one, one, 1),
		// A 2-D weight is not a convolution's.
		"mkldnn_reorder_conv2d_weight": torch.MkldnnConv2dWeight(s.Track(torch.Randn([]int64{4, 3})), one, one, one, 1),
		// float64 has no oneDNN layout.
		"to_mkldnn": s.Track(torch.Randn([]int64{2, 3}).To(torch.Float64)).ToMkldnn(),
	} {
		s.Track(got)
		err := got.Err()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the operation", name, err)
		}
	}
}
