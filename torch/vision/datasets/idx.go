package datasets

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// DefaultFashionMNISTDir is where Debian's dataset-fashion-mnist package installs the
// Fashion-MNIST IDX files.
const DefaultFashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// FashionMNISTClasses are Fashion-MNIST's class names, in label order.
var FashionMNISTClasses = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// MNISTClasses are MNIST's class names, in label order.
var MNISTClasses = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

const fashionHint = "apt-get install dataset-fashion-mnist, or give the data directory"

func loadFashionMNIST(split string, opts Options) (*Dataset, error) {
	dir := opts.Root
	if dir == "" {
		dir = DefaultFashionMNISTDir
		if d := os.Getenv(EnvData); d != "" && isDir(filepath.Join(d, "fashion-mnist")) {
			dir = filepath.Join(d, "fashion-mnist")
		}
	}
	d, err := loadIDXPair("fashion-mnist", dir, split, fashionHint)
	if err != nil {
		return nil, err
	}
	d.ClassNames = append([]string(nil), FashionMNISTClasses...)
	d.Mean, d.Std = []float64{0.2860}, []float64{0.3530}
	return d, nil
}

// loadIDXPair reads the MNIST-style pair of IDX files of a split from dir: images
// ({train,t10k}-images-idx3-ubyte[.gz]) and labels ({train,t10k}-labels-idx1-ubyte[.gz]).
// Labels must lie in [0, 10).
func loadIDXPair(ds, dir, split, hint string) (*Dataset, error) {
	prefix := "train"
	if split == "test" {
		prefix = "t10k"
	}
	imgPath := idxFile(dir, prefix+"-images-idx3-ubyte")
	lblPath := idxFile(dir, prefix+"-labels-idx1-ubyte")

	var (
		wg             sync.WaitGroup
		imgs, lbls     []byte
		dims, ldims    []int
		imgErr, lblErr error
	)
	wg.Go(func() { imgs, dims, imgErr = readIDX(ds, imgPath, 3, hint) })
	lbls, ldims, lblErr = readIDX(ds, lblPath, 1, hint)
	wg.Wait()
	if imgErr != nil {
		return nil, imgErr
	}
	if lblErr != nil {
		return nil, lblErr
	}
	n := dims[0]
	if ldims[0] != n {
		return nil, malformed(ds, lblPath, "%d labels but %s has %d images", ldims[0], filepath.Base(imgPath), n)
	}
	const classes = 10
	labels := make([]int, n)
	for i, l := range lbls {
		if l >= classes {
			return nil, malformed(ds, lblPath, "label %d of item %d out of range [0, %d)", l, i, classes)
		}
		labels[i] = int(l)
	}
	return &Dataset{
		Name: ds, Split: split,
		N: n, C: 1, H: dims[1], W: dims[2],
		Pixels: imgs, Labels: labels, Classes: classes,
	}, nil
}

// idxFile returns dir/base.gz if it exists, else dir/base if that exists, else
// dir/base.gz (for the error message).
func idxFile(dir, base string) string {
	gz := filepath.Join(dir, base+".gz")
	if !isFile(gz) && isFile(filepath.Join(dir, base)) {
		return filepath.Join(dir, base)
	}
	return gz
}

// readIDX reads an IDX file of unsigned bytes with the given number of dimensions,
// gzip-compressed or not (detected from the content), returning its data and dimensions.
// The whole file is read, so a gzip checksum error or trailing bytes are reported.
func readIDX(ds, path string, ndims int, hint string) ([]byte, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fileErr(ds, path, hint, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fileErr(ds, path, "", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	gz := false
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, malformed(ds, path, "gzip: %v", err)
		}
		defer zr.Close()
		r, gz = zr, true
	}
	readErr := func(what string, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return malformed(ds, path, "truncated: file ends inside the %s", what)
		}
		if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
			return malformed(ds, path, "gzip: %v", err)
		}
		return fileErr(ds, path, "", err)
	}

	hdr := make([]byte, 4+4*ndims)
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, nil, readErr("header", err)
	}
	want := [4]byte{0, 0, 0x08, byte(ndims)}
	if [4]byte(hdr[:4]) != want {
		return nil, nil, malformed(ds, path, "bad magic number 0x%08x (want 0x%08x: IDX file of unsigned bytes with %d dimension(s))",
			binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(want[:]), ndims)
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return nil, nil, readErr("header", err)
	}
	dims := make([]int, ndims)
	total := int64(1)
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(hdr[4+4*i:]))
		total *= int64(dims[i])
		if total > 1<<40 {
			return nil, nil, malformed(ds, path, "implausible dimensions %v", dims)
		}
	}
	// Refuse to allocate more than the file can hold (gzip expands at most ~1032:1).
	if limit := st.Size() - int64(len(hdr)); !gz && total > limit {
		return nil, nil, malformed(ds, path, "truncated: header declares %v = %d bytes of data but the file holds %d", dims, total, max(limit, 0))
	} else if gz && total > 1100*st.Size() {
		return nil, nil, malformed(ds, path, "header declares %v = %d bytes of data, more than the compressed file can hold", dims, total)
	}
	// Allocate what the header declares only up to a generous multiple of the compressed
	// size (IDX data compresses about 5:1) and grow beyond that as data actually arrives, so
	// that a corrupt header cannot make us allocate gigabytes.
	data := make([]byte, min(total, 32*st.Size()+1<<20))
	for got := 0; ; {
		n, err := io.ReadFull(r, data[got:])
		got += n
		if err != nil {
			return nil, nil, readErr(fmt.Sprintf("data (header declares %v)", dims), err)
		}
		if int64(got) == total {
			break
		}
		data = slices.Grow(data, int(min(total-int64(got), int64(got))))
		data = data[:min(int64(cap(data)), total)]
	}
	var one [1]byte
	switch n, err := io.ReadFull(r, one[:]); {
	case n > 0:
		return nil, nil, malformed(ds, path, "trailing bytes after the %v data declared in the header", dims)
	case err != nil && !errors.Is(err, io.EOF):
		return nil, nil, readErr("data", err)
	}
	return data, dims, nil
}
