package torch_test

import (
	"strings"
	"testing"

	"modelstitch/torch"
)

// TestDevices checks parsing, naming and IsCUDA, and that CheckDevice's
// errors name the device and what is wrong with it, without advice about
// command-line flags the library does not know.
func TestDevices(t *testing.T) {
	for _, c := range []struct {
		in   string
		want torch.Device
		cuda bool
		name string
	}{
		{"cpu", torch.CPU, false, "cpu"},
		{" CUDA ", torch.CUDA, true, "cuda"},
		{"gpu", torch.CUDA, true, "cuda"},
		{"cuda:3", torch.Device{Type: torch.DeviceCUDA, Index: 3}, true, "cuda:3"},
	} {
		d, err := torch.ParseDevice(c.in)
		if err != nil || d != c.want || d.IsCUDA() != c.cuda || d.String() != c.name {
			t.Errorf("ParseDevice(%q) = %v (IsCUDA %v), %v; want %v (IsCUDA %v)", c.in, d, d.IsCUDA(), err, c.want, c.cuda)
		}
	}
	for _, bad := range []string{"", "tpu", "cuda:-1", "cuda:x"} {
		if _, err := torch.ParseDevice(bad); err == nil || !strings.Contains(err.Error(), "cpu, cuda or cuda:N") {
			t.Errorf("ParseDevice(%q): %v, want an error listing the accepted forms", bad, err)
		}
	}
	if err := torch.CheckDevice(torch.CPU); err != nil {
		t.Errorf("CheckDevice(cpu): %v", err)
	}
	missing := torch.Device{Type: torch.DeviceCUDA, Index: torch.CUDADeviceCount() + 7}
	err := torch.CheckDevice(missing)
	if err == nil || !strings.Contains(err.Error(), missing.String()) || strings.Contains(err.Error(), "--device") {
		t.Errorf("CheckDevice(%v) = %v, want an error naming %v and no flag advice", missing, err, missing)
	}
}

// TestSetNumThreadsRejectsNonPositive checks that a bad thread count is an
// error naming the value, and that the setting in force stays.
func TestSetNumThreadsRejectsNonPositive(t *testing.T) {
	before := torch.NumThreads()
	for _, n := range []int{0, -3} {
		err := torch.SetNumThreads(n)
		if err == nil || !strings.Contains(err.Error(), "threads must be ≥ 1, got") {
			t.Errorf("SetNumThreads(%d): %v, want an error naming the value", n, err)
		}
	}
	if after := torch.NumThreads(); after != before {
		t.Errorf("a rejected SetNumThreads changed the thread count from %d to %d", before, after)
	}
}
