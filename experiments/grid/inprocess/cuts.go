package inprocess

import (
	"fmt"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/models"
	"modelstitch/experiments/speclimits"
	"modelstitch/experiments/train"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/datasets"
)

// Vocabulary is what the training code accepts: a spec checked against it
// names only architectures, stems, schedules and relabelling tasks that
// training can run, and steps turn into epochs over the real split sizes.
func Vocabulary() grid.Vocabulary {
	channels := datasets.ChannelCounts()
	channels["folder:"] = datasets.FolderChannels
	return grid.Vocabulary{Archs: vision.Archs(), Stems: []string{vision.StemCIFAR, vision.StemImageNet},
		Schedules: train.Schedules, Tasks: datasets.Tasks(), TrainSplits: datasets.TrainSplitSizes(), Channels: channels,
		Limits: Limits()}
}

// Limits are the libraries' own checks of a spec's values (grid.Limits):
// each is the check the commands apply to the same setting.
func Limits() grid.Limits {
	return grid.Limits{
		Network: train.CheckNetwork,
		Epochs:  loop.CheckEpochs,
		Samples: speclimits.Samples,
		Kernel:  speclimits.Kernel,
	}
}

// CutPoints lists the cut points of a model's architecture, in order. A
// trained model's come from its recipe; an existing checkpoint's from its
// metadata or, failing that, its weights' shapes.
func CutPoints(f *grid.ModelFile, p *grid.Plan) ([]string, error) {
	m := f.Model
	for m.Kind == grid.KindProbe || m.Kind == grid.KindSnapshot {
		m = p.Spec.Models[m.Base]
	}
	var cfg vision.ResNetConfig
	switch m.Kind {
	case grid.KindTrain:
		depth, err := vision.ParseArch(m.Recipe.Arch)
		if err != nil {
			return nil, err
		}
		cfg = vision.ResNetConfig{Depth: depth, Stem: m.Recipe.Stem}
	default:
		path := m.Checkpoint
		if f.Model.Kind == grid.KindCheckpoint {
			path = f.Path
		}
		ck, err := models.Open(path)
		if err != nil {
			return nil, err
		}
		var meta models.Meta
		if ck.ModelstitchMeta(&meta) == nil {
			if cfg, err = meta.Config(); err != nil {
				return nil, fmt.Errorf("model %s: %w", path, err)
			}
		} else if cfg, _, err = vision.InferResNetConfig(ck.State.Shapes()); err != nil {
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
	}
	// The cut names do not depend on the width or the classes: build the
	// thinnest network of the same depth and stem.
	cfg.Width, cfg.Classes, cfg.InChannels = 1.0/64, 0, 1
	net, err := vision.NewResNet(cfg)
	if err != nil {
		return nil, err
	}
	defer nn.Free(net)
	return net.CutPoints(), nil
}
