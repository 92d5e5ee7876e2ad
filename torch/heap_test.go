package torch_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
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

// TestHeapTuning checks, in fresh processes (a heap's history decides what
// glibc does) that start as the stitch command does, with
// TuneHeapForTraining, that with the training heap settings a step's freed
// blocks serve the next step, both for a working set that fits one of glibc's
// 64 MiB per-thread heaps (8×4 MiB) and for one that spans two (24×4 MiB),
// while with glibc's own dynamic settings (MODELSTITCH_MALLOC=system, which
// TuneHeapForTraining must honour) the pages are handed back and faulted in
// again every step.
func TestHeapTuning(t *testing.T) {
	if os.Getenv("MODELSTITCH_HEAP_CHILD") != "" {
		applied, err := torch.TuneHeapForTraining()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("tuned %v %v, faults per step: %d %d\n", applied, torch.HeapTuned(), churnFaults(t, 8), churnFaults(t, 24))
		return
	}
	if testing.Short() {
		t.Skip("measures page faults in two child processes (about 30 s); skipped with -short")
	}
	measure := func(malloc string) (small, big int64) {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestHeapTuning$", "-test.count=1")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "MODELSTITCH_MALLOC=") && !strings.HasPrefix(kv, "GLIBC_TUNABLES=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "MODELSTITCH_HEAP_CHILD=1", "MODELSTITCH_MALLOC="+malloc)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child process (MODELSTITCH_MALLOC=%q): %v\n%s", malloc, err, out)
		}
		i := strings.Index(string(out), "tuned ")
		if i < 0 {
			t.Fatalf("child process said:\n%s", out)
		}
		var applied, reported bool
		if _, err := fmt.Sscanf(string(out[i:]), "tuned %t %t, faults per step: %d %d", &applied, &reported, &small, &big); err != nil {
			t.Fatalf("child process said %q: %v", out[i:], err)
		}
		if want := malloc != "system"; applied != want || reported != want {
			t.Errorf("MODELSTITCH_MALLOC=%q: TuneHeapForTraining applied %v, HeapTuned %v; want %v", malloc, applied, reported, want)
		}
		return small, big
	}
	pages := func(blocks int) int64 { return int64(blocks) * (4 << 20) / int64(syscall.Getpagesize()) }
	small, big := measure("")
	sysSmall, sysBig := measure("system")
	t.Logf("minor page faults per step of 8×4 MiB and 24×4 MiB: tuned %d and %d, glibc's defaults %d and %d",
		small, big, sysSmall, sysBig)
	for _, c := range []struct {
		blocks int
		faults int64
	}{{8, small}, {24, big}} {
		if c.faults > pages(c.blocks)/20 {
			t.Errorf("%d×4 MiB per step: %d page faults of %d pages, expected almost none", c.blocks, c.faults, pages(c.blocks))
		}
	}
	if sysBig < pages(24)/10 {
		t.Errorf("with glibc's defaults a 24×4 MiB step faulted only %d of %d pages; the comparison no longer shows what the tuning is for", sysBig, pages(24))
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
