package datasets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// pngHeader returns the start of a PNG file whose header (IHDR, 8-bit RGBA) declares
// w×h pixels, followed by the first two bytes of its pixel data.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := make([]byte, 0, 17)
	chunk = append(chunk, "IHDR"...)
	chunk = binary.BigEndian.AppendUint32(chunk, w)
	chunk = binary.BigEndian.AppendUint32(chunk, h)
	chunk = append(chunk, 8, 6, 0, 0, 0) // bit depth 8, RGBA, deflate, no filter, no interlace
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	// The start of the pixel data: a zlib header, on which Go's decoder allocates the
	// whole image before reading a row.
	idat := []byte("IDAT\x78\x9c")
	binary.Write(&b, binary.BigEndian, uint32(2))
	b.Write(idat)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(idat))
	return b.Bytes()
}

// TestFolderImageBombRefused: a PNG that declares 60000×60000 pixels was decoded in
// full (14 GB) and the program died out of memory; it is refused from its header,
// naming the file, before anything its size is allocated.
func TestFolderImageBombRefused(t *testing.T) {
	root := t.TempDir()
	for _, c := range []string{"a", "b"} {
		for i := range 3 {
			writeImage(t, filepath.Join(root, c, string(rune('p'+i))+".png"), solid(8, 8, color.Gray{uint8(40 * i)}))
		}
	}
	bomb := filepath.Join(root, "b", "bomb.png")
	if err := os.WriteFile(bomb, pngHeader(60000, 60000), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load("folder:"+root, "train", Options{ImageSize: 4})
	if err == nil || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), bomb) || !strings.Contains(err.Error(), "60000×60000") {
		t.Fatalf("folder with a 60000×60000 PNG: %v, want an ErrTooLarge naming %s and its size", err, bomb)
	}
	if err := os.Remove(bomb); err != nil {
		t.Fatal(err)
	}
	// A lower bound set by the caller applies to ordinary images too.
	_, err = Load("folder:"+root, "train", Options{ImageSize: 4, MaxImagePixels: 63})
	if err == nil || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "8×8") {
		t.Errorf("8×8 images with at most 63 pixels: %v, want an ErrTooLarge", err)
	}
	if _, err := Load("folder:"+root, "train", Options{ImageSize: 4}); err != nil {
		t.Errorf("without the bomb: %v", err)
	}
}

// TestFolderMemoryEstimate: a folder is measured against the memory limit from its
// headers before anything is decoded; fewer decoders work at once when that fits, and
// the error gives the estimate, the limit and where it comes from when nothing does.
func TestFolderMemoryEstimate(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	root := t.TempDir()
	var files []string
	for i := range 4 {
		f := filepath.Join(root, "train", "c", string(rune('a'+i))+".png")
		writeImage(t, f, solid(100, 50, color.NRGBA{1, 2, 3, 255})) // NRGBA: 20,000 bytes decoded
		files = append(files, f)
	}
	const size = 8
	var fileBytes int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		fileBytes = max(fileBytes, st.Size())
	}
	pixels := 4 * 3 * size * size
	one := float64(pixels) + float64(fileBytes) + 20000 + 4*size*size // one decoder at a time (all files are alike)
	for _, c := range []struct {
		limit float64
		want  int
	}{{0, 4}, {1e12, 4}, {one, 1}, {2*one - float64(pixels), 2}} {
		got, err := planDecoding("folder:x", root, "train", files, size, DefaultMaxImagePixels, Options{MemoryLimit: c.limit})
		if err != nil || got != c.want {
			t.Errorf("limit %.0f: %d decoders, %v; want %d", c.limit, got, err, c.want)
		}
	}
	_, err := Load("folder:"+root, "train", Options{ImageSize: size, MemoryLimit: one - 1, MemoryLimitFrom: "the test's limit"})
	if err == nil || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit one byte short: %v, want ErrTooLarge", err)
	}
	for _, want := range []string{root, byteSize(one), byteSize(one - 1), "the test's limit", "100×50"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	d, err := Load("folder:"+root, "train", Options{ImageSize: size, MemoryLimit: one})
	if err != nil || d.N != 4 || d.Image(3)[0] != 1 {
		t.Errorf("limit that fits one decoder: %v", err)
	}
}

// FuzzDecodeHeader feeds arbitrary bytes to the image path of folder data sets: the
// header check must never let an image above the pixel budget through, and an image
// it lets through decodes (or fails) without panicking, at the size its header said.
func FuzzDecodeHeader(f *testing.F) {
	const maxPixels = 1 << 16
	var pngBuf, jpgBuf, grayBuf bytes.Buffer
	png.Encode(&pngBuf, solid(5, 3, color.NRGBA{9, 8, 7, 255}))
	jpeg.Encode(&jpgBuf, solid(9, 4, color.NRGBA{200, 10, 10, 255}), nil)
	png.Encode(&grayBuf, image.NewGray16(image.Rect(0, 0, 2, 7)))
	f.Add(pngBuf.Bytes())
	f.Add(jpgBuf.Bytes())
	f.Add(grayBuf.Bytes())
	f.Add(pngHeader(60000, 60000))
	f.Add(pngHeader(1, 1<<31-1))
	f.Add(pngHeader(0, 5))
	f.Add([]byte("\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := checkHeader("fuzz", "x", bytes.NewReader(raw), maxPixels)
		tooLarge := float64(h.width)*float64(h.height) > maxPixels
		switch {
		case err == nil && (tooLarge || h.width <= 0 || h.height <= 0):
			t.Fatalf("header %d×%d accepted with at most %d pixels", h.width, h.height, maxPixels)
		case errors.Is(err, ErrTooLarge) && !tooLarge:
			t.Fatalf("header %d×%d refused as too large", h.width, h.height)
		case err != nil && !strings.Contains(err.Error(), "fuzz: x:"):
			t.Fatalf("error %q does not name the file", err)
		}
		dst := image.NewRGBA(image.Rect(0, 0, 4, 4))
		out := make([]uint8, 3*4*4)
		derr := decodeImage("fuzz", "x", raw, maxPixels, dst, out)
		if err != nil && derr == nil {
			t.Fatalf("decoded an image whose header was refused (%v)", err)
		}
		if err == nil && derr == nil {
			img, _, ierr := image.Decode(bytes.NewReader(raw))
			if ierr != nil || img.Bounds().Dx() != h.width || img.Bounds().Dy() != h.height {
				t.Fatalf("decoded %v (%v), header said %d×%d", img.Bounds(), ierr, h.width, h.height)
			}
		}
	})
}
