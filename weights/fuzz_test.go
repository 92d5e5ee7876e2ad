package weights

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
		checkErrorText(t, err)
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
		checkErrorText(t, err)
	})
}

// checkErrorText fails t when an error message could disturb a terminal:
// raw control characters from the file, or a name megabytes long.
func checkErrorText(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if len(msg) > 4096 {
		t.Fatalf("error message of %d bytes: %.200q...", len(msg), msg)
	}
	if i := strings.IndexFunc(msg, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }); i >= 0 {
		t.Fatalf("error message carries control character %q: %q", msg[i], msg)
	}
}

// torchScriptSeed is a small archive laid out as torch.jit.save lays one out:
// <dir>/data.pkl naming storages in <dir>/data/, a constants.pkl naming one in
// <dir>/constants/, and a deflated code record. Its data.pkl is the one our
// torch.save writer makes (the same persistent ids and tensor rebuilds).
func torchScriptSeed(t testing.TB) []byte {
	torch, _ := seedFiles(t)
	entries := zipEntries(t, torch)
	var out []zipEntry
	for _, e := range entries {
		if strings.HasSuffix(e.name, "/data.pkl") {
			prefix := strings.TrimSuffix(e.name, "data.pkl")
			out = append(out,
				zipEntry{prefix + "code/__torch__.py", []byte("class Net(Module):\n  __parameters__ = []\n"), zip.Deflate},
				zipEntry{prefix + "constants.pkl", torchScriptConstants, zip.Store},
				zipEntry{prefix + "constants/0", make([]byte, 8), zip.Store})
		}
		out = append(out, e)
	}
	return zipFrom(t, out)
}

// torchScriptConstants is a constants.pkl holding one float32 tensor of two
// elements in storage "0": (torch._utils._rebuild_tensor_v2(pid, 0, (2,), (1,), False, OrderedDict()),).
var torchScriptConstants = []byte("\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" +
	"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ" +
	"K\x00K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR\x85.")

// torchScriptWithDataPickle is torchScriptSeed with another data.pkl.
func torchScriptWithDataPickle(t testing.TB, seed, pkl []byte) []byte {
	entries := zipEntries(t, seed)
	for i := range entries {
		if strings.HasSuffix(entries[i].name, "/data.pkl") {
			entries[i].body = pkl
		}
	}
	return zipFrom(t, entries)
}

// checkAccepted re-reads an archive CheckTorchScriptBytes accepted with
// archive/zip: no name twice, and every record reads whole.
func checkAccepted(t *testing.T, data []byte) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("accepted, but archive/zip refuses it: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range zr.File {
		if seen[f.Name] {
			t.Fatalf("accepted with record %q twice", f.Name)
		}
		seen[f.Name] = true
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("accepted, but record %q: %v", f.Name, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("accepted, but record %q: %v", f.Name, err)
		}
	}
}

func TestTorchScriptSeedAccepted(t *testing.T) {
	seed := torchScriptSeed(t)
	if err := CheckTorchScriptBytes(seed); err != nil {
		t.Fatal(err)
	}
	// and the check sees its constants: a constants record cut short is refused.
	entries := zipEntries(t, seed)
	for i := range entries {
		if strings.HasSuffix(entries[i].name, "constants/0") {
			entries[i].body = entries[i].body[:4]
		}
	}
	wantErr(t, CheckTorchScriptBytes(zipFrom(t, entries)), "constants/0", "holds 4 bytes")
}

// FuzzCheckTorchScript mutates whole archives: the zip layer (directory,
// sizes, methods, CRCs) and everything behind it.
func FuzzCheckTorchScript(f *testing.F) {
	f.Add(torchScriptSeed(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckTorchScriptBytes(data)
		checkErrorText(t, err)
		if err == nil {
			checkAccepted(t, data)
		}
	})
}

// FuzzCheckTorchScriptPickle mutates only data.pkl inside a well-formed
// archive (mutations of a whole archive mostly stop at its CRCs), so the
// pickle's storages, element counts and tensor views are what varies.
func FuzzCheckTorchScriptPickle(f *testing.F) {
	seed := torchScriptSeed(f)
	for _, e := range zipEntries(f, seed) {
		if strings.HasSuffix(e.name, "/data.pkl") {
			f.Add(e.body)
		}
	}
	f.Add(torchScriptConstants)
	f.Fuzz(func(t *testing.T, pkl []byte) {
		err := CheckTorchScriptBytes(torchScriptWithDataPickle(t, seed, pkl))
		checkErrorText(t, err)
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
	write("FuzzCheckTorchScript", "go-layout", torchScriptSeed(t))
}
