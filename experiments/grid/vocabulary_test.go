package grid

import (
	"modelstitch/experiments/loop"
	"modelstitch/experiments/speclimits"
	"modelstitch/experiments/train"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/datasets"
)

// testVocabulary is what the tests' specs may name: the training code's
// (inprocess.Vocabulary, which imports this package, and a test there checks
// the two agree), with the libraries' own limits.
var testVocabulary = Vocabulary{Archs: vision.Archs(), Stems: []string{vision.StemCIFAR, vision.StemImageNet},
	Schedules: train.Schedules, Tasks: datasets.Tasks(), TrainSplits: datasets.TrainSplitSizes(),
	Channels: map[string]int{"fashion-mnist": 1, "mnist": 1, "cifar10": 3, "cifar100": 3, "folder:": datasets.FolderChannels},
	Limits: Limits{
		Network: train.CheckNetwork,
		Epochs:  loop.CheckEpochs,
		Samples: speclimits.Samples,
		Kernel:  speclimits.Kernel,
	}}
