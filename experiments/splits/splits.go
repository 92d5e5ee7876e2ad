// Package splits reads a data set's training and test splits the way an
// experiment asks for them: class-balanced subsets, label noise and
// relabelled tasks.
package splits

import (
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
// training only). A bad setting is an *invalid.Setting naming its field:
// "train samples", "test samples", "label noise", "objects vs animals".
func Load(c Config) (train, test *datasets.Dataset, err error) {
	opts := datasets.Options{Root: c.Dir, ImageSize: c.ImageSize}
	if train, err = datasets.Load(c.Name, "train", opts); err != nil {
		return nil, nil, err
	}
	if test, err = datasets.Load(c.Name, "test", opts); err != nil {
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
	return train, test, nil
}
