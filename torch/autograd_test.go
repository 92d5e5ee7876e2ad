package torch_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"modelstitch/torch"
)

func TestAutograd(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.FromSlice([]float32{1, -2, 3}))
	if x.RequiresGrad() || !x.IsLeaf() {
		t.Fatalf("new tensor: requires_grad %v leaf %v", x.RequiresGrad(), x.IsLeaf())
	}
	if x.Grad() != nil {
		t.Fatal("new tensor has a gradient")
	}
	if err := x.SetRequiresGrad(true); err != nil || !x.RequiresGrad() {
		t.Fatalf("SetRequiresGrad: %v", err)
	}
	y := x.Mul(x).Sum()
	if !y.RequiresGrad() || y.IsLeaf() {
		t.Errorf("y: requires_grad %v leaf %v", y.RequiresGrad(), y.IsLeaf())
	}
	if err := y.Backward(); err != nil {
		t.Fatal(err)
	}
	if got := floats(t, x.Grad()); !slices.Equal(got, []float64{2, -4, 6}) {
		t.Errorf("grad %v, want 2x", got)
	}
	// A second backward pass accumulates.
	if err := x.MulScalar(3).Sum().Backward(); err != nil {
		t.Fatal(err)
	}
	if got := floats(t, x.Grad()); !slices.Equal(got, []float64{5, -1, 9}) {
		t.Errorf("accumulated grad %v", got)
	}
	// The graph is freed after backward unless retained.
	z := x.Mul(x).Sum()
	if err := z.BackwardWith(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := z.Backward(); err != nil {
		t.Errorf("backward through a retained graph: %v", err)
	}
	if err := z.Backward(); err == nil {
		t.Error("third backward through a freed graph succeeded")
	}
	if err := x.ZeroGrad(); err != nil || x.Grad() != nil {
		t.Errorf("ZeroGrad: %v, grad %v", err, x.Grad())
	}
	// Non-scalar outputs need an explicit gradient.
	v := x.MulScalar(2)
	if err := v.Backward(); err == nil || !strings.Contains(err.Error(), "scalar outputs") {
		t.Errorf("Backward of a vector: %v", err)
	}
	if err := v.BackwardWith(s.Track(torch.FromSlice([]float32{1, 10, 100})), false); err != nil {
		t.Fatal(err)
	}
	if got := floats(t, x.Grad()); !slices.Equal(got, []float64{2, 20, 200}) {
		t.Errorf("vector-Jacobian product %v", got)
	}
	// Detach cuts the graph but shares memory.
	d := x.Detach()
	if d.RequiresGrad() || !d.IsLeaf() {
		t.Error("detached tensor still records grad")
	}
	if err := d.Fill(7); err != nil {
		t.Fatal(err)
	}
	if got := floats(t, x); !slices.Equal(got, []float64{7, 7, 7}) {
		t.Errorf("detach does not share memory: x = %v", got)
	}
	// Backward from something that does not require grad fails cleanly.
	if err := s.Track(torch.Ones([]int64{2})).Sum().Backward(); err == nil {
		t.Error("backward without requires_grad succeeded")
	}
}

func TestNoGradAndInferenceMode(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	w := s.Track(torch.FromSlice([]float32{1, 2}))
	_ = w.SetRequiresGrad(true)
	var y, inner *torch.Tensor
	var off, on bool
	if err := torch.NoGrad(func() error {
		off = torch.GradEnabled()
		y = w.MulScalar(2)
		if err := torch.WithGrad(func() error {
			on = torch.GradEnabled()
			inner = w.MulScalar(2)
			return inner.Err()
		}); err != nil {
			return err
		}
		// In-place updates of a leaf that requires grad are allowed here.
		if err := w.AddScalarInPlace(1); err != nil {
			t.Errorf("in-place update under NoGrad: %v", err)
		}
		return y.Err()
	}); err != nil {
		t.Fatal(err)
	}
	// The sections hand back the function's error.
	sentinel := errors.New("sentinel")
	if err := torch.NoGrad(func() error { return sentinel }); err != sentinel {
		t.Errorf("NoGrad returned %v, want the function's error", err)
	}
	if err := torch.WithGrad(func() error { return sentinel }); err != sentinel {
		t.Errorf("WithGrad returned %v, want the function's error", err)
	}
	if err := torch.InferenceMode(func() error { return sentinel }); err != sentinel {
		t.Errorf("InferenceMode returned %v, want the function's error", err)
	}
	if off || !on {
		t.Errorf("GradEnabled: %v under NoGrad, %v under WithGrad", off, on)
	}
	if y.RequiresGrad() {
		t.Error("NoGrad recorded a gradient")
	}
	if !inner.RequiresGrad() {
		t.Error("WithGrad inside NoGrad did not record")
	}
	if !w.MulScalar(2).RequiresGrad() {
		t.Error("grad mode not restored after NoGrad")
	}
	// Outside NoGrad an in-place update of such a leaf is an error, not a crash.
	if err := w.AddScalarInPlace(1); err == nil || !strings.Contains(err.Error(), "leaf Variable that requires grad") {
		t.Errorf("in-place update of a leaf outside NoGrad: %v", err)
	}

	var inf *torch.Tensor
	if err := torch.InferenceMode(func() error { inf = w.MulScalar(3); return inf.Err() }); err != nil {
		t.Fatal(err)
	}
	s.Track(inf)
	if inf.RequiresGrad() {
		t.Error("InferenceMode recorded a gradient")
	}
	if got := floats(t, inf); !slices.Equal(got, []float64{6, 9}) {
		t.Errorf("inference result %v", got)
	}
	// Inference tensors cannot enter autograd; a clone can.
	if err := inf.Mul(w).Err(); err == nil || !strings.Contains(err.Error(), "Inference tensors") {
		t.Errorf("inference tensor in autograd: %v", err)
	}
	if err := inf.Clone().Mul(w).Sum().Backward(); err != nil {
		t.Errorf("clone of an inference tensor in autograd: %v", err)
	}
}
