package datasets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register JPEG decoding
	_ "image/png"  // register PNG decoding
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/image/draw"
)

// ImageNetMean and ImageNetStd are the usual ImageNet normalisation, used for folder data sets.
var (
	ImageNetMean = []float64{0.485, 0.456, 0.406}
	ImageNetStd  = []float64{0.229, 0.224, 0.225}
)

// FolderTestEvery is the hold-out rule for folder data sets without train/ and val/
// sub-folders: within each class, with files sorted by path, every FolderTestEvery-th file
// (positions FolderTestEvery-1, 2·FolderTestEvery-1, …) is in the test split and the rest in
// the train split, a deterministic, class-stratified 90/10 split. A class with fewer
// files holds out its last one, so that every class is in both splits; each class
// needs at least 2 files.
const FolderTestEvery = 10

// heldOut reports whether the i-th of a class's n files (sorted by path) is in the
// test split of a folder without train/ and val/ (see FolderTestEvery).
func heldOut(i, n int) bool {
	if n < FolderTestEvery {
		return i == n-1
	}
	return i%FolderTestEvery == FolderTestEvery-1
}

// DefaultMaxImagePixels is the most pixels (width × height) an image of a folder data
// set may declare when Options.MaxImagePixels is 0: Pillow's Image.MAX_IMAGE_PIXELS
// (1024³/4/3, about 89.5 million, a quarter of a gibibyte at 3 bytes per pixel).
const DefaultMaxImagePixels = 1024 * 1024 * 1024 / 4 / 3

// ErrTooLarge is wrapped by the errors about folder data that cannot be loaded within
// its bounds: an image whose header declares more pixels than Options.MaxImagePixels,
// or a folder whose estimated memory exceeds Options.MemoryLimit.
var ErrTooLarge = errors.New("too large")

const folderHint = "want PATH/train/<class>/*.png|jpg|jpeg and PATH/val/<class>/… (or PATH/test), or PATH/<class>/…"

// loadFolder reads an ImageNet-style image folder:
//
//   - If PATH/train exists, the train split is PATH/train/<class>/… and the test split
//     PATH/val/<class>/… (or PATH/test/<class>/… when there is no val). Classes are the
//     sub-folders of PATH/train; the test split may lack some but not add any.
//   - Otherwise PATH/<class>/… is one tree, split by [FolderTestEvery]: every class
//     is in both splits.
//
// Classes are sorted by name (byte order, like torchvision's ImageFolder) and numbered from
// 0. Files ending in .png, .jpg or .jpeg (any case) are read from each class folder and its
// sub-folders; names starting with "." are skipped. Images are decoded in parallel, converted
// to RGB (grayscale expanded to 3 channels; transparent pixels come out premultiplied, i.e.
// over black), resized with a bilinear filter (antialiased when shrinking) so that the shorter
// side is ImageSize, and centre-cropped to ImageSize×ImageSize.
func loadFolder(name, root, rawSplit, split string, opts Options) (*Dataset, error) {
	size := opts.ImageSize
	if size == 0 {
		size = DefaultImageSize
	}
	if size < 0 || size > 1<<14 {
		return nil, fmt.Errorf("%s: bad image size %d", name, size)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, fileErr(name, abs(root), folderHint, err)
	}

	var (
		classes []string
		files   []string
		labels  []int
		err     error
	)
	trainDir := filepath.Join(root, "train")
	if isDir(trainDir) {
		if classes, err = classDirs(name, trainDir); err != nil {
			return nil, err
		}
		dir := trainDir
		if split == "test" {
			dir = filepath.Join(root, "val")
			if !isDir(dir) && isDir(filepath.Join(root, "test")) {
				dir = filepath.Join(root, "test")
			}
			if !isDir(dir) {
				return nil, missing(name, dir, "no val or test folder beside "+trainDir)
			}
			testClasses, err := classDirs(name, dir)
			if err != nil {
				return nil, err
			}
			for _, c := range testClasses {
				if _, ok := slices.BinarySearch(classes, c); !ok {
					return nil, &FileError{Dataset: name, Path: filepath.Join(dir, c),
						Err: fmt.Errorf("class %q is not among the %d classes of %s", c, len(classes), trainDir)}
				}
			}
		}
		for label, c := range classes {
			if split == "test" && !isDir(filepath.Join(dir, c)) {
				continue // the test split may lack classes
			}
			imgs, err := imageFiles(name, filepath.Join(dir, c))
			if err != nil {
				return nil, err
			}
			if split == "train" && len(imgs) == 0 {
				return nil, &FileError{Dataset: name, Path: filepath.Join(dir, c), Err: errors.New("class folder has no .png/.jpg/.jpeg images")}
			}
			for _, f := range imgs {
				files, labels = append(files, f), append(labels, label)
			}
		}
	} else {
		for _, other := range []string{"val", "test"} {
			if isDir(filepath.Join(root, other)) {
				return nil, missing(name, trainDir, folderHint)
			}
		}
		if classes, err = classDirs(name, root); err != nil {
			return nil, err
		}
		for label, c := range classes {
			imgs, err := imageFiles(name, filepath.Join(root, c))
			if err != nil {
				return nil, err
			}
			if len(imgs) == 0 {
				return nil, &FileError{Dataset: name, Path: filepath.Join(root, c), Err: errors.New("class folder has no .png/.jpg/.jpeg images")}
			}
			if len(imgs) < 2 {
				return nil, &FileError{Dataset: name, Path: filepath.Join(root, c), Err: fmt.Errorf("class folder has %d image: "+
					"without train/ and val/ sub-folders every class holds out at least one image for the test split, so each needs at least 2", len(imgs)), Hint: folderHint}
			}
			for i, f := range imgs {
				if heldOut(i, len(imgs)) == (split == "test") {
					files, labels = append(files, f), append(labels, label)
				}
			}
		}
	}
	if len(files) == 0 {
		return nil, &FileError{Dataset: name, Path: root, Err: fmt.Errorf("no images in the %s split", rawSplit), Hint: folderHint}
	}

	maxPixels := opts.MaxImagePixels
	if maxPixels <= 0 {
		maxPixels = DefaultMaxImagePixels
	}
	workers, err := planDecoding(name, root, rawSplit, files, size, maxPixels, opts)
	if err != nil {
		return nil, err
	}
	d := &Dataset{
		Name: name, Split: split, N: len(files), C: FolderChannels, H: size, W: size,
		Labels: labels, Classes: len(classes), ClassNames: classes,
		Mean: append([]float64(nil), ImageNetMean...), Std: append([]float64(nil), ImageNetStd...),
	}
	d.Pixels = make([]uint8, d.N*d.ImageLen())
	if err := decodeAll(name, files, size, maxPixels, workers, d.Pixels); err != nil {
		return nil, err
	}
	return d, nil
}

// imageHeader is what an image file's header says, read before its pixels are.
type imageHeader struct {
	format        string
	width, height int
	// bytesPerPixel is what the decoded image takes per pixel (Go's decoders keep
	// JPEG as YCbCr, gray PNGs as one byte, 16-bit PNGs as eight).
	bytesPerPixel int
}

// decodeBytes is the memory that decoding the image takes: its decoded pixels.
func (h imageHeader) decodeBytes() float64 {
	return float64(h.width) * float64(h.height) * float64(h.bytesPerPixel)
}

// readHeader reads the header of the image at path, not its pixels, and checks it
// against maxPixels (see checkHeader). It also returns the file's size.
func readHeader(ds, path string, maxPixels int64) (imageHeader, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return imageHeader{}, 0, fileErr(ds, path, "", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return imageHeader{}, 0, fileErr(ds, path, "", err)
	}
	h, err := checkHeader(ds, path, bufio.NewReader(f), maxPixels)
	return h, st.Size(), err
}

// checkHeader decodes an image header (PNG or JPEG) from r and refuses an image that
// declares no pixels or more than maxPixels of them, naming path, before anything the
// size of the image is allocated.
func checkHeader(ds, path string, r io.Reader, maxPixels int64) (imageHeader, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return imageHeader{}, malformed(ds, path, "cannot decode image header: %v", err)
	}
	h := imageHeader{format: format, width: cfg.Width, height: cfg.Height, bytesPerPixel: bytesPerPixel(cfg.ColorModel)}
	if h.width <= 0 || h.height <= 0 {
		return h, malformed(ds, path, "empty image (%d×%d pixels)", h.width, h.height)
	}
	if int64(h.width) > maxPixels/int64(h.height) {
		return h, &FileError{Dataset: ds, Path: path, Err: fmt.Errorf("%w: its %s header declares %d×%d pixels (%.3g), more than the %d an image may have (decoding it would take %s)",
			ErrTooLarge, strings.ToUpper(format), h.width, h.height, float64(h.width)*float64(h.height), maxPixels, byteSize(h.decodeBytes()))}
	}
	return h, nil
}

// bytesPerPixel is the memory per pixel of the image Go's decoders make for an
// image of colour model m.
func bytesPerPixel(m color.Model) int {
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	}
	return 4 // RGBA, NRGBA, CMYK
}

// planDecoding reads every file's header (refusing images above maxPixels) and
// estimates the memory that loading the split takes: its pixels at size×size, and,
// for each decoder working at once, the largest files and their decoded images. It
// returns how many decoders may work at once (up to GOMAXPROCS) within
// opts.MemoryLimit, and an error giving the estimate and the limit when not even one
// fits.
func planDecoding(ds, root, split string, files []string, size int, maxPixels int64, opts Options) (int, error) {
	headers := make([]imageHeader, len(files))
	sizes := make([]int64, len(files))
	err := parallel(len(files), min(runtime.GOMAXPROCS(0), len(files)), func() func(int) error {
		return func(i int) (err error) {
			headers[i], sizes[i], err = readHeader(ds, files[i], maxPixels)
			return err
		}
	})
	if err != nil {
		return 0, err
	}
	workers := min(runtime.GOMAXPROCS(0), len(files))
	if opts.MemoryLimit <= 0 {
		return workers, nil
	}
	// Each decoder holds a file's bytes, its decoded image and a size×size RGBA canvas.
	transient := make([]float64, len(files))
	largest := 0
	for i, h := range headers {
		transient[i] = float64(sizes[i]) + h.decodeBytes()
		if h.decodeBytes() > headers[largest].decodeBytes() {
			largest = i
		}
	}
	slices.SortFunc(transient, func(a, b float64) int { return -cmpFloat(a, b) })
	pixels := float64(len(files)) * 3 * float64(size) * float64(size)
	canvas := 4 * float64(size) * float64(size)
	need := func(k int) float64 {
		t := 0.0
		for _, b := range transient[:k] {
			t += b
		}
		return pixels + t + float64(k)*canvas
	}
	for k := workers; k >= 1; k-- {
		if need(k) <= opts.MemoryLimit {
			return k, nil
		}
	}
	from := ""
	if opts.MemoryLimitFrom != "" {
		from = " (" + opts.MemoryLimitFrom + ")"
	}
	lh := headers[largest]
	return 0, &FileError{Dataset: ds, Path: root, Err: fmt.Errorf("%w: the %s split's %d images need about %s of memory to load (%s of %d×%d pixels, and %s to decode one at a time, the largest %s being %d×%d), more than the %s available%s",
		ErrTooLarge, split, len(files), byteSize(need(1)), byteSize(pixels), size, size, byteSize(need(1)-pixels), files[largest], lh.width, lh.height,
		byteSize(opts.MemoryLimit), from), Hint: "use fewer or smaller images, or a smaller image size"}
}

// cmpFloat orders a and b (no NaNs here).
func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// byteSize formats n bytes for a message: "512 B", "3.2 MiB", "13.4 GiB".
func byteSize(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// classDirs lists the sub-folders of dir (following symbolic links), sorted by name,
// skipping names that start with ".".
func classDirs(ds, dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fileErr(ds, dir, folderHint, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() || (e.Type()&fs.ModeSymlink != 0 && isDir(filepath.Join(dir, e.Name()))) {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		return nil, &FileError{Dataset: ds, Path: dir, Err: errors.New("no class sub-folders"), Hint: folderHint}
	}
	slices.Sort(out)
	return out, nil
}

// imageFiles lists the .png/.jpg/.jpeg files under dir, recursively, in lexical order.
func imageFiles(ds, dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".png", ".jpg", ".jpeg":
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fileErr(ds, dir, "", err)
	}
	return out, nil
}

// parallel runs work(i) for i in [0, n) on up to workers goroutines, each with its own
// function from newWorker, and returns the error of the lowest-numbered failing i
// (work stops being handed out after the first failure).
func parallel(n, workers int, newWorker func() func(int) error) error {
	var (
		next    atomic.Int64
		failed  atomic.Bool
		mu      sync.Mutex
		firstI  = n
		firstEr error
		wg      sync.WaitGroup
	)
	for range max(1, min(workers, n)) {
		wg.Go(func() {
			work := newWorker()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := work(i); err != nil {
					mu.Lock()
					if i < firstI {
						firstI, firstEr = i, err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return firstEr
}

// decodeAll decodes files[i] into pixels[i*3*size*size:] (CHW) with workers decoders
// at once, returning the error of the lowest-numbered failing file.
func decodeAll(ds string, files []string, size int, maxPixels int64, workers int, pixels []uint8) error {
	imgLen := 3 * size * size
	return parallel(len(files), workers, func() func(int) error {
		dst := image.NewRGBA(image.Rect(0, 0, size, size))
		return func(i int) error {
			return decodeOne(ds, files[i], maxPixels, dst, pixels[i*imgLen:(i+1)*imgLen])
		}
	})
}

// decodeOne decodes one image file, resizes its shorter side to dst's size, centre-crops
// it into dst (square) and writes the RGB planes to out. The header is checked against
// maxPixels first (the file may have changed since planDecoding read it).
func decodeOne(ds, path string, maxPixels int64, dst *image.RGBA, out []uint8) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fileErr(ds, path, "", err)
	}
	return decodeImage(ds, path, raw, maxPixels, dst, out)
}

// decodeImage is decodeOne on the file's contents, raw.
func decodeImage(ds, path string, raw []byte, maxPixels int64, dst *image.RGBA, out []uint8) error {
	if _, err := checkHeader(ds, path, bytes.NewReader(raw), maxPixels); err != nil {
		return err
	}
	src, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return malformed(ds, path, "cannot decode image: %v", err)
	}
	sb := src.Bounds()
	w, h := sb.Dx(), sb.Dy()
	if w <= 0 || h <= 0 {
		return malformed(ds, path, "empty image")
	}
	size := dst.Rect.Dx()
	// Resize the shorter side to size (the longer one as torchvision computes it,
	// truncating), then crop the centre (offsets rounded half to even, as torchvision).
	nw, nh := size, size
	if w < h {
		nh = int(float64(size) * float64(h) / float64(w))
	} else if h < w {
		nw = int(float64(size) * float64(w) / float64(h))
	}
	left := int(math.RoundToEven(float64(nw-size) / 2))
	top := int(math.RoundToEven(float64(nh-size) / 2))
	// Scaling into a rectangle offset by the crop draws only the visible part.
	draw.BiLinear.Scale(dst, image.Rect(-left, -top, nw-left, nh-top), src, sb, draw.Src, nil)
	plane := size * size
	for y := range size {
		row := dst.Pix[y*dst.Stride : y*dst.Stride+4*size]
		for x := range size {
			o := y*size + x
			out[o] = row[4*x]
			out[plane+o] = row[4*x+1]
			out[2*plane+o] = row[4*x+2]
		}
	}
	return nil
}
