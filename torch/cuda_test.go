package torch_test

import (
	"slices"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
)

// TestSetTF32 checks that SetTF32 reports the previous setting.
func TestSetTF32(t *testing.T) {
	orig := torch.SetTF32(false)
	defer torch.SetTF32(orig)
	if prev := torch.SetTF32(true); prev {
		t.Error("SetTF32(true) after SetTF32(false) reported true before")
	}
	if prev := torch.SetTF32(false); !prev {
		t.Error("SetTF32(false) after SetTF32(true) reported false before")
	}
}

// TestCUDARuntime checks the CUDA-only calls on a GPU: devices, seeded
// generators on the device, copies both ways, the allocator's counter and
// cache, and synchronisation.
func TestCUDARuntime(t *testing.T) {
	reftest.RequireCUDA(t)
	if n := torch.CUDADeviceCount(); n < 1 {
		t.Fatalf("CUDAAvailable but %d devices", n)
	}
	if err := torch.CheckDevice(torch.Device{Type: torch.DeviceCUDA, Index: torch.CUDADeviceCount()}); err == nil {
		t.Error("CheckDevice accepted a device index past the last GPU")
	}

	draw := func(seed uint64) []float64 {
		g, err := torch.NewGenerator(seed, torch.CUDA)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		x := torch.Randn([]int64{1000}, torch.Options{Device: torch.CUDA, Generator: g})
		defer x.Free()
		if d := x.Device(); d != torch.CUDA {
			t.Fatalf("randn on %v, asked for cuda", d)
		}
		v, err := x.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b, c := draw(5), draw(5), draw(6)
	if !slices.Equal(a, b) {
		t.Error("two CUDA generators with seed 5 drew different numbers")
	}
	if slices.Equal(a, c) {
		t.Error("CUDA generators with seeds 5 and 6 drew the same numbers")
	}

	before, err := torch.CUDAMemoryAllocated(torch.CUDA)
	if err != nil {
		t.Fatal(err)
	}
	host := torch.FromSlice([]float32{1, 2, 3, 4}).Reshape(2, 2)
	defer host.Free()
	big := torch.Ones([]int64{1 << 20}, torch.Options{Device: torch.CUDA})
	after, err := torch.CUDAMemoryAllocated(torch.CUDA)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 4<<20 {
		t.Errorf("a 4 MiB CUDA tensor raised the allocated count by %d bytes", after-before)
	}
	dev := host.ToDevice(torch.CUDA)
	sq := dev.Mul(dev).ToDevice(torch.CPU)
	if err := torch.Synchronize(torch.CUDA); err != nil {
		t.Fatal(err)
	}
	got, err := sq.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{1, 4, 9, 16}) {
		t.Errorf("squares computed on the GPU: %v", got)
	}
	torch.FreeAll(big, dev, sq)
	if err := torch.EmptyCUDACache(); err != nil {
		t.Fatal(err)
	}
	end, err := torch.CUDAMemoryAllocated(torch.CUDA)
	if err != nil {
		t.Fatal(err)
	}
	if end != before {
		t.Errorf("allocated bytes %d after freeing, %d before", end, before)
	}
}
