package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
)

// Tensor is a handle to a libtorch tensor, or to the error that prevented its
// creation. The zero value is not useful; tensors come from constructors and
// operations.
type Tensor struct {
	h     C.tb_tensor
	err   error
	scope *Scope
	// cleanup frees h if t becomes unreachable while it holds h outside a
	// scope (armed when hasCleanup is set): the safety net.
	cleanup    runtime.Cleanup
	hasCleanup bool
}

// freeHandle releases a handle; it is the safety net's cleanup, so it must not
// refer to the Tensor.
func freeHandle(h C.tb_tensor) { C.tb_tensor_free(h) }

// armCleanup makes the garbage collector free t's handle once t is unreachable.
func (t *Tensor) armCleanup() {
	if t.hasCleanup || t.h == nil {
		return
	}
	t.cleanup = runtime.AddCleanup(t, freeHandle, t.h)
	t.hasCleanup = true
}

// disarmCleanup cancels the safety net (the handle is freed, or a scope owns t).
func (t *Tensor) disarmCleanup() {
	if t.hasCleanup {
		t.cleanup.Stop()
		t.hasCleanup = false
	}
}

// Err returns the error carried by t (nil for a good tensor). A nil *Tensor
// reports an error too.
func (t *Tensor) Err() error {
	if t == nil {
		return errorf("tensor", "nil tensor")
	}
	return t.err
}

// Scope returns the scope t belongs to, or nil when it has none. Functions that
// build several tensors from t use it to put their result where t lives.
func (t *Tensor) Scope() *Scope {
	if t == nil {
		return nil
	}
	return t.scope
}

// Freed reports whether t's libtorch memory has already been released.
func (t *Tensor) Freed() bool { return t != nil && t.err == nil && t.h == nil }

// Free releases t's handle now. Using t afterwards returns an error. Free is
// safe to call twice and on error tensors.
func (t *Tensor) Free() {
	if t == nil || t.h == nil {
		return
	}
	t.disarmCleanup()
	C.tb_tensor_free(t.h)
	t.h = nil
}

// ErrTensor returns a tensor carrying err, for functions that build tensors
// and must report a failure in the same shape.
func ErrTensor(err error) *Tensor { return &Tensor{err: err} }

// wrapHandle makes a Go tensor for a new handle. It joins scope s if s is not
// nil, else gets the garbage collector's safety net (armCleanup).
func wrapHandle(h C.tb_tensor, s *Scope) *Tensor {
	t := &Tensor{h: h}
	if s != nil && s.add(t) {
		return t
	}
	t.armCleanup()
	return t
}

// check returns the first error among the operands: a carried error, a nil
// tensor, or a freed one.
func check(op string, ts ...*Tensor) error {
	for _, t := range ts {
		if t == nil {
			return errorf(op, "nil tensor operand")
		}
		if t.err != nil {
			return t.err
		}
		if t.h == nil {
			return errorf(op, "use of a freed tensor")
		}
	}
	return nil
}

// scopeOf returns the scope of the first operand that has one.
func scopeOf(ts ...*Tensor) *Scope {
	for _, t := range ts {
		if t != nil && t.scope != nil {
			return t.scope
		}
	}
	return nil
}

// result turns a bridge call's outcome into a tensor in the scope of the operands.
func result(op string, e C.tb_error, h C.tb_tensor, operands ...*Tensor) *Tensor {
	runtime.KeepAlive(operands)
	if err := takeError(op, e); err != nil {
		return &Tensor{err: err}
	}
	return wrapHandle(h, scopeOf(operands...))
}

// Scope owns tensors made during one unit of work (a training step, a batch)
// and frees them all on Close. Results of operations join the scope of their
// first scoped operand; Track adds others, Keep takes one out. A Scope may be
// used from several goroutines.
type Scope struct {
	mu      sync.Mutex
	tensors []*Tensor
	closed  bool
}

// NewScope returns an empty scope.
func NewScope() *Scope { return &Scope{} }

func (s *Scope) add(t *Tensor) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	t.scope = s
	s.tensors = append(s.tensors, t)
	return true
}

// Track puts t (and so the results computed from it) in the scope and returns t.
// A tensor already in another scope moves here.
func (s *Scope) Track(t *Tensor) *Tensor {
	if t == nil || t.h == nil {
		return t
	}
	if t.scope == s {
		return t
	}
	if t.scope != nil {
		t.scope.remove(t)
	}
	t.disarmCleanup()
	if !s.add(t) {
		t.armCleanup()
	}
	return t
}

func (s *Scope) remove(t *Tensor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, u := range s.tensors {
		if u == t {
			s.tensors[i] = nil
			break
		}
	}
	t.scope = nil
}

// Keep takes t out of the scope so that it survives Close, and returns t.
// Tensors computed from t afterwards no longer join the scope.
func (s *Scope) Keep(t *Tensor) *Tensor {
	if t == nil || t.scope != s {
		return t
	}
	s.remove(t)
	t.armCleanup()
	return t
}

// Close frees every tensor still in the scope. Tensors made from scoped
// operands after Close are unscoped.
func (s *Scope) Close() {
	s.mu.Lock()
	ts := s.tensors
	s.tensors = nil
	s.closed = true
	s.mu.Unlock()
	for _, t := range ts {
		if t != nil {
			t.Free()
			t.scope = nil
		}
	}
}

// Len returns the number of tensors the scope holds.
func (s *Scope) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tensors {
		if t != nil {
			n++
		}
	}
	return n
}

// LiveTensors returns the number of tensor handles made and not yet freed,
// across the whole process.
func LiveTensors() int64 { return int64(C.tb_live_tensors()) }

// ReleaseMemory returns freed heap pages to the operating system.
func ReleaseMemory() { C.tb_malloc_trim() }

// info reads a tensor's metadata.
type tensorInfo struct {
	dtype        DType
	device       Device
	ndim         int
	requiresGrad bool
	isLeaf       bool
	numel        int64
}

func (t *Tensor) info() (tensorInfo, error) {
	if err := check("info", t); err != nil {
		return tensorInfo{}, err
	}
	var dt, dty, dix, nd, rg, leaf C.int
	var n C.int64_t
	e := C.tb_tensor_info(t.h, &dt, &dty, &dix, &nd, &rg, &leaf, &n)
	runtime.KeepAlive(t)
	if err := takeError("info", e); err != nil {
		return tensorInfo{}, err
	}
	d := Device{Type: DeviceType(dty)}
	if d.Type == DeviceCUDA {
		d.Index = int(dix)
	}
	return tensorInfo{dtypeFromScalarType(int(dt)), d, int(nd), rg != 0, leaf != 0, int64(n)}, nil
}

// Shape returns the tensor's sizes, or the error t carries (or meets reading them).
func (t *Tensor) Shape() ([]int64, error) {
	in, err := t.info()
	if err != nil {
		return nil, err
	}
	shape := make([]int64, in.ndim)
	if in.ndim > 0 {
		e := C.tb_tensor_shape(t.h, cInts(shape))
		runtime.KeepAlive(t)
		if err := takeError("shape", e); err != nil {
			return nil, err
		}
	}
	return shape, nil
}

// Size returns the size of dimension dim (negative counts from the end), or
// the error t carries, or an error naming dim when t has no such dimension.
func (t *Tensor) Size(dim int) (int64, error) {
	s, err := t.Shape()
	if err != nil {
		return 0, err
	}
	d := dim
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		return 0, errorf("size", "dim %d out of range for a tensor of shape %v", dim, s)
	}
	return s[d], nil
}

// Dim returns the number of dimensions, or the error t carries.
func (t *Tensor) Dim() (int, error) {
	in, err := t.info()
	return in.ndim, err
}

// Numel returns the number of elements.
func (t *Tensor) Numel() int64 {
	in, _ := t.info()
	return in.numel
}

// DType returns the element type.
func (t *Tensor) DType() DType {
	in, _ := t.info()
	return in.dtype
}

// Device returns where the tensor lives.
func (t *Tensor) Device() Device {
	in, _ := t.info()
	return in.device
}

// RequiresGrad reports whether autograd records operations on t.
func (t *Tensor) RequiresGrad() bool {
	in, _ := t.info()
	return in.requiresGrad
}

// IsLeaf reports whether t is a leaf of the autograd graph.
func (t *Tensor) IsLeaf() bool {
	in, _ := t.info()
	return in.isLeaf
}

// String describes the tensor briefly: dtype, shape and device (not values).
func (t *Tensor) String() string {
	if err := t.Err(); err != nil {
		return fmt.Sprintf("Tensor(error: %v)", err)
	}
	if t.h == nil {
		return "Tensor(freed)"
	}
	in, err := t.info()
	if err != nil {
		return fmt.Sprintf("Tensor(error: %v)", err)
	}
	shape, err := t.Shape()
	if err != nil {
		return fmt.Sprintf("Tensor(error: %v)", err)
	}
	return fmt.Sprintf("Tensor(%v, %v, %v)", in.dtype, shape, in.device)
}

// FirstError returns the first error among tensors (nil if all are good).
func FirstError(ts ...*Tensor) error {
	for _, t := range ts {
		if err := t.Err(); err != nil {
			return err
		}
	}
	return nil
}

// FreeAll frees each tensor.
func FreeAll(ts ...*Tensor) {
	for _, t := range ts {
		t.Free()
	}
}

// Escape takes t out of whatever scope holds it, so that it outlives the
// scope's Close (Free, or else the garbage collector's safety net, then
// releases it), and returns t.
func (t *Tensor) Escape() *Tensor {
	if t == nil || t.scope == nil {
		return t
	}
	return t.scope.Keep(t)
}

// Then applies f to t and frees t, returning f's result: for chaining layers
// on intermediate activations that nothing else holds, so that each is
// released as soon as the next one exists (autograd keeps its own references
// to what it saved). Do not use it on a tensor the caller still needs.
func (t *Tensor) Then(f func(*Tensor) *Tensor) *Tensor {
	y := f(t)
	if y != t {
		t.Free()
	}
	return y
}
