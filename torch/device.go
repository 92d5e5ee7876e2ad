package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"fmt"
	"strconv"
	"strings"
)

// DeviceType is where a tensor lives: the CPU or a CUDA GPU.
type DeviceType int

// Device types.
const (
	DeviceCPU  DeviceType = 0
	DeviceCUDA DeviceType = 1
)

// Device names a device: the CPU, or CUDA GPU number Index.
type Device struct {
	Type  DeviceType
	Index int
}

// CPU is the host device.
var CPU = Device{Type: DeviceCPU}

// CUDA is the first CUDA GPU.
var CUDA = Device{Type: DeviceCUDA}

// String returns "cpu", "cuda" or "cuda:N".
func (d Device) String() string {
	if d.Type == DeviceCPU {
		return "cpu"
	}
	if d.Index == 0 {
		return "cuda"
	}
	return fmt.Sprintf("cuda:%d", d.Index)
}

// IsCUDA reports whether d is a GPU.
func (d Device) IsCUDA() bool { return d.Type == DeviceCUDA }

// ParseDevice reads "cpu", "cuda" or "cuda:N". It does not check that the device exists;
// operations on a missing device return errors.
func ParseDevice(s string) (Device, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "cpu":
		return CPU, nil
	case s == "cuda" || s == "gpu":
		return CUDA, nil
	case strings.HasPrefix(s, "cuda:"):
		n, err := strconv.Atoi(s[len("cuda:"):])
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("torch: bad device %q (want cpu, cuda or cuda:N)", s)
		}
		return Device{Type: DeviceCUDA, Index: n}, nil
	}
	return Device{}, fmt.Errorf("torch: bad device %q (want cpu, cuda or cuda:N)", s)
}

// CUDAAvailable reports whether a CUDA GPU can be used by this build on this machine.
func CUDAAvailable() bool { return C.tb_cuda_available() != 0 }

// CUDADeviceCount returns the number of CUDA GPUs visible (0 without CUDA).
func CUDADeviceCount() int { return int(C.tb_cuda_device_count()) }

// BuiltWithCUDA reports whether the bridge library was compiled against a CUDA libtorch.
func BuiltWithCUDA() bool { return C.tb_built_with_cuda() != 0 }

// CheckDevice returns an error if d cannot be used here (e.g. CUDA on a CPU build).
func CheckDevice(d Device) error {
	if d.Type == DeviceCPU {
		return nil
	}
	if !BuiltWithCUDA() {
		return &Error{Op: "device", Code: CodeNoCUDA, Msg: fmt.Sprintf("%s: this build of the bridge has no CUDA support (libtorch without torch_cuda); rebuild it against a CUDA libtorch", d)}
	}
	if !CUDAAvailable() {
		return &Error{Op: "device", Code: CodeNoCUDA, Msg: fmt.Sprintf("%s: CUDA is not available on this machine (no GPU or driver found)", d)}
	}
	if n := CUDADeviceCount(); d.Index >= n {
		return &Error{Op: "device", Code: CodeNoCUDA, Msg: fmt.Sprintf("%s: device index %d out of range, %d CUDA device(s) exist", d, d.Index, n)}
	}
	return nil
}

// Synchronize waits for all work on the CUDA device to finish (no-op on the CPU).
func Synchronize(d Device) error {
	if d.Type == DeviceCPU {
		return nil
	}
	return takeError("cuda_synchronize", C.tb_cuda_synchronize(C.int(d.Index)))
}

// CUDAMemoryAllocated returns the bytes currently allocated by libtorch on a CUDA device.
func CUDAMemoryAllocated(d Device) (int64, error) {
	var n C.int64_t
	err := takeError("cuda_memory_allocated", C.tb_cuda_memory_allocated(C.int(d.Index), &n))
	return int64(n), err
}

// EmptyCUDACache releases cached, unused GPU memory back to the driver.
func EmptyCUDACache() error { return takeError("cuda_empty_cache", C.tb_cuda_empty_cache()) }
