package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"math"
	"runtime"
)

// The ops below reach the bridge through a few generic entry points
// (tb_unary, tb_binary, ...) that take an op from an enum of cbridge.h. The
// typed constants here carry those enum values, so the compiler checks each
// against the header; their names label errors.

// unaryOp picks the operation of tb_unary.
type unaryOp C.tb_unary_op

const (
	opNeg       unaryOp = C.TB_UNARY_NEG
	opExp       unaryOp = C.TB_UNARY_EXP
	opLog       unaryOp = C.TB_UNARY_LOG
	opSqrt      unaryOp = C.TB_UNARY_SQRT
	opAbs       unaryOp = C.TB_UNARY_ABS
	opRelu      unaryOp = C.TB_UNARY_RELU
	opReluIn    unaryOp = C.TB_UNARY_RELU_
	opSigmoid   unaryOp = C.TB_UNARY_SIGMOID
	opTanh      unaryOp = C.TB_UNARY_TANH
	opFloor     unaryOp = C.TB_UNARY_FLOOR
	opRound     unaryOp = C.TB_UNARY_ROUND
	opSquare    unaryOp = C.TB_UNARY_SQUARE
	opIsNaN     unaryOp = C.TB_UNARY_ISNAN
	opPinverse  unaryOp = C.TB_UNARY_PINVERSE
	opDiagonal  unaryOp = C.TB_UNARY_DIAGONAL
	opZerosLike unaryOp = C.TB_UNARY_ZEROS_LIKE
	opOnesLike  unaryOp = C.TB_UNARY_ONES_LIKE
)

var unaryNames = [...]string{
	opNeg: "neg", opExp: "exp", opLog: "log", opSqrt: "sqrt", opAbs: "abs", opRelu: "relu",
	opReluIn: "relu_", opSigmoid: "sigmoid", opTanh: "tanh", opFloor: "floor", opRound: "round",
	opSquare: "square", opIsNaN: "isnan", opPinverse: "pinverse", opDiagonal: "diagonal",
	opZerosLike: "zeros_like", opOnesLike: "ones_like",
}

// binaryOp picks the operation of tb_binary.
type binaryOp C.tb_binary_op

const (
	opAdd        binaryOp = C.TB_BINARY_ADD
	opSub        binaryOp = C.TB_BINARY_SUB
	opMul        binaryOp = C.TB_BINARY_MUL
	opDiv        binaryOp = C.TB_BINARY_DIV
	opMaximum    binaryOp = C.TB_BINARY_MAXIMUM
	opMinimum    binaryOp = C.TB_BINARY_MINIMUM
	opEq         binaryOp = C.TB_BINARY_EQ
	opLt         binaryOp = C.TB_BINARY_LT
	opGe         binaryOp = C.TB_BINARY_GE
	opLogicalAnd binaryOp = C.TB_BINARY_LOGICAL_AND
	opMatmul     binaryOp = C.TB_BINARY_MATMUL
	opMm         binaryOp = C.TB_BINARY_MM
)

var binaryNames = [...]string{
	opAdd: "add", opSub: "sub", opMul: "mul", opDiv: "div", opMaximum: "maximum", opMinimum: "minimum",
	opEq: "eq", opLt: "lt", opGe: "ge", opLogicalAnd: "logical_and", opMatmul: "matmul", opMm: "mm",
}

// scalarOp picks the operation of tb_binary_scalar.
type scalarOp C.tb_scalar_op

const (
	opAddScalar       scalarOp = C.TB_SCALAR_ADD
	opSubScalar       scalarOp = C.TB_SCALAR_SUB
	opMulScalar       scalarOp = C.TB_SCALAR_MUL
	opDivScalar       scalarOp = C.TB_SCALAR_DIV
	opRSubScalar      scalarOp = C.TB_SCALAR_RSUB
	opEqScalar        scalarOp = C.TB_SCALAR_EQ
	opLtScalar        scalarOp = C.TB_SCALAR_LT
	opLeScalar        scalarOp = C.TB_SCALAR_LE
	opGtScalar        scalarOp = C.TB_SCALAR_GT
	opRemainderScalar scalarOp = C.TB_SCALAR_REMAINDER
)

var scalarNames = [...]string{
	opAddScalar: "add", opSubScalar: "sub", opMulScalar: "mul", opDivScalar: "div", opRSubScalar: "rsub",
	opEqScalar: "eq", opLtScalar: "lt", opLeScalar: "le", opGtScalar: "gt", opRemainderScalar: "remainder",
}

// inplaceOp picks the operation of tb_binary_ (t op= o).
type inplaceOp C.tb_inplace_op

const (
	opAddIn     inplaceOp = C.TB_INPLACE_ADD
	opCopyIn    inplaceOp = C.TB_INPLACE_COPY
	opMaximumIn inplaceOp = C.TB_INPLACE_MAXIMUM
)

var inplaceNames = [...]string{opAddIn: "add_", opCopyIn: "copy_", opMaximumIn: "maximum_"}

// inplaceScalarOp picks the operation of tb_binary_scalar_ (t op= s).
type inplaceScalarOp C.tb_inplace_scalar_op

const (
	opAddScalarIn inplaceScalarOp = C.TB_INPLACE_SCALAR_ADD
	opMulScalarIn inplaceScalarOp = C.TB_INPLACE_SCALAR_MUL
	opFillIn      inplaceScalarOp = C.TB_INPLACE_SCALAR_FILL
)

var inplaceScalarNames = [...]string{opAddScalarIn: "add_", opMulScalarIn: "mul_", opFillIn: "fill_"}

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
	runtime.KeepAlive(operands)
	return takeError(op, e)
}

func (t *Tensor) unary(op unaryOp) *Tensor {
	return call1(unaryNames[op], func(out *C.tb_tensor) C.tb_error {
		return C.tb_unary(C.tb_unary_op(op), t.h, out)
	}, t)
}

func (t *Tensor) binary(op binaryOp, o *Tensor) *Tensor {
	return call1(binaryNames[op], func(out *C.tb_tensor) C.tb_error {
		return C.tb_binary(C.tb_binary_op(op), t.h, o.h, out)
	}, t, o)
}

func (t *Tensor) scalarOp(op scalarOp, s float64) *Tensor {
	return call1(scalarNames[op], func(out *C.tb_tensor) C.tb_error {
		return C.tb_binary_scalar(C.tb_scalar_op(op), t.h, C.double(s), out)
	}, t)
}

// Neg returns -t.
func (t *Tensor) Neg() *Tensor { return t.unary(opNeg) }

// Exp returns e^t elementwise.
func (t *Tensor) Exp() *Tensor { return t.unary(opExp) }

// Log returns the natural logarithm elementwise.
func (t *Tensor) Log() *Tensor { return t.unary(opLog) }

// Sqrt returns the square root elementwise.
func (t *Tensor) Sqrt() *Tensor { return t.unary(opSqrt) }

// Abs returns |t| elementwise.
func (t *Tensor) Abs() *Tensor { return t.unary(opAbs) }

// Relu returns max(t, 0) elementwise.
func (t *Tensor) Relu() *Tensor { return t.unary(opRelu) }

// ReluInPlace applies max(t, 0) to t's own memory and returns a new handle
// to it (like PyTorch's relu_ / ReLU(inplace=True)).
func (t *Tensor) ReluInPlace() *Tensor { return t.unary(opReluIn) }

// Sigmoid returns the logistic function elementwise.
func (t *Tensor) Sigmoid() *Tensor { return t.unary(opSigmoid) }

// Tanh returns tanh elementwise.
func (t *Tensor) Tanh() *Tensor { return t.unary(opTanh) }

// Floor rounds down elementwise.
func (t *Tensor) Floor() *Tensor { return t.unary(opFloor) }

// Round rounds to nearest (half to even) elementwise.
func (t *Tensor) Round() *Tensor { return t.unary(opRound) }

// Square returns t² elementwise.
func (t *Tensor) Square() *Tensor { return t.unary(opSquare) }

// IsNaN returns a boolean tensor marking NaN elements.
func (t *Tensor) IsNaN() *Tensor { return t.unary(opIsNaN) }

// Pinverse returns the Moore–Penrose pseudo-inverse of a matrix.
func (t *Tensor) Pinverse() *Tensor { return t.unary(opPinverse) }

// Diagonal returns the main diagonal of a matrix (a view).
func (t *Tensor) Diagonal() *Tensor { return t.unary(opDiagonal) }

// ClampMin limits values from below: max(t, lo).
func (t *Tensor) ClampMin(lo float64) *Tensor { return t.Clamp(lo, math.Inf(1)) }

// ZerosLike returns zeros with t's shape, dtype and device.
func (t *Tensor) ZerosLike() *Tensor { return t.unary(opZerosLike) }

// OnesLike returns ones with t's shape, dtype and device.
func (t *Tensor) OnesLike() *Tensor { return t.unary(opOnesLike) }

// Add returns t + o (broadcasting).
func (t *Tensor) Add(o *Tensor) *Tensor { return t.binary(opAdd, o) }

// Sub returns t - o.
func (t *Tensor) Sub(o *Tensor) *Tensor { return t.binary(opSub, o) }

// Mul returns t * o elementwise.
func (t *Tensor) Mul(o *Tensor) *Tensor { return t.binary(opMul, o) }

// Div returns t / o elementwise.
func (t *Tensor) Div(o *Tensor) *Tensor { return t.binary(opDiv, o) }

// Maximum returns the elementwise maximum.
func (t *Tensor) Maximum(o *Tensor) *Tensor { return t.binary(opMaximum, o) }

// Minimum returns the elementwise minimum.
func (t *Tensor) Minimum(o *Tensor) *Tensor { return t.binary(opMinimum, o) }

// Eq returns t == o elementwise (bool).
func (t *Tensor) Eq(o *Tensor) *Tensor { return t.binary(opEq, o) }

// Lt returns t < o elementwise (bool).
func (t *Tensor) Lt(o *Tensor) *Tensor { return t.binary(opLt, o) }

// Ge returns t >= o elementwise (bool).
func (t *Tensor) Ge(o *Tensor) *Tensor { return t.binary(opGe, o) }

// LogicalAnd returns the boolean and.
func (t *Tensor) LogicalAnd(o *Tensor) *Tensor { return t.binary(opLogicalAnd, o) }

// Matmul returns the matrix product with NumPy-style broadcasting.
func (t *Tensor) Matmul(o *Tensor) *Tensor { return t.binary(opMatmul, o) }

// Mm returns the product of two matrices.
func (t *Tensor) Mm(o *Tensor) *Tensor { return t.binary(opMm, o) }

// AddScalar returns t + s.
func (t *Tensor) AddScalar(s float64) *Tensor { return t.scalarOp(opAddScalar, s) }

// SubScalar returns t - s.
func (t *Tensor) SubScalar(s float64) *Tensor { return t.scalarOp(opSubScalar, s) }

// MulScalar returns t * s.
func (t *Tensor) MulScalar(s float64) *Tensor { return t.scalarOp(opMulScalar, s) }

// DivScalar returns t / s.
func (t *Tensor) DivScalar(s float64) *Tensor { return t.scalarOp(opDivScalar, s) }

// RSubScalar returns s - t.
func (t *Tensor) RSubScalar(s float64) *Tensor { return t.scalarOp(opRSubScalar, s) }

// EqScalar returns t == s elementwise.
func (t *Tensor) EqScalar(s float64) *Tensor { return t.scalarOp(opEqScalar, s) }

// LtScalar returns t < s elementwise.
func (t *Tensor) LtScalar(s float64) *Tensor { return t.scalarOp(opLtScalar, s) }

// LeScalar returns t <= s elementwise.
func (t *Tensor) LeScalar(s float64) *Tensor { return t.scalarOp(opLeScalar, s) }

// GtScalar returns t > s elementwise.
func (t *Tensor) GtScalar(s float64) *Tensor { return t.scalarOp(opGtScalar, s) }

// RemainderScalar returns t mod s.
func (t *Tensor) RemainderScalar(s float64) *Tensor { return t.scalarOp(opRemainderScalar, s) }

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

func (t *Tensor) inplaceBinary(op inplaceOp, o *Tensor) error {
	return inplace(inplaceNames[op], func() C.tb_error { return C.tb_binary_(C.tb_inplace_op(op), t.h, o.h) }, t, o)
}

func (t *Tensor) inplaceScalar(op inplaceScalarOp, s float64) error {
	return inplace(inplaceScalarNames[op], func() C.tb_error {
		return C.tb_binary_scalar_(C.tb_inplace_scalar_op(op), t.h, C.double(s))
	}, t)
}

// AddInPlace does t += o. In-place updates of tensors that require grad belong in NoGrad.
func (t *Tensor) AddInPlace(o *Tensor) error { return t.inplaceBinary(opAddIn, o) }

// CopyFrom copies o's values into t (broadcasting, converting dtype and device).
func (t *Tensor) CopyFrom(o *Tensor) error { return t.inplaceBinary(opCopyIn, o) }

// MaximumInPlace does t = max(t, o).
func (t *Tensor) MaximumInPlace(o *Tensor) error { return t.inplaceBinary(opMaximumIn, o) }

// AddScalarInPlace does t += s.
func (t *Tensor) AddScalarInPlace(s float64) error { return t.inplaceScalar(opAddScalarIn, s) }

// MulScalarInPlace does t *= s.
func (t *Tensor) MulScalarInPlace(s float64) error { return t.inplaceScalar(opMulScalarIn, s) }

// Fill sets every element to s.
func (t *Tensor) Fill(s float64) error { return t.inplaceScalar(opFillIn, s) }

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

// FillUniform fills t in place with uniform values in [lo, hi), from g (or the global generator when nil).
func (t *Tensor) FillUniform(lo, hi float64, g *Generator) error {
	err := inplace("uniform_", func() C.tb_error {
		return C.tb_fill_random_(t.h, C.TB_FILL_UNIFORM, C.double(lo), C.double(hi), g.handle())
	}, t)
	runtime.KeepAlive(g)
	return err
}

// FillNormal fills t in place with normal values of the given mean and std.
func (t *Tensor) FillNormal(mean, std float64, g *Generator) error {
	err := inplace("normal_", func() C.tb_error {
		return C.tb_fill_random_(t.h, C.TB_FILL_NORMAL, C.double(mean), C.double(std), g.handle())
	}, t)
	runtime.KeepAlive(g)
	return err
}
