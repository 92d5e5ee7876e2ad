package stitch

import (
	"fmt"
	"sync"

	"modelstitch/torch"
)

// inOrder runs compute(b) for the batches b = 0 … nb−1 on the workers
// (batch b on worker b mod N; see torch.Workers) and hands each result
// to consume on the calling goroutine in batch order, so that what consume
// does (adding to a count, copying into a cache, reporting progress) needs
// no locks and comes out the same for any number of workers. A worker is at
// most one batch ahead of consume. After the first error nothing new starts,
// the results not consumed go to drop, and the error is returned (the
// earliest batch's, when several fail). The workers run without gradients.
// With nil workers everything runs on the calling goroutine.
func inOrder[T any](nb int, pool *torch.Workers, compute func(b int) (T, error), consume func(b int, v T) error, drop func(T)) error {
	workers := pool.N()
	if workers <= 1 || nb <= 1 {
		for b := range nb {
			v, err := compute(b)
			if err != nil {
				return err
			}
			if err := consume(b, v); err != nil {
				return err
			}
		}
		return nil
	}
	type result struct {
		v   T
		err error
	}
	out := make([]chan result, workers)
	for w := range out {
		out[w] = make(chan result, 1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = pool.Run(false, func(w int) error {
			defer close(out[w])
			for b := w; b < nb; b += workers {
				select {
				case <-stop:
					return nil
				default:
				}
				v, err := compute(b)
				select {
				case out[w] <- result{v, err}:
				case <-stop:
					if err == nil {
						drop(v)
					}
					return nil
				}
				if err != nil {
					return nil
				}
			}
			return nil
		})
	}()
	var first error
	for b := 0; b < nb && first == nil; b++ {
		r, ok := <-out[b%workers]
		switch {
		case !ok:
			first = fmt.Errorf("stitch: worker %d ended before batch %d", b%workers, b)
		case r.err != nil:
			first = r.err
		default:
			first = consume(b, r.v)
		}
	}
	if first != nil {
		close(stop)
		for _, ch := range out {
			for r := range ch {
				if r.err == nil {
					drop(r.v)
				}
			}
		}
	}
	wg.Wait()
	return first
}

// freeTensor is inOrder's drop for tensor results.
func freeTensor(t *torch.Tensor) { t.Free() }
