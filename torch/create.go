package torch

/*
#include <stdlib.h>
#include "cbridge.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Element is a Go type that maps directly to a tensor dtype.
type Element interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~int16 | ~int8 | ~uint8 | ~bool
}

func dtypeOf[T Element]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	case int32:
		return Int32
	case int16:
		return Int16
	case int8:
		return Int8
	case uint8:
		return Uint8
	case bool:
		return Bool
	}
	return -1
}

func numelOf(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

// FromSlice copies data into a new CPU tensor of the given shape (a 1-D tensor
// when shape is empty). The element type picks the dtype.
func FromSlice[T Element](data []T, shape ...int64) *Tensor {
	if len(shape) == 0 {
		shape = []int64{int64(len(data))}
	}
	for _, s := range shape {
		if s < 0 {
			return ErrTensor(errorf("from_slice", "negative size in shape %v", shape))
		}
	}
	if n := numelOf(shape); n != int64(len(data)) {
		return ErrTensor(errorf("from_slice", "shape %v needs %d elements, slice has %d", shape, n, len(data)))
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	var h C.tb_tensor
	e := C.tb_from_data(p, cInts(shape), C.int(len(shape)), C.int(dtypeOf[T]().scalarType()), &h)
	runtime.KeepAlive(data)
	return result("from_slice", e, h)
}

// Scalar returns a 0-dimensional float32 tensor holding v.
func Scalar(v float32) *Tensor {
	var h C.tb_tensor
	return result("scalar", C.tb_full(nil, 0, C.double(v), C.int(Float32.scalarType()), 0, 0, &h), h)
}

// ToSlice copies t's elements (moved to the CPU, row-major) into a new Go slice.
// T must match t's dtype.
func ToSlice[T Element](t *Tensor) ([]T, error) {
	in, err := t.info()
	if err != nil {
		return nil, err
	}
	if want := dtypeOf[T](); in.dtype != want {
		return nil, errorf("to_slice", "tensor is %v, not %v", in.dtype, want)
	}
	out := make([]T, in.numel)
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	e := C.tb_copy_to(t.h, p, C.int64_t(in.numel*int64(in.dtype.Size())))
	runtime.KeepAlive(t)
	if err := takeError("to_slice", e); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32s copies t's elements into a []float32, converting from any dtype.
func (t *Tensor) Float32s() ([]float32, error) {
	if t.DType() == Float32 {
		return ToSlice[float32](t)
	}
	c := t.To(Float32)
	defer c.Free()
	return ToSlice[float32](c)
}

// Float64s copies t's elements into a []float64, converting from any dtype.
func (t *Tensor) Float64s() ([]float64, error) {
	if t.DType() == Float64 {
		return ToSlice[float64](t)
	}
	c := t.To(Float64)
	defer c.Free()
	return ToSlice[float64](c)
}

// Int64s copies t's elements into a []int64, converting from any dtype.
func (t *Tensor) Int64s() ([]int64, error) {
	if t.DType() == Int64 {
		return ToSlice[int64](t)
	}
	c := t.To(Int64)
	defer c.Free()
	return ToSlice[int64](c)
}

// Item returns the value of a one-element tensor as a float64.
func (t *Tensor) Item() (float64, error) {
	if err := check("item", t); err != nil {
		return 0, err
	}
	var v C.double
	e := C.tb_item_double(t.h, &v)
	runtime.KeepAlive(t)
	return float64(v), takeError("item", e)
}

// ItemInt returns the value of a one-element tensor as an int64.
func (t *Tensor) ItemInt() (int64, error) {
	if err := check("item", t); err != nil {
		return 0, err
	}
	var v C.int64_t
	e := C.tb_item_int64(t.h, &v)
	runtime.KeepAlive(t)
	return int64(v), takeError("item", e)
}

// Options says what dtype and device a new tensor gets. The zero value is
// float32 on the CPU.
type Options struct {
	DType  DType
	Device Device
	// Generator, when set, draws random values from this stream instead of the global one.
	Generator *Generator
}

// opts returns o, or the default when none is given.
func opts(o []Options) Options {
	if len(o) == 0 {
		return Options{DType: Float32}
	}
	return o[0]
}

// Full returns a tensor of the given shape filled with v.
func Full(shape []int64, v float64, o ...Options) *Tensor {
	op := opts(o)
	var h C.tb_tensor
	e := C.tb_full(cInts(shape), C.int(len(shape)), C.double(v), C.int(op.DType.scalarType()),
		C.int(op.Device.Type), C.int(op.Device.Index), &h)
	return result("full", e, h)
}

// Zeros returns a tensor of zeros.
func Zeros(shape []int64, o ...Options) *Tensor { return Full(shape, 0, o...) }

// Ones returns a tensor of ones.
func Ones(shape []int64, o ...Options) *Tensor { return Full(shape, 1, o...) }

// Arange returns the values start, start+step, ... below end.
func Arange(start, end, step float64, o ...Options) *Tensor {
	op := opts(o)
	var h C.tb_tensor
	e := C.tb_arange(C.double(start), C.double(end), C.double(step), C.int(op.DType.scalarType()),
		C.int(op.Device.Type), C.int(op.Device.Index), &h)
	return result("arange", e, h)
}

// Eye returns the n×n identity matrix.
func Eye(n int64, o ...Options) *Tensor {
	op := opts(o)
	var h C.tb_tensor
	e := C.tb_eye(C.int64_t(n), C.int(op.DType.scalarType()), C.int(op.Device.Type), C.int(op.Device.Index), &h)
	return result("eye", e, h)
}

func random(name string, kind C.tb_random_kind, shape []int64, o []Options) *Tensor {
	op := opts(o)
	var h C.tb_tensor
	e := C.tb_random(kind, cInts(shape), C.int(len(shape)), C.int(op.DType.scalarType()), C.int(op.Device.Type),
		C.int(op.Device.Index), op.Generator.handle(), &h)
	runtime.KeepAlive(op.Generator)
	return result(name, e, h)
}

// Rand returns uniform random values in [0, 1).
func Rand(shape []int64, o ...Options) *Tensor {
	return random("rand", C.TB_RANDOM_UNIFORM01, shape, o)
}

// Randn returns standard normal random values.
func Randn(shape []int64, o ...Options) *Tensor {
	return random("randn", C.TB_RANDOM_NORMAL01, shape, o)
}

// RandInt returns int64 values drawn uniformly from [low, high).
func RandInt(low, high int64, shape []int64, o ...Options) *Tensor {
	op := opts(o)
	var h C.tb_tensor
	e := C.tb_randint(C.int64_t(low), C.int64_t(high), cInts(shape), C.int(len(shape)),
		C.int(op.Device.Type), C.int(op.Device.Index), op.Generator.handle(), &h)
	runtime.KeepAlive(op.Generator)
	return result("randint", e, h)
}

// RandPerm returns a random permutation of 0..n-1 as int64.
func RandPerm(n int64, o ...Options) *Tensor {
	op := opts(o)
	var h C.tb_tensor
	e := C.tb_randperm(C.int64_t(n), C.int(op.Device.Type), C.int(op.Device.Index), op.Generator.handle(), &h)
	runtime.KeepAlive(op.Generator)
	return result("randperm", e, h)
}

// Empty returns an uninitialised tensor (its values are whatever memory held);
// fill it before use.
func Empty(shape []int64, o ...Options) *Tensor { return Full(shape, 0, o...) }
