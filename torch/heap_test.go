package torch_test

import (
	"runtime"
	"syscall"
	"testing"

	"modelstitch/torch"
)

// minorFaults returns this process's minor page faults so far.
func minorFaults(t *testing.T) int64 {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		t.Fatal(err)
	}
	return r.Minflt
}

// churnFaults makes and frees blocks 4 MiB tensors per step, as a training
// step does with its activations, on one OS thread, and returns the minor
// page faults per step after five warm-up steps.
func churnFaults(t *testing.T, blocks int) int64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	step := func() {
		s := torch.NewScope()
		defer s.Close()
		for i := 0; i < blocks; i++ {
			x := s.Track(torch.Ones([]int64{1 << 20}))
			if err := x.Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 5; i++ {
		step()
	}
	const steps = 10
	before := minorFaults(t)
	for i := 0; i < steps; i++ {
		step()
	}
	return (minorFaults(t) - before) / steps
}

// TestHeapTuning checks that with the start-up heap settings a step's freed
// blocks serve the next step (almost no page faults per step), both for a
// working set that fits one of glibc's 64 MiB per-thread heaps and for one
// that spans two, where glibc's fixed starting settings fault every page of
// every block afresh.
func TestHeapTuning(t *testing.T) {
	if !torch.HeapTuned() {
		t.Skip("heap tuning is off in this environment (MODELSTITCH_MALLOC=system or GLIBC_TUNABLES)")
	}
	pages := func(blocks int) int64 { return int64(blocks) * (4 << 20) / int64(syscall.Getpagesize()) }
	small, big := churnFaults(t, 8), churnFaults(t, 24)
	if err := torch.TuneHeap(torch.GlibcStartHeap); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := torch.TuneHeap(torch.TrainingHeap); err != nil {
			t.Fatal(err)
		}
	}()
	untuned := churnFaults(t, 8)
	t.Logf("minor page faults per step: 8×4 MiB %d, 24×4 MiB %d; 8×4 MiB with glibc's starting settings %d",
		small, big, untuned)
	if untuned < pages(8)/8 {
		t.Errorf("with glibc's starting settings a step faulted %d pages of %d; expected most blocks to be mapped afresh", untuned, pages(8))
	}
	for _, c := range []struct {
		blocks int
		faults int64
	}{{8, small}, {24, big}} {
		if c.faults > pages(c.blocks)/20 {
			t.Errorf("%d×4 MiB per step: %d page faults of %d pages, expected almost none", c.blocks, c.faults, pages(c.blocks))
		}
	}
}

// TestTuneHeapRejectsBadThresholds checks that impossible thresholds are an error.
func TestTuneHeapRejectsBadThresholds(t *testing.T) {
	for _, c := range []torch.HeapConfig{
		{MmapThreshold: 0, TrimThreshold: 1 << 20},
		{MmapThreshold: 1 << 20, TrimThreshold: -1},
		{MmapThreshold: 1 << 40, TrimThreshold: 1 << 20},
		{MmapThreshold: 1 << 20, TrimThreshold: 1 << 20, TopPad: 1 << 40},
	} {
		if err := torch.TuneHeap(c); err == nil {
			t.Errorf("TuneHeap(%+v) gave no error", c)
		}
	}
	if torch.HeapTuned() {
		if err := torch.TuneHeap(torch.TrainingHeap); err != nil {
			t.Fatal(err)
		}
	}
}
