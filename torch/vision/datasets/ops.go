package datasets

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// checkShape verifies the sizes methods index with, so that they never panic.
func (d *Dataset) checkShape() error {
	if d == nil {
		return errors.New("datasets: nil data set")
	}
	if d.N < 0 || d.C < 0 || d.H < 0 || d.W < 0 || len(d.Pixels) != d.N*d.ImageLen() || len(d.Labels) != d.N ||
		(d.Noise != nil && len(d.Noise.Original) != d.N) {
		return d.Validate()
	}
	return nil
}

// Slice returns images [start, end) of d. The result shares d's Pixels; its labels are a
// copy.
func (d *Dataset) Slice(start, end int) (*Dataset, error) {
	if err := d.checkShape(); err != nil {
		return nil, err
	}
	if start < 0 || end < start || end > d.N {
		return nil, fmt.Errorf("%s: slice [%d:%d] out of range [0:%d]", d.Name, start, end, d.N)
	}
	n := d.ImageLen()
	out := d.cloneMeta()
	out.N = end - start
	out.Pixels = d.Pixels[start*n : end*n : end*n]
	out.Labels = slices.Clone(d.Labels[start:end])
	if d.Noise != nil {
		out.Noise = d.Noise.remap(out.Labels, func(yield func(int, int) bool) {
			for j := range end - start {
				if !yield(j, start+j) {
					return
				}
			}
		})
	}
	return out, nil
}

// Take returns the images at indices, in that order (repeats allowed), copying pixels and
// labels.
func (d *Dataset) Take(indices []int) (*Dataset, error) {
	if err := d.checkShape(); err != nil {
		return nil, err
	}
	for _, i := range indices {
		if i < 0 || i >= d.N {
			return nil, fmt.Errorf("%s: index %d out of range [0, %d)", d.Name, i, d.N)
		}
	}
	n := d.ImageLen()
	out := d.cloneMeta()
	out.N = len(indices)
	out.Pixels = make([]uint8, len(indices)*n)
	out.Labels = make([]int, len(indices))
	for j, i := range indices {
		copy(out.Pixels[j*n:(j+1)*n], d.Pixels[i*n:(i+1)*n])
		out.Labels[j] = d.Labels[i]
	}
	if d.Noise != nil {
		out.Noise = d.Noise.remap(out.Labels, func(yield func(int, int) bool) {
			for j, i := range indices {
				if !yield(j, i) {
					return
				}
			}
		})
	}
	return out, nil
}

// remap carries noise information over to a data set whose image j is image pairs(j) of
// the noisy one; labels are the new data set's labels.
func (nz *LabelNoise) remap(labels []int, pairs func(func(int, int) bool)) *LabelNoise {
	out := &LabelNoise{P: nz.P, Seed: nz.Seed, Original: make([]int, len(labels))}
	for j, i := range pairs {
		out.Original[j] = nz.Original[i]
		if _, ok := slices.BinarySearch(nz.Replaced, i); ok {
			out.Replaced = append(out.Replaced, j)
			if labels[j] != out.Original[j] {
				out.Changed++
			}
		}
	}
	return out
}

// Subset returns a class-balanced subset of n images: n/Classes of every class, plus one
// more for each of the first n%Classes classes. Within a class the images are picked by a
// permutation seeded with seed, so the same seed gives the same subset, and for one seed a
// smaller subset is contained in a larger one. The images keep their original relative
// order. It fails if a class has too few images or n is not in [0, N].
func (d *Dataset) Subset(n int, seed int64) (*Dataset, error) {
	chosen, err := d.SubsetIndices(n, seed)
	if err != nil {
		return nil, err
	}
	return d.Take(chosen)
}

// SubsetIndices returns the indices of the images Subset(n, seed) takes, in
// increasing order: image i of the subset is image SubsetIndices(n, seed)[i] of d.
func (d *Dataset) SubsetIndices(n int, seed int64) ([]int, error) {
	if err := d.checkShape(); err != nil {
		return nil, err
	}
	if d.Classes <= 0 {
		return nil, fmt.Errorf("%s: subset needs Classes > 0", d.Name)
	}
	if n < 0 || n > d.N {
		return nil, fmt.Errorf("%s: subset of %d images out of range [0, %d]", d.Name, n, d.N)
	}
	byClass := make([][]int, d.Classes)
	for i, l := range d.Labels {
		if l < 0 || l >= d.Classes {
			return nil, fmt.Errorf("%s: label %d of image %d out of range [0, %d)", d.Name, l, i, d.Classes)
		}
		byClass[l] = append(byClass[l], i)
	}
	rng := newRNG(seed)
	var chosen []int
	for c, idx := range byClass {
		want := n / d.Classes
		if c < n%d.Classes {
			want++
		}
		if len(idx) < want {
			return nil, fmt.Errorf("%s: balanced subset of %d images needs %d of class %d (%s) but it has %d",
				d.Name, n, want, c, d.className(c), len(idx))
		}
		rng.shuffle(idx)
		chosen = append(chosen, idx[:want]...)
	}
	slices.Sort(chosen)
	return chosen, nil
}

func (d *Dataset) className(c int) string {
	if c >= 0 && c < len(d.ClassNames) {
		return d.ClassNames[c]
	}
	return fmt.Sprint(c)
}

// WithLabelNoise returns a copy of d in which exactly round(p·N) labels, at indices chosen
// by a permutation seeded with seed, are replaced by labels drawn uniformly from the other
// classes, so that the stated share of labels really changes ("10 % noise" is 10 % wrong
// labels; drawing from all classes, as Zhang et al. do, would leave about 1/Classes of
// them right by chance). With one class nothing can change. p is clamped to [0, 1] (NaN
// counts as 0). The result's Noise field lists the replaced indices,
// how many labels actually changed, and the clean labels; noise applied to already noisy
// labels accumulates (Original stays the clean labels). The copy shares d's Pixels. It
// returns nil for a nil or inconsistent d.
func (d *Dataset) WithLabelNoise(p float64, seed int64) *Dataset {
	if d.checkShape() != nil {
		return nil
	}
	if math.IsNaN(p) {
		p = 0
	}
	p = min(max(p, 0), 1)
	out := d.cloneMeta()
	out.Pixels = d.Pixels
	out.Labels = slices.Clone(d.Labels)
	nz := &LabelNoise{P: p, Seed: seed, Original: slices.Clone(d.Labels)}
	if d.Noise != nil {
		nz.Original = slices.Clone(d.Noise.Original)
		nz.Replaced = slices.Clone(d.Noise.Replaced)
	}
	out.Noise = nz
	if d.Classes <= 0 {
		return out
	}
	k := int(math.Round(p * float64(d.N)))
	rng := newRNG(seed)
	perm := rng.perm(d.N)
	if d.Classes > 1 {
		for _, i := range perm[:k] {
			// One of the Classes-1 labels other than the current one.
			l := rng.intn(d.Classes - 1)
			if l >= out.Labels[i] {
				l++
			}
			out.Labels[i] = l
		}
	}
	nz.Replaced = append(nz.Replaced, perm[:k]...)
	slices.Sort(nz.Replaced)
	nz.Replaced = slices.Compact(nz.Replaced)
	for _, i := range nz.Replaced {
		if out.Labels[i] != nz.Original[i] {
			nz.Changed++
		}
	}
	return out
}

// ObjectClasses and AnimalClasses are the CIFAR-10 classes mapped to 0 ("object") and 1
// ("animal") by [Dataset.ObjectsVsAnimals].
var (
	ObjectClasses = []string{"airplane", "automobile", "ship", "truck"}
	AnimalClasses = []string{"bird", "cat", "deer", "dog", "frog", "horse"}
)

// ObjectsVsAnimals relabels a CIFAR-10 data set (any data set whose class names are
// CIFAR-10's, e.g. a subset or a folder export) for the two-class task of the paper:
// airplane, automobile, ship, truck → 0 "object"; bird, cat, deer, dog, frog, horse → 1
// "animal". Noise information, if any, is mapped too. The result shares d's Pixels and its
// Name gets the suffix ":objects-vs-animals".
func (d *Dataset) ObjectsVsAnimals() (*Dataset, error) {
	return d.Relabel(TaskObjectsVsAnimals)
}

// rng is a small SplitMix64 generator, so that subsets and noise depend only on the seed
// and this code, not on the standard library's choice of algorithms.
type rng struct{ s uint64 }

func newRNG(seed int64) *rng { return &rng{uint64(seed) ^ 0x5851f42d4c957f2d} }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a uniform integer in [0, n), n > 0, without modulo bias.
func (r *rng) intn(n int) int {
	un := uint64(n)
	threshold := -un % un
	for {
		if v := r.next(); v >= threshold {
			return int(v % un)
		}
	}
}

// shuffle permutes s in place (Fisher–Yates).
func (r *rng) shuffle(s []int) {
	for i := len(s) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		s[i], s[j] = s[j], s[i]
	}
}

// perm returns a random permutation of [0, n).
func (r *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r.shuffle(p)
	return p
}
