package weights

import (
	"math"
	"testing"
)

func TestHalfToFloat32(t *testing.T) {
	tests := []struct {
		bits uint16
		want float32
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x7bff, 65504},
		{0x0001, float32(math.Ldexp(1, -24))}, // smallest subnormal
		{0x03ff, float32(math.Ldexp(1023, -24))},
		{0x0400, float32(math.Ldexp(1, -14))}, // smallest normal
		{0x7c00, float32(math.Inf(1))},
		{0xfc00, float32(math.Inf(-1))},
	}
	for _, tc := range tests {
		if got := halfToFloat32(tc.bits); got != tc.want {
			t.Errorf("half %#04x = %v, want %v", tc.bits, got, tc.want)
		}
	}
	if got := halfToFloat32(0x7e00); !math.IsNaN(float64(got)) {
		t.Errorf("NaN converted to %v", got)
	}
	if got := halfToFloat32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("-0 converted to %v", got)
	}
}

func TestRawTensorHelpers(t *testing.T) {
	f, err := NewFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if f.Numel() != 4 || len(f.Data) != 16 || f.Validate() != nil {
		t.Errorf("NewFloat32: %+v", f)
	}
	if _, err := NewFloat32([]int64{3}, []float32{1}); err == nil {
		t.Error("NewFloat32 accepted a wrong count")
	}
	s, _ := NewInt64(nil, []int64{7})
	if s.Numel() != 1 || len(s.Shape) != 0 {
		t.Errorf("scalar %+v", s)
	}
	if v, err := s.Int64s(); err != nil || v[0] != 7 {
		t.Errorf("Int64s %v %v", v, err)
	}
	if _, err := s.Float32s(); err == nil {
		t.Error("Float32s of int64 succeeded")
	}
	d := &RawTensor{DType: Float64, Shape: []int64{1}, Data: []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}}
	if v, err := d.Float32s(); err != nil || v[0] != 1 {
		t.Errorf("float64 %v %v", v, err)
	}
	if (&RawTensor{DType: "complex64", Shape: []int64{1}, Data: make([]byte, 8)}).Validate() == nil {
		t.Error("unknown dtype validated")
	}
	if (&RawTensor{Shape: []int64{math.MaxInt64, 4}}).Numel() != -1 {
		t.Error("overflowing shape not reported")
	}
}
