package torch

/*
#include "cbridge.h"
*/
import "C"

import "sync"

// cnames caches C copies of the mode names Interpolate and GridSample pass,
// a small fixed set, for the process lifetime.
var cnames sync.Map

func cname(s string) *C.char {
	if v, ok := cnames.Load(s); ok {
		return v.(*C.char)
	}
	v, _ := cnames.LoadOrStore(s, C.CString(s))
	return v.(*C.char)
}

// Pair is a (height, width) pair for 2-D kernels, strides and paddings.
type Pair [2]int64

// P returns Pair{v, v}.
func P(v int64) Pair { return Pair{v, v} }

func optHandle(t *Tensor) C.tb_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

// nonNil returns the non-nil tensors among ts, for error checks on optional operands.
func nonNil(ts ...*Tensor) []*Tensor {
	out := make([]*Tensor, 0, len(ts))
	for _, t := range ts {
		if t != nil {
			out = append(out, t)
		}
	}
	return out
}

// Conv2d applies a 2-D convolution; bias may be nil.
func Conv2d(x, w, bias *Tensor, stride, padding, dilation Pair, groups int64) *Tensor {
	return call1("conv2d", func(out *C.tb_tensor) C.tb_error {
		return C.tb_conv2d(x.h, w.h, optHandle(bias), cInts(stride[:]), cInts(padding[:]), cInts(dilation[:]), C.int64_t(groups), out)
	}, nonNil(x, w, bias)...)
}

// BatchNorm normalises x over its batch (training) or with the running statistics
// (evaluation). In training, running statistics are updated in place with momentum.
// Any of weight, bias, runningMean, runningVar may be nil.
func BatchNorm(x, weight, bias, runningMean, runningVar *Tensor, training bool, momentum, eps float64) *Tensor {
	return call1("batch_norm", func(out *C.tb_tensor) C.tb_error {
		return C.tb_batch_norm(x.h, optHandle(weight), optHandle(bias), optHandle(runningMean),
			optHandle(runningVar), cBool(training), C.double(momentum), C.double(eps), out)
	}, nonNil(x, weight, bias, runningMean, runningVar)...)
}

// MaxPool2d applies 2-D max pooling.
func MaxPool2d(x *Tensor, kernel, stride, padding, dilation Pair, ceilMode bool) *Tensor {
	return call1("max_pool2d", func(out *C.tb_tensor) C.tb_error {
		return C.tb_max_pool2d(x.h, cInts(kernel[:]), cInts(stride[:]), cInts(padding[:]), cInts(dilation[:]), cBool(ceilMode), out)
	}, x)
}

// AvgPool2d applies 2-D average pooling.
func AvgPool2d(x *Tensor, kernel, stride, padding Pair) *Tensor {
	return call1("avg_pool2d", func(out *C.tb_tensor) C.tb_error {
		return C.tb_avg_pool2d(x.h, cInts(kernel[:]), cInts(stride[:]), cInts(padding[:]), out)
	}, x)
}

// AdaptiveAvgPool2d averages x down to the given output size.
func AdaptiveAvgPool2d(x *Tensor, size Pair) *Tensor {
	return call1("adaptive_avg_pool2d", func(out *C.tb_tensor) C.tb_error {
		return C.tb_adaptive_avg_pool2d(x.h, cInts(size[:]), out)
	}, x)
}

// Linear returns x·wᵀ + bias; bias may be nil.
func Linear(x, w, bias *Tensor) *Tensor {
	return call1("linear", func(out *C.tb_tensor) C.tb_error {
		return C.tb_linear(x.h, w.h, optHandle(bias), out)
	}, nonNil(x, w, bias)...)
}

// Softmax returns softmax along dim.
func Softmax(x *Tensor, dim int64) *Tensor {
	return call1("softmax", func(out *C.tb_tensor) C.tb_error { return C.tb_softmax(x.h, C.int64_t(dim), 0, out) }, x)
}

// LogSoftmax returns log-softmax along dim.
func LogSoftmax(x *Tensor, dim int64) *Tensor {
	return call1("log_softmax", func(out *C.tb_tensor) C.tb_error { return C.tb_softmax(x.h, C.int64_t(dim), 1, out) }, x)
}

// Reduction says how a loss combines per-sample values.
type Reduction int

// Loss reductions, as in PyTorch.
const (
	ReduceNone Reduction = 0
	ReduceMean Reduction = 1
	ReduceSum  Reduction = 2
)

// CrossEntropy returns the cross-entropy of logits [N,C] against int64 class
// targets [N], with optional label smoothing.
func CrossEntropy(logits, target *Tensor, labelSmoothing float64, r Reduction) *Tensor {
	return call1("cross_entropy", func(out *C.tb_tensor) C.tb_error {
		return C.tb_cross_entropy(logits.h, target.h, C.double(labelSmoothing), C.int(r), out)
	}, logits, target)
}

// MSELoss returns the mean squared error between a and b.
func MSELoss(a, b *Tensor, r Reduction) *Tensor {
	return call1("mse_loss", func(out *C.tb_tensor) C.tb_error { return C.tb_mse_loss(a.h, b.h, C.int(r), out) }, a, b)
}

// Normalize divides x by its p-norm along dim (at least eps).
func Normalize(x *Tensor, p float64, dim int64, eps float64) *Tensor {
	return call1("normalize", func(out *C.tb_tensor) C.tb_error {
		return C.tb_normalize(x.h, C.double(p), C.int64_t(dim), C.double(eps), out)
	}, x)
}

// Interpolate resizes a [N,C,H,W] tensor to size with mode "nearest", "bilinear",
// "bicubic" or "area". alignCorners applies to bilinear/bicubic.
func Interpolate(x *Tensor, size Pair, mode string, alignCorners bool) *Tensor {
	ac := C.int(-1)
	if mode == "bilinear" || mode == "bicubic" {
		ac = cBool(alignCorners)
	}
	return call1("interpolate", func(out *C.tb_tensor) C.tb_error {
		return C.tb_interpolate(x.h, cInts(size[:]), cname(mode), ac, out)
	}, x)
}

// AffineGrid builds a sampling grid [N,H,W,2] from affine matrices theta [N,2,3]
// for an output of size [N,C,H,W].
func AffineGrid(theta *Tensor, size []int64, alignCorners bool) *Tensor {
	return call1("affine_grid", func(out *C.tb_tensor) C.tb_error {
		return C.tb_affine_grid(theta.h, cInts(size), C.int(len(size)), cBool(alignCorners), out)
	}, theta)
}

// GridSample samples x at grid positions; mode "bilinear"/"nearest", padding
// "zeros"/"border"/"reflection".
func GridSample(x, grid *Tensor, mode, padding string, alignCorners bool) *Tensor {
	return call1("grid_sample", func(out *C.tb_tensor) C.tb_error {
		return C.tb_grid_sample(x.h, grid.h, cname(mode), cname(padding), cBool(alignCorners), out)
	}, x, grid)
}
