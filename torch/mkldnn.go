package torch

// #include "cbridge.h"
import "C"

import "runtime"

// oneDNN (MKL-DNN) inference on the CPU. A tensor in oneDNN's own blocked
// layout (an "mkldnn" tensor) runs convolutions whose weights were reordered
// once (MkldnnConv2dWeight), and stays in that layout from operation to
// operation: ReluInPlace, AddInPlace, MaxPool2d and AdaptiveAvgPool2d accept
// it. A plain NCHW tensor instead has its input, output and weight reordered
// inside every convolution. Only for passes without gradients: autograd does
// not run through mkldnn tensors. ToDense brings a result back.

// MkldnnAvailable reports whether this libtorch was built with oneDNN.
func MkldnnAvailable() bool { return C.tb_has_mkldnn() != 0 }

// IsMkldnn reports whether t is in oneDNN's layout (false for a tensor that
// carries an error or was freed).
func (t *Tensor) IsMkldnn() bool {
	if t == nil || t.err != nil || t.h == nil {
		return false
	}
	v := C.tb_is_mkldnn(t.h)
	runtime.KeepAlive(t)
	return v != 0
}

// ToMkldnn returns a float32 CPU tensor in oneDNN's layout.
func (t *Tensor) ToMkldnn() *Tensor {
	return call1("to_mkldnn", func(out *C.tb_tensor) C.tb_error { return C.tb_to_mkldnn(t.h, out) }, t)
}

// ToDense returns an mkldnn tensor as a plain (strided) tensor.
func (t *Tensor) ToDense() *Tensor {
	return call1("to_dense", func(out *C.tb_tensor) C.tb_error { return C.tb_to_dense(t.h, out) }, t)
}

// MkldnnConv2dWeight returns the 4-D float32 convolution weight w reordered
// for MkldnnConv2d with the same stride, padding, dilation and groups.
func MkldnnConv2dWeight(w *Tensor, stride, padding, dilation Pair, groups int64) *Tensor {
	return call1("mkldnn_reorder_conv2d_weight", func(out *C.tb_tensor) C.tb_error {
		return C.tb_mkldnn_conv2d_weight(w.h, cInts(stride[:]), cInts(padding[:]), cInts(dilation[:]), C.int64_t(groups), out)
	}, w)
}

// MkldnnConv2d is Conv2d for an mkldnn tensor x and a weight from
// MkldnnConv2dWeight; bias (plain, may be nil) is added. The result is an
// mkldnn tensor.
func MkldnnConv2d(x, w, bias *Tensor, stride, padding, dilation Pair, groups int64) *Tensor {
	return call1("mkldnn_convolution", func(out *C.tb_tensor) C.tb_error {
		return C.tb_mkldnn_conv2d(x.h, w.h, optHandle(bias), cInts(stride[:]), cInts(padding[:]), cInts(dilation[:]), C.int64_t(groups), out)
	}, nonNil(x, w, bias)...)
}
