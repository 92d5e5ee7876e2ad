package grid

import (
	"errors"
	"math"
	"slices"

	"github.com/BurntSushi/toml"

	"modelstitch/experiments/invalid"
)

// Limits are the libraries' own checks of the values a spec sets, handed in
// by the caller (Vocabulary.Limits; inprocess.Vocabulary gives the real
// ones), so that grid itself imports none of the libraries that link
// libtorch. A nil function checks nothing.
type Limits struct {
	// Network refuses a network no machine can hold or that gives no channel
	// (train.CheckNetwork).
	Network func(arch string, width float64, stem string, training bool) error
	// Epochs refuses a number of epochs out of range (loop.CheckEpochs).
	Epochs func(n int) error
	// Samples refuses training or test sample counts beyond the data set's
	// published split sizes (splits.CheckSizes; 0 for a count not set); it
	// checks nothing for a data set whose sizes are not known.
	Samples func(data string, train, test int) error
	// Kernel refuses a stitching kernel wider than the data's images allow,
	// the largest activations any cut has (stitch.CheckLayer).
	Kernel func(data string, kernel int64) error
}

// call runs f when it is set.
func call(f func() error, set bool) error {
	if !set {
		return nil
	}
	return f()
}

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
func (s *Spec) checkLimits(md toml.MetaData, l Limits) error {
	epochs := func(n int) error { return call(func() error { return l.Epochs(n) }, l.Epochs != nil) }
	samples := func(train, test int) error {
		return call(func() error { return l.Samples(s.Data, train, test) }, l.Samples != nil)
	}
	if err := samples(0, s.TestSamples); err != nil {
		return s.limitErr([]string{"test_samples"}, err)
	}
	for _, name := range sortedKeys(s.Models) {
		m := s.Models[name]
		own := []string{"models", name}
		where := func(fields ...string) []string { return s.definedAt(md, own, []string{"model_defaults"}, fields...) }
		switch m.Kind {
		case KindProbe:
			if err := epochs(m.ProbeEpochs); err != nil {
				return s.limitErr(where("probe_epochs"), err)
			}
			if err := samples(m.ProbeSamples, 0); err != nil {
				return s.limitErr(where("probe_samples"), err)
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
			if err := call(func() error { return l.Network(r.Arch, r.Width, r.Stem, r.Epochs > 0) }, l.Network != nil); err != nil {
				return s.limitErr(where("width"), err)
			}
			if err := epochs(r.Epochs); err != nil {
				return s.limitErr(where("epochs", "steps"), err)
			}
			if err := samples(r.TrainSamples, 0); err != nil {
				return s.limitErr(where("train_samples"), err)
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
		if err := epochs(r.Epochs); err != nil {
			return s.limitErr(where("epochs", "recipe"), err)
		}
		if err := call(func() error { return l.Kernel(s.Data, r.KernelSize) }, l.Kernel != nil); err != nil {
			return s.limitErr(where("kernel_size", "recipe"), err)
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
