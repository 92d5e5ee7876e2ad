package data

import (
	"testing"
	"time"

	"modelstitch/torch/vision/datasets"
)

// benchLoader draws b.N batches from a loader over ds (as many epochs as needed) and
// reports batches and images per second.
func benchLoader(b *testing.B, ds *datasets.Dataset, cfg Config) {
	l, err := NewLoader(ds, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	n, images := 0, 0
	for e := 0; n < b.N; e++ {
		for bt, err := range l.Batches(e) {
			if err != nil {
				b.Fatal(err)
			}
			images += bt.Len()
			bt.Close()
			if n++; n == b.N {
				break
			}
		}
	}
	s := time.Since(start).Seconds()
	b.ReportMetric(float64(n)/s, "batches/s")
	b.ReportMetric(float64(images)/s, "images/s")
}

// BenchmarkFashionMNIST measures the loader on Fashion-MNIST, batch 256, on the CPU.
func BenchmarkFashionMNIST(b *testing.B) {
	ds := fashion(b)
	b.Run("plain", func(b *testing.B) {
		benchLoader(b, ds, Config{BatchSize: 256, Shuffle: true})
	})
	b.Run("standard", func(b *testing.B) {
		benchLoader(b, ds, Config{BatchSize: 256, Shuffle: true, Augment: StandardAugment(ds)})
	})
	b.Run("simclr-2views", func(b *testing.B) {
		benchLoader(b, ds, Config{BatchSize: 256, Shuffle: true, Augment: SimCLRAugment(ds), Views: 2})
	})
}

// BenchmarkCIFARSized measures the colour SimCLR augmentation on CIFAR-sized random
// images, batch 256, on the CPU.
func BenchmarkCIFARSized(b *testing.B) {
	ds := synthetic(2048, 3, 32, 32)
	b.Run("standard", func(b *testing.B) {
		benchLoader(b, ds, Config{BatchSize: 256, Shuffle: true, Augment: StandardAugment(ds)})
	})
	b.Run("simclr-2views", func(b *testing.B) {
		benchLoader(b, ds, Config{BatchSize: 256, Shuffle: true, Augment: SimCLRAugment(ds), Views: 2})
	})
}
