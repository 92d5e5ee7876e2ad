package stitch

import (
	"errors"
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
