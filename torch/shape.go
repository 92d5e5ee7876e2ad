package torch

/*
#include "cbridge.h"
*/
import "C"

// To converts t to a dtype, returning a new tensor (t itself is unchanged).
func (t *Tensor) To(d DType) *Tensor {
	return call1("to", func(out *C.tb_tensor) C.tb_error {
		return C.tb_to(t.h, -1, 0, C.int(d.scalarType()), out)
	}, t)
}

// ToDevice moves t to device d.
func (t *Tensor) ToDevice(d Device) *Tensor {
	return call1("to", func(out *C.tb_tensor) C.tb_error {
		return C.tb_to(t.h, C.int(d.Type), C.int(d.Index), -1, out)
	}, t)
}

// ToDeviceDType moves t to device d and converts it to dtype dt in one step.
func (t *Tensor) ToDeviceDType(d Device, dt DType) *Tensor {
	return call1("to", func(out *C.tb_tensor) C.tb_error {
		return C.tb_to(t.h, C.int(d.Type), C.int(d.Index), C.int(dt.scalarType()), out)
	}, t)
}

// Clone returns a copy of t with its own memory.
func (t *Tensor) Clone() *Tensor {
	return call1("clone", func(out *C.tb_tensor) C.tb_error { return C.tb_clone(t.h, out) }, t)
}

// Ref returns a second handle to the same tensor (same memory, same autograd node).
func (t *Tensor) Ref() *Tensor {
	return call1("ref", func(out *C.tb_tensor) C.tb_error { return C.tb_shallow(t.h, out) }, t)
}

// Contiguous returns t laid out row-major in memory (t itself when it already is).
func (t *Tensor) Contiguous() *Tensor {
	return call1("contiguous", func(out *C.tb_tensor) C.tb_error { return C.tb_contiguous(t.h, out) }, t)
}

// Reshape returns t with a new shape (one size may be -1).
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	return call1("reshape", func(out *C.tb_tensor) C.tb_error {
		return C.tb_reshape(t.h, cInts(shape), C.int(len(shape)), out)
	}, t)
}

// View returns a view of t with a new shape; t must be compatible (e.g. contiguous).
func (t *Tensor) View(shape ...int64) *Tensor {
	return call1("view", func(out *C.tb_tensor) C.tb_error {
		return C.tb_view(t.h, cInts(shape), C.int(len(shape)), out)
	}, t)
}

// Expand broadcasts t to a larger shape without copying (-1 keeps a size).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	return call1("expand", func(out *C.tb_tensor) C.tb_error {
		return C.tb_expand(t.h, cInts(shape), C.int(len(shape)), out)
	}, t)
}

// Repeat tiles t reps[i] times along each dimension.
func (t *Tensor) Repeat(reps ...int64) *Tensor {
	return call1("repeat", func(out *C.tb_tensor) C.tb_error {
		return C.tb_repeat(t.h, cInts(reps), C.int(len(reps)), out)
	}, t)
}

// Permute reorders dimensions.
func (t *Tensor) Permute(dims ...int64) *Tensor {
	return call1("permute", func(out *C.tb_tensor) C.tb_error {
		return C.tb_permute(t.h, cInts(dims), C.int(len(dims)), out)
	}, t)
}

// Transpose swaps two dimensions.
func (t *Tensor) Transpose(d0, d1 int64) *Tensor {
	return call1("transpose", func(out *C.tb_tensor) C.tb_error {
		return C.tb_transpose(t.h, C.int64_t(d0), C.int64_t(d1), out)
	}, t)
}

// T returns the transpose of a matrix.
func (t *Tensor) T() *Tensor { return t.Transpose(0, 1) }

// Flatten merges dimensions start..end (inclusive; -1 is the last).
func (t *Tensor) Flatten(start, end int64) *Tensor {
	return call1("flatten", func(out *C.tb_tensor) C.tb_error {
		return C.tb_flatten(t.h, C.int64_t(start), C.int64_t(end), out)
	}, t)
}

// Squeeze removes dimension dim if its size is 1.
func (t *Tensor) Squeeze(dim int64) *Tensor {
	return call1("squeeze", func(out *C.tb_tensor) C.tb_error { return C.tb_squeeze(t.h, C.int64_t(dim), out) }, t)
}

// Unsqueeze inserts a dimension of size 1 at dim.
func (t *Tensor) Unsqueeze(dim int64) *Tensor {
	return call1("unsqueeze", func(out *C.tb_tensor) C.tb_error { return C.tb_unsqueeze(t.h, C.int64_t(dim), out) }, t)
}

// Slice returns t[start:end:step] along dim (a view).
func (t *Tensor) Slice(dim, start, end, step int64) *Tensor {
	return call1("slice", func(out *C.tb_tensor) C.tb_error {
		return C.tb_slice(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(end), C.int64_t(step), out)
	}, t)
}

// Narrow returns length elements of dim starting at start (a view).
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	return call1("narrow", func(out *C.tb_tensor) C.tb_error {
		return C.tb_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), out)
	}, t)
}

// Select returns index i of dimension dim, removing that dimension (a view).
func (t *Tensor) Select(dim, i int64) *Tensor {
	return call1("select", func(out *C.tb_tensor) C.tb_error {
		return C.tb_select(t.h, C.int64_t(dim), C.int64_t(i), out)
	}, t)
}

// IndexSelect gathers the entries of dim listed in index (int64, 1-D).
func (t *Tensor) IndexSelect(dim int64, index *Tensor) *Tensor {
	return call1("index_select", func(out *C.tb_tensor) C.tb_error {
		return C.tb_index_select(t.h, C.int64_t(dim), index.h, out)
	}, t, index)
}

// Gather picks values along dim at the positions in index (same rank as t).
func (t *Tensor) Gather(dim int64, index *Tensor) *Tensor {
	return call1("gather", func(out *C.tb_tensor) C.tb_error {
		return C.tb_gather(t.h, C.int64_t(dim), index.h, out)
	}, t, index)
}

// Flip reverses the order of elements along dims.
func (t *Tensor) Flip(dims ...int64) *Tensor {
	return call1("flip", func(out *C.tb_tensor) C.tb_error {
		return C.tb_flip(t.h, cInts(dims), C.int(len(dims)), out)
	}, t)
}

// Pad pads with a constant, pads given as in PyTorch's F.pad (last dimension first:
// left, right, top, bottom, ...).
func (t *Tensor) Pad(pads []int64, value float64) *Tensor {
	return call1("pad", func(out *C.tb_tensor) C.tb_error {
		return C.tb_pad(t.h, cInts(pads), C.int(len(pads)), C.double(value), out)
	}, t)
}

func handles(op string, ts []*Tensor) ([]C.tb_tensor, error) {
	if len(ts) == 0 {
		return nil, errorf(op, "empty tensor list")
	}
	if err := check(op, ts...); err != nil {
		return nil, err
	}
	hs := make([]C.tb_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.h
	}
	return hs, nil
}

// Cat concatenates tensors along an existing dimension.
func Cat(ts []*Tensor, dim int64) *Tensor {
	hs, err := handles("cat", ts)
	if err != nil {
		return ErrTensor(err)
	}
	var h C.tb_tensor
	e := C.tb_cat(&hs[0], C.int(len(hs)), C.int64_t(dim), &h)
	return result("cat", e, h, ts...)
}

// Stack joins tensors of equal shape along a new dimension.
func Stack(ts []*Tensor, dim int64) *Tensor {
	hs, err := handles("stack", ts)
	if err != nil {
		return ErrTensor(err)
	}
	var h C.tb_tensor
	e := C.tb_stack(&hs[0], C.int(len(hs)), C.int64_t(dim), &h)
	return result("stack", e, h, ts...)
}
