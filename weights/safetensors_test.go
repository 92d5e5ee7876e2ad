package weights

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	sd := smallState(t)
	path := filepath.Join(t.TempDir(), "small.safetensors")
	meta := map[string]string{MetadataKey: `{"arch":"resnet18"}`, "format": "pt"}
	if err := WriteSafetensors(path, sd, meta); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if hl := binary.LittleEndian.Uint64(raw); hl%8 != 0 || raw[8] != '{' {
		t.Errorf("header length %d, first byte %q", hl, raw[8])
	}
	ck, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Format != FormatSafetensors {
		t.Errorf("format %s", ck.Format)
	}
	assertSameState(t, ck.State, sd)
	var m struct{ Arch string }
	if err := ck.ModelstitchMeta(&m); err != nil || m.Arch != "resnet18" {
		t.Errorf("metadata %+v, %v", m, err)
	}
	if ck.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", ck.Metadata)
	}
}

// TestSafetensorsResnet18 writes the Python-made resnet18 weights as
// safetensors from Go and reads them back from Go (no Python safetensors
// package is installed here).
func TestSafetensorsResnet18(t *testing.T) {
	dir := fixtures(t)
	ck, err := ReadTorchFile(filepath.Join(dir, "resnet18.pt"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r18.safetensors")
	if err := WriteSafetensors(path, ck.State, nil); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	checkState(t, back.State, loadExpected(t, dir, "resnet18"))
	if err := back.ModelstitchMeta(&struct{}{}); !errors.Is(err, ErrNoMetadata) {
		t.Errorf("ModelstitchMeta without metadata: %v", err)
	}
}

// safetensorsOf builds a file from a header and data.
func safetensorsOf(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestSafetensorsErrors(t *testing.T) {
	four := make([]byte, 4)
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "empty file"},
		{"short", []byte{1, 2, 3}, "shorter"},
		{"header too long", append(huge, '{', '}'), "exceeds the file"},
		{"not json", safetensorsOf("[1]", nil), "not a JSON object"},
		{"bad dtype", safetensorsOf(`{"w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}`, []byte{0}), `"w": unsupported dtype`},
		{"offsets outside", safetensorsOf(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}`, four), `"w": data_offsets [0, 8] outside`},
		{"size mismatch", safetensorsOf(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, four), `"w": shape [2] of F32 needs 8 bytes`},
		{"negative shape", safetensorsOf(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, four), `"w": invalid shape`},
		{"overflow shape", safetensorsOf(`{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, four), `"w": invalid shape`},
		{"overlap", safetensorsOf(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, four), "gap or overlap"},
		{"hole", safetensorsOf(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, four), "cover 2 of the 4"},
		{"duplicate", safetensorsOf(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, four), `"a" appears twice`},
		{"bad metadata", safetensorsOf(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"offsets count", safetensorsOf(`{"w":{"dtype":"U8","shape":[4],"data_offsets":[0]}}`, four), `"w": data_offsets must have 2`},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.safetensors")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadSafetensors(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v, want an error naming the file containing %q", err, tc.want)
			}
		})
	}
}

// TestOpenSafetensorsLikePickle: a header length of 128 mod 256 makes the file
// start with 0x80, a pickle's first byte; Open must still see safetensors.
func TestOpenSafetensorsLikePickle(t *testing.T) {
	header := `{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`
	for len(header) < 128 {
		header += " "
	}
	path := filepath.Join(t.TempDir(), "weights.bin")
	if err := os.WriteFile(path, safetensorsOf(header, []byte{1, 2, 3, 4}), 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(path)
	if err != nil || ck.Format != FormatSafetensors || ck.State.Get("w") == nil {
		t.Fatalf("Open: %v", err)
	}
}
