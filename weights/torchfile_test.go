package weights

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenKeepsKeysAsStored: Open returns the state dict as the file
// stores it (resnetkeys maps it; see TestReadTorchFileFixtures), having
// followed the wrapper entries a key names and kept the rest as KeyPrefix.
func TestOpenKeepsKeysAsStored(t *testing.T) {
	dir := fixtures(t)
	ck, err := Open(filepath.Join(dir, "dataparallel.pt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ck.State.Keys {
		if !strings.HasPrefix(k, "module.") {
			t.Errorf("key %q: want DataParallel's module. prefix as stored", k)
		}
	}
	if !strings.Contains(strings.Join(ck.Notes, "\n"), "state dict found under state_dict") || ck.KeyPrefix != "" {
		t.Errorf("notes %q, key prefix %q", ck.Notes, ck.KeyPrefix)
	}
	ck, err = OpenWith(filepath.Join(dir, "dino.pt"), ReadOptions{Key: "student.backbone"})
	if err != nil {
		t.Fatal(err)
	}
	if ck.KeyPrefix != "backbone" || ck.State.Get("backbone.conv1.weight") == nil {
		t.Errorf("key student.backbone: prefix %q left, keys %v", ck.KeyPrefix, ck.State.Keys)
	}
}

func TestReadTorchFileViewsConvert(t *testing.T) {
	dir := fixtures(t)
	ck, err := ReadTorchFile(filepath.Join(dir, "views.pt"))
	if err != nil {
		t.Fatal(err)
	}
	f16, err := ck.State.Get("f16").Float32s()
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1.5, -2.25, 65504}
	for i, w := range want {
		if f16[i] != w {
			t.Errorf("f16[%d] = %v, want %v", i, f16[i], w)
		}
	}
	bf, err := ck.State.Get("bf16").Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if bf[0] != 1.5 || bf[1] != -2.25 {
		t.Errorf("bf16 = %v", bf)
	}
	i64, err := ck.State.Get("i64").Int64s()
	if err != nil {
		t.Fatal(err)
	}
	if i64[0] != -3 || i64[2] != 1<<40 {
		t.Errorf("i64 = %v", i64)
	}
	narrow, _ := ck.State.Get("narrow").Float32s()
	if len(narrow) != 5 || narrow[0] != 5 || narrow[4] != 9 {
		t.Errorf("narrow = %v", narrow)
	}
	every3, _ := ck.State.Get("every3").Float32s()
	if len(every3) != 7 || every3[0] != 1 || every3[1] != 4 || every3[6] != 19 {
		t.Errorf("every3 = %v", every3)
	}
	if s := ck.State.Get("scalar"); len(s.Shape) != 0 || s.Numel() != 1 {
		t.Errorf("scalar shape %v", s.Shape)
	}
}

func TestReadTorchFileRefusesCode(t *testing.T) {
	dir := fixtures(t)
	for _, name := range []string{"malicious", "malicious_legacy"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".pt")
			_, err := ReadTorchFile(path)
			if err == nil {
				t.Fatal("a pickle calling os.system loaded")
			}
			var ug *UnsafeGlobalError
			if !errors.As(err, &ug) {
				t.Fatalf("error %v is not an UnsafeGlobalError", err)
			}
			msg := err.Error()
			for _, want := range []string{path, "refusing to load global posix.system", "must not run code"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
		})
	}
}

func TestOpenTorchScript(t *testing.T) {
	dir := fixtures(t)
	path := filepath.Join(dir, "script.pt")
	_, err := Open(path)
	if !errors.Is(err, ErrTorchScript) {
		t.Fatalf("got %v, want ErrTorchScript", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.pt"), "no such file"},
		{"empty", write("empty.pt", nil), "empty file"},
		{"text", write("notes.txt", []byte("hello world")), "unknown checkpoint format"},
		{"plain pickle", write("p.pkl", []byte("\x80\x02}q\x00.")), "not a torch.save file"},
		{"bad zip", write("z.pt", []byte("PK\x03\x04garbage")), "zip"},
		{"zip without data.pkl", write("z2.pt", zipOf(t, map[string][]byte{"a/b.txt": []byte("x")})), "no <dir>/data.pkl"},
		{"directory", dir, "directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Base(tc.path)) {
				t.Errorf("error %q should contain %q and the file name", err, tc.want)
			}
		})
	}
}
