package datasets

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // register JPEG decoding
	_ "image/png"  // register PNG decoding
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
// the train split, a deterministic, class-stratified 90/10 split.
const FolderTestEvery = 10

const folderHint = "want PATH/train/<class>/*.png|jpg|jpeg and PATH/val/<class>/… (or PATH/test), or PATH/<class>/…"

// loadFolder reads an ImageNet-style image folder:
//
//   - If PATH/train exists, the train split is PATH/train/<class>/… and the test split
//     PATH/val/<class>/… (or PATH/test/<class>/… when there is no val). Classes are the
//     sub-folders of PATH/train; the test split may lack some but not add any.
//   - Otherwise PATH/<class>/… is one tree, split by [FolderTestEvery].
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
			for i, f := range imgs {
				if (i%FolderTestEvery == FolderTestEvery-1) == (split == "test") {
					files, labels = append(files, f), append(labels, label)
				}
			}
		}
	}
	if len(files) == 0 {
		return nil, &FileError{Dataset: name, Path: root, Err: fmt.Errorf("no images in the %s split", rawSplit), Hint: folderHint}
	}

	d := &Dataset{
		Name: name, Split: split, N: len(files), C: 3, H: size, W: size,
		Labels: labels, Classes: len(classes), ClassNames: classes,
		Mean: append([]float64(nil), ImageNetMean...), Std: append([]float64(nil), ImageNetStd...),
	}
	d.Pixels = make([]uint8, d.N*d.ImageLen())
	if err := decodeAll(name, files, size, d.Pixels); err != nil {
		return nil, err
	}
	return d, nil
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

// decodeAll decodes files[i] into pixels[i*3*size*size:] (CHW) with a worker pool,
// returning the error of the lowest-numbered failing file.
func decodeAll(ds string, files []string, size int, pixels []uint8) error {
	workers := min(runtime.GOMAXPROCS(0), len(files))
	imgLen := 3 * size * size
	var (
		next    atomic.Int64
		failed  atomic.Bool
		mu      sync.Mutex
		firstI  = len(files)
		firstEr error
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			dst := image.NewRGBA(image.Rect(0, 0, size, size))
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return
				}
				if err := decodeOne(ds, files[i], dst, pixels[i*imgLen:(i+1)*imgLen]); err != nil {
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

// decodeOne decodes one image file, resizes its shorter side to dst's size, centre-crops
// it into dst (square) and writes the RGB planes to out.
func decodeOne(ds, path string, dst *image.RGBA, out []uint8) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fileErr(ds, path, "", err)
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
