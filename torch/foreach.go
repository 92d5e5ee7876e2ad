package torch

/*
#include "cbridge.h"
*/
import "C"

import "runtime"

// Multi-tensor ("foreach") updates: one bridge call, and on CUDA one kernel
// per chunk of tensors instead of one per tensor, for optimizers that update
// every parameter alike. On the CPU libtorch loops over the tensors.

// pairHandles checks that xs and ys are as long as each other and free of
// errors, and returns their handles (nil for empty lists).
func pairHandles(op string, xs, ys []*Tensor) (hx, hy []C.tb_tensor, err error) {
	if len(ys) != len(xs) {
		return nil, nil, errorf(op, "%d tensors and %d others", len(xs), len(ys))
	}
	if len(xs) == 0 {
		return nil, nil, nil
	}
	if hx, err = handles(op, xs); err != nil {
		return nil, nil, err
	}
	hy, err = handles(op, ys)
	return hx, hy, err
}

// ForeachAddScaledInPlace does xs[i] += alpha·ys[i] for every i.
func ForeachAddScaledInPlace(xs, ys []*Tensor, alpha float64) error {
	hx, hy, err := pairHandles("_foreach_add_", xs, ys)
	if err != nil || len(hx) == 0 {
		return err
	}
	e := C.tb_foreach_add_scaled_(&hx[0], &hy[0], C.int(len(hx)), C.double(alpha))
	runtime.KeepAlive(xs)
	runtime.KeepAlive(ys)
	return takeError("_foreach_add_", e)
}

// ForeachAddScaled returns xs[i] + alpha·ys[i] for every i as new tensors;
// each joins the scope of xs[i] or else ys[i], as an operation's result does.
func ForeachAddScaled(xs, ys []*Tensor, alpha float64) ([]*Tensor, error) {
	hx, hy, err := pairHandles("_foreach_add", xs, ys)
	if err != nil || len(hx) == 0 {
		return nil, err
	}
	outs := make([]C.tb_tensor, len(hx))
	e := C.tb_foreach_add_scaled(&hx[0], &hy[0], C.int(len(hx)), C.double(alpha), &outs[0])
	runtime.KeepAlive(xs)
	runtime.KeepAlive(ys)
	if err := takeError("_foreach_add", e); err != nil {
		return nil, err
	}
	res := make([]*Tensor, len(outs))
	for i, h := range outs {
		res[i] = wrapHandle(h, scopeOf(xs[i], ys[i]))
	}
	return res, nil
}

// ForeachMulScalarInPlace does xs[i] *= s for every i.
func ForeachMulScalarInPlace(xs []*Tensor, s float64) error {
	if len(xs) == 0 {
		return nil
	}
	hx, err := handles("_foreach_mul_", xs)
	if err != nil {
		return err
	}
	e := C.tb_foreach_mul_scalar_(&hx[0], C.int(len(hx)), C.double(s))
	runtime.KeepAlive(xs)
	return takeError("_foreach_mul_", e)
}
