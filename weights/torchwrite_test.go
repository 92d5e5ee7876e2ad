package weights

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// smallState is a state dict with every dtype, a scalar and an empty tensor.
func smallState(t testing.TB) *StateDict {
	t.Helper()
	sd := NewStateDict()
	w, err := NewFloat32([]int64{2, 3}, []float32{1, -2, 3.5, 0, 1e-8, -7})
	if err != nil {
		t.Fatal(err)
	}
	sd.Set("layer.weight", w)
	n, _ := NewInt64(nil, []int64{1 << 40})
	sd.Set("bn.num_batches_tracked", n)
	neg, _ := NewInt64([]int64{3}, []int64{-1, 0, -1 << 35})
	sd.Set("neg", neg)
	sd.Set("empty", &RawTensor{DType: Float32, Shape: []int64{0, 4}, Data: []byte{}})
	sd.Set("h", &RawTensor{DType: Float16, Shape: []int64{2}, Data: []byte{0x00, 0x3c, 0x00, 0xc0}})  // 1, -2
	sd.Set("b", &RawTensor{DType: BFloat16, Shape: []int64{2}, Data: []byte{0x80, 0x3f, 0x00, 0xc0}}) // 1, -2
	sd.Set("flag", &RawTensor{DType: Bool, Shape: []int64{2}, Data: []byte{1, 0}})
	sd.Set("u8", &RawTensor{DType: Uint8, Shape: []int64{1, 1, 1, 2}, Data: []byte{1, 255}})
	return sd
}

func TestWriteTorchFileRoundTrip(t *testing.T) {
	sd := smallState(t)
	path := filepath.Join(t.TempDir(), "small.pt")
	meta := map[string]string{MetadataKey: `{"arch":"resnet18","classes":10}`, "note": "hello"}
	if err := WriteTorchFile(path, sd, meta); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Format != FormatTorchZip {
		t.Errorf("format %s", ck.Format)
	}
	if len(ck.Notes) != 0 {
		t.Errorf("notes %v", ck.Notes)
	}
	assertSameState(t, ck.State, sd)
	var m struct {
		Arch    string `json:"arch"`
		Classes int    `json:"classes"`
	}
	if err := ck.ModelstitchMeta(&m); err != nil {
		t.Fatal(err)
	}
	if m.Arch != "resnet18" || m.Classes != 10 {
		t.Errorf("metadata %+v", m)
	}
	if ck.Metadata["note"] != "hello" {
		t.Errorf("metadata note = %q", ck.Metadata["note"])
	}
	h, _ := ck.State.Get("h").Float32s()
	b, _ := ck.State.Get("b").Float32s()
	if h[0] != 1 || h[1] != -2 || b[0] != 1 || b[1] != -2 {
		t.Errorf("half %v bfloat %v", h, b)
	}
}

func TestWriteTorchFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := smallState(t)
	bad := NewStateDict()
	bad.Set("x", &RawTensor{DType: Float32, Shape: []int64{3}, Data: make([]byte, 8)})
	tests := []struct {
		name string
		sd   *StateDict
		meta map[string]string
		want string
	}{
		{"short data", bad, nil, `"x"`},
		{"bad json", good, map[string]string{MetadataKey: "{"}, "not valid JSON"},
		{"bad key", good, map[string]string{"a-b": "x"}, "Python attribute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteTorchFile(filepath.Join(dir, "x.pt"), tc.sd, tc.meta)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.pt") {
				t.Errorf("got %v, want an error naming x.pt containing %q", err, tc.want)
			}
		})
	}
}

func assertSameState(t *testing.T, got, want *StateDict) {
	t.Helper()
	if strings.Join(got.Keys, ",") != strings.Join(want.Keys, ",") {
		t.Fatalf("keys %v, want %v", got.Keys, want.Keys)
	}
	for _, k := range want.Keys {
		g, w := got.Tensors[k], want.Tensors[k]
		if g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: got %s%v, want %s%v (or values differ)", k, g.DType, g.Shape, w.DType, w.Shape)
		}
	}
}

// verifyScript loads Go-written files in Python with weights_only=True.
const verifyScript = `
import sys, json, collections, torch, torchvision
ref, mine, small = sys.argv[1], sys.argv[2], sys.argv[3]
sd = torch.load(mine, weights_only=True)
assert type(sd) is collections.OrderedDict, type(sd)
m = torchvision.models.resnet18(num_classes=10)
m.load_state_dict(sd)  # strict
want = torch.load(ref)
assert list(sd.keys()) == list(want.keys())
for k in want:
    assert sd[k].dtype == want[k].dtype and torch.equal(sd[k], want[k]), k
for k, v in m.state_dict().items():
    assert torch.equal(v, want[k]), k
meta = json.loads(sd._modelstitch)
assert meta == {"arch": "resnet18", "classes": 10, "mean": [0.4914, 0.4822, 0.4465]}, meta
# the plain idiom works too, and the attribute survives neither harm nor load
m.load_state_dict(torch.load(mine, weights_only=True))

s = torch.load(small, weights_only=True)
assert s._modelstitch == '{"x":1}' and s._modelstitch_note == "hello"
assert s["layer.weight"].tolist() == [[1, -2, 3.5], [0, torch.tensor(1e-8).item(), -7]], s["layer.weight"]
assert s["bn.num_batches_tracked"].dtype == torch.int64 and s["bn.num_batches_tracked"].shape == ()
assert s["bn.num_batches_tracked"].item() == 1 << 40
assert s["neg"].tolist() == [-1, 0, -(1 << 35)]
assert s["empty"].shape == (0, 4)
assert s["h"].dtype == torch.float16 and s["h"].tolist() == [1, -2]
assert s["b"].dtype == torch.bfloat16 and s["b"].tolist() == [1, -2]
assert s["flag"].tolist() == [True, False] and s["u8"].tolist() == [[[[1, 255]]]]
print("python ok")
`

func TestWriteTorchFileLoadsInPython(t *testing.T) {
	dir := fixtures(t)
	ref := filepath.Join(dir, "resnet18.pt")
	ck, err := ReadTorchFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	mine := filepath.Join(out, "mine.pt")
	meta := `{"arch":"resnet18","classes":10,"mean":[0.4914,0.4822,0.4465]}`
	if err := WriteTorchFile(mine, ck.State, map[string]string{MetadataKey: meta}); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(out, "small.pt")
	if err := WriteTorchFile(small, smallState(t), map[string]string{MetadataKey: `{"x":1}`, "note": "hello"}); err != nil {
		t.Fatal(err)
	}
	if got := runPython(t, verifyScript, ref, mine, small); !strings.Contains(got, "python ok") {
		t.Fatalf("python said %q", got)
	}
	// And Go reads its own file back identically.
	back, err := ReadTorchFile(mine)
	if err != nil {
		t.Fatal(err)
	}
	assertSameState(t, back.State, ck.State)
	if back.Metadata[MetadataKey] != meta {
		t.Errorf("metadata %q", back.Metadata[MetadataKey])
	}
}
