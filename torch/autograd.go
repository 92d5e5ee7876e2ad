package torch

/*
#include "cbridge.h"
*/
import "C"

import "runtime"

// SetRequiresGrad turns gradient tracking for t on or off (t must be a leaf to turn it on).
func (t *Tensor) SetRequiresGrad(on bool) error {
	return inplace("requires_grad", func() C.tb_error { return C.tb_set_requires_grad(t.h, cBool(on)) }, t)
}

// Backward computes gradients of the scalar t with respect to the leaves that require grad.
func (t *Tensor) Backward() error {
	return inplace("backward", func() C.tb_error { return C.tb_backward(t.h, nil, 0) }, t)
}

// BackwardWith computes gradients of t weighted by grad (for non-scalar t);
// retain keeps the graph for another backward pass.
func (t *Tensor) BackwardWith(grad *Tensor, retain bool) error {
	return inplace("backward", func() C.tb_error { return C.tb_backward(t.h, optHandle(grad), cBool(retain)) }, nonNil(t, grad)...)
}

// Grad returns a new handle to t's accumulated gradient, or nil when there is
// none. The handle joins t's scope, if any; free it (or close its scope) when done.
func (t *Tensor) Grad() *Tensor {
	if err := check("grad", t); err != nil {
		return ErrTensor(err)
	}
	var h C.tb_tensor
	e := C.tb_grad(t.h, &h)
	runtime.KeepAlive(t)
	if err := takeError("grad", e); err != nil {
		return ErrTensor(err)
	}
	if h == nil {
		return nil
	}
	return wrapHandle(h, t.scope)
}

// ZeroGrad drops t's accumulated gradient (as PyTorch's zero_grad(set_to_none=True)).
func (t *Tensor) ZeroGrad() error {
	return inplace("zero_grad", func() C.tb_error { return C.tb_zero_grad(t.h) }, t)
}

// Detach returns a tensor sharing t's memory but cut from the autograd graph.
func (t *Tensor) Detach() *Tensor {
	return call1("detach", func(out *C.tb_tensor) C.tb_error { return C.tb_detach(t.h, out) }, t)
}
