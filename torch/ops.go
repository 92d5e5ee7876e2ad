package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"math"
	"sync"
)

// cnames caches C copies of op names, a small fixed set, for the process lifetime.
var cnames sync.Map

func cname(s string) *C.char {
	if v, ok := cnames.Load(s); ok {
		return v.(*C.char)
	}
	v, _ := cnames.LoadOrStore(s, C.CString(s))
	return v.(*C.char)
}

// call1 runs a bridge function producing one tensor from operands, handling
// carried errors, scopes and keep-alives.
func call1(op string, f func(out *C.tb_tensor) C.tb_error, operands ...*Tensor) *Tensor {
	if err := check(op, operands...); err != nil {
		return ErrTensor(err)
	}
	var h C.tb_tensor
	e := f(&h)
	return result(op, e, h, operands...)
}

// inplace runs a bridge function that mutates its first operand.
func inplace(op string, f func() C.tb_error, operands ...*Tensor) error {
	if err := check(op, operands...); err != nil {
		return err
	}
	e := f()
	for _, t := range operands {
		keepAlive(t)
	}
	return takeError(op, e)
}

func (t *Tensor) unary(name string) *Tensor {
	return call1(name, func(out *C.tb_tensor) C.tb_error { return C.tb_unary(cname(name), t.h, out) }, t)
}

func (t *Tensor) binary(name string, o *Tensor) *Tensor {
	return call1(name, func(out *C.tb_tensor) C.tb_error { return C.tb_binary(cname(name), t.h, o.h, out) }, t, o)
}

func (t *Tensor) scalarOp(name string, s float64) *Tensor {
	return call1(name, func(out *C.tb_tensor) C.tb_error {
		return C.tb_binary_scalar(cname(name), t.h, C.double(s), out)
	}, t)
}

// Neg returns -t.
func (t *Tensor) Neg() *Tensor { return t.unary("neg") }

// Exp returns e^t elementwise.
func (t *Tensor) Exp() *Tensor { return t.unary("exp") }

// Log returns the natural logarithm elementwise.
func (t *Tensor) Log() *Tensor { return t.unary("log") }

// Sqrt returns the square root elementwise.
func (t *Tensor) Sqrt() *Tensor { return t.unary("sqrt") }

// Rsqrt returns 1/sqrt(t) elementwise.
func (t *Tensor) Rsqrt() *Tensor { return t.unary("rsqrt") }

// Abs returns |t| elementwise.
func (t *Tensor) Abs() *Tensor { return t.unary("abs") }

// Relu returns max(t, 0) elementwise.
func (t *Tensor) Relu() *Tensor { return t.unary("relu") }

// ReluInPlace applies max(t, 0) to t's own memory and returns a new handle
// to it (like PyTorch's relu_ / ReLU(inplace=True)).
func (t *Tensor) ReluInPlace() *Tensor { return t.unary("relu_") }

// Sigmoid returns the logistic function elementwise.
func (t *Tensor) Sigmoid() *Tensor { return t.unary("sigmoid") }

// Tanh returns tanh elementwise.
func (t *Tensor) Tanh() *Tensor { return t.unary("tanh") }

// Sign returns the sign (-1, 0, 1) elementwise.
func (t *Tensor) Sign() *Tensor { return t.unary("sign") }

// Floor rounds down elementwise.
func (t *Tensor) Floor() *Tensor { return t.unary("floor") }

// Ceil rounds up elementwise.
func (t *Tensor) Ceil() *Tensor { return t.unary("ceil") }

// Round rounds to nearest (half to even) elementwise.
func (t *Tensor) Round() *Tensor { return t.unary("round") }

// Square returns t² elementwise.
func (t *Tensor) Square() *Tensor { return t.unary("square") }

// Reciprocal returns 1/t elementwise.
func (t *Tensor) Reciprocal() *Tensor { return t.unary("reciprocal") }

// LogicalNot returns the boolean negation.
func (t *Tensor) LogicalNot() *Tensor { return t.unary("logical_not") }

// IsNaN returns a boolean tensor marking NaN elements.
func (t *Tensor) IsNaN() *Tensor { return t.unary("isnan") }

// IsFinite returns a boolean tensor marking finite elements.
func (t *Tensor) IsFinite() *Tensor { return t.unary("isfinite") }

// Pinverse returns the Moore–Penrose pseudo-inverse of a matrix.
func (t *Tensor) Pinverse() *Tensor { return t.unary("pinverse") }

// Diagonal returns the main diagonal of a matrix (a view).
func (t *Tensor) Diagonal() *Tensor { return t.unary("diagonal") }

// ClampMin limits values from below: max(t, lo).
func (t *Tensor) ClampMin(lo float64) *Tensor { return t.Clamp(lo, math.Inf(1)) }

// ZerosLike returns zeros with t's shape, dtype and device.
func (t *Tensor) ZerosLike() *Tensor { return t.unary("zeros_like") }

// OnesLike returns ones with t's shape, dtype and device.
func (t *Tensor) OnesLike() *Tensor { return t.unary("ones_like") }

// RandLike returns uniform [0,1) values with t's shape, dtype and device.
func (t *Tensor) RandLike() *Tensor { return t.unary("rand_like") }

// RandnLike returns standard normal values with t's shape, dtype and device.
func (t *Tensor) RandnLike() *Tensor { return t.unary("randn_like") }

// Add returns t + o (broadcasting).
func (t *Tensor) Add(o *Tensor) *Tensor { return t.binary("add", o) }

// Sub returns t - o.
func (t *Tensor) Sub(o *Tensor) *Tensor { return t.binary("sub", o) }

// Mul returns t * o elementwise.
func (t *Tensor) Mul(o *Tensor) *Tensor { return t.binary("mul", o) }

// Div returns t / o elementwise.
func (t *Tensor) Div(o *Tensor) *Tensor { return t.binary("div", o) }

// Pow returns t ** o elementwise.
func (t *Tensor) Pow(o *Tensor) *Tensor { return t.binary("pow", o) }

// Maximum returns the elementwise maximum.
func (t *Tensor) Maximum(o *Tensor) *Tensor { return t.binary("maximum", o) }

// Minimum returns the elementwise minimum.
func (t *Tensor) Minimum(o *Tensor) *Tensor { return t.binary("minimum", o) }

// Eq returns t == o elementwise (bool).
func (t *Tensor) Eq(o *Tensor) *Tensor { return t.binary("eq", o) }

// Ne returns t != o elementwise (bool).
func (t *Tensor) Ne(o *Tensor) *Tensor { return t.binary("ne", o) }

// Lt returns t < o elementwise (bool).
func (t *Tensor) Lt(o *Tensor) *Tensor { return t.binary("lt", o) }

// Le returns t <= o elementwise (bool).
func (t *Tensor) Le(o *Tensor) *Tensor { return t.binary("le", o) }

// Gt returns t > o elementwise (bool).
func (t *Tensor) Gt(o *Tensor) *Tensor { return t.binary("gt", o) }

// Ge returns t >= o elementwise (bool).
func (t *Tensor) Ge(o *Tensor) *Tensor { return t.binary("ge", o) }

// LogicalAnd returns the boolean and.
func (t *Tensor) LogicalAnd(o *Tensor) *Tensor { return t.binary("logical_and", o) }

// LogicalOr returns the boolean or.
func (t *Tensor) LogicalOr(o *Tensor) *Tensor { return t.binary("logical_or", o) }

// Matmul returns the matrix product with NumPy-style broadcasting.
func (t *Tensor) Matmul(o *Tensor) *Tensor { return t.binary("matmul", o) }

// Mm returns the product of two matrices.
func (t *Tensor) Mm(o *Tensor) *Tensor { return t.binary("mm", o) }

// Bmm returns the batched matrix product of [B,n,m] and [B,m,p].
func (t *Tensor) Bmm(o *Tensor) *Tensor { return t.binary("bmm", o) }

// Remainder returns t mod o (sign of o).
func (t *Tensor) Remainder(o *Tensor) *Tensor { return t.binary("remainder", o) }

// AddScalar returns t + s.
func (t *Tensor) AddScalar(s float64) *Tensor { return t.scalarOp("add", s) }

// SubScalar returns t - s.
func (t *Tensor) SubScalar(s float64) *Tensor { return t.scalarOp("sub", s) }

// MulScalar returns t * s.
func (t *Tensor) MulScalar(s float64) *Tensor { return t.scalarOp("mul", s) }

// DivScalar returns t / s.
func (t *Tensor) DivScalar(s float64) *Tensor { return t.scalarOp("div", s) }

// PowScalar returns t ** s.
func (t *Tensor) PowScalar(s float64) *Tensor { return t.scalarOp("pow", s) }

// RSubScalar returns s - t.
func (t *Tensor) RSubScalar(s float64) *Tensor { return t.scalarOp("rsub", s) }

// EqScalar returns t == s elementwise.
func (t *Tensor) EqScalar(s float64) *Tensor { return t.scalarOp("eq", s) }

// NeScalar returns t != s elementwise.
func (t *Tensor) NeScalar(s float64) *Tensor { return t.scalarOp("ne", s) }

// LtScalar returns t < s elementwise.
func (t *Tensor) LtScalar(s float64) *Tensor { return t.scalarOp("lt", s) }

// LeScalar returns t <= s elementwise.
func (t *Tensor) LeScalar(s float64) *Tensor { return t.scalarOp("le", s) }

// GtScalar returns t > s elementwise.
func (t *Tensor) GtScalar(s float64) *Tensor { return t.scalarOp("gt", s) }

// GeScalar returns t >= s elementwise.
func (t *Tensor) GeScalar(s float64) *Tensor { return t.scalarOp("ge", s) }

// RemainderScalar returns t mod s.
func (t *Tensor) RemainderScalar(s float64) *Tensor { return t.scalarOp("remainder", s) }

// Clamp limits values to [lo, hi].
func (t *Tensor) Clamp(lo, hi float64) *Tensor {
	return call1("clamp", func(out *C.tb_tensor) C.tb_error {
		return C.tb_clamp(t.h, C.double(lo), C.double(hi), out)
	}, t)
}

// Where returns a where cond is true, else b.
func Where(cond, a, b *Tensor) *Tensor {
	return call1("where", func(out *C.tb_tensor) C.tb_error { return C.tb_where(cond.h, a.h, b.h, out) }, cond, a, b)
}

// MaskedFill returns t with value where mask is true.
func (t *Tensor) MaskedFill(mask *Tensor, value float64) *Tensor {
	return call1("masked_fill", func(out *C.tb_tensor) C.tb_error {
		return C.tb_masked_fill(t.h, mask.h, C.double(value), out)
	}, t, mask)
}

// AddMm returns bias + a·b.
func AddMm(bias, a, b *Tensor) *Tensor {
	return call1("addmm", func(out *C.tb_tensor) C.tb_error { return C.tb_addmm(bias.h, a.h, b.h, out) }, bias, a, b)
}

func (t *Tensor) inplaceBinary(name string, o *Tensor) error {
	return inplace(name+"_", func() C.tb_error { return C.tb_binary_(cname(name), t.h, o.h) }, t, o)
}

func (t *Tensor) inplaceScalar(name string, s float64) error {
	return inplace(name+"_", func() C.tb_error { return C.tb_binary_scalar_(cname(name), t.h, C.double(s)) }, t)
}

// AddInPlace does t += o. In-place updates of tensors that require grad belong in NoGrad.
func (t *Tensor) AddInPlace(o *Tensor) error { return t.inplaceBinary("add", o) }

// SubInPlace does t -= o.
func (t *Tensor) SubInPlace(o *Tensor) error { return t.inplaceBinary("sub", o) }

// MulInPlace does t *= o.
func (t *Tensor) MulInPlace(o *Tensor) error { return t.inplaceBinary("mul", o) }

// DivInPlace does t /= o.
func (t *Tensor) DivInPlace(o *Tensor) error { return t.inplaceBinary("div", o) }

// CopyFrom copies o's values into t (broadcasting, converting dtype and device).
func (t *Tensor) CopyFrom(o *Tensor) error { return t.inplaceBinary("copy", o) }

// MaximumInPlace does t = max(t, o).
func (t *Tensor) MaximumInPlace(o *Tensor) error { return t.inplaceBinary("maximum", o) }

// AddScalarInPlace does t += s.
func (t *Tensor) AddScalarInPlace(s float64) error { return t.inplaceScalar("add", s) }

// MulScalarInPlace does t *= s.
func (t *Tensor) MulScalarInPlace(s float64) error { return t.inplaceScalar("mul", s) }

// DivScalarInPlace does t /= s.
func (t *Tensor) DivScalarInPlace(s float64) error { return t.inplaceScalar("div", s) }

// Fill sets every element to s.
func (t *Tensor) Fill(s float64) error { return t.inplaceScalar("fill", s) }

// ClampMinInPlace does t = max(t, s).
func (t *Tensor) ClampMinInPlace(s float64) error { return t.inplaceScalar("clamp_min", s) }

// AddScaledInPlace does t += alpha·o.
func (t *Tensor) AddScaledInPlace(o *Tensor, alpha float64) error {
	return inplace("add_", func() C.tb_error { return C.tb_add_scaled_(t.h, o.h, C.double(alpha)) }, t, o)
}

// AddcmulInPlace does t += value·a·b.
func (t *Tensor) AddcmulInPlace(a, b *Tensor, value float64) error {
	return inplace("addcmul_", func() C.tb_error { return C.tb_addcmul_(t.h, a.h, b.h, C.double(value)) }, t, a, b)
}

// AddcdivInPlace does t += value·a/b.
func (t *Tensor) AddcdivInPlace(a, b *Tensor, value float64) error {
	return inplace("addcdiv_", func() C.tb_error { return C.tb_addcdiv_(t.h, a.h, b.h, C.double(value)) }, t, a, b)
}

// LerpInPlace does t += weight·(o − t).
func (t *Tensor) LerpInPlace(o *Tensor, weight float64) error {
	return inplace("lerp_", func() C.tb_error { return C.tb_lerp_(t.h, o.h, C.double(weight)) }, t, o)
}

// FillUniform fills t in place with uniform values in [lo, hi), from g (or the global generator when nil).
func (t *Tensor) FillUniform(lo, hi float64, g *Generator) error {
	defer keepAlive(g)
	return inplace("uniform_", func() C.tb_error {
		return C.tb_fill_random_(t.h, cname("uniform"), C.double(lo), C.double(hi), g.handle())
	}, t)
}

// FillNormal fills t in place with normal values of the given mean and std.
func (t *Tensor) FillNormal(mean, std float64, g *Generator) error {
	defer keepAlive(g)
	return inplace("normal_", func() C.tb_error {
		return C.tb_fill_random_(t.h, cname("normal"), C.double(mean), C.double(std), g.handle())
	}, t)
}
