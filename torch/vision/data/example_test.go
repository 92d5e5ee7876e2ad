package data_test

import (
	"fmt"

	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// A training loop over one epoch: shuffled, augmented batches, each closed after use.
func ExampleLoader() {
	// A tiny stand-in for datasets.Load("fashion-mnist", "train", datasets.Options{}).
	ds := &datasets.Dataset{Name: "toy", Split: "train", N: 10, C: 1, H: 28, W: 28, Classes: 2,
		Pixels: make([]uint8, 10*28*28), Labels: []int{0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
		Mean: []float64{0.2860}, Std: []float64{0.3530}}
	loader, err := data.NewLoader(ds, data.Config{
		BatchSize: 4, Shuffle: true, Seed: 1, Augment: data.StandardAugment(ds),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for b, err := range loader.Batches(0) {
		if err != nil {
			fmt.Println(err)
			return
		}
		xs, err := b.X.Shape()
		if err != nil {
			fmt.Println(err)
			return
		}
		ys, err := b.Y.Shape()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(xs, b.X.DType(), ys, b.Y.DType())
		b.Close() // frees the batch and everything computed from b.X
	}
	// Output:
	// [4 1 28 28] float32 [4] int64
	// [4 1 28 28] float32 [4] int64
	// [2 1 28 28] float32 [2] int64
}
