package torch

/*
#include "cbridge.h"
*/
import "C"

import "runtime"

// ManualSeed seeds libtorch's global random generators (CPU and CUDA).
func ManualSeed(seed uint64) error {
	return takeError("manual_seed", C.tb_manual_seed(C.uint64_t(seed)))
}

// SetTF32 sets whether CUDA convolutions and matrix products may use
// TensorFloat-32 (faster on Ampere and later GPUs, at about 1e-3 relative
// error), and returns the previous setting for convolutions. libtorch allows
// it for convolutions and not for matrix products by default; SetTF32
// sets both. It has no effect on the CPU.
func SetTF32(allowed bool) bool { return C.tb_set_allow_tf32(cBool(allowed)) != 0 }

// Version returns the libtorch version the bridge was built against, e.g. "1.13.0".
func Version() string { return C.GoString(C.tb_torch_version()) }

// Generator is a seedable random stream, independent of the global one.
type Generator struct {
	h       C.tb_generator
	cleanup runtime.Cleanup // frees h if the generator becomes unreachable unclosed
}

// NewGenerator returns a generator on device d seeded with seed.
func NewGenerator(seed uint64, d Device) (*Generator, error) {
	var h C.tb_generator
	if err := takeError("generator", C.tb_generator_new(C.uint64_t(seed), C.int(d.Type), C.int(d.Index), &h)); err != nil {
		return nil, err
	}
	g := &Generator{h: h}
	g.cleanup = runtime.AddCleanup(g, freeGenerator, h)
	return g, nil
}

// Close releases the generator.
func (g *Generator) Close() {
	if g == nil || g.h == nil {
		return
	}
	g.cleanup.Stop()
	C.tb_generator_free(g.h)
	g.h = nil
}

// freeGenerator is a Generator's safety net; it must not refer to the Generator.
func freeGenerator(h C.tb_generator) { C.tb_generator_free(h) }

func (g *Generator) handle() C.tb_generator {
	if g == nil {
		return nil
	}
	return g.h
}

// NoGrad runs f with gradient recording off, on one locked OS thread with the
// thread count SetNumThreads asked for, and restores the previous mode afterwards. It returns f's error, so that a
// caller need not carry the error out in a variable. Use it for evaluation and
// for in-place parameter updates.
func NoGrad(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syncThreads()
	prev := C.tb_is_grad_enabled()
	C.tb_set_grad_enabled(0)
	defer C.tb_set_grad_enabled(prev)
	return f()
}

// WithGrad runs f with gradient recording on (e.g. inside a NoGrad section),
// on one locked OS thread as NoGrad does, and returns f's error.
func WithGrad(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syncThreads()
	prev := C.tb_is_grad_enabled()
	C.tb_set_grad_enabled(1)
	defer C.tb_set_grad_enabled(prev)
	return f()
}

// GradEnabled reports whether gradient recording is on for the calling thread.
// It is only meaningful inside NoGrad/WithGrad/InferenceMode, where the goroutine is locked.
func GradEnabled() bool { return C.tb_is_grad_enabled() != 0 }

// InferenceMode runs f in libtorch's inference mode (no autograd bookkeeping at
// all; faster than NoGrad), on one locked OS thread as NoGrad does, and returns f's error, or the error of entering the
// mode (then f does not run). Tensors made inside cannot later be used in
// autograd.
func InferenceMode(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syncThreads()
	var g C.tb_guard
	if err := takeError("inference_mode", C.tb_inference_mode_enter(&g)); err != nil {
		return err
	}
	defer C.tb_guard_free(g)
	return f()
}

// RNGState returns the state of device d's default random generator (the one
// ManualSeed seeds and operations without a Generator draw from) as a uint8
// tensor, like torch.get_rng_state. SetRNGState puts it back, so that a run
// resumed from a checkpoint draws what the uninterrupted run would have.
func RNGState(d Device) *Tensor {
	var h C.tb_tensor
	return result("rng_get_state", C.tb_rng_get_state(C.int(d.Type), C.int(d.Index), &h), h)
}

// SetRNGState sets device d's default random generator to a state RNGState
// returned on the same device type.
func SetRNGState(d Device, state *Tensor) error {
	if err := check("rng_set_state", state); err != nil {
		return err
	}
	err := takeError("rng_set_state", C.tb_rng_set_state(C.int(d.Type), C.int(d.Index), state.h))
	runtime.KeepAlive(state)
	return err
}
