// Package train trains the models the paper compares: supervised ResNets
// (with subsets, label noise and relabelled tasks), and evaluates checkpoints.
package train

import (
	"fmt"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/datasets"
)

// DataConfig picks a data set and what is done to its training labels.
type DataConfig struct {
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

// LoadSplits reads the training and test splits with the configured subset,
// label noise and relabelling applied (relabelling to both splits, the rest to
// training only).
func LoadSplits(c DataConfig) (train, test *datasets.Dataset, err error) {
	opts := datasets.Options{Root: c.Dir, ImageSize: c.ImageSize}
	if train, err = datasets.Load(c.Name, "train", opts); err != nil {
		return nil, nil, err
	}
	if test, err = datasets.Load(c.Name, "test", opts); err != nil {
		return nil, nil, err
	}
	if c.ObjectsVsAnimals {
		if train, err = train.ObjectsVsAnimals(); err != nil {
			return nil, nil, fmt.Errorf("--labels objects-vs-animals: %w", err)
		}
		if test, err = test.ObjectsVsAnimals(); err != nil {
			return nil, nil, fmt.Errorf("--labels objects-vs-animals: %w", err)
		}
	}
	if c.Task != "" {
		if train, err = train.Relabel(c.Task); err != nil {
			return nil, nil, fmt.Errorf("--labels %s: %w", c.Task, err)
		}
		if test, err = test.Relabel(c.Task); err != nil {
			return nil, nil, fmt.Errorf("--labels %s: %w", c.Task, err)
		}
	}
	if c.TrainSamples < 0 || c.TrainSamples > train.N {
		return nil, nil, fmt.Errorf("--train-samples %d: the training split has %d images", c.TrainSamples, train.N)
	}
	if c.TrainSamples > 0 && c.TrainSamples < train.N {
		if train, err = train.Subset(c.TrainSamples, c.Seed); err != nil {
			return nil, nil, fmt.Errorf("--train-samples: %w", err)
		}
	}
	if c.TestSamples < 0 || c.TestSamples > test.N {
		return nil, nil, fmt.Errorf("--test-samples %d: the test split has %d images", c.TestSamples, test.N)
	}
	if c.TestSamples > 0 && c.TestSamples < test.N {
		if test, err = test.Subset(c.TestSamples, c.Seed); err != nil {
			return nil, nil, fmt.Errorf("--test-samples: %w", err)
		}
	}
	if c.LabelNoise < 0 || c.LabelNoise > 1 {
		return nil, nil, fmt.Errorf("--label-noise must be in [0, 1], got %g", c.LabelNoise)
	}
	if c.LabelNoise > 0 {
		train = train.WithLabelNoise(c.LabelNoise, c.Seed)
	}
	return train, test, nil
}

// run is what every training objective starts from: the data splits, the
// network's configuration and the checkpoint metadata describing them.
type run struct {
	train, test *datasets.Dataset
	net         vision.ResNetConfig
	meta        models.Meta
}

// newRun checks the device and architecture, reads the data and fills in the
// architecture, data set and objective of the metadata (models.Random when
// no epochs will be trained). The network gets a classifier when classify.
func newRun(arch string, width float64, stem string, dc DataConfig, dev torch.Device, epochs int, objective string, classify bool) (*run, error) {
	if err := torch.CheckDevice(dev); err != nil {
		return nil, err
	}
	depth, err := vision.ParseArch(arch)
	if err != nil {
		return nil, fmt.Errorf("--arch: %w", err)
	}
	r := &run{}
	if r.train, r.test, err = LoadSplits(dc); err != nil {
		return nil, err
	}
	r.net = vision.ResNetConfig{Depth: depth, Width: width, Stem: stem, InChannels: r.train.C}
	if classify {
		r.net.Classes = r.train.Classes
	}
	r.meta = models.MetaFor(r.net)
	r.meta.Dataset, r.meta.Mean, r.meta.Std = dc.Name, r.train.Mean, r.train.Std
	r.meta.Objective = objective
	if epochs == 0 {
		r.meta.Objective = models.Random
	}
	return r, nil
}
