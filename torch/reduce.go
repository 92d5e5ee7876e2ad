package torch

/*
#include "cbridge.h"
*/
import "C"

import "runtime"

// reduceOp picks the reduction of tb_reduce (see ops.go for the pattern).
type reduceOp C.tb_reduce_op

const (
	opSum       reduceOp = C.TB_REDUCE_SUM
	opMean      reduceOp = C.TB_REDUCE_MEAN
	opAmax      reduceOp = C.TB_REDUCE_AMAX
	opAmin      reduceOp = C.TB_REDUCE_AMIN
	opVar       reduceOp = C.TB_REDUCE_VAR
	opStd       reduceOp = C.TB_REDUCE_STD
	opLogSumExp reduceOp = C.TB_REDUCE_LOGSUMEXP
	opNorm      reduceOp = C.TB_REDUCE_NORM
)

var reduceNames = [...]string{
	opSum: "sum", opMean: "mean", opAmax: "amax", opAmin: "amin", opVar: "var", opStd: "std",
	opLogSumExp: "logsumexp", opNorm: "norm",
}

func (t *Tensor) reduce(op reduceOp, dims []int64, keep bool, arg float64) *Tensor {
	return call1(reduceNames[op], func(out *C.tb_tensor) C.tb_error {
		return C.tb_reduce(C.tb_reduce_op(op), t.h, cInts(dims), C.int(len(dims)), cBool(keep), C.double(arg), out)
	}, t)
}

// Sum returns the sum of all elements (a 0-d tensor).
func (t *Tensor) Sum() *Tensor { return t.reduce(opSum, nil, false, 0) }

// SumDims sums over dims, keeping them as size 1 when keep is true.
func (t *Tensor) SumDims(dims []int64, keep bool) *Tensor { return t.reduce(opSum, dims, keep, 0) }

// Mean returns the mean of all elements.
func (t *Tensor) Mean() *Tensor { return t.reduce(opMean, nil, false, 0) }

// MeanDims averages over dims.
func (t *Tensor) MeanDims(dims []int64, keep bool) *Tensor { return t.reduce(opMean, dims, keep, 0) }

// Max returns the largest element.
func (t *Tensor) Max() *Tensor { return t.reduce(opAmax, nil, false, 0) }

// Min returns the smallest element.
func (t *Tensor) Min() *Tensor { return t.reduce(opAmin, nil, false, 0) }

// AmaxDims returns maxima over dims.
func (t *Tensor) AmaxDims(dims []int64, keep bool) *Tensor { return t.reduce(opAmax, dims, keep, 0) }

// Var returns the variance over dims (all elements when dims is empty); unbiased divides by n−1.
func (t *Tensor) Var(dims []int64, unbiased, keep bool) *Tensor {
	return t.reduce(opVar, dims, keep, boolFloat(unbiased))
}

// Std returns the standard deviation over dims (all elements when dims is empty).
func (t *Tensor) Std(dims []int64, unbiased, keep bool) *Tensor {
	return t.reduce(opStd, dims, keep, boolFloat(unbiased))
}

// Norm returns the p-norm over dims (all elements when dims is empty).
func (t *Tensor) Norm(p float64, dims []int64, keep bool) *Tensor {
	return t.reduce(opNorm, dims, keep, p)
}

// LogSumExp returns log(sum(exp(t))) over dims.
func (t *Tensor) LogSumExp(dims []int64, keep bool) *Tensor {
	return t.reduce(opLogSumExp, dims, keep, 0)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MaxDim returns the maxima along dim and their indices.
func (t *Tensor) MaxDim(dim int64, keep bool) (values, indices *Tensor) {
	if err := check("max", t); err != nil {
		return ErrTensor(err), ErrTensor(err)
	}
	var v, i C.tb_tensor
	e := C.tb_max_dim(t.h, C.int64_t(dim), cBool(keep), &v, &i)
	runtime.KeepAlive(t)
	if err := takeError("max", e); err != nil {
		return ErrTensor(err), ErrTensor(err)
	}
	return wrapHandle(v, t.scope), wrapHandle(i, t.scope)
}

// TopK returns the k largest values along dim and their indices.
func (t *Tensor) TopK(k, dim int64) (values, indices *Tensor) {
	if err := check("topk", t); err != nil {
		return ErrTensor(err), ErrTensor(err)
	}
	var v, i C.tb_tensor
	e := C.tb_topk(t.h, C.int64_t(k), C.int64_t(dim), &v, &i)
	runtime.KeepAlive(t)
	if err := takeError("topk", e); err != nil {
		return ErrTensor(err), ErrTensor(err)
	}
	return wrapHandle(v, t.scope), wrapHandle(i, t.scope)
}

// Argmax returns the indices of the maxima along dim.
func (t *Tensor) Argmax(dim int64, keep bool) *Tensor {
	return call1("argmax", func(out *C.tb_tensor) C.tb_error {
		return C.tb_argmax(t.h, C.int64_t(dim), cBool(keep), out)
	}, t)
}

// AllClose reports whether |a−b| ≤ atol + rtol·|b| everywhere.
func AllClose(a, b *Tensor, rtol, atol float64) (bool, error) {
	if err := check("allclose", a, b); err != nil {
		return false, err
	}
	var r C.int
	e := C.tb_allclose(a.h, b.h, C.double(rtol), C.double(atol), &r)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	return r != 0, takeError("allclose", e)
}
