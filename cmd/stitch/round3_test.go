package main

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bombPNG writes a file that starts like a PNG declaring w×h RGBA pixels and holds
// only the start of its pixel data: its header is all a loader needs to read to refuse it.
func bombPNG(t *testing.T, path string, w, h uint32) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32([]byte("IHDR"), w), h)
	chunk = append(chunk, 8, 6, 0, 0, 0)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	// The start of the pixel data: a zlib header, on which Go's decoder allocates the
	// whole image before reading a row.
	idat := []byte("IDAT\x78\x9c")
	binary.Write(&b, binary.BigEndian, uint32(2))
	b.Write(idat)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(idat))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// smallPNG writes a w×h black PNG.
func smallPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTrainRefusesImageBomb: `stitch train --data folder:DIR` with a PNG that declares
// 60000×60000 pixels died out of memory decoding it; it is refused naming the file,
// and nothing is written.
func TestTrainRefusesImageBomb(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []string{"cat", "dog"} {
		for _, n := range []string{"a", "b", "c"} {
			smallPNG(t, filepath.Join(dir, "train", c, n+".png"), 12, 12)
		}
		smallPNG(t, filepath.Join(dir, "val", c, "v.png"), 12, 12)
	}
	bomb := filepath.Join(dir, "train", "dog", "huge.png")
	bombPNG(t, bomb, 60000, 60000)
	out := filepath.Join(t.TempDir(), "m.pt")
	err := run([]string{"stitch", "train", "--data", "folder:" + dir, "--image-size", "8", "--epochs", "1", "--threads", "1", "--out", out})
	for _, want := range []string{bomb, "60000×60000"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one saying %q", err, want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written", out)
	}
}
