package stitch

import (
	"fmt"
	"strconv"
	"strings"

	"modelstitch/experiments/invalid"
	"modelstitch/torch"
)

// Speed switches the optimisations of Run's shared path, each on by
// default; the zero value is the fast path. None changes what is computed
// beyond float rounding (Float16 caches round the bottom's activations to
// half precision).
type Speed struct {
	// Plain makes Run take its plain path, one cut at a time, nothing
	// shared between cuts.
	Plain bool
	// NoFoldBN keeps the frozen halves' batch norms as separate layers
	// instead of folding them into the convolutions before them.
	NoFoldBN bool
	// NoMkldnn keeps passes without gradients (evaluation, cache filling) in
	// the plain NCHW layout instead of oneDNN's (Frozen.UseMkldnn; CPU,
	// float32 and folded batch norms only), and so also the stitching layer
	// as it is when scored instead of folded into one convolution in that
	// layout (foldLayer).
	NoMkldnn bool
	// NoCache recomputes the bottom's activations for every batch instead of
	// keeping them for all fitting and test images.
	NoCache bool
	// HalfCache stores cached activations as float16 (half the memory).
	HalfCache bool
	// EvalBatchSize is the batch size of evaluation and of filling caches
	// (0: the training batch size on the CPU, where small batches stay in
	// the processor's caches, and 4 × it on CUDA).
	EvalBatchSize int
	// Workers is how many goroutines share evaluation, cache filling and
	// the top's half of every fitting batch, each with its share of the
	// libtorch threads (at least one): 0 means one per libtorch thread on
	// the CPU and 1 on CUDA; 1 runs everything on one goroutine with all
	// the threads. Results depend on it only by float rounding in fitting
	// (the batch's halves are summed in a fixed order).
	Workers int
	// MemoryBudget caps the bytes of cached activations (0: no cap); a cache
	// that does not fit recomputes its activations from the images instead.
	MemoryBudget int64
}

// Validate checks the settings; a bad one is an *invalid.Setting.
func (s Speed) Validate() error {
	switch {
	case s.EvalBatchSize < 0:
		return invalid.Errorf("eval batch size", "must be ≥ 0, got %d", s.EvalBatchSize)
	case s.Workers < 0:
		return invalid.Errorf("workers", "must be ≥ 0, got %d", s.Workers)
	case s.MemoryBudget < 0:
		return invalid.Errorf("memory budget", "must be ≥ 0, got %d", s.MemoryBudget)
	}
	return nil
}

// workerCount returns the workers and libtorch threads each for device d
// (see Workers), given the libtorch threads the process runs with.
func (s Speed) workerCount(d torch.Device, threads int) (workers, threadsEach int) {
	switch {
	case s.Workers > 0:
		workers = s.Workers
	case d.Type == torch.DeviceCUDA:
		workers = 1
	default:
		workers = max(threads, 1)
	}
	return workers, max(1, threads/workers)
}

// evalBatch returns the batch size of evaluation and cache filling on
// device d for training batches of trainBatch (see EvalBatchSize).
func (s Speed) evalBatch(d torch.Device, trainBatch int) int {
	switch {
	case s.EvalBatchSize > 0:
		return s.EvalBatchSize
	case d.Type == torch.DeviceCUDA:
		return 4 * trainBatch
	default:
		return trainBatch
	}
}

// ParseBytes reads a byte count such as 2GiB, 512MiB, 1.5G, 800M or 1000000
// (K, M, G, T are powers of 1024, with or without "iB" or "B"); "" and "0"
// mean 0.
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 2GiB, 512M, 1000000)", s)
	}
	return int64(v * float64(mult)), nil
}
