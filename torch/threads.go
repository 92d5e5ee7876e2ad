package torch

/*
#include <pthread.h>
#include "cbridge.h"
*/
import "C"

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// libtorch's intra-op thread count belongs to the OS thread (OpenMP's), and two
// things can leave an OS thread with another count than the one asked for:
//
//   - libtorch sets a thread's count once more on its first parallel operation
//     (at::init_num_threads), to the count last set on any thread: a Workers
//     worker's own count, if one started meanwhile;
//   - the bridge applies the wanted count only when it differs from the one it
//     applied before on that thread (tb::thread_setup), so a count changed behind
//     it (by the above, or tb_set_num_threads on that thread) stays.
//
// So the Go side keeps the wanted count and, wherever work starts on a held OS
// thread (NoGrad, WithGrad, InferenceMode, LockThread, each job of a worker),
// reads the thread's count and sets it again when it differs: one cheap call when
// it is right, which is almost always.

// wantThreads is the intra-op thread count SetNumThreads asked for.
var wantThreads atomic.Int32

// ownThreads maps the OS threads of live Workers (pthread_self) to their own
// thread counts; liveWorkers counts them, so that without workers nothing is
// looked up.
var (
	ownThreads  sync.Map // C.pthread_t → int
	liveWorkers atomic.Int32
)

func init() {
	wantThreads.Store(int32(runtime.NumCPU()))
	C.tb_set_num_threads(C.int(runtime.NumCPU()))
}

// SetNumThreads sets the number of threads libtorch uses inside one operation
// (n ≥ 1), for every OS thread: work started by NoGrad, WithGrad,
// InferenceMode or LockThread runs with it on whichever OS thread it lands
// (a Workers worker keeps its own count).
func SetNumThreads(n int) error {
	if n < 1 {
		return errorf("set_num_threads", "threads must be ≥ 1, got %d", n)
	}
	if n > math.MaxInt32 {
		return errorf("set_num_threads", "threads must be at most %d, got %d", math.MaxInt32, n)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wantThreads.Store(int32(n))
	C.tb_set_num_threads(C.int(n))
	syncThreads()
	return nil
}

// NumThreads returns the intra-op thread count that work started on the
// calling goroutine runs with: SetNumThreads's, or inside a Workers job the
// worker's own. It sets the calling OS thread's count first if it differs.
func NumThreads() int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syncThreads()
	return int(C.tb_get_num_threads())
}

// LockThread locks the calling goroutine to its OS thread
// (runtime.LockOSThread), as loops that call libtorch many times do, and sets
// that thread's intra-op thread count to SetNumThreads's if it differs. Call
// the function it returns to unlock.
func LockThread() (unlock func()) {
	runtime.LockOSThread()
	syncThreads()
	return runtime.UnlockOSThread
}

// syncThreads sets the calling OS thread's intra-op thread count to the one
// work on it should have (a worker's own, else SetNumThreads's) when it
// differs. The caller holds the OS thread.
func syncThreads() {
	want, own := int(wantThreads.Load()), false
	if liveWorkers.Load() > 0 {
		if n, ok := ownThreads.Load(C.pthread_self()); ok {
			want, own = n.(int), true
		}
	}
	if want < 1 {
		return
	}
	// Reading the count also runs libtorch's first-use initialisation of this
	// thread, so what is set below stays.
	if int(C.tb_get_num_threads()) == want {
		return
	}
	if own {
		// The bridge has applied want on this thread already, as it thinks: make it
		// apply another count and then want again.
		C.tb_set_thread_threads(C.int(want + 1))
		C.tb_set_thread_threads(C.int(want))
		return
	}
	C.tb_set_num_threads(C.int(want))
}

// ownThreadCount gives the calling OS thread (held by a worker) its own
// intra-op thread count n until the returned function is called, which
// returns it to SetNumThreads's.
func ownThreadCount(n int) (restore func()) {
	self := C.pthread_self()
	ownThreads.Store(self, n)
	liveWorkers.Add(1)
	C.tb_set_thread_threads(C.int(n))
	syncThreads()
	return func() {
		ownThreads.Delete(self)
		liveWorkers.Add(-1)
		C.tb_set_thread_threads(0)
		syncThreads()
	}
}
