// Package weights reads and writes model checkpoints in pure Go: PyTorch's
// torch.save files (zip and legacy formats) and safetensors files. It finds the
// state dict inside the wrappers people hand over ({'state_dict': ...},
// 'module.' prefixes, projection heads, ...), and writes files that Python loads
// with torch.load(path, weights_only=True), carrying modelstitch's metadata
// beside the weights.
//
// Unpickling goes through an allow-list: a checkpoint can never run code, and
// one that asks for a code-running global (os.system, builtins.eval, ...) is
// refused with an error naming that global.
package weights

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType names a tensor element type as PyTorch does, without the "torch." prefix.
type DType string

// The element types a RawTensor can hold.
const (
	Float32  DType = "float32"
	Float64  DType = "float64"
	Float16  DType = "float16"
	BFloat16 DType = "bfloat16"
	Int64    DType = "int64"
	Int32    DType = "int32"
	Int16    DType = "int16"
	Int8     DType = "int8"
	Uint8    DType = "uint8"
	Bool     DType = "bool"
)

// Size is the number of bytes one element of d takes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case Float64, Int64:
		return 8
	case Float32, Int32:
		return 4
	case Float16, BFloat16, Int16:
		return 2
	case Int8, Uint8, Bool:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point dtype.
func (d DType) IsFloat() bool {
	switch d {
	case Float32, Float64, Float16, BFloat16:
		return true
	}
	return false
}

// RawTensor is a tensor's contents as stored in a file: dtype, shape and
// contiguous little-endian row-major bytes. A scalar has an empty Shape.
type RawTensor struct {
	DType DType
	Shape []int64
	Data  []byte
}

// Numel is the number of elements: the product of Shape (1 for a scalar).
// It returns -1 when a dimension is negative or the product overflows int64.
func (t *RawTensor) Numel() int64 {
	n, ok := numel(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// numel multiplies out a shape, reporting false for negative sizes or overflow.
func numel(shape []int64) (int64, bool) {
	n := int64(1)
	for _, s := range shape {
		if s < 0 {
			return 0, false
		}
		if s != 0 && n > math.MaxInt64/s {
			return 0, false
		}
		n *= s
	}
	return n, true
}

// byteSize is numel(shape) * elemSize, reporting false for bad shapes or overflow.
func byteSize(shape []int64, d DType) (int64, bool) {
	n, ok := numel(shape)
	es := int64(d.Size())
	if !ok || es == 0 || (n != 0 && n > math.MaxInt64/es) {
		return 0, false
	}
	return n * es, true
}

// Validate checks that the dtype is known, the shape is non-negative and Data
// holds exactly Numel elements.
func (t *RawTensor) Validate() error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	if t.DType.Size() == 0 {
		return fmt.Errorf("unknown dtype %q", string(t.DType))
	}
	want, ok := byteSize(t.Shape, t.DType)
	if !ok {
		return fmt.Errorf("invalid shape %v", t.Shape)
	}
	if int64(len(t.Data)) != want {
		return fmt.Errorf("shape %v of %s needs %d bytes, have %d", t.Shape, t.DType, want, len(t.Data))
	}
	return nil
}

// Float32s returns the elements converted to float32. It accepts every float
// dtype (float32, float64, float16, bfloat16).
func (t *RawTensor) Float32s() ([]float32, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	n := int(t.Numel())
	out := make([]float32, n)
	d := t.Data
	switch t.DType {
	case Float32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case Float64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
	case Float16:
		for i := range out {
			out[i] = halfToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BFloat16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(d[2*i:])) << 16)
		}
	default:
		return nil, fmt.Errorf("Float32s: dtype %s is not a float type", t.DType)
	}
	return out, nil
}

// Int64s returns the elements converted to int64. It accepts every integer
// dtype and bool.
func (t *RawTensor) Int64s() ([]int64, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	n := int(t.Numel())
	out := make([]int64, n)
	d := t.Data
	switch t.DType {
	case Int64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case Int32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case Int16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case Int8:
		for i := range out {
			out[i] = int64(int8(d[i]))
		}
	case Uint8, Bool:
		for i := range out {
			out[i] = int64(d[i])
		}
	default:
		return nil, fmt.Errorf("Int64s: dtype %s is not an integer type", t.DType)
	}
	return out, nil
}

// NewFloat32 makes a float32 tensor of the given shape from values, which must
// hold exactly as many elements as the shape.
func NewFloat32(shape []int64, values []float32) (*RawTensor, error) {
	n, ok := numel(shape)
	if !ok || n != int64(len(values)) {
		return nil, fmt.Errorf("weights: NewFloat32: shape %v does not fit %d values", shape, len(values))
	}
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return &RawTensor{DType: Float32, Shape: append([]int64{}, shape...), Data: data}, nil
}

// NewInt64 makes an int64 tensor of the given shape from values, which must
// hold exactly as many elements as the shape. NewInt64(nil, []int64{0}) is a
// scalar such as BatchNorm's num_batches_tracked.
func NewInt64(shape []int64, values []int64) (*RawTensor, error) {
	n, ok := numel(shape)
	if !ok || n != int64(len(values)) {
		return nil, fmt.Errorf("weights: NewInt64: shape %v does not fit %d values", shape, len(values))
	}
	data := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(data[8*i:], uint64(v))
	}
	return &RawTensor{DType: Int64, Shape: append([]int64{}, shape...), Data: data}, nil
}

// halfToFloat32 converts IEEE 754 binary16 bits to a float32.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0: // signed zero
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// StateDict is an ordered mapping from parameter/buffer names (PyTorch dotted
// names) to tensors. Keys holds the order; Tensors holds a tensor for every key.
type StateDict struct {
	Keys    []string
	Tensors map[string]*RawTensor
}

// NewStateDict returns an empty state dict.
func NewStateDict() *StateDict {
	return &StateDict{Tensors: map[string]*RawTensor{}}
}

// Set stores t under key, appending key to the order if it is new.
func (sd *StateDict) Set(key string, t *RawTensor) {
	if sd.Tensors == nil {
		sd.Tensors = map[string]*RawTensor{}
	}
	if _, ok := sd.Tensors[key]; !ok {
		sd.Keys = append(sd.Keys, key)
	}
	sd.Tensors[key] = t
}

// Get returns the tensor stored under key, or nil.
func (sd *StateDict) Get(key string) *RawTensor {
	if sd == nil {
		return nil
	}
	return sd.Tensors[key]
}

// Len is the number of entries.
func (sd *StateDict) Len() int {
	if sd == nil {
		return 0
	}
	return len(sd.Keys)
}

// Shapes returns every key's shape, the form CompareKeys takes for a model.
func (sd *StateDict) Shapes() map[string][]int64 {
	m := make(map[string][]int64, sd.Len())
	if sd == nil {
		return m
	}
	for _, k := range sd.Keys {
		if t := sd.Tensors[k]; t != nil {
			m[k] = t.Shape
		}
	}
	return m
}

// validate checks that every key has a valid tensor and no key repeats.
func (sd *StateDict) validate() error {
	if sd == nil {
		return fmt.Errorf("nil state dict")
	}
	seen := make(map[string]bool, len(sd.Keys))
	for _, k := range sd.Keys {
		if seen[k] {
			return fmt.Errorf("key %q appears twice", k)
		}
		seen[k] = true
		t, ok := sd.Tensors[k]
		if !ok || t == nil {
			return fmt.Errorf("key %q has no tensor", k)
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("key %q: %v", k, err)
		}
	}
	if len(sd.Tensors) != len(sd.Keys) {
		return fmt.Errorf("%d tensors but %d keys", len(sd.Tensors), len(sd.Keys))
	}
	return nil
}
