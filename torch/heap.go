package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// HeapConfig holds glibc malloc settings, in bytes.
type HeapConfig struct {
	// MmapThreshold: blocks at least this large get fresh pages from the
	// system, returned to it when freed (M_MMAP_THRESHOLD).
	MmapThreshold int64
	// TrimThreshold: free memory that may sit at the top of a heap before it
	// is returned to the system (M_TRIM_THRESHOLD).
	TrimThreshold int64
	// TopPad: extra memory asked for whenever a heap grows, and kept when it
	// shrinks; glibc's per-thread arenas delete a whole 64 MiB heap that
	// falls free unless the pad forbids it (M_TOP_PAD).
	TopPad int64
	// ArenaMax caps the number of malloc heaps (M_ARENA_MAX; 0: glibc's
	// default of 8 per core). cgo calls run on whichever OS thread the Go
	// scheduler picks, each of which may get its own arena, and with the
	// thresholds above every arena keeps up to TrimThreshold + TopPad of
	// free memory: the default stitching run peaked at 2.4 GB with about
	// 1 GB of live tensors.
	ArenaMax int64
}

// TrainingHeap is the setting TuneHeapForTraining applies: blocks up to
// 32 MiB (glibc's ceiling for its own dynamic threshold) come from the heap,
// and 256 MiB of free heap and a 64 MiB pad stay with the process, in at
// most two arenas.
var TrainingHeap = HeapConfig{MmapThreshold: 32 << 20, TrimThreshold: 256 << 20, TopPad: 64 << 20, ArenaMax: 2}

// heapTuned records whether TuneHeapForTraining put TrainingHeap in force.
var heapTuned atomic.Bool

// TuneHeapForTraining applies TrainingHeap (see TuneHeap), unless the
// environment keeps malloc's own settings: MODELSTITCH_MALLOC=system, or
// GLIBC_TUNABLES naming glibc.malloc settings. Programs that train call it
// once at start-up, before they allocate much; the library never does so by
// itself. It reports whether the settings were applied.
func TuneHeapForTraining() (bool, error) {
	if !heapTuningWanted() {
		return false, nil
	}
	if err := TuneHeap(TrainingHeap); err != nil {
		return false, err
	}
	heapTuned.Store(true)
	return true, nil
}

// heapTuningWanted reports whether the environment leaves malloc's settings to
// the program.
func heapTuningWanted() bool {
	return os.Getenv("MODELSTITCH_MALLOC") != "system" &&
		!strings.Contains(os.Getenv("GLIBC_TUNABLES"), "glibc.malloc.")
}

// TuneHeap applies c to glibc's malloc.
//
// libtorch takes a training step's activations and gradients, megabytes
// each, from malloc and frees them by the end of the step. With glibc's
// dynamic defaults the heap is trimmed, or a per-thread heap deleted, and
// then faulted in again page by page every step: the benchmark's ResNet-18
// training step (batch 128) took 11,000–28,000 page faults, depending on the
// arena its thread got, and up to 10% of its time. Training programs
// therefore apply TrainingHeap at start-up through TuneHeapForTraining, which
// MODELSTITCH_MALLOC=system (or GLIBC_TUNABLES naming glibc.malloc settings)
// turns off. The cost: freed memory stays with the process, up to the run's
// peak (which a training loop reaches again every step), until ReleaseMemory.
func TuneHeap(c HeapConfig) error {
	if C.tb_malloc_set_thresholds(C.int64_t(c.MmapThreshold), C.int64_t(c.TrimThreshold), C.int64_t(c.TopPad)) == 0 {
		return fmt.Errorf("torch: malloc refused MmapThreshold=%d, TrimThreshold=%d, TopPad=%d (not glibc, or a value out of range)",
			c.MmapThreshold, c.TrimThreshold, c.TopPad)
	}
	if c.ArenaMax > 0 && C.tb_malloc_set_arena_max(C.int64_t(c.ArenaMax)) == 0 {
		return fmt.Errorf("torch: malloc refused ArenaMax=%d (not glibc, or out of range)", c.ArenaMax)
	}
	return nil
}

// HeapTuned reports whether TuneHeapForTraining has applied TrainingHeap.
func HeapTuned() bool { return heapTuned.Load() }
