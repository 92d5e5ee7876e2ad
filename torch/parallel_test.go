package torch

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
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

// onOwnThread runs f on a new goroutine locked to its OS thread and waits for
// it; with exit, the goroutine ends locked, so Go ends that OS thread too.
func onOwnThread(exit bool, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if !exit {
			defer runtime.UnlockOSThread()
		}
		f()
	}()
	<-done
}

// TestThreadCountHoldsOnEveryThread: libtorch's thread count belongs to the OS
// thread, and a goroutine may land on any: `make test` on a loaded machine saw
// one thread where two were asked for. An OS thread whose count was changed
// behind the bridge's back (here by SetNumThreads(1) on it, then 2 set on
// another thread) kept 1; and OS threads new and old, under GOMAXPROCS
// changes, thread churn and workers with their own counts, must all run work
// with the count asked for.
func TestThreadCountHoldsOnEveryThread(t *testing.T) {
	prev := NumThreads()
	defer SetNumThreads(prev)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))

	// One OS thread told 1, then another told 2: the first runs with 2.
	toThread, back := make(chan func()), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for f := range toThread {
			f()
			back <- struct{}{}
		}
	}()
	onT := func(f func()) { toThread <- f; <-back }
	var got, gotNoGrad int
	onT(func() { SetNumThreads(2); NumThreads(); SetNumThreads(1) })
	onOwnThread(false, func() { SetNumThreads(2) })
	onT(func() {
		got = NumThreads()
		NoGrad(func() error { gotNoGrad = NumThreads(); return nil })
	})
	close(toThread)
	if got != 2 || gotNoGrad != 2 {
		t.Errorf("an OS thread set to 1 and then 2 elsewhere runs with %d threads (%d in NoGrad), want 2", got, gotNoGrad)
	}

	// Churn: workers with one thread each (the count libtorch gives a thread
	// it initialises) run beside goroutines that lock OS threads, some of
	// which end them, so that new OS threads keep coming.
	for _, procs := range []int{1, 2, 8, 3} {
		runtime.GOMAXPROCS(procs)
		if err := SetNumThreads(2); err != nil {
			t.Fatal(err)
		}
		w := NewWorkers(3, 1)
		var (
			mu   sync.Mutex
			bad  []string
			wg   sync.WaitGroup
			stop = make(chan struct{})
		)
		report := func(format string, args ...any) {
			mu.Lock()
			bad = append(bad, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		wg.Go(func() {
			for done := false; !done; {
				select {
				case <-stop:
					done = true // one more round, so that at least one runs
				default:
				}
				err := w.Run(false, func(i int) error {
					if n := NumThreads(); n != 1 {
						return fmt.Errorf("worker %d has %d threads, want its own 1", i, n)
					}
					return NoGrad(func() error {
						if n := NumThreads(); n != 1 {
							return fmt.Errorf("worker %d has %d threads in NoGrad, want its own 1", i, n)
						}
						return nil
					})
				})
				if err != nil {
					report("GOMAXPROCS %d: %v", procs, err)
				}
			}
		})
		var users sync.WaitGroup
		for g := range 48 {
			users.Go(func() {
				onOwnThread(g%2 == 0, func() {
					err := NoGrad(func() error {
						x := Ones([]int64{64, 64}, Options{})
						defer x.Free()
						y := x.Matmul(x)
						defer y.Free()
						if n := NumThreads(); n != 2 {
							return fmt.Errorf("%d threads after a matmul, want 2", n)
						}
						return y.Err()
					})
					if err != nil {
						report("GOMAXPROCS %d, goroutine %d: %v", procs, g, err)
					}
				})
			})
		}
		users.Wait()
		close(stop)
		wg.Wait()
		w.Close()
		for _, b := range bad {
			t.Error(b)
		}
		if n := NumThreads(); n != 2 {
			t.Errorf("GOMAXPROCS %d: the caller has %d threads after the workers closed, want 2", procs, n)
		}
	}
}
