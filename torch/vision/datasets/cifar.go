package datasets

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CIFAR10Classes are CIFAR-10's class names, in label order.
var CIFAR10Classes = []string{
	"airplane", "automobile", "bird", "cat", "deer",
	"dog", "frog", "horse", "ship", "truck",
}

// CIFAR100Classes are CIFAR-100's 100 fine class names, in label order.
var CIFAR100Classes = []string{
	"apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
	"bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
	"chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
	"dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
	"lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
	"mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
	"plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
	"rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
	"squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
	"train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
}

// CIFAR100CoarseClasses are CIFAR-100's 20 coarse (super-class) names, in label order.
var CIFAR100CoarseClasses = []string{
	"aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
	"household_electrical_devices", "household_furniture", "insects", "large_carnivores",
	"large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
	"medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
	"vehicles_1", "vehicles_2",
}

const cifarURL = "https://www.cs.toronto.edu/~kriz/cifar.html"

// cifarLayout describes one of the CIFAR binary formats.
type cifarLayout struct {
	name    string   // data set name
	folder  string   // folder inside the archive
	dataDir string   // default per-data-set folder under $MODELSTITCH_DATA or ./data
	archive string   // archive to download
	train   []string // training files
	test    []string // test files
}

var (
	cifar10Layout = cifarLayout{
		name: "cifar10", folder: "cifar-10-batches-bin", dataDir: "cifar10", archive: "cifar-10-binary.tar.gz",
		train: []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"},
		test:  []string{"test_batch.bin"},
	}
	cifar100Layout = cifarLayout{
		name: "cifar100", folder: "cifar-100-binary", dataDir: "cifar100", archive: "cifar-100-binary.tar.gz",
		train: []string{"train.bin"}, test: []string{"test.bin"},
	}
)

const cifarImageLen = 3 * 32 * 32

// resolve returns the folder holding the layout's files, trying root itself and
// root/<folder>; with an empty root, $MODELSTITCH_DATA/<dataDir>, $MODELSTITCH_DATA, and
// the same under ./data. If nothing matches it returns the folder an error should name.
func (l cifarLayout) resolve(root string, files []string) (string, string) {
	var roots []string
	if root != "" {
		roots = []string{root}
	} else {
		for _, d := range dataDirs() {
			roots = append(roots, filepath.Join(d, l.dataDir), d)
		}
	}
	hasAny := func(dir string) bool {
		for _, f := range files {
			if isFile(filepath.Join(dir, f)) {
				return true
			}
		}
		return false
	}
	for _, r := range roots {
		for _, dir := range []string{r, filepath.Join(r, l.folder)} {
			if hasAny(dir) {
				return dir, ""
			}
		}
	}
	first := filepath.Join(roots[0], l.folder)
	if root != "" && filepath.Base(filepath.Clean(root)) == l.folder {
		first = root
	}
	hint := fmt.Sprintf("download %s from %s and unpack it into %s, set %s, or give the data directory",
		l.archive, cifarURL, filepath.Dir(first), EnvData)
	return first, hint
}

// read loads the split's files; each record is labelBytes label bytes followed by 3072
// pixel bytes (1024 red, 1024 green, 1024 blue, each 32×32 row-major). labelIndex picks
// the label byte used and classes bounds it.
// It also returns the folder the files were read from.
func (l cifarLayout) read(split, root string, labelBytes, labelIndex, classes int) (*Dataset, string, error) {
	files := l.train
	if split == "test" {
		files = l.test
	}
	dir, hint := l.resolve(root, files)
	recLen := labelBytes + cifarImageLen
	var raws [][]byte
	n := 0
	for _, f := range files {
		path := filepath.Join(dir, f)
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fileErr(l.name, path, hint, err)
		}
		if len(raw) == 0 || len(raw)%recLen != 0 {
			return nil, "", malformed(l.name, path, "truncated: %d bytes is not a whole number of %d-byte records", len(raw), recLen)
		}
		raws = append(raws, raw)
		n += len(raw) / recLen
	}
	d := &Dataset{
		Name: l.name, Split: split, N: n, C: 3, H: 32, W: 32,
		Pixels: make([]uint8, n*cifarImageLen), Labels: make([]int, n), Classes: classes,
	}
	i := 0
	for fi, raw := range raws {
		for off := 0; off < len(raw); off += recLen {
			lab := int(raw[off+labelIndex])
			if lab >= classes {
				return nil, "", malformed(l.name, filepath.Join(dir, files[fi]),
					"label %d of record %d out of range [0, %d)", lab, off/recLen, classes)
			}
			d.Labels[i] = lab
			copy(d.Pixels[i*cifarImageLen:(i+1)*cifarImageLen], raw[off+labelBytes:off+recLen])
			i++
		}
	}
	return d, dir, nil
}

func loadCIFAR10(split string, opts Options) (*Dataset, error) {
	d, dir, err := cifar10Layout.read(split, opts.Root, 1, 0, 10)
	if err != nil {
		return nil, err
	}
	d.ClassNames = classNamesFile(filepath.Join(dir, "batches.meta.txt"), CIFAR10Classes)
	d.Mean = []float64{0.4914, 0.4822, 0.4465}
	d.Std = []float64{0.2470, 0.2435, 0.2616}
	return d, nil
}

// loadCIFAR100 reads CIFAR-100; its usual normalisation (0.5071, 0.4865, 0.4409)/(0.2673,
// 0.2564, 0.2762) is used.
func loadCIFAR100(split string, opts Options) (*Dataset, error) {
	labelIndex, classes, names, namesFile := 1, 100, CIFAR100Classes, "fine_label_names.txt"
	if opts.Coarse {
		labelIndex, classes, names, namesFile = 0, 20, CIFAR100CoarseClasses, "coarse_label_names.txt"
	}
	d, dir, err := cifar100Layout.read(split, opts.Root, 2, labelIndex, classes)
	if err != nil {
		return nil, err
	}
	d.ClassNames = classNamesFile(filepath.Join(dir, namesFile), names)
	d.Mean = []float64{0.5071, 0.4865, 0.4409}
	d.Std = []float64{0.2673, 0.2564, 0.2762}
	return d, nil
}

// classNamesFile reads one class name per non-empty line from path (the archives'
// batches.meta.txt and *_label_names.txt), falling back to def when the file is absent or
// has the wrong number of names.
func classNamesFile(path string, def []string) []string {
	raw, err := os.ReadFile(path)
	if err == nil {
		var names []string
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if s := strings.TrimSpace(sc.Text()); s != "" {
				names = append(names, s)
			}
		}
		if sc.Err() == nil && len(names) == len(def) {
			return names
		}
	}
	return append([]string(nil), def...)
}
