package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"runtime"
	"sync"
)

// Workers is a set of goroutines, each locked to its own OS thread with its
// own libtorch intra-op thread count, that run work side by side. It is for
// independent work on small tensors, where libtorch's own threads gain
// little: on two cores, two workers of one thread each finish a ResNet-18
// (width 0.25) forward pass over 28×28 images sooner than one worker with
// two threads, and far sooner when another process competes for a core
// (OpenMP's threads wait for each other; single-threaded workers do not).
// Setting a thread's libtorch thread count costs milliseconds, so a Workers
// is made once and reused for many Run calls. Inside a job, NoGrad, WithGrad,
// InferenceMode and NumThreads keep the worker's own count. A nil *Workers runs
// everything on the calling goroutine.
type Workers struct {
	jobs []chan workerJob
	wg   sync.WaitGroup
}

type workerJob struct {
	grad bool
	fn   func(worker int) error
	done chan<- workerResult
}

type workerResult struct {
	worker int
	err    error
}

// NewWorkers starts n workers (n ≥ 2; fewer gives nil, which runs work on
// the caller) with threadsEach libtorch threads each (at least 1). Close
// them when done.
func NewWorkers(n, threadsEach int) *Workers {
	if n < 2 {
		return nil
	}
	threadsEach = max(threadsEach, 1)
	w := &Workers{jobs: make([]chan workerJob, n)}
	for i := range w.jobs {
		w.jobs[i] = make(chan workerJob)
		w.wg.Add(1)
		go func(i int, jobs <-chan workerJob) {
			defer w.wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			defer ownThreadCount(threadsEach)()
			prev := C.tb_is_grad_enabled()
			defer C.tb_set_grad_enabled(prev)
			for j := range jobs {
				syncThreads()
				C.tb_set_grad_enabled(cBool(j.grad))
				j.done <- workerResult{i, j.fn(i)}
			}
		}(i, w.jobs[i])
	}
	return w
}

// N returns the number of workers (1 for nil).
func (w *Workers) N() int {
	if w == nil {
		return 1
	}
	return len(w.jobs)
}

// Run runs fn(0) … fn(N−1) at once, one per worker, with gradient
// recording on or off as grad says, and returns the first error by worker
// order once all have finished. On a nil Workers, fn(0) runs on the calling
// goroutine as it is (grad is not applied). Each fn must use its own tensors
// (or only read shared ones) and its own Scope.
func (w *Workers) Run(grad bool, fn func(worker int) error) error {
	if w == nil {
		return fn(0)
	}
	done := make(chan workerResult, len(w.jobs))
	for _, jobs := range w.jobs {
		jobs <- workerJob{grad: grad, fn: fn, done: done}
	}
	errs := make([]error, len(w.jobs))
	for range w.jobs {
		r := <-done
		errs[r.worker] = r.err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Close stops the workers (after any Run in progress) and waits for them.
func (w *Workers) Close() {
	if w == nil {
		return
	}
	for _, jobs := range w.jobs {
		close(jobs)
	}
	w.wg.Wait()
}
