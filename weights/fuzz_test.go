package weights

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// seedFiles returns small valid files made by this package's writers, to seed
// the fuzzers (the corpus under testdata/fuzz holds the same, and more).
func seedFiles(t testing.TB) (torch, safetensors []byte) {
	sd := NewStateDict()
	w, _ := NewFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})
	sd.Set("module.fc.weight", w)
	n, _ := NewInt64(nil, []int64{3})
	sd.Set("module.bn.num_batches_tracked", n)
	dir := t.TempDir()
	tp, sp := filepath.Join(dir, "s.pt"), filepath.Join(dir, "s.safetensors")
	if err := WriteTorchFile(tp, sd, map[string]string{MetadataKey: `{"a":1}`}); err != nil {
		t.Fatal(err)
	}
	if err := WriteSafetensors(sp, sd, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	torch, _ = os.ReadFile(tp)
	safetensors, _ = os.ReadFile(sp)
	return torch, safetensors
}

func FuzzReadTorchFile(f *testing.F) {
	torch, _ := seedFiles(f)
	f.Add(torch)
	// The bare pickle of a Go-written file, as a legacy-looking stream.
	f.Fuzz(func(t *testing.T, data []byte) {
		ck, err := ReadTorchBytes(data)
		if err == nil && ck.State == nil {
			t.Fatal("nil state without error")
		}
	})
}

func FuzzReadSafetensors(f *testing.F) {
	_, st := seedFiles(f)
	f.Add(st)
	f.Fuzz(func(t *testing.T, data []byte) {
		ck, err := ReadSafetensorsBytes(data)
		if err == nil && ck.State == nil {
			t.Fatal("nil state without error")
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz when WEIGHTS_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("WEIGHTS_WRITE_CORPUS") != "1" {
		t.Skip("set WEIGHTS_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	torch, st := seedFiles(t)
	write := func(fuzz, name string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzReadTorchFile", "go-writer", torch)
	write("FuzzReadSafetensors", "go-writer", st)
}
