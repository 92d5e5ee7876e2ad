// Package splits reads a data set's training and test splits the way an
// experiment asks for them: class-balanced subsets, label noise, relabelled
// tasks, repeated grey channels and given normalisation statistics.
package splits

import (
	"math"
	"slices"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/invalid"
	"modelstitch/torch/vision/datasets"
)

// Config picks a data set and what is done to its splits.
type Config struct {
	// Name: fashion-mnist, mnist, cifar10, cifar100 or folder:PATH.
	Name string
	// Dir overrides where the files are.
	Dir string
	// TrainSamples > 0 takes a class-balanced subset of the training split.
	TrainSamples int
	// LabelNoise replaces this fraction of training labels with random ones.
	LabelNoise float64
	// ObjectsVsAnimals relabels CIFAR-10 into the two-class task.
	ObjectsVsAnimals bool
	// Task, when set, relabels both splits by a datasets relabelling task
	// (datasets.Tasks(), e.g. "clothing-vs-accessories" for Fashion-MNIST).
	Task string
	// TestSamples > 0 evaluates on a class-balanced subset of the test split
	// (quick runs and tests); 0 uses all of it.
	TestSamples int
	// ImageSize is the side of folder images (0: the data set's default).
	ImageSize int
	// Channels > 0 repeats a 1-channel (grey) data set's channel that many
	// times, for models that take colour images (datasets.WithChannels).
	Channels int
	// Mean and Std, when set (one per channel, after Channels), replace the
	// data set's normalisation statistics: what loaders normalise with by
	// default and what a model trained on the splits records.
	Mean, Std []float64
	// Seed seeds the subset and the label noise.
	Seed int64
}

// CheckSizes refuses subset sizes that splits of trainN and testN images
// cannot give: train and test samples must lie in 0..N (0: all). Load
// applies it to the splits it read (after relabelling); a caller that knows
// a data set's sizes without its files (datasets.Known) can apply it first.
func CheckSizes(c Config, trainN, testN int) error {
	if c.TrainSamples < 0 || c.TrainSamples > trainN {
		return invalid.Errorf("train samples", "%d: the training split has %d images", c.TrainSamples, trainN)
	}
	if c.TestSamples < 0 || c.TestSamples > testN {
		return invalid.Errorf("test samples", "%d: the test split has %d images", c.TestSamples, testN)
	}
	return nil
}

// Load reads the training and test splits with the configured subset, label
// noise and relabelling applied (relabelling to both splits, the rest to
// training only). A folder data set that cannot fit in the memory left
// (budget.Available) is refused before it is decoded. A bad setting is an *invalid.Setting naming its field:
// "train samples", "test samples", "label noise", "objects vs animals", "channels", "mean", "std".
func Load(c Config) (train, test *datasets.Dataset, err error) {
	// A folder data set is measured against the memory left when each split loads
	// (the training split's pixels are taken by then).
	opts := func() datasets.Options {
		avail := budget.Available()
		return datasets.Options{Root: c.Dir, ImageSize: c.ImageSize, MemoryLimit: avail.Bytes, MemoryLimitFrom: avail.From}
	}
	if train, err = datasets.Load(c.Name, "train", opts()); err != nil {
		return nil, nil, err
	}
	if test, err = datasets.Load(c.Name, "test", opts()); err != nil {
		return nil, nil, err
	}
	if c.ObjectsVsAnimals {
		if train, err = train.ObjectsVsAnimals(); err != nil {
			return nil, nil, invalid.Wrap("objects vs animals", err)
		}
		if test, err = test.ObjectsVsAnimals(); err != nil {
			return nil, nil, invalid.Wrap("objects vs animals", err)
		}
	}
	if c.Task != "" {
		if train, err = train.Relabel(c.Task); err != nil {
			return nil, nil, invalid.Wrap("labels", err)
		}
		if test, err = test.Relabel(c.Task); err != nil {
			return nil, nil, invalid.Wrap("labels", err)
		}
	}
	if err := CheckSizes(c, train.N, test.N); err != nil {
		return nil, nil, err
	}
	if c.TrainSamples > 0 && c.TrainSamples < train.N {
		if train, err = train.Subset(c.TrainSamples, c.Seed); err != nil {
			return nil, nil, invalid.Wrap("train samples", err)
		}
	}
	if c.TestSamples > 0 && c.TestSamples < test.N {
		if test, err = test.Subset(c.TestSamples, c.Seed); err != nil {
			return nil, nil, invalid.Wrap("test samples", err)
		}
	}
	if c.LabelNoise < 0 || c.LabelNoise > 1 {
		return nil, nil, invalid.Errorf("label noise", "must be in [0, 1], got %g", c.LabelNoise)
	}
	if c.LabelNoise > 0 {
		train = train.WithLabelNoise(c.LabelNoise, c.Seed)
	}
	if c.Channels > 0 {
		if train, err = train.WithChannels(c.Channels); err != nil {
			return nil, nil, invalid.Wrap("channels", err)
		}
		if test, err = test.WithChannels(c.Channels); err != nil {
			return nil, nil, invalid.Wrap("channels", err)
		}
	}
	if c.Mean != nil || c.Std != nil {
		if err := checkStats(c.Mean, c.Std, train.C); err != nil {
			return nil, nil, err
		}
		train, test = withStats(train, c.Mean, c.Std), withStats(test, c.Mean, c.Std)
	}
	return train, test, nil
}

// checkStats refuses normalisation statistics that are not one finite mean
// and one positive, finite standard deviation per channel.
func checkStats(mean, std []float64, channels int) error {
	if len(mean) != channels {
		return invalid.Errorf("mean", "has %d values for %d channels", len(mean), channels)
	}
	if len(std) != channels {
		return invalid.Errorf("std", "has %d values for %d channels", len(std), channels)
	}
	for i := range channels {
		if math.IsNaN(mean[i]) || math.IsInf(mean[i], 0) {
			return invalid.Errorf("mean", "channel %d: %g is not a finite number", i, mean[i])
		}
		if !(std[i] > 0) || math.IsInf(std[i], 0) {
			return invalid.Errorf("std", "channel %d: %g is not a positive, finite number", i, std[i])
		}
	}
	return nil
}

// withStats returns d (its pixels shared) with other normalisation statistics.
func withStats(d *datasets.Dataset, mean, std []float64) *datasets.Dataset {
	out := *d
	out.Mean, out.Std = slices.Clone(mean), slices.Clone(std)
	return &out
}
