package models

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/weights"
	"modelstitch/weights/defaults"
)

// TestNaNWeightsWarn: a checkpoint whose weights hold NaN or infinities
// loads with a warning naming the tensors (it evaluated to 10 % without a
// word); a clean one loads without.
func TestNaNWeightsWarn(t *testing.T) {
	name := defaults.Prefix + "fmnist-resnet18-w0.25-sup-seed1"
	ck, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	clean, err := Load(name, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clean.Free()
	if len(clean.Warnings) != 0 {
		t.Errorf("the shipped model warns: %q", clean.Warnings)
	}
	w := ck.State.Get("layer2.0.conv1.weight")
	data := append([]byte(nil), w.Data...)
	binary.LittleEndian.PutUint32(data[8:], math.Float32bits(float32(math.NaN())))
	binary.LittleEndian.PutUint32(data[40:], math.Float32bits(float32(math.Inf(-1))))
	ck.State.Set("layer2.0.conv1.weight", &weights.RawTensor{DType: w.DType, Shape: w.Shape, Data: data})
	path := filepath.Join(t.TempDir(), "nan.pt")
	if err := weights.WriteTorchFile(path, ck.State, ck.Metadata); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "2 weight values are NaN or infinite, in 1 tensors (layer2.0.conv1.weight)") {
		t.Errorf("warnings %q", m.Warnings)
	}
}

func TestNonFiniteEveryFloatType(t *testing.T) {
	sd := weights.NewStateDict()
	sd.Set("f64", &weights.RawTensor{DType: weights.Float64, Shape: []int64{2}, Data: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1)), math.Float64bits(math.Inf(1)))})
	sd.Set("f16", &weights.RawTensor{DType: weights.Float16, Shape: []int64{2}, Data: []byte{0x00, 0x3c, 0x00, 0x7e}})   // 1, NaN
	sd.Set("bf16", &weights.RawTensor{DType: weights.BFloat16, Shape: []int64{2}, Data: []byte{0x80, 0x3f, 0x80, 0xff}}) // 1, -Inf
	sd.Set("ok", &weights.RawTensor{DType: weights.BFloat16, Shape: []int64{1}, Data: []byte{0x80, 0x3f}})
	sd.Set("int", &weights.RawTensor{DType: weights.Int64, Shape: []int64{1}, Data: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	keys, counts := nonFinite(sd)
	if strings.Join(keys, ",") != "f64,f16,bf16" || len(counts) != 3 || counts[0]+counts[1]+counts[2] != 3 {
		t.Errorf("keys %q counts %v", keys, counts)
	}
}
