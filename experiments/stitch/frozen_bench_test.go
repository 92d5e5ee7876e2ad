package stitch

import (
	"slices"
	"testing"
	"time"

	"modelstitch/experiments/models"
	"modelstitch/torch"
)

// BenchmarkFrozenForward times the shipped ResNet-18 (width 0.25)'s folded
// eval-mode forward pass over 2,048 random 28×28 images in batches of 128,
// on one goroutine with one libtorch thread, in the plain NCHW layout and in
// oneDNN's (Frozen.UseMkldnn), rounds interleaved; it reports each layout's
// median ms per batch and their ratio.
func BenchmarkFrozenForward(b *testing.B) {
	m, err := models.Load("embedded:fmnist-resnet18-w0.25-sup-seed1", models.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	plain, err := NewFrozen(m.Net, true)
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	mk, err := NewFrozen(m.Net, true)
	if err != nil {
		b.Fatal(err)
	}
	defer mk.Close()
	if err := mk.UseMkldnn(); err != nil {
		b.Skip(err)
	}
	prev := torch.NumThreads()
	if err := torch.SetNumThreads(1); err != nil {
		b.Fatal(err)
	}
	defer torch.SetNumThreads(prev)
	x := torch.Randn([]int64{2048, 1, 28, 28})
	defer x.Free()
	const batch = 128
	pass := func(f *Frozen) time.Duration {
		start := time.Now()
		err := torch.NoGrad(func() error {
			for i := int64(0); i < 2048; i += batch {
				s := torch.NewScope()
				y := s.Track(f.Forward(s.Track(x.Narrow(0, i, batch))))
				err := y.Err()
				s.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(start) / (2048 / batch)
	}
	pass(plain)
	pass(mk)
	var tp, tm []time.Duration
	for i := 0; i < b.N; i++ {
		for r := 0; r < 5; r++ {
			tp = append(tp, pass(plain))
			tm = append(tm, pass(mk))
		}
	}
	mp, mm := median(tp), median(tm)
	b.ReportMetric(float64(mp.Microseconds())/1000, "ms/batch-nchw")
	b.ReportMetric(float64(mm.Microseconds())/1000, "ms/batch-onednn")
	b.ReportMetric(float64(mp)/float64(mm), "speedup")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
