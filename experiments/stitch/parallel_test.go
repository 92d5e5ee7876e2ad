package stitch

import (
	"errors"
	"math"
	"sync/atomic"
	"testing"

	"modelstitch/torch"
)

// TestInOrderConsumesInOrder: for any number of workers every batch is
// consumed once, in batch order; after an error nothing more is consumed,
// every result computed but not consumed is dropped, and the error returned
// is the failing batch's.
func TestInOrderConsumesInOrder(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		pool := torch.NewWorkers(workers, 1)
		defer pool.Close()
		var got []int
		err := inOrder(20, pool, func(b int) (int, error) { return b * b, nil },
			func(b, v int) error {
				if v != b*b {
					t.Errorf("workers %d: batch %d got %d", workers, b, v)
				}
				got = append(got, b)
				return nil
			}, func(int) { t.Errorf("workers %d: a result was dropped without an error", workers) })
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range got {
			if b != i {
				t.Fatalf("workers %d: consumed %v, want 0…19 in order", workers, got)
			}
		}
		if len(got) != 20 {
			t.Fatalf("workers %d: consumed %d batches, want 20", workers, len(got))
		}

		boom := errors.New("boom")
		var computed, consumed, dropped atomic.Int64
		err = inOrder(40, pool, func(b int) (int, error) {
			computed.Add(1)
			if b == 7 {
				return 0, boom
			}
			return b, nil
		}, func(b, v int) error {
			consumed.Add(1)
			if b >= 7 {
				t.Errorf("workers %d: batch %d consumed after the error at 7", workers, b)
			}
			return nil
		}, func(int) { dropped.Add(1) })
		if !errors.Is(err, boom) {
			t.Errorf("workers %d: error %v, want boom", workers, err)
		}
		// Every computed batch is consumed, dropped, or is the failing one.
		if c, n, d := computed.Load(), consumed.Load(), dropped.Load(); n != 7 || c != n+d+1 {
			t.Errorf("workers %d: computed %d, consumed %d, dropped %d; want 7 consumed and the rest dropped", workers, c, n, d)
		}
	}
}

// TestSplitLossMatchesPlainLoss: the loss shared between 2, 3 and 4 workers
// (batches of 5 and 7 rows: uneven parts) has the plain mean cross-entropy's
// value and sends the same gradient to a parameter before the split.
func TestSplitLossMatchesPlainLoss(t *testing.T) {
	if err := torch.ManualSeed(3); err != nil {
		t.Fatal(err)
	}
	w := torch.Randn([]int64{4, 3}, torch.Options{DType: torch.Float64})
	defer w.Free()
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	m := torch.Randn([]int64{3, 3}, torch.Options{DType: torch.Float64})
	defer m.Free()
	top := func(z *torch.Tensor) *torch.Tensor { return z.Tanh().Mm(m) } // a frozen, nonlinear "top"
	lossAndGrad := func(pool *torch.Workers, x, y *torch.Tensor) (float64, []float64) {
		s := torch.NewScope()
		defer s.Close()
		var loss *torch.Tensor
		err := torch.WithGrad(func() error {
			loss = s.Track(splitLoss(s.Track(x.Mm(w)), y, top, pool))
			return loss.Backward()
		})
		if err != nil {
			t.Fatal(err)
		}
		v, err := loss.Item()
		if err != nil {
			t.Fatal(err)
		}
		g := s.Track(w.Grad())
		gs, err := torch.ToSlice[float64](g)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		return v, gs
	}
	for _, n := range []int64{5, 7} {
		x := torch.Randn([]int64{n, 4}, torch.Options{DType: torch.Float64})
		labels := make([]int64, n)
		for i := range labels {
			labels[i] = int64(i) % 3
		}
		y := torch.FromSlice(labels)
		want, wantG := lossAndGrad(nil, x, y)
		for _, workers := range []int{2, 3, 4} {
			pool := torch.NewWorkers(workers, 1)
			got, gotG := lossAndGrad(pool, x, y)
			pool.Close()
			if math.Abs(got-want) > 1e-12 {
				t.Errorf("n %d, %d workers: loss %v, plain %v", n, workers, got, want)
			}
			for i := range wantG {
				if math.Abs(gotG[i]-wantG[i]) > 1e-12 {
					t.Errorf("n %d, %d workers: gradient[%d] %v, plain %v", n, workers, i, gotG[i], wantG[i])
				}
			}
		}
		torch.FreeAll(x, y)
	}
}
