package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"testing"
)

// zipEntry is one record of a zip archive being rewritten by a test.
type zipEntry struct {
	name   string
	body   []byte
	method uint16
}

// zipEntries lists the records of a zip archive in order.
func zipEntries(t testing.TB, data []byte) []zipEntry {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var out []zipEntry
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, zipEntry{f.Name, b, f.Method})
	}
	return out
}

// zipFrom writes records in the given order (duplicates and all) with their methods.
func zipFrom(t testing.TB, entries []zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// goTorchFile is a torch.save zip written by our writer holding one 2×2
// float32 tensor fc.weight = [1 2 3 4] (its storage is record archive/data/0).
func goTorchFile(t testing.TB) []byte {
	torch, _ := seedFiles(t)
	if _, err := ReadTorchBytes(torch); err != nil {
		t.Fatalf("the unmodified file should load: %v", err)
	}
	return torch
}

// dataRecord finds the record holding the float32 values 1 2 3 4.
func dataRecord(t testing.TB, entries []zipEntry) int {
	want := make([]byte, 16)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint32(want[4*i:], math.Float32bits(float32(i+1)))
	}
	for i, e := range entries {
		if bytes.Equal(e.body, want) {
			return i
		}
	}
	t.Fatal("no record holds fc.weight")
	return -1
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q lacks %q", err, p)
		}
	}
}

func TestZipRecordCRCChecked(t *testing.T) {
	data := goTorchFile(t)
	entries := zipEntries(t, data)
	rec := entries[dataRecord(t, entries)].name
	// Flip one byte of the tensor's data in place: the archive's CRC no longer matches.
	i := bytes.Index(data, entries[dataRecord(t, entries)].body)
	bad := append([]byte(nil), data...)
	bad[i+5] ^= 0x40
	_, err := ReadTorchBytes(bad)
	wantErr(t, err, rec, "CRC")
}

func TestZipDuplicateRecordRefused(t *testing.T) {
	entries := zipEntries(t, goTorchFile(t))
	d := dataRecord(t, entries)
	other := zipEntry{entries[d].name, make([]byte, 16), zip.Store}
	_, err := ReadTorchBytes(zipFrom(t, append(entries, other)))
	wantErr(t, err, entries[d].name, "twice")
}

func TestZipCompressedRecordRefused(t *testing.T) {
	// A deflate bomb: a 1 MB file whose storage record expands 1000:1. The
	// pickle asks for the whole storage, so the old reader expanded it all.
	entries := zipEntries(t, goTorchFile(t))
	d := dataRecord(t, entries)
	entries[d].body = append(entries[d].body, make([]byte, 64<<20)...)
	entries[d].method = zip.Deflate
	bomb := zipFrom(t, entries)
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	_, err := ReadTorchBytes(bomb)
	wantErr(t, err, entries[d].name, "compressed")
	// A compressed data.pkl too: the check is on every record.
	entries = zipEntries(t, goTorchFile(t))
	for i := range entries {
		if strings.HasSuffix(entries[i].name, "data.pkl") {
			entries[i].method = zip.Deflate
		}
	}
	_, err = ReadTorchBytes(zipFrom(t, entries))
	wantErr(t, err, "data.pkl", "compressed")
}

func TestZipHostileNamesSanitised(t *testing.T) {
	entries := zipEntries(t, goTorchFile(t))
	evil := "archive/\x1b]0;owned\x07\x1b[2J" + strings.Repeat("A", 60000) // a zip name holds at most 64 KiB
	entries = append(entries, zipEntry{evil, []byte("x"), zip.Store}, zipEntry{evil, []byte("y"), zip.Store})
	_, err := ReadTorchBytes(zipFrom(t, entries))
	wantErr(t, err, "twice", `\x1b]0;owned\a\x1b[2J`)
	if strings.ContainsAny(err.Error(), "\x1b\x07") {
		t.Errorf("error carries raw escape codes: %q", err)
	}
	if len(err.Error()) > 500 {
		t.Errorf("error is %d bytes long", len(err.Error()))
	}
	// A global whose name carries escape codes is refused without them.
	pkl := "\x80\x02cmy\x1b[2Jlib\nrun\n."
	_, err = ReadTorchBytes(torchZipOf(t, []byte(pkl)))
	wantErr(t, err, "refusing", `\x1b[2J`)
	if strings.Contains(err.Error(), "\x1b") {
		t.Errorf("error carries raw escape codes: %q", err)
	}
}

func TestSanitizeMessage(t *testing.T) {
	got := SanitizeMessage("a\x1b[31mb\nc\td\u009b\xff", 0)
	if got != "a\\x1b[31mb\nc\td\\u009b\uFFFD" {
		t.Errorf("got %q", got)
	}
	long := SanitizeMessage(strings.Repeat("x", 5000), 100)
	if len(long) > 130 || !strings.Contains(long, "5000 bytes") {
		t.Errorf("not cut: %d bytes, %q", len(long), long[len(long)-20:])
	}
}
