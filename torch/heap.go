package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
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
}

// TrainingHeap is the setting the binding applies at start-up (see TuneHeap):
// blocks up to 32 MiB (glibc's ceiling for its own dynamic threshold) come
// from the heap, and 256 MiB of free heap and a 64 MiB pad stay with the
// process.
var TrainingHeap = HeapConfig{MmapThreshold: 32 << 20, TrimThreshold: 256 << 20, TopPad: 64 << 20}

// heapTuned records whether TrainingHeap is in force from start-up.
var heapTuned bool

func init() {
	if heapTuningWanted() {
		heapTuned = TuneHeap(TrainingHeap) == nil
	}
}

// heapTuningWanted reports whether the environment leaves malloc's settings to
// the binding.
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
// arena its thread got, and up to 10% of its time. The binding therefore
// applies TrainingHeap at start-up, unless the environment sets
// MODELSTITCH_MALLOC=system or GLIBC_TUNABLES names glibc.malloc settings.
// The cost: freed memory stays with the process, up to the run's peak (which
// a training loop reaches again every step), until ReleaseMemory.
func TuneHeap(c HeapConfig) error {
	if C.tb_malloc_set_thresholds(C.int64_t(c.MmapThreshold), C.int64_t(c.TrimThreshold), C.int64_t(c.TopPad)) == 0 {
		return fmt.Errorf("torch: malloc refused %+v (not glibc, or a value out of range)", c)
	}
	return nil
}

// HeapTuned reports whether the binding applied TrainingHeap at start-up.
func HeapTuned() bool { return heapTuned }
