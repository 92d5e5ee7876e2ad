package torch_test

import (
	"errors"
	"slices"
	"testing"

	"modelstitch/torch"
)

// TestForeach checks the multi-tensor updates against the same updates done
// one tensor at a time (exactly equal), on tensors of different shapes and
// dtypes, and their errors.
func TestForeach(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	mk := func() []*torch.Tensor {
		return []*torch.Tensor{
			s.Track(torch.Randn([]int64{3, 4})),
			s.Track(torch.Randn([]int64{5})),
			s.Track(torch.Randn([]int64{2, 2}, torch.Options{DType: torch.Float64})),
		}
	}
	if err := torch.ManualSeed(11); err != nil {
		t.Fatal(err)
	}
	xs, ys := mk(), mk()
	want := make([]*torch.Tensor, len(xs))
	for i := range xs {
		want[i] = xs[i].Clone()
		if err := want[i].MulScalarInPlace(0.9); err != nil {
			t.Fatal(err)
		}
		if err := want[i].AddScaledInPlace(ys[i], -0.25); err != nil {
			t.Fatal(err)
		}
	}
	sums, err := torch.ForeachAddScaled(xs, ys, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range sums {
		w := xs[i].Clone()
		if err := w.AddScaledInPlace(ys[i], 3); err != nil {
			t.Fatal(err)
		}
		same(t, "ForeachAddScaled", r, w)
		if r.Scope() != s {
			t.Errorf("result %d is not in its operands' scope", i)
		}
	}
	if err := torch.ForeachMulScalarInPlace(xs, 0.9); err != nil {
		t.Fatal(err)
	}
	if err := torch.ForeachAddScaledInPlace(xs, ys, -0.25); err != nil {
		t.Fatal(err)
	}
	for i := range xs {
		same(t, "ForeachMulScalarInPlace then ForeachAddScaledInPlace", xs[i], want[i])
	}

	if err := torch.ForeachAddScaledInPlace(nil, nil, 1); err != nil {
		t.Errorf("empty lists: %v", err)
	}
	if err := torch.ForeachAddScaledInPlace(xs, ys[:2], 1); err == nil {
		t.Error("lists of different lengths gave no error")
	}
	bad := torch.ErrTensor(errors.New("earlier failure"))
	if _, err := torch.ForeachAddScaled([]*torch.Tensor{xs[0], bad}, ys[:2], 1); err == nil || err.Error() != "earlier failure" {
		t.Errorf("a carried error: %v", err)
	}
	if err := torch.ForeachAddScaledInPlace(xs[:1], []*torch.Tensor{s.Track(torch.Ones([]int64{7}))}, 1); err == nil {
		t.Error("mismatched shapes gave no error")
	}
}

// same reports an error unless a and b hold exactly the same values.
func same(t *testing.T, what string, a, b *torch.Tensor) {
	t.Helper()
	av, err := a.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	bv, err := b.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(av, bv) {
		t.Errorf("%s: %v, one tensor at a time %v", what, av, bv)
	}
}
