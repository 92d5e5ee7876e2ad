package budget

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"modelstitch/experiments/invalid"
	"modelstitch/torch/vision"
)

func TestAvailableIsAFiniteHeadroom(t *testing.T) {
	l := Available()
	if !(l.Bytes > 0) || l.Bytes > 1<<50 || l.From == "" {
		t.Errorf("available %v bytes from %q", l.Bytes, l.From)
	}
}

// TestAvailableHonoursTheAddressSpaceLimit lowers this process's soft
// address-space limit to 256 MiB above its current size for a moment.
func TestAvailableHonoursTheAddressSpaceLimit(t *testing.T) {
	vm, ok := procField("/proc/self/status", "VmSize:")
	if !ok {
		t.Skip("no /proc/self/status")
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(vm*1024) + 256<<20
	if lim.Cur > old.Max {
		t.Skip("the hard limit is below the test's")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
		t.Fatal(err)
	}
	l := Available()
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &old); err != nil {
		t.Fatal(err)
	}
	// The process's address space may shrink between the two readings (a
	// thread's 64 MiB malloc arena given back, as seen once on a loaded
	// machine: 320 MiB left), so allow two arenas beside the 256 MiB.
	if !strings.Contains(l.From, "address-space") || l.Bytes > (256+2*64)<<20 {
		t.Errorf("with 256 MiB of address space left: %s bytes from %q", Bytes(l.Bytes), l.From)
	}
}

func TestCheckNamesTheSetting(t *testing.T) {
	small := vision.ResNetConfig{Depth: 18, Width: 0.25, Stem: vision.StemCIFAR, InChannels: 1, Classes: 10}
	if err := Check(Run{Net: small, Height: 28, Width: 28, Batch: 128, OptimizerSlots: 1, Training: true}, "width", "batch size"); err != nil {
		t.Errorf("a small run is refused: %v", err)
	}
	huge := small
	huge.Width = 1e6
	for _, c := range []struct {
		run   Run
		field string
	}{
		{Run{Net: huge, Height: 28, Width: 28, Batch: 128, OptimizerSlots: 1, Training: true}, "width"},
		{Run{Net: huge, ParamsOnly: true}, "width"},
		{Run{Net: small, Height: 28, Width: 28, Batch: 1 << 40, OptimizerSlots: 1, Training: true}, "batch size"},
		{Run{Net: small, Height: 1 << 20, Width: 1 << 20, Batch: 1}, "batch size"},
	} {
		err := Check(c.run, "width", "batch size")
		var s *invalid.Setting
		if !errors.As(err, &s) || s.Field != c.field {
			t.Errorf("%+v: error %v, want one about the %s", c.run, err, c.field)
			continue
		}
		for _, want := range []string{"needs at least", "available", "than the"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	}
}

func TestCheckThreads(t *testing.T) {
	for _, n := range []int{0, -1, MaxThreads() + 1, 100000} {
		if CheckThreads(n) == nil {
			t.Errorf("%d threads accepted", n)
		}
	}
	if err := CheckThreads(1); err != nil {
		t.Error(err)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[float64]string{512: "512 B", 3.5 * (1 << 30): "3.5 GiB", 200 << 20: "200 MiB", 4e19: "3.6e+07 TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%v) = %q, want %q", n, got, want)
		}
	}
}

func TestPeakResidentBytesIsPositive(t *testing.T) {
	// The kernel updates its high-water mark lazily, so it may lag VmRSS by
	// a few pages: compare loosely.
	now, peak := ResidentBytes(), PeakResidentBytes()
	if peak <= 0 || peak < now/2 {
		t.Errorf("peak resident size %d bytes, resident size now %d", peak, now)
	}
}
