package torch

import (
	"fmt"
	"strings"
)

// DType is a tensor element type. The zero value is Float32.
type DType int

// The element types the binding supports.
const (
	Float32 DType = iota
	Float64
	Float16
	BFloat16
	Int64
	Int32
	Int16
	Int8
	Uint8
	Bool
)

// scalarTypes maps DType to libtorch's c10::ScalarType numbering.
var scalarTypes = [...]int{Float32: 6, Float64: 7, Float16: 5, BFloat16: 15, Int64: 4, Int32: 3, Int16: 2, Int8: 1, Uint8: 0, Bool: 11}

// scalarType returns libtorch's number for d.
func (d DType) scalarType() int {
	if d < 0 || int(d) >= len(scalarTypes) {
		return -1
	}
	return scalarTypes[d]
}

// dtypeFromScalarType maps libtorch's number back to a DType (-1 if unsupported).
func dtypeFromScalarType(st int) DType {
	for d, s := range scalarTypes {
		if s == st {
			return DType(d)
		}
	}
	return -1
}

var dtypeNames = map[DType]string{
	Uint8: "uint8", Int8: "int8", Int16: "int16", Int32: "int32", Int64: "int64",
	Float16: "float16", Float32: "float32", Float64: "float64", Bool: "bool", BFloat16: "bfloat16",
}

// String returns the dtype's PyTorch-style name, e.g. "float32".
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Size returns the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Int16, Float16, BFloat16:
		return 2
	case Int32, Float32:
		return 4
	default:
		return 8
	}
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	return d == Float16 || d == Float32 || d == Float64 || d == BFloat16
}

// ParseDType reads a dtype name such as "float32", "half" or "bf16".
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "float", "float32", "f32":
		return Float32, nil
	case "double", "float64", "f64":
		return Float64, nil
	case "half", "float16", "f16":
		return Float16, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	case "long", "int64", "i64":
		return Int64, nil
	case "int", "int32", "i32":
		return Int32, nil
	case "int16", "short":
		return Int16, nil
	case "int8":
		return Int8, nil
	case "uint8", "byte", "u8":
		return Uint8, nil
	case "bool":
		return Bool, nil
	}
	return 0, fmt.Errorf("torch: unknown dtype %q (want float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8 or bool)", s)
}
