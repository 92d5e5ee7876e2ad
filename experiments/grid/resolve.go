package grid

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Vocabulary is what a spec may name that other packages define, so that a
// spec is checked against the code that will run it without the grid
// importing that code (inprocess.Vocabulary is the training code's).
type Vocabulary struct {
	// Archs are the architectures a model may have ("resnet18", ...).
	Archs []string
	// Stems are the stems a model may have ("cifar", "imagenet").
	Stems []string
	// Schedules are the learning-rate schedules a model may train with.
	Schedules []string
	// Tasks are the relabelling tasks a model's labels may name besides
	// LabelsOriginal.
	Tasks []string
	// TrainSplits is the size of each data set's training split, which turns
	// a step budget into epochs (a data set not listed takes no steps).
	TrainSplits map[string]int
	// Channels is the number of channels of each data set's images, the key
	// "folder:" standing for every folder data set (a data set not listed
	// is not checked).
	Channels map[string]int
	// Limits are the libraries' checks of the values a spec sets (limits.go).
	Limits Limits
}

// LabelsOriginal is a model's labels when no relabelling task applies.
const LabelsOriginal = "original"

// objectives are the objectives a model may train with.
var objectives = []string{ObjectiveSupervised, ObjectiveSimCLR}

// builtin defaults, below [model_defaults] and [stitch_defaults].
func builtinModel() Recipe {
	return Recipe{Arch: "resnet18", Width: 0.25, Stem: "cifar", Objective: ObjectiveSupervised, Labels: LabelsOriginal,
		Epochs: 4, Batch: 128, LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Schedule: "cosine", Augment: true}
}

// builtinStitch is the stitching recipe of a spec whose [stitch_defaults]
// name none: "cpu", the converged fit.
func builtinStitch() StitchRecipe { return stitchRecipes[StitchRecipeCPU] }

// Named stitching recipes (a stitch table's recipe field): stitch.RecipeCPU,
// stitch.RecipeQuick and stitch.RecipePaper.
const (
	StitchRecipeCPU   = "cpu"
	StitchRecipeQuick = "quick"
	StitchRecipePaper = "paper"
)

// PaperStitchEpochs is the paper recipe's number of epochs (stitch.PaperEpochs).
const PaperStitchEpochs = 30

// stitchRecipes are the named recipes' settings: package stitch's Defaults,
// Quick and Paper, written out because the grid does not link libtorch
// (TestNamedRecipesMatchStitch checks them against package stitch, and
// package inprocess's tests check that they map onto those configs).
var stitchRecipes = map[string]StitchRecipe{
	// The converged fit: least-squares start on 2,000 images, Adam 1e-2 on
	// every training image but 2,500 held out, checked every 25 steps, the
	// best kept, the rate cut tenfold after 2 checks without progress,
	// stopped at the next plateau or after 4 epochs.
	StitchRecipeCPU: {Init: "least-squares", Epochs: 4, Batch: 128, LR: 1e-2, FitSamples: 0, LSSamples: 2000,
		ValSamples: 2500, CheckEvery: 25, Patience: 2, LRCuts: 1, KernelSize: 1, FrozenBN: "eval", CKASamples: 500},
	// The one-epoch fit of earlier versions: least-squares start, one epoch
	// of Adam 1e-2 (cosine) over 6,000 images, no validation, the end kept.
	StitchRecipeQuick: {Init: "least-squares", Epochs: 1, Batch: 128, LR: 1e-2, FitSamples: 6000, LSSamples: 2000,
		KernelSize: 1, FrozenBN: "eval", CKASamples: 500},
	// The paper's: default init, Adam 1e-3 cosine, crop and flip, the whole
	// training split, PaperStitchEpochs epochs, eval-mode frozen halves.
	StitchRecipePaper: {Init: "default", Epochs: PaperStitchEpochs, Batch: 128, LR: 1e-3, FitSamples: 0, FitAugment: true,
		LSSamples: 2000, KernelSize: 1, FrozenBN: "eval", CKASamples: 500},
}

// StitchRecipeNames lists the named stitching recipes.
func StitchRecipeNames() []string {
	return []string{StitchRecipeCPU, StitchRecipeQuick, StitchRecipePaper}
}

// namedStitch sets a named recipe's fitting settings over r. It keeps r's
// CKA samples, which are not a fitting setting, and r's least-squares
// samples when the named recipe does not start from least squares (they
// have no effect then; keeping them keeps the unit ids of specs written
// when "paper" left them alone).
func namedStitch(r StitchRecipe, name string) (StitchRecipe, bool) {
	n, ok := stitchRecipes[name]
	if !ok {
		return r, false
	}
	n.CKASamples, n.Seed = r.CKASamples, r.Seed
	if n.Init != "least-squares" {
		n.LSSamples = r.LSSamples
	}
	return n, true
}

// resolver turns a spec file's tables into its Spec's resolved ones: the
// defaults applied, every value checked against the vocabulary and every
// reference against the models and pairs.
type resolver struct {
	s     *Spec
	f     *specFile
	vocab Vocabulary
}

// resolve applies the top-level defaults, then resolves the models, the
// pairs (which name models) and the experiments (which name pairs).
func (rv *resolver) resolve() error {
	s := rv.s
	if s.Data == "" {
		s.Data = "fashion-mnist"
	}
	if s.Out == "" {
		s.Out = "results/grid"
	}
	if s.Report == "" {
		s.Report = "experiments/report"
	}
	if s.TestSamples < 0 {
		return s.errAt([]string{"test_samples"}, "must be ≥ 0, got %d", s.TestSamples)
	}
	s.KeyByContent = true
	set(&s.KeyByContent, rv.f.KeyByContent)
	if err := rv.input(); err != nil {
		return err
	}
	if err := rv.models(); err != nil {
		return err
	}
	if err := rv.pairs(); err != nil {
		return err
	}
	return rv.experiments()
}

// dataChannels is the number of channels of the spec's data set (0: not known).
func (rv *resolver) dataChannels() int {
	if strings.HasPrefix(rv.s.Data, "folder:") {
		return rv.vocab.Channels["folder:"]
	}
	return rv.vocab.Channels[rv.s.Data]
}

// inputChannels is the number of channels the models are fed (0: not known).
func (rv *resolver) inputChannels() int {
	if rv.s.Channels > 0 {
		return rv.s.Channels
	}
	return rv.dataChannels()
}

// input checks the spec's image_size and channels against its data set.
func (rv *resolver) input() error {
	s := rv.s
	switch dc := rv.dataChannels(); {
	case s.ImageSize < 0:
		return s.errAt([]string{"image_size"}, "must be ≥ 0, got %d", s.ImageSize)
	case s.ImageSize > 0 && !strings.HasPrefix(s.Data, "folder:"):
		return s.errAt([]string{"image_size"}, "applies to folder: data sets; the images of %s have a fixed size", s.Data)
	case s.Channels < 0:
		return s.errAt([]string{"channels"}, "must be ≥ 0, got %d", s.Channels)
	case s.Channels > 0 && dc > 1 && s.Channels != dc:
		return s.errAt([]string{"channels"}, "%s has %d channels; only a grey (1-channel) data set's channel can be repeated, got %d", s.Data, dc, s.Channels)
	}
	return nil
}

// checkNorm checks an input normalisation given at key: mean and std both
// or neither, one finite mean and one positive, finite std per channel of
// the inputs.
func (rv *resolver) checkNorm(key []string, mean, std []float64) error {
	s := rv.s
	k := func(field string) []string { return append(slices.Clone(key), field) }
	switch {
	case mean == nil && std == nil:
		return nil
	case mean == nil:
		return s.errAt(k("std"), "given without mean: give both, one value per channel")
	case std == nil:
		return s.errAt(k("mean"), "given without std: give both, one value per channel")
	case len(mean) == 0:
		return s.errAt(k("mean"), "empty: give one value per channel")
	case len(mean) != len(std):
		return s.errAt(k("std"), "has %d values and mean %d: give one of each per channel", len(std), len(mean))
	}
	if c := rv.inputChannels(); c > 0 && len(mean) != c {
		return s.errAt(k("mean"), "has %d values for inputs of %d channel(s)", len(mean), c)
	}
	for i := range mean {
		if math.IsNaN(mean[i]) || math.IsInf(mean[i], 0) {
			return s.errAt(k("mean"), "channel %d: %g is not a finite number", i, mean[i])
		}
		if !(std[i] > 0) || math.IsInf(std[i], 0) {
			return s.errAt(k("std"), "channel %d: %g is not a positive, finite number", i, std[i])
		}
	}
	return nil
}

// models resolves [model_defaults] and every [models.NAME] table.
func (rv *resolver) models() error {
	s, f := rv.s, rv.f
	if f.ModelDefaults.Checkpoint != nil || f.ModelDefaults.ProbeOf != nil || f.ModelDefaults.SaveAt != nil {
		return s.errAt([]string{"model_defaults"}, "checkpoint, probe_of and save_at belong to one model, not to the defaults")
	}
	base, err := rv.applyModel(builtinModel(), f.ModelDefaults, []string{"model_defaults"})
	if err != nil {
		return err
	}
	if len(f.ModelTables) == 0 {
		return s.errAt([]string{"models"}, "no models")
	}
	s.Models = map[string]*Model{}
	for _, name := range sortedKeys(f.ModelTables) {
		m, err := rv.model(name, f.ModelTables[name], base)
		if err != nil {
			return err
		}
		s.Models[name] = m
	}
	for _, m := range s.Models {
		if m.Kind != KindProbe {
			continue
		}
		b, ok := s.Models[m.Base]
		if !ok {
			return s.errAt([]string{"models", m.Name, "probe_of"}, "no model %q", m.Base)
		}
		if b.Kind == KindProbe {
			return s.errAt([]string{"models", m.Name, "probe_of"}, "%q is itself a probe", m.Base)
		}
	}
	return nil
}

// model resolves one [models.NAME] table: a checkpoint, a probe, or a
// recipe over base.
func (rv *resolver) model(name string, f modelTable, base Recipe) (*Model, error) {
	s := rv.s
	key := []string{"models", name}
	if !namePattern.MatchString(name) || strings.Contains(name, "@") {
		return nil, s.errAt(key, "model names are letters, digits, '-', '_' and '.'")
	}
	m := &Model{Name: name, Label: name}
	if f.Label != nil {
		m.Label = *f.Label
	}
	switch {
	case f.Checkpoint != nil:
		if f.ProbeOf != nil || f.Epochs != nil || f.Steps != nil || f.Seed != nil || f.SaveAt != nil {
			return nil, s.errAt(key, "a checkpoint model has no recipe (epochs, steps, seed, save_at, probe_of)")
		}
		if *f.Checkpoint == "" {
			return nil, s.errAt(append(key, "checkpoint"), "empty path")
		}
		if err := rv.checkNorm(key, f.Mean, f.Std); err != nil {
			return nil, err
		}
		m.Kind, m.Checkpoint, m.Mean, m.Std = KindCheckpoint, *f.Checkpoint, f.Mean, f.Std
	case f.ProbeOf != nil:
		if f.Mean != nil || f.Std != nil {
			return nil, s.errAt(key, "a probe is fed as its backbone is: give mean and std to the backbone")
		}
		m.Kind, m.Base, m.ProbeEpochs = KindProbe, *f.ProbeOf, 30
		set(&m.ProbeSamples, f.ProbeSamples)
		set(&m.ProbeEpochs, f.ProbeEpochs)
		if m.ProbeSamples < 0 || m.ProbeEpochs < 1 {
			return nil, s.errAt(key, "probe_samples must be ≥ 0 and probe_epochs ≥ 1")
		}
	default:
		m.Kind = KindTrain
		var err error
		if m.Recipe, err = rv.applyModel(base, f, key); err != nil {
			return nil, err
		}
		m.Recipe.SaveAt = f.SaveAt
		for _, e := range f.SaveAt {
			if e < 1 || e > m.Recipe.Epochs {
				return nil, s.errAt(append(key, "save_at"), "epoch %d is outside 1..%d (the run's epochs)", e, m.Recipe.Epochs)
			}
		}
		if len(f.SaveAt) > 0 && m.Recipe.Objective != ObjectiveSupervised {
			return nil, s.errAt(append(key, "save_at"), "only supervised runs keep snapshots")
		}
	}
	return m, nil
}

// pairs resolves [stitch_defaults] and every [pairs.NAME] table.
func (rv *resolver) pairs() error {
	sbase, err := rv.applyStitch(builtinStitch(), []int64{0}, rv.f.StitchDefaults, []string{"stitch_defaults"})
	if err != nil {
		return err
	}
	rv.s.Pairs = map[string]*Pair{}
	for _, name := range sortedKeys(rv.f.PairTables) {
		p, err := rv.pair(name, rv.f.PairTables[name], sbase)
		if err != nil {
			return err
		}
		rv.s.Pairs[name] = p
	}
	return nil
}

// pair resolves one [pairs.NAME] table, its stitch table over base.
func (rv *resolver) pair(name string, f pairTable, base resolvedStitch) (*Pair, error) {
	s := rv.s
	key := []string{"pairs", name}
	if !namePattern.MatchString(name) {
		return nil, s.errAt(key, "pair names are letters, digits, '-', '_' and '.'")
	}
	p := &Pair{Name: name, Bottom: f.Bottom, Top: f.Top, Cuts: f.Cuts, Label: f.Label}
	for _, side := range []struct{ field, ref string }{{"bottom", p.Bottom}, {"top", p.Top}} {
		if side.ref == "" {
			return nil, s.errAt(append(key, side.field), "missing")
		}
		if _, err := s.modelRef(side.ref); err != nil {
			return nil, s.errAt(append(key, side.field), "%v", err)
		}
	}
	if len(p.Cuts) == 0 {
		return nil, s.errAt(append(key, "cuts"), "missing (\"all\", a comma list or an array of cut names)")
	}
	if p.Label == "" {
		p.Label = s.label(p.Bottom) + " → " + s.label(p.Top)
	}
	st, err := rv.applyStitch(base.recipe, base.seeds, f.Stitch, append(key, "stitch"))
	if err != nil {
		return nil, err
	}
	p.Recipe, p.Seeds, p.Description = st.recipe, st.seeds, st.description
	return p, nil
}

// experiments checks every [[experiments]] entry and fills in its defaults.
func (rv *resolver) experiments() error {
	seen := map[string]bool{}
	for i := range rv.s.Experiments {
		e := &rv.s.Experiments[i]
		if e.ID == "" {
			return fmt.Errorf("%s: experiments[%d]: missing id", rv.s.Path, i)
		}
		if seen[e.ID] {
			return rv.s.errAt([]string{"experiments", e.ID}, "duplicate experiment id")
		}
		seen[e.ID] = true
		if err := rv.experiment(e); err != nil {
			return err
		}
	}
	return nil
}

// experiment checks one experiment's pairs, axes and verdict rule.
func (rv *resolver) experiment(e *Experiment) error {
	s := rv.s
	key := []string{"experiments", e.ID}
	if !namePattern.MatchString(e.ID) {
		return s.errAt(key, "ids are letters, digits, '-', '_' and '.'")
	}
	if e.Title == "" {
		e.Title = e.ID
	}
	if len(e.Pairs) == 0 {
		return s.errAt(append(key, "pairs"), "no pairs")
	}
	for _, p := range e.Pairs {
		if _, ok := s.Pairs[p]; !ok {
			return s.errAt(append(key, "pairs"), "no pair %q", p)
		}
	}
	if e.X == "" {
		e.X = "cut"
	}
	if e.X != "cut" {
		return s.errAt(append(key, "x"), "only \"cut\" is supported, got %q", e.X)
	}
	if e.Y == "" {
		e.Y = "penalty"
	}
	if !slices.Contains(metrics, e.Y) {
		return s.errAt(append(key, "y"), "must be one of %s, got %q", strings.Join(metrics, ", "), e.Y)
	}
	if controlMetric(e.Y) && !s.Control {
		return s.errAt(append(key, "y"), "%s is read from self-stitch controls: the spec needs control = true", e.Y)
	}
	if e.Verdict == "" {
		return nil
	}
	r, err := ParseRule(e.Verdict)
	if err != nil {
		return s.errAt(append(key, "verdict"), "%v", err)
	}
	for _, p := range r.Pairs() {
		if _, ok := s.Pairs[p]; !ok {
			return s.errAt(append(key, "verdict"), "no pair %q", p)
		}
	}
	for _, m := range r.Metrics() {
		if controlMetric(m) && !s.Control {
			return s.errAt(append(key, "verdict"), "%s is read from self-stitch controls: the spec needs control = true", m)
		}
	}
	e.rule = r
	return nil
}

// applyModel sets f's fields over r and checks the result.
func (rv *resolver) applyModel(r Recipe, f modelTable, key []string) (Recipe, error) {
	s, v := rv.s, rv.vocab
	set(&r.Arch, f.Arch)
	set(&r.Width, f.Width)
	set(&r.Stem, f.Stem)
	set(&r.Objective, f.Objective)
	set(&r.TrainSamples, f.TrainSamples)
	set(&r.LabelNoise, f.LabelNoise)
	set(&r.Labels, f.Labels)
	set(&r.Epochs, f.Epochs)
	if f.Epochs != nil {
		r.Steps = 0 // epochs given here override a step budget of the defaults
	}
	set(&r.Batch, f.Batch)
	set(&r.LR, f.LR)
	set(&r.Momentum, f.Momentum)
	set(&r.WeightDecay, f.WeightDecay)
	set(&r.Schedule, f.Schedule)
	set(&r.Augment, f.Augment)
	set(&r.Temperature, f.Temperature)
	set(&r.Seed, f.Seed)
	if f.Mean != nil || f.Std != nil {
		if err := rv.checkNorm(key, f.Mean, f.Std); err != nil {
			return r, err
		}
		r.Mean, r.Std = f.Mean, f.Std
	}
	if f.BNStats != nil {
		r.BNStats = *f.BNStats
		if r.BNStats == "initial" {
			r.BNStats = ""
		}
	}
	r.Data, r.ImageSize, r.Channels = s.Data, s.ImageSize, s.Channels
	k := func(field string) []string { return append(slices.Clone(key), field) }
	switch {
	case !slices.Contains(v.Archs, r.Arch):
		return r, s.errAt(k("arch"), "must be one of %s, got %q", strings.Join(v.Archs, ", "), r.Arch)
	case !(r.Width > 0):
		return r, s.errAt(k("width"), "must be positive, got %g", r.Width)
	case !slices.Contains(v.Stems, r.Stem):
		return r, s.errAt(k("stem"), "must be %s, got %q", strings.Join(v.Stems, " or "), r.Stem)
	case !slices.Contains(objectives, r.Objective):
		return r, s.errAt(k("objective"), "must be supervised or simclr, got %q", r.Objective)
	case r.TrainSamples < 0:
		return r, s.errAt(k("train_samples"), "must be ≥ 0, got %d", r.TrainSamples)
	case r.LabelNoise < 0 || r.LabelNoise > 1:
		return r, s.errAt(k("label_noise"), "must be in [0, 1], got %g", r.LabelNoise)
	case r.Labels != LabelsOriginal && !slices.Contains(v.Tasks, r.Labels):
		return r, s.errAt(k("labels"), "must be one of %s, got %q", strings.Join(append([]string{LabelsOriginal}, v.Tasks...), ", "), r.Labels)
	case r.Objective == ObjectiveSimCLR && (r.LabelNoise != 0 || r.Labels != LabelsOriginal):
		return r, s.errAt(k("objective"), "simclr uses no labels: label_noise and labels apply to supervised models")
	case r.Batch < 2:
		return r, s.errAt(k("batch"), "must be at least 2, got %d", r.Batch)
	case !(r.LR > 0):
		return r, s.errAt(k("lr"), "must be positive, got %g", r.LR)
	case r.WeightDecay < 0 || r.Momentum < 0:
		return r, s.errAt(key, "momentum and weight_decay must be ≥ 0")
	case !slices.Contains(v.Schedules, r.Schedule):
		return r, s.errAt(k("schedule"), "must be one of %s, got %q", strings.Join(v.Schedules, ", "), r.Schedule)
	case r.Epochs < 0:
		return r, s.errAt(k("epochs"), "must be ≥ 0, got %d", r.Epochs)
	case f.Steps != nil && f.Epochs != nil:
		return r, s.errAt(key, "give epochs or steps, not both")
	case r.BNStats != "" && r.BNStats != "data":
		return r, s.errAt(k("bn_stats"), "must be initial or data, got %q", r.BNStats)
	case r.BNStats == "data" && (r.Epochs != 0 || f.Steps != nil || r.Objective != ObjectiveSupervised):
		return r, s.errAt(k("bn_stats"), "\"data\" applies to an untrained supervised model (epochs = 0)")
	}
	if r.Objective == ObjectiveSimCLR && r.Temperature == 0 {
		r.Temperature = 0.5
	}
	if f.Steps != nil {
		if *f.Steps < 1 {
			return r, s.errAt(k("steps"), "must be at least 1, got %d", *f.Steps)
		}
		r.Steps = *f.Steps
	}
	if r.Steps > 0 {
		// A step budget (here or in the defaults) sets the epochs from this
		// model's own training set size and batch.
		split, ok := v.TrainSplits[s.Data]
		if !ok {
			return r, s.errAt(k("steps"), "steps need a known training split size; data %q has none (give epochs)", s.Data)
		}
		per := r.StepsPerEpoch(split)
		r.Epochs = (r.Steps + per - 1) / per
	}
	return r, nil
}

// resolvedStitch is a recipe with its seeds and description.
type resolvedStitch struct {
	recipe      StitchRecipe
	seeds       []int64
	description string
}

// applyStitch sets f's fields over r and checks the result.
func (rv *resolver) applyStitch(r StitchRecipe, seeds []int64, f stitchTable, key []string) (resolvedStitch, error) {
	s := rv.s
	if f.Recipe != nil {
		var ok bool
		if r, ok = namedStitch(r, *f.Recipe); !ok {
			return resolvedStitch{recipe: r, seeds: seeds}, s.errAt(append(slices.Clone(key), "recipe"),
				"must be one of %s, got %q", strings.Join(StitchRecipeNames(), ", "), *f.Recipe)
		}
	}
	set(&r.Init, f.Init)
	set(&r.Epochs, f.Epochs)
	set(&r.Batch, f.Batch)
	set(&r.LR, f.LR)
	set(&r.FitSamples, f.FitSamples)
	set(&r.FitAugment, f.FitAugment)
	set(&r.LSSamples, f.LSSamples)
	set(&r.ValSamples, f.ValSamples)
	set(&r.CheckEvery, f.CheckEvery)
	set(&r.Patience, f.Patience)
	set(&r.LRCuts, f.LRCuts)
	set(&r.KernelSize, f.KernelSize)
	set(&r.FrozenBN, f.FrozenBN)
	set(&r.CKASamples, f.CKASamples)
	if f.Seeds != nil {
		seeds = f.Seeds
	}
	out := resolvedStitch{recipe: r, seeds: seeds}
	if f.Description != nil {
		out.description = *f.Description
	}
	k := func(field string) []string { return append(slices.Clone(key), field) }
	switch {
	case r.Init != "least-squares" && r.Init != "default":
		return out, s.errAt(k("init"), "must be least-squares or default, got %q", r.Init)
	case r.Epochs < 1:
		return out, s.errAt(k("epochs"), "must be at least 1, got %d", r.Epochs)
	case r.Batch < 2:
		return out, s.errAt(k("batch"), "must be at least 2, got %d", r.Batch)
	case !(r.LR > 0):
		return out, s.errAt(k("lr"), "must be positive, got %g", r.LR)
	case r.FitSamples < 0 || r.LSSamples < 0 || r.CKASamples < 0:
		return out, s.errAt(key, "fit_samples, ls_samples and cka_samples must be ≥ 0")
	case r.ValSamples < 0:
		return out, s.errAt(k("val_samples"), "must be ≥ 0, got %d", r.ValSamples)
	case r.CheckEvery < 0:
		return out, s.errAt(k("check_every"), "must be ≥ 0, got %d", r.CheckEvery)
	case r.Patience < 0:
		return out, s.errAt(k("patience"), "must be ≥ 0, got %d", r.Patience)
	case r.LRCuts < 0:
		return out, s.errAt(k("lr_cuts"), "must be ≥ 0, got %d", r.LRCuts)
	case r.KernelSize < 1 || r.KernelSize%2 == 0:
		return out, s.errAt(k("kernel_size"), "must be odd and positive, got %d", r.KernelSize)
	case r.FrozenBN != "eval" && r.FrozenBN != "train":
		return out, s.errAt(k("frozen_bn"), "must be eval or train, got %q", r.FrozenBN)
	case len(seeds) == 0:
		return out, s.errAt(k("seeds"), "no stitching seeds")
	}
	if r.ValSamples == 0 {
		// Without validation these have no effect: left out of the unit's
		// identity, so that a quick recipe under a validated default is
		// the quick recipe.
		r.CheckEvery, r.Patience, r.LRCuts = 0, 0, 0
		out.recipe = r
	}
	dup := map[int64]bool{}
	for _, x := range seeds {
		if dup[x] {
			return out, s.errAt(k("seeds"), "seed %d twice", x)
		}
		dup[x] = true
	}
	return out, nil
}

// set sets *dst to *v when v is given.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
