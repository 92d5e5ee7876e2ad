// Package speclimits holds the checks of a grid spec's data-dependent values
// that need the data sets' published sizes (package grid stays free of
// libtorch, so its callers hand these in through grid.Limits).
package speclimits

import (
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
	"modelstitch/torch/vision/datasets"
)

// Samples refuses training or test sample counts (0: not set) beyond the
// data set's published split sizes; a data set whose sizes are not known
// is not checked.
func Samples(data string, train, test int) error {
	info, known := datasets.Known(data)
	if !known {
		return nil
	}
	return splits.CheckSizes(splits.Config{TrainSamples: train, TestSamples: test}, info.Train, info.Test)
}

// Kernel refuses a stitching kernel wider than the data's images allow, the
// largest activations any cut has.
func Kernel(data string, kernel int64) error {
	info, known := datasets.Known(data)
	if !known {
		return nil
	}
	side := int64(max(info.Height, info.Width))
	shape := []int64{int64(info.Channels), side, side}
	return stitch.CheckLayer(shape, shape, kernel)
}
