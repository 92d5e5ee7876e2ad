// Package data turns in-memory image data sets ([datasets.Dataset]) into batches of
// tensors on the training device, and augments them with batched tensor operations.
//
// A [Loader] gathers the uint8 pixels of a batch in Go, copies them to the device in
// one piece, scales them to [0, 1], applies the configured augmentation there, and
// normalises with the data set's mean and standard deviation:
//
//	x = (augment(pixels/255) - mean) / std
//
// Augmentation therefore sees un-normalised values in [0, 1], as torchvision's
// transforms do before Normalize: padding and erasing fill with black (0), and the
// colour operations clamp to [0, 1].
//
// Batches are prepared ahead in a goroutine while the caller trains on the previous
// ones. Every tensor of a batch belongs to the batch's [torch.Scope]; tensors computed
// from Batch.X join that scope too, so closing the batch frees a whole training step.
//
// Everything random is a pure function of the loader's seed and the epoch number: the
// shuffle order (drawn in Go) and the augmentations (drawn from a [torch.Generator] on
// the loader's device, so CPU and CUDA runs use different but each reproducible
// streams).
package data

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"

	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
)

// DefaultPrefetch is the number of batches prepared ahead when Config.Prefetch is 0.
const DefaultPrefetch = 2

// Config says how a [Loader] batches, shuffles, places, normalises and augments a data
// set. The zero value (apart from BatchSize) gives in-order batches on the CPU,
// normalised with the data set's own mean and standard deviation, without
// augmentation.
type Config struct {
	// BatchSize is the number of images per batch; it must be positive.
	BatchSize int
	// Shuffle draws a new random order each epoch, a pure function of (Seed, epoch).
	Shuffle bool
	// Seed seeds the shuffle order and the augmentation stream.
	Seed int64
	// DropLast drops the last batch of an epoch when it is smaller than BatchSize.
	DropLast bool
	// Device is where batches are made (the zero value is the CPU).
	Device torch.Device
	// Mean and Std are the per-channel normalisation for pixels scaled to [0, 1]
	// (len C each, Std > 0). Nil means the data set's own; when the data set has none
	// either, no normalisation (mean 0, std 1).
	Mean, Std []float64
	// Augment, if not nil, is applied to each batch on the device, to the pixel values
	// scaled to [0, 1] and BEFORE normalisation, with random parameters drawn from a
	// generator seeded from (Seed, epoch).
	Augment Transform
	// Views is the number of independently augmented views made of each batch
	// (Batch.Views); 0 means 1. Use 2 for SimCLR.
	Views int
	// Prefetch is the number of batches prepared ahead in a goroutine; 0 means
	// DefaultPrefetch, and a negative value prepares each batch in the caller's
	// goroutine when it is asked for.
	Prefetch int
}

// Batch is one batch of images and labels on the loader's device.
type Batch struct {
	// X holds the images, float32 [N,C,H,W], augmented and normalised. It is Views[0].
	X *torch.Tensor
	// Y holds the labels, int64 [N].
	Y *torch.Tensor
	// Views holds Config.Views independently augmented, normalised versions of the
	// images (Views[0] == X).
	Views []*torch.Tensor
	// Index lists the data set indices of the images, in batch order.
	Index []int
	// Scope owns the batch's tensors, and the tensors computed from them (results
	// join the scope of their first scoped operand).
	Scope *torch.Scope
}

// Close frees the batch's tensors by closing its Scope. It is safe to call twice.
func (b *Batch) Close() {
	if b != nil && b.Scope != nil {
		b.Scope.Close()
	}
}

// Len returns the number of images in the batch.
func (b *Batch) Len() int { return len(b.Index) }

// Loader makes batches of tensors from a data set; see [NewLoader]. A Loader may be
// iterated by several goroutines at once, each with its own [Loader.Batches].
type Loader struct {
	ds        *datasets.Dataset
	cfg       Config
	mean, std []float64
	views     int
	prefetch  int
}

// NewLoader checks ds and cfg and returns a loader. It reports an error for an
// invalid or empty data set, a batch size that is not positive, a mean or standard
// deviation of the wrong length or with a non-positive std, a device this build cannot
// use, or an augmentation whose parameters are invalid.
func NewLoader(ds *datasets.Dataset, cfg Config) (*Loader, error) {
	if ds == nil {
		return nil, errors.New("data: nil data set")
	}
	if err := ds.Validate(); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if ds.N == 0 {
		return nil, fmt.Errorf("data: %s %s is empty", ds.Name, ds.Split)
	}
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("data: batch size %d, want > 0", cfg.BatchSize)
	}
	if cfg.Views < 0 {
		return nil, fmt.Errorf("data: %d views, want >= 0", cfg.Views)
	}
	if err := torch.CheckDevice(cfg.Device); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	l := &Loader{ds: ds, cfg: cfg, views: max(cfg.Views, 1), prefetch: cfg.Prefetch}
	if l.prefetch == 0 {
		l.prefetch = DefaultPrefetch
	}
	var err error
	if l.mean, err = channelStats("mean", cfg.Mean, ds.Mean, 0, ds.C); err != nil {
		return nil, err
	}
	if l.std, err = channelStats("std", cfg.Std, ds.Std, 1, ds.C); err != nil {
		return nil, err
	}
	for c, s := range l.std {
		if !(s > 0) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("data: std[%d] = %v, want a positive finite number", c, s)
		}
	}
	for c, m := range l.mean {
		if math.IsNaN(m) || math.IsInf(m, 0) {
			return nil, fmt.Errorf("data: mean[%d] = %v, want a finite number", c, m)
		}
	}
	if cfg.Augment != nil {
		if err := dryRun(cfg.Augment, ds.C, ds.H, ds.W); err != nil {
			return nil, fmt.Errorf("data: augmentation: %w", err)
		}
	}
	return l, nil
}

// channelStats picks the configured statistic, else the data set's, else def per channel.
func channelStats(name string, cfg, own []float64, def float64, c int) ([]float64, error) {
	switch {
	case cfg != nil:
		if len(cfg) != c {
			return nil, fmt.Errorf("data: %s has %d entries for %d channels", name, len(cfg), c)
		}
		return append([]float64(nil), cfg...), nil
	case own != nil:
		if len(own) != c {
			return nil, fmt.Errorf("data: data set %s has %d entries for %d channels", name, len(own), c)
		}
		return append([]float64(nil), own...), nil
	}
	out := make([]float64, c)
	for i := range out {
		out[i] = def
	}
	return out, nil
}

// dryRun applies t to one small CPU image so that invalid parameters surface early.
func dryRun(t Transform, c, h, w int) error {
	g, err := torch.NewGenerator(0, torch.CPU)
	if err != nil {
		return err
	}
	defer g.Close()
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Full([]int64{2, int64(c), int64(h), int64(w)}, 0.5))
	return t.Apply(x, g).Err()
}

// Dataset returns the data set the loader reads.
func (l *Loader) Dataset() *datasets.Dataset { return l.ds }

// Config returns the loader's configuration as given to NewLoader.
func (l *Loader) Config() Config { return l.cfg }

// Mean returns the per-channel mean the loader normalises with (a copy).
func (l *Loader) Mean() []float64 { return append([]float64(nil), l.mean...) }

// Std returns the per-channel standard deviation the loader normalises with (a copy).
func (l *Loader) Std() []float64 { return append([]float64(nil), l.std...) }

// Len returns the number of batches per epoch.
func (l *Loader) Len() int {
	if l.cfg.DropLast {
		return l.ds.N / l.cfg.BatchSize
	}
	return (l.ds.N + l.cfg.BatchSize - 1) / l.cfg.BatchSize
}

// Order returns the order in which epoch visits the data set's indices: a random
// permutation drawn from (Seed, epoch) when shuffling, else 0..N-1. Batches cut it
// into consecutive runs of BatchSize.
func (l *Loader) Order(epoch int) []int {
	order := make([]int, l.ds.N)
	for i := range order {
		order[i] = i
	}
	if l.cfg.Shuffle {
		shuffle(order, rand.NewPCG(uint64(l.cfg.Seed), mix(uint64(epoch), streamShuffle)))
	}
	return order
}

// Batches returns an iterator over the batches of one epoch, for use with range:
//
//	for b, err := range loader.Batches(epoch) {
//		if err != nil { return err }
//		... use b.X, b.Y ...
//		b.Close()
//	}
//
// Each batch yielded belongs to the caller, who must Close it. After an error the
// iteration ends. Leaving the loop early (break, return, panic) stops the prefetching
// goroutine and frees the batches it had prepared; when the range statement ends, no
// goroutine of the loader is left running. The order and augmentations are a pure
// function of (Seed, epoch).
func (l *Loader) Batches(epoch int) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		r, err := l.newRun(epoch)
		if err != nil {
			yield(nil, err)
			return
		}
		if l.prefetch < 0 {
			defer r.close()
			for k := range r.n {
				b, err := r.build(k)
				if !yield(b, err) || err != nil {
					return
				}
			}
			return
		}
		type item struct {
			b   *Batch
			err error
		}
		ch := make(chan item, l.prefetch-1)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(ch)
			defer r.close()
			for k := range r.n {
				select {
				case <-done:
					return
				default:
				}
				b, err := r.build(k)
				select {
				case ch <- item{b, err}:
				case <-done:
					b.Close()
					return
				}
				if err != nil {
					return
				}
			}
		}()
		defer func() {
			close(done)
			for it := range ch {
				it.b.Close()
			}
			wg.Wait()
		}()
		for it := range ch {
			if !yield(it.b, it.err) || it.err != nil {
				return
			}
		}
	}
}

// run is one epoch's iteration state; it is used by one goroutine at a time.
type run struct {
	l         *Loader
	order     []int
	n         int
	gen       *torch.Generator
	consts    *torch.Scope
	mean, std *torch.Tensor // [1,C,1,1] on the device
	pix       []uint8
	labels    []int64
}

// Stream identifiers, mixed into the seed so that shuffling and augmentation draw from
// unrelated streams.
const (
	streamShuffle = 0x5348554646 // "SHUFF"
	streamAugment = 0x4155474d   // "AUGM"
)

func (l *Loader) newRun(epoch int) (*run, error) {
	r := &run{l: l, order: l.Order(epoch), n: l.Len(), consts: torch.NewScope()}
	d := l.ds
	c := int64(d.C)
	m := make([]float32, d.C)
	s := make([]float32, d.C)
	for i := range m {
		m[i], s[i] = float32(l.mean[i]), float32(l.std[i])
	}
	r.mean = r.consts.Track(torch.FromSlice(m, 1, c, 1, 1)).ToDevice(l.cfg.Device)
	r.std = r.consts.Track(torch.FromSlice(s, 1, c, 1, 1)).ToDevice(l.cfg.Device)
	if err := torch.FirstError(r.mean, r.std); err != nil {
		r.close()
		return nil, fmt.Errorf("data: %w", err)
	}
	if l.cfg.Augment != nil {
		seed := mix(mix(uint64(l.cfg.Seed), streamAugment), uint64(epoch))
		g, err := torch.NewGenerator(seed, l.cfg.Device)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("data: %w", err)
		}
		r.gen = g
	}
	b := min(l.cfg.BatchSize, d.N)
	r.pix = make([]uint8, b*d.ImageLen())
	r.labels = make([]int64, b)
	return r, nil
}

func (r *run) close() {
	r.consts.Close()
	r.gen.Close()
}

// build makes batch k of the epoch.
func (r *run) build(k int) (*Batch, error) {
	l, d := r.l, r.l.ds
	bs := l.cfg.BatchSize
	idx := append([]int(nil), r.order[k*bs:min((k+1)*bs, d.N)]...)
	n, il := len(idx), d.ImageLen()
	pix, labels := r.pix[:n*il], r.labels[:n]
	for j, i := range idx {
		copy(pix[j*il:(j+1)*il], d.Pixels[i*il:(i+1)*il])
		labels[j] = int64(d.Labels[i])
	}

	tmp := torch.NewScope()
	defer tmp.Close()
	u := tmp.Track(torch.FromSlice(pix, int64(n), int64(d.C), int64(d.H), int64(d.W)))
	x := u.ToDevice(l.cfg.Device).To(torch.Float32).DivScalar(255)
	views := make([]*torch.Tensor, r.l.views)
	for v := range views {
		a := x
		if l.cfg.Augment != nil {
			a = l.cfg.Augment.Apply(x, r.gen)
			tmp.Track(a)
		}
		views[v] = a.Sub(r.mean).Div(r.std)
	}
	y := tmp.Track(torch.FromSlice(labels)).ToDevice(l.cfg.Device)
	if err := torch.FirstError(append(views, y)...); err != nil {
		return nil, fmt.Errorf("data: batch %d: %w", k, err)
	}
	b := &Batch{Y: y, Views: views, Index: idx, Scope: torch.NewScope()}
	for _, v := range views {
		b.Scope.Track(v)
	}
	b.Scope.Track(y)
	b.X = views[0]
	return b, nil
}

// mix combines a seed with a stream number (SplitMix64's finaliser over their sum).
func mix(a, b uint64) uint64 {
	z := a + 0x9E3779B97F4A7C15*(b+1)
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// shuffle permutes s with Fisher–Yates, drawing from src. It uses only src's Uint64
// stream (fixed for PCG), so orders stay the same across Go releases.
func shuffle(s []int, src *rand.PCG) {
	for i := len(s) - 1; i > 0; i-- {
		j := int(bounded(src, uint64(i+1)))
		s[i], s[j] = s[j], s[i]
	}
}

// bounded returns a uniform integer in [0, n) (Lemire's multiply-and-reject method).
func bounded(src *rand.PCG, n uint64) uint64 {
	for {
		hi, lo := bits.Mul64(src.Uint64(), n)
		if lo >= n || lo >= -n%n {
			return hi
		}
	}
}
