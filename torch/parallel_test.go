package torch

import (
	"errors"
	"fmt"
	"testing"
)

// TestWorkersThreadsAndGradMode: each worker runs with its own libtorch
// thread count and the gradient mode of the Run, the caller's thread count
// is left as it was, and errors come back by worker order.
func TestWorkersThreadsAndGradMode(t *testing.T) {
	if err := SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	w := NewWorkers(3, 1)
	defer w.Close()
	if w.N() != 3 {
		t.Fatalf("N() = %d, want 3", w.N())
	}
	threads := make([]int, 3)
	for _, grad := range []bool{true, false} {
		grads := make([]bool, 3)
		err := w.Run(grad, func(i int) error {
			threads[i], grads[i] = NumThreads(), GradEnabled()
			x := Ones([]int64{2}, Options{})
			defer x.Free()
			if err := x.SetRequiresGrad(true); err != nil {
				return err
			}
			y := x.MulScalar(3)
			defer y.Free()
			if y.RequiresGrad() != grad {
				return fmt.Errorf("worker %d: result requires grad %v with grad mode %v", i, y.RequiresGrad(), grad)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if threads[i] != 1 || grads[i] != grad {
				t.Errorf("grad %v: worker %d ran with %d threads, grad mode %v; want 1, %v", grad, i, threads[i], grads[i], grad)
			}
		}
	}
	if n := NumThreads(); n != 2 {
		t.Errorf("the caller has %d threads after the workers ran, want 2", n)
	}
	e1, e2 := errors.New("one"), errors.New("two")
	err := w.Run(false, func(i int) error {
		switch i {
		case 1:
			return e1
		case 2:
			return e2
		}
		return nil
	})
	if !errors.Is(err, e1) {
		t.Errorf("Run returned %v, want worker 1's error", err)
	}
	var nilW *Workers
	ran := 0
	if err := nilW.Run(true, func(i int) error { ran += i + 1; return nil }); err != nil || ran != 1 || nilW.N() != 1 {
		t.Errorf("nil Workers: err %v, ran %d, N %d; want fn(0) once on the caller and N 1", err, ran, nilW.N())
	}
	if NewWorkers(1, 4) != nil {
		t.Error("NewWorkers(1, …) is not nil")
	}
}
