package stitch

import (
	"errors"
	"fmt"

	"modelstitch/torch"
	"modelstitch/torch/vision/data"
)

// MemoryBudget shares a byte limit between activation caches. A cache that
// would take the budget past Limit keeps no activations and recomputes them
// from its images instead. A nil *MemoryBudget, or a Limit of 0, has no limit.
type MemoryBudget struct {
	Limit int64
	used  int64
}

// reserve takes n bytes from the budget, reporting whether they fit.
func (b *MemoryBudget) reserve(n int64) bool {
	if b == nil {
		return true
	}
	if b.Limit > 0 && b.used+n > b.Limit {
		return false
	}
	b.used += n
	return true
}

func (b *MemoryBudget) release(n int64) {
	if b != nil {
		b.used -= n
	}
}

// Used returns the bytes the caches hold now.
func (b *MemoryBudget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used
}

// CacheOptions says how an ActivationCache stores activations.
type CacheOptions struct {
	// Off keeps no activations: every request is computed from the images.
	Off bool
	// DType is the storage type: Float32 (the zero value) or
	// Float16 (half the memory; activations come back as float32 rounded to
	// half precision).
	DType torch.DType
	// Budget limits the bytes all caches sharing it hold (nil: no limit).
	Budget *MemoryBudget
	// Batch is the number of images run through the network at a time (0: 256).
	Batch int
	// Limit keeps only the first Limit images of the loader (0: all).
	Limit int
	// Workers share the batches of At (see Speed.Workers; nil: the
	// calling goroutine alone).
	Workers *torch.Workers
}

// ActivationCache holds a frozen network's activations at one cut for every
// image of a data set, in data-set order, on the images' device. It moves
// from cut to cut (At) by running only the stages in between, so that a
// pass over all cuts runs the network once. Requests are answered from the
// stored activations, or, when caching is off or over budget, recomputed
// from the stored (normalised) images.
type ActivationCache struct {
	net    *Frozen
	opts   CacheOptions
	images *torch.Tensor // [N, C, H, W] normalised, float32
	labels *torch.Tensor // [N] int64
	n      int
	cut    string        // "" before the first At
	acts   *torch.Tensor // activations at cut (a view of store); nil: recompute
	store  *torch.Tensor // flat storage that acts lies at the start of
	per    int64         // elements per image of acts
	bytes  int64         // store's bytes, reserved from the budget
}

// NewActivationCache reads the loader's images (in its order for epoch 0: use
// an unshuffled loader without augmentation, so row i is data-set image i)
// for net.
func NewActivationCache(net *Frozen, loader *data.Loader, opts CacheOptions) (*ActivationCache, error) {
	if opts.DType != torch.Float32 && opts.DType != torch.Float16 {
		return nil, fmt.Errorf("stitch: activation cache: dtype %v is not float32 or float16", opts.DType)
	}
	if opts.Batch < 1 {
		opts.Batch = 256
	}
	if c := loader.Config(); c.Shuffle || c.Augment != nil || c.DropLast {
		return nil, fmt.Errorf("stitch: activation cache: the loader must be in order, without augmentation or dropped images")
	}
	var xs, ys []*torch.Tensor
	defer func() { torch.FreeAll(xs...); torch.FreeAll(ys...) }()
	n := 0
	for b, err := range loader.Batches(0) {
		if err != nil {
			return nil, err
		}
		x, y := b.X, b.Y
		if opts.Limit > 0 && n+b.Len() > opts.Limit {
			x, y = x.Narrow(0, 0, int64(opts.Limit-n)), y.Narrow(0, 0, int64(opts.Limit-n))
		}
		m, err := x.Size(0)
		if err != nil {
			b.Close()
			return nil, err
		}
		xs, ys = append(xs, b.Scope.Keep(x)), append(ys, b.Scope.Keep(y))
		b.Close()
		n += int(m)
		if opts.Limit > 0 && n >= opts.Limit {
			break
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("stitch: activation cache: no images")
	}
	c := &ActivationCache{net: net, opts: opts, n: n}
	c.images, c.labels = torch.Cat(xs, 0), torch.Cat(ys, 0)
	if err := torch.FirstError(c.images, c.labels); err != nil {
		c.Free()
		return nil, fmt.Errorf("stitch: activation cache: %w", err)
	}
	return c, nil
}

// N returns the number of images.
func (c *ActivationCache) N() int { return c.n }

// Cut returns the cut the cache is at ("" before the first At).
func (c *ActivationCache) Cut() string { return c.cut }

// Cached reports whether activations are stored (rather than recomputed).
func (c *ActivationCache) Cached() bool { return c.acts != nil }

// Labels returns the labels of images [start, start+n) (a view; free it).
func (c *ActivationCache) Labels(start, n int) *torch.Tensor {
	return c.labels.Narrow(0, int64(start), int64(n))
}

// At moves the cache to cut. When it holds activations at an earlier cut it
// runs only the stages in between, writing the new activations over the old
// ones when they take no more memory per image (a batch's new rows then
// cover only old rows already read), so that moving on never holds two
// copies; otherwise it starts from the images. With caching off or over
// budget, the cache keeps none: requests then recompute them from the images.
func (c *ActivationCache) At(cut string) error {
	if cut == c.cut {
		return nil
	}
	from, src := "", c.images
	if c.acts != nil && c.before(c.cut, cut) {
		from, src = c.cut, c.acts
	}
	if c.opts.Off {
		c.drop()
		c.cut = cut
		return nil
	}
	m := cacheMove{keep: true}
	step := c.opts.Batch
	nb := (c.n + step - 1) / step
	// The workers compute batches' activations from rows of src; this
	// goroutine writes them into m.out in batch order. When m.out lies over
	// src (m.reuse), batch b's new rows cover old rows of batches ≤ b only,
	// all of them read by then (inOrder hands over batch b only after every
	// earlier one, and a batch's result is complete before it is handed).
	compute := func(b int) (*torch.Tensor, error) {
		var h *torch.Tensor
		err := torch.NoGrad(func() error {
			start := b * step
			n := min(step, c.n-start)
			s := torch.NewScope()
			defer s.Close()
			x := s.Track(src.Narrow(0, int64(start), int64(n)))
			if x.DType() != torch.Float32 {
				x = x.To(torch.Float32)
			}
			h = s.Keep(s.Track(c.net.Between(x, from, cut)))
			if err := h.Err(); err != nil {
				h.Free()
				h = nil
				return err
			}
			return nil
		})
		return h, err
	}
	consume := func(b int, h *torch.Tensor) error {
		defer h.Free()
		start := b * step
		n := min(step, c.n-start)
		if m.keep && m.out == nil {
			if err := c.allocate(&m, h, src == c.acts); err != nil {
				return err
			}
		}
		if !m.keep {
			return errNothingToKeep
		}
		dst := m.out.Narrow(0, int64(start), int64(n))
		err := dst.CopyFrom(h)
		dst.Free()
		return err
	}
	err := inOrder(nb, c.opts.Workers, compute, consume, freeTensor)
	if errors.Is(err, errNothingToKeep) {
		err = nil
	}
	if err != nil {
		c.abandon(m)
		return fmt.Errorf("stitch: activations at %s: %w", cut, err)
	}
	c.install(m, cut)
	return nil
}

// cacheMove is where one At puts the activations it computes.
type cacheMove struct {
	out, store *torch.Tensor // out: the activations, at the start of store
	per, bytes int64         // elements per image; store's bytes, reserved from the budget
	reuse      bool          // out lies in c.store, over the activations being read
	keep       bool          // false once the budget has no room for them
}

// allocate places m.out from the first batch's activations h: over the
// activations being read (fromActs) when the new ones fit there, else in new
// storage reserved from the budget, else nowhere (m.keep false).
func (c *ActivationCache) allocate(m *cacheMove, h *torch.Tensor, fromActs bool) error {
	shape, err := h.Shape()
	if err != nil {
		return err
	}
	shape[0] = int64(c.n)
	m.per = 1
	for _, d := range shape[1:] {
		m.per *= d
	}
	switch {
	case fromActs && m.per <= c.per:
		m.reuse, m.store, m.bytes = true, c.store, c.bytes
	case c.opts.Budget.reserve(m.per * int64(c.n) * int64(c.opts.DType.Size())):
		m.bytes = m.per * int64(c.n) * int64(c.opts.DType.Size())
		m.store = torch.Empty([]int64{m.per * int64(c.n)}, torch.Options{DType: c.opts.DType, Device: h.Device()})
		if err := m.store.Err(); err != nil {
			c.opts.Budget.release(m.bytes)
			m.store = nil
			return err
		}
	default:
		m.keep = false
		return nil
	}
	head := m.store.Narrow(0, 0, m.per*int64(c.n))
	m.out = head.Reshape(shape...)
	head.Free()
	return m.out.Err()
}

// abandon frees what a failed At made. Old activations partly overwritten
// (m.reuse) are dropped: the next At starts again from the images.
func (c *ActivationCache) abandon(m cacheMove) {
	m.out.Free()
	if m.reuse {
		c.drop()
		c.cut = ""
	} else if m.store != nil {
		m.store.Free()
		c.opts.Budget.release(m.bytes)
	}
}

// install makes m's activations the cache's, at cut (none kept: m.out nil).
func (c *ActivationCache) install(m cacheMove, cut string) {
	if m.reuse {
		c.acts.Free()
	} else {
		c.drop()
	}
	c.acts, c.store, c.per, c.bytes, c.cut = m.out, m.store, m.per, m.bytes, cut
	if m.out == nil {
		c.store, c.per, c.bytes = nil, 0, 0
	}
}

// errNothingToKeep ends At's pass early: the budget has no room for the
// activations.
var errNothingToKeep = errors.New("stitch: activation cache: nothing to keep")

// before reports whether cut a comes before b in the network ("" comes first).
func (c *ActivationCache) before(a, b string) bool {
	ia, ib := -1, -1
	for i, s := range c.net.stages {
		if s.name == a {
			ia = i
		}
		if s.name == b {
			ib = i
		}
	}
	return ia <= ib
}

// drop frees the stored activations.
func (c *ActivationCache) drop() {
	if c.acts != nil {
		torch.FreeAll(c.acts, c.store)
		c.acts, c.store, c.per = nil, nil, 0
		c.opts.Budget.release(c.bytes)
		c.bytes = 0
	}
}

// Rows returns the float32 activations at the cache's cut of the images at
// the given indices, in that order, without gradients.
func (c *ActivationCache) Rows(index []int) *torch.Tensor {
	idx := make([]int64, len(index))
	for i, v := range index {
		if v < 0 || v >= c.n {
			return torch.ErrTensor(fmt.Errorf("stitch: activation cache: image %d of %d", v, c.n))
		}
		idx[i] = int64(v)
	}
	var out *torch.Tensor
	_ = torch.NoGrad(func() error {
		s := torch.NewScope()
		defer s.Close()
		it := s.Track(torch.FromSlice(idx)).ToDevice(c.images.Device())
		out = c.rows(func(t *torch.Tensor) *torch.Tensor { return t.IndexSelect(0, it) })
		return nil
	})
	return out
}

// Range returns the float32 activations at the cache's cut of images
// [start, start+n), without gradients.
func (c *ActivationCache) Range(start, n int) *torch.Tensor {
	if start < 0 || n < 0 || start+n > c.n {
		return torch.ErrTensor(fmt.Errorf("stitch: activation cache: images [%d, %d) of %d", start, start+n, c.n))
	}
	var out *torch.Tensor
	_ = torch.NoGrad(func() error {
		out = c.rows(func(t *torch.Tensor) *torch.Tensor { return t.Narrow(0, int64(start), int64(n)) })
		return nil
	})
	return out
}

// rows picks rows of the activations, or computes them from the same rows
// of the images. The result escapes every scope.
func (c *ActivationCache) rows(pick func(*torch.Tensor) *torch.Tensor) *torch.Tensor {
	if c.cut == "" {
		return torch.ErrTensor(fmt.Errorf("stitch: activation cache: no cut chosen (call At)"))
	}
	s := torch.NewScope()
	defer s.Close()
	if c.acts != nil {
		h := s.Track(pick(c.acts))
		if h.DType() != torch.Float32 {
			h = h.To(torch.Float32)
		} else {
			h = h.Contiguous()
		}
		return h.Escape()
	}
	x := s.Track(pick(c.images))
	return s.Track(c.net.ForwardTo(x, c.cut)).Escape()
}

// Free frees the images and activations.
func (c *ActivationCache) Free() {
	c.drop()
	torch.FreeAll(c.images, c.labels)
	c.images, c.labels = nil, nil
}
