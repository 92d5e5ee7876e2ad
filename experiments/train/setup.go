// Package train trains the models the paper compares: supervised ResNets
// (with subsets, label noise and relabelled tasks), SimCLR backbones and
// linear probes, all through the one training loop (experiments/loop).
package train

import (
	"math"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/datasets"
)

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
func newRun(arch string, width float64, stem string, dc splits.Config, dev torch.Device, epochs int, objective string, classify bool) (*run, error) {
	if err := torch.CheckDevice(dev); err != nil {
		return nil, err
	}
	early, err := networkRun(arch, width, stem, epochs > 0)
	if err != nil {
		return nil, err
	}
	// The parameters alone (and their gradients and optimizer state) are
	// checked against this machine before the data is read: --width 1e6
	// fails at once.
	if err := budget.Check(early, "width", ""); err != nil {
		return nil, err
	}
	depth := early.Net.Depth
	r := &run{}
	if r.train, r.test, err = splits.Load(dc); err != nil {
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

// CheckNetwork refuses what every training run refuses before it reads any
// data, on any machine: an unknown architecture ("arch"), a width that is
// not a positive finite number or gives no channel, a stem other than cifar
// or imagenet, and a network whose parameters (with their gradients and
// optimizer state when training) no machine can hold
// (budget.CheckAddressable). A run then also checks them against this
// machine's memory (budget.Check); a grid checks its spec with this alone,
// since its units may run elsewhere.
func CheckNetwork(arch string, width float64, stem string, training bool) error {
	r, err := networkRun(arch, width, stem, training)
	if err != nil {
		return err
	}
	return budget.CheckAddressable(r, "width")
}

// networkRun checks the architecture, width and stem and returns the
// network's parameters-only run, for budget.Check or CheckAddressable.
func networkRun(arch string, width float64, stem string, training bool) (budget.Run, error) {
	depth, err := vision.ParseArch(arch)
	if err != nil {
		return budget.Run{}, invalid.Wrap("arch", err)
	}
	if !(width > 0) || math.IsInf(width, 0) {
		// vision reads width 0 as 1 (a checkpoint that does not say); a
		// training run must say what it wants.
		return budget.Run{}, invalid.Errorf("width", "must be a positive number, got %v", width)
	}
	if stem != vision.StemCIFAR && stem != vision.StemImageNet {
		return budget.Run{}, invalid.Errorf("stem", "must be %s or %s, got %q", vision.StemCIFAR, vision.StemImageNet, stem)
	}
	early := vision.ResNetConfig{Depth: depth, Width: width, Stem: stem, InChannels: 1}
	return budget.Run{Net: early, Height: 1, Width: 1, OptimizerSlots: 1, Training: training, ParamsOnly: true}, nil
}

// checkRun refuses what no training run can do: write no checkpoint, take
// batches of fewer than 2 images (why2 says why, if the objective has its
// own reason) or train a negative number of epochs.
func checkRun(out string, batch, epochs int, why2 string) error {
	if out == "" {
		return invalid.Errorf("out", "is empty: give the checkpoint file to write")
	}
	if batch < 2 {
		return invalid.Errorf("batch size", "must be at least 2%s, got %d", why2, batch)
	}
	return loop.CheckEpochs(epochs)
}

// fits refuses a run whose network, optimizer state and batch of images
// (views included) cannot fit in the memory left (budget.Check), before
// anything is allocated. Each of batch images is seen as views views; slots
// is the optimizer's per-parameter state
// tensors; training false means the network is only built and saved.
func (r *run) fits(batch, views, slots int, training bool) error {
	return budget.Check(budget.Run{Net: r.net, Height: int64(r.train.H), Width: int64(r.train.W), Batch: batch, Views: views, OptimizerSlots: slots, Training: training},
		"width", "batch size")
}
