package grid

import (
	"errors"
	"math"
	"slices"

	"github.com/BurntSushi/toml"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
	"modelstitch/experiments/train"
	"modelstitch/torch/vision/datasets"
)

// checkLimits applies to a resolved spec the limits the commands apply to
// the same settings, so that a spec that can never run is refused when it
// is read (by plan as by run) instead of failing unit by unit. Each limit is
// the library's own, called here, not a copy of its numbers:
//
//   - a model's network: train.CheckNetwork (a width whose parameters no
//     machine can hold, or that gives no channel);
//   - epochs, stitch epochs and probe epochs: loop.CheckEpochs;
//   - test_samples, train_samples and probe_samples: splits.CheckSizes with
//     the data set's published sizes (datasets.Known; not checked for a
//     folder data set);
//   - kernel_size: stitch.CheckLayer on activations as large as the data's
//     images, the largest any cut has (each cut's own limit is checked when
//     it is stitched);
//   - real-valued settings must be finite (NaN passes the range checks).
//
// The memory of the machine is not checked here: the spec may be read on
// another machine than the one that runs a unit (a login node, a report
// job), and each unit's run checks its own (budget.Check).
//
// An error names the file, the line and the key that set the value: the
// model's or pair's own key when the TOML defines it there (md.IsDefined),
// else the defaults' key.
func (s *Spec) checkLimits(md toml.MetaData) error {
	info, known := datasets.Known(s.Data)
	if known {
		if err := splits.CheckSizes(splits.Config{TestSamples: s.TestSamples}, info.Train, info.Test); err != nil {
			return s.limitErr([]string{"test_samples"}, err)
		}
	}
	for _, name := range sortedKeys(s.Models) {
		m := s.Models[name]
		own := []string{"models", name}
		where := func(fields ...string) []string { return s.definedAt(md, own, []string{"model_defaults"}, fields...) }
		switch m.Kind {
		case KindProbe:
			if err := loop.CheckEpochs(m.ProbeEpochs); err != nil {
				return s.limitErr(where("probe_epochs"), err)
			}
			if known {
				if err := splits.CheckSizes(splits.Config{TrainSamples: m.ProbeSamples}, info.Train, info.Test); err != nil {
					return s.limitErr(where("probe_samples"), err)
				}
			}
		case KindTrain:
			r := m.Recipe
			for _, f := range []struct {
				key string
				v   float64
			}{{"width", r.Width}, {"lr", r.LR}, {"momentum", r.Momentum}, {"weight_decay", r.WeightDecay}, {"label_noise", r.LabelNoise}, {"temperature", r.Temperature}} {
				if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
					return s.errAt(where(f.key), "must be a finite number, got %v", f.v)
				}
			}
			if err := train.CheckNetwork(r.Arch, r.Width, r.Stem, r.Epochs > 0); err != nil {
				return s.limitErr(where("width"), err)
			}
			if err := loop.CheckEpochs(r.Epochs); err != nil {
				return s.limitErr(where("epochs", "steps"), err)
			}
			if known {
				if err := splits.CheckSizes(splits.Config{TrainSamples: r.TrainSamples}, info.Train, info.Test); err != nil {
					return s.limitErr(where("train_samples"), err)
				}
			}
		}
	}
	for _, name := range sortedKeys(s.Pairs) {
		p := s.Pairs[name]
		where := func(fields ...string) []string {
			return s.definedAt(md, []string{"pairs", name, "stitch"}, []string{"stitch_defaults"}, fields...)
		}
		r := p.Recipe
		if math.IsNaN(r.LR) || math.IsInf(r.LR, 0) {
			return s.errAt(where("lr"), "must be a finite number, got %v", r.LR)
		}
		if err := loop.CheckEpochs(r.Epochs); err != nil {
			return s.limitErr(where("epochs", "recipe"), err)
		}
		if known {
			side := int64(max(info.Height, info.Width))
			shape := []int64{int64(info.Channels), side, side}
			if err := stitch.CheckLayer(shape, shape, r.KernelSize); err != nil {
				return s.limitErr(where("kernel_size", "recipe"), err)
			}
		}
	}
	return nil
}

// definedAt is the key that set fields[i] (the first of them the TOML
// defines) for a table with defaults: own.field, else defaults.field, else
// own itself (a built-in default).
func (s *Spec) definedAt(md toml.MetaData, own, defaults []string, fields ...string) []string {
	for _, table := range [][]string{own, defaults} {
		for _, f := range fields {
			if key := append(slices.Clone(table), f); md.IsDefined(key...) {
				return key
			}
		}
	}
	return own
}

// limitErr is err, the refusal of a library check, about the key: the
// setting's problem is told once, after the file, line and key.
func (s *Spec) limitErr(key []string, err error) error {
	var set *invalid.Setting
	if errors.As(err, &set) {
		msg := set.Problem
		switch {
		case msg == "":
			msg = set.Err.Error()
		case set.Err != nil:
			msg += ": " + set.Err.Error()
		}
		return s.errAt(key, "%s", msg)
	}
	return s.errAt(key, "%v", err)
}
