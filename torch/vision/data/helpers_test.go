package data

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

var (
	fashionOnce  sync.Once
	fashionTrain *datasets.Dataset
	fashionErr   error
)

// fashion returns the real Fashion-MNIST training split, loaded once, or skips the test
// when it is not installed.
func fashion(tb testing.TB) *datasets.Dataset {
	tb.Helper()
	if _, err := os.Stat(fashionDir); err != nil {
		tb.Skipf("Fashion-MNIST not installed at %s (apt-get install dataset-fashion-mnist)", fashionDir)
	}
	fashionOnce.Do(func() {
		fashionTrain, fashionErr = datasets.Load("fashion-mnist", "train", datasets.Options{})
	})
	if fashionErr != nil {
		tb.Fatal(fashionErr)
	}
	return fashionTrain
}

// synthetic returns a small data set whose image i has every pixel equal to i%251 in
// channel 0 (and (i+c)%251 in channel c), labels i%10.
func synthetic(n, c, h, w int) *datasets.Dataset {
	d := &datasets.Dataset{Name: "synthetic", Split: "train", N: n, C: c, H: h, W: w, Classes: 10}
	d.Pixels = make([]uint8, n*c*h*w)
	d.Labels = make([]int, n)
	for i := range n {
		d.Labels[i] = i % 10
		for ch := range c {
			for p := range h * w {
				d.Pixels[(i*c+ch)*h*w+p] = uint8((i + ch) % 251)
			}
		}
	}
	d.Mean = make([]float64, c)
	d.Std = make([]float64, c)
	for ch := range c {
		d.Mean[ch], d.Std[ch] = 0.5, 0.25
	}
	return d
}

// gen returns a CPU generator seeded with seed, closed when the test ends.
func gen(tb testing.TB, seed uint64) *torch.Generator {
	tb.Helper()
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

// values returns t's elements as float64, failing the test on an error.
func values(tb testing.TB, t *torch.Tensor) []float64 {
	tb.Helper()
	v, err := t.Float64s()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// fromValues makes a float32 [shape] tensor in scope s.
func fromValues(s *torch.Scope, v []float64, shape ...int64) *torch.Tensor {
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return s.Track(torch.FromSlice(f, shape...))
}

// randomImages returns n×c×h×w pseudo-random values in [0, 1] (a fixed sequence).
func randomImages(n, c, h, w int, seed uint64) []float64 {
	v := make([]float64, n*c*h*w)
	state := seed*0x9E3779B97F4A7C15 + 1
	for i := range v {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		v[i] = float64(state>>40) / float64(1<<24)
	}
	return v
}

// settle runs the garbage collector until finalizers have had a chance to run, and
// stops automatic collection for the rest of the test, so that a leak covered only by
// a finalizer shows up in torch.LiveTensors.
func settle(tb testing.TB) int64 {
	tb.Helper()
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	old := debug.SetGCPercent(-1)
	tb.Cleanup(func() { debug.SetGCPercent(old) })
	return torch.LiveTensors()
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		d := a[i] - b[i]
		if d < 0 {
			d = -d
		}
		m = max(m, d)
	}
	return m
}
