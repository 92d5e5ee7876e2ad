package torch

import "testing"

func TestInPlaceScalarOnIntegerTensors(t *testing.T) {
	n := Zeros([]int64{}, Options{DType: Int64})
	for i := 0; i < 3; i++ {
		if err := n.AddScalarInPlace(1); err != nil {
			t.Fatalf("int64 += 1: %v", err)
		}
	}
	if v, err := n.ItemInt(); err != nil || v != 3 {
		t.Errorf("counter = %d, %v; want 3", v, err)
	}
	if err := n.MulScalarInPlace(2); err != nil {
		t.Fatal(err)
	}
	if v, _ := n.ItemInt(); v != 6 {
		t.Errorf("counter*2 = %d, want 6", v)
	}
	f := Ones([]int64{2})
	if err := f.AddScalarInPlace(0.5); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Float32s(); v[0] != 1.5 {
		t.Errorf("float += 0.5 gave %v", v)
	}
}
