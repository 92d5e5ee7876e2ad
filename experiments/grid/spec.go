// Package grid runs a whole set of stitching experiments from one declarative
// spec file: it plans every unit of work (train a model; stitch one pair at
// one cut with one stitching seed), runs what is missing (resuming after an
// interruption with no result lost or duplicated), and regenerates a report
// with every figure, table and verdict from the recorded rows.
//
// # Spec files (TOML; unknown keys are errors naming the key and its line)
//
// Top level: title, description, data (fashion-mnist, mnist, cifar10, ...),
// data_dir, test_samples (a class-balanced test subset, the same for every
// unit; 0: all), out (checkpoints and rows), report (README.md and figures),
// budget (in words).
//
// [model_defaults] and [models.NAME]: a model is one of
//   - checkpoint = "FILE" (relative to the spec's directory) or "embedded:NAME":
//     an existing model, nothing trained;
//   - probe_of = "MODEL" (probe_samples, probe_epochs): a linear probe fit on a
//     backbone, so that it can be a top;
//   - a recipe: arch, width, stem, objective (supervised or simclr),
//     train_samples, label_noise, labels ("original", "objects-vs-animals",
//     "clothing-vs-accessories"), epochs (0: the untrained network) or steps
//     (epochs derived from the model's own training set and batch), batch, lr,
//     momentum, weight_decay, schedule, augment, temperature, seed, save_at
//     (epochs after which a copy is kept: a pair refers to it as "NAME@EPOCH").
//
// [stitch_defaults] and [pairs.NAME]: bottom, top (model references), cuts
// ("all", "stem,layer2.1" or an array), label, and a stitch table overriding
// the stitching recipe: recipe ("cpu" or "paper": start from that named
// recipe's settings, which the table's other fields then override), init
// (least-squares or default), epochs, batch, lr, fit_samples, fit_augment
// (crop and flip the fitting images), ls_samples, kernel_size, frozen_bn
// (eval or train), cka_samples, seeds (one unit per stitching seed and cut),
// description (shown in the report).
//
// [[experiments]]: id, title, paper (the paper's reading), pairs (the series),
// y (penalty, stitched_acc, direct_acc, cka, cka_unbiased, top_acc; x is the
// cut), finding
// (the rule in words), verdict (a Rule, see ParseRule), cka (add a CKA table),
// figure (false: table only), note.
//
// # Units, rows and resuming
//
// A unit's id hashes everything that determines its result, so a changed
// recipe makes new units and equal recipes in two pairs share one unit.
// Finished units are appended, one JSON line each, fsynced, to
// OUT/rows/WRITER.jsonl (one file per run or shard, locked while written);
// checkpoints are written through a temporary file and a rename. A unit is
// done when its line exists (and, for a model, its checkpoints), so a killed
// run redoes only the units it had in flight.
package grid

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Spec is a parsed and validated spec file.
type Spec struct {
	// Path is the file the spec was read from.
	Path string
	// Title heads the report.
	Title string `toml:"title"`
	// Description is a paragraph under the title.
	Description string `toml:"description"`
	// Data is the data set every model trains and every pair stitches on.
	Data string `toml:"data"`
	// DataDir overrides where the data set's files are.
	DataDir string `toml:"data_dir"`
	// TestSamples > 0 scores stitched models on a class-balanced subset of the
	// test split (0: all of it).
	TestSamples int `toml:"test_samples"`
	// Out is the directory of checkpoints and rows (relative paths are relative
	// to the working directory); `--out` overrides it.
	Out string `toml:"out"`
	// Report is the directory the report (README.md and figures) goes to.
	Report string `toml:"report"`
	// Budget is the wall time the spec is sized for, in words (shown in the report).
	Budget string `toml:"budget"`

	ModelDefaults  ModelFields            `toml:"model_defaults"`
	StitchDefaults StitchFields           `toml:"stitch_defaults"`
	ModelTable     map[string]ModelFields `toml:"models"`
	PairTable      map[string]PairFields  `toml:"pairs"`
	Experiments    []Experiment           `toml:"experiments"`

	// Models and Pairs are the resolved tables (defaults applied), by name.
	Models map[string]*Model `toml:"-"`
	Pairs  map[string]*Pair  `toml:"-"`

	lines *lineIndex
}

// ModelFields is one [models.NAME] table (or [model_defaults]) as written;
// unset fields take the defaults.
type ModelFields struct {
	// Checkpoint names an existing file or a shipped model ("embedded:NAME"):
	// nothing is trained.
	Checkpoint *string `toml:"checkpoint"`
	// ProbeOf names another model (a backbone without classifier): this model
	// is that backbone with a linear probe fit on it.
	ProbeOf      *string `toml:"probe_of"`
	ProbeSamples *int    `toml:"probe_samples"`
	ProbeEpochs  *int    `toml:"probe_epochs"`

	Arch  *string  `toml:"arch"`
	Width *float64 `toml:"width"`
	Stem  *string  `toml:"stem"`
	// Objective is supervised or simclr.
	Objective    *string  `toml:"objective"`
	TrainSamples *int     `toml:"train_samples"`
	LabelNoise   *float64 `toml:"label_noise"`
	// Labels is "original" or a relabelling task (datasets.Tasks()).
	Labels *string `toml:"labels"`
	// Epochs 0 writes the untrained (random) network. Steps, when set instead,
	// gives the number of optimizer steps and the epochs are derived from it
	// (rounded up to whole epochs over TrainSamples images).
	Epochs      *int     `toml:"epochs"`
	Steps       *int     `toml:"steps"`
	Batch       *int     `toml:"batch"`
	LR          *float64 `toml:"lr"`
	Momentum    *float64 `toml:"momentum"`
	WeightDecay *float64 `toml:"weight_decay"`
	Schedule    *string  `toml:"schedule"`
	Augment     *bool    `toml:"augment"`
	Temperature *float64 `toml:"temperature"`
	// BNStats is the untrained network's (epochs 0) batch-norm running
	// statistics: "initial" (mean 0, variance 1, the default) or "data"
	// (recomputed on its training images).
	BNStats *string `toml:"bn_stats"`
	Seed    *int64  `toml:"seed"`
	// SaveAt lists epochs after which a copy of the run's checkpoint is kept;
	// a pair refers to one as "NAME@EPOCH".
	SaveAt []int `toml:"save_at"`
	// Label names the model in figures and tables (default: its name).
	Label *string `toml:"label"`
}

// StitchFields is a stitching recipe as written ([stitch_defaults] or a
// pair's stitch table); unset fields take the defaults.
type StitchFields struct {
	// Recipe names the settings the others override: "cpu" (the CPU
	// default, stitch.Defaults) or "paper" (the paper's, stitch.Paper).
	Recipe *string `toml:"recipe"`
	// Init is "least-squares" or "default".
	Init        *string  `toml:"init"`
	Epochs      *int     `toml:"epochs"`
	Batch       *int     `toml:"batch"`
	LR          *float64 `toml:"lr"`
	FitSamples  *int     `toml:"fit_samples"`
	FitAugment  *bool    `toml:"fit_augment"`
	LSSamples   *int     `toml:"ls_samples"`
	KernelSize  *int64   `toml:"kernel_size"`
	FrozenBN    *string  `toml:"frozen_bn"`
	CKASamples  *int     `toml:"cka_samples"`
	Seeds       []int64  `toml:"seeds"`
	Description *string  `toml:"description"`
}

// PairFields is one [pairs.NAME] table as written.
type PairFields struct {
	Bottom string `toml:"bottom"`
	Top    string `toml:"top"`
	// Cuts is "all", a comma list, or an array of cut names.
	Cuts   CutList      `toml:"cuts"`
	Label  string       `toml:"label"`
	Stitch StitchFields `toml:"stitch"`
}

// CutList is a pair's cuts: "all", "stem,layer2.1", or ["stem", "layer2.1"].
type CutList []string

// UnmarshalTOML accepts a string (comma list or "all") or an array of strings.
func (c *CutList) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*c = nil
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*c = append(*c, s)
			}
		}
	case []any:
		*c = nil
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("cuts: %v is not a string", e)
			}
			*c = append(*c, s)
		}
	default:
		return fmt.Errorf("cuts must be a string or an array of strings, got %T", v)
	}
	return nil
}

// Experiment is one [[experiments]] entry: a figure and a table of some pairs,
// the paper's finding and the rule that decides whether it holds here.
type Experiment struct {
	ID    string `toml:"id"`
	Title string `toml:"title"`
	// Paper is the paper's reading or number, in words.
	Paper string `toml:"paper"`
	// Pairs are the series, in legend order.
	Pairs []string `toml:"pairs"`
	// Y is what the figure plots against the cut: penalty (default),
	// stitched_acc, direct_acc, cka (biased linear CKA), cka_unbiased
	// (debiased) or top_acc.
	Y string `toml:"y"`
	// X is the figure's axis: only "cut" is supported.
	X string `toml:"x"`
	// Verdict is the rule deciding whether the paper's finding holds here, e.g.
	// "max(penalty, a+b) <= 3 and last(penalty, c) > 10" (see ParseRule).
	Verdict string `toml:"verdict"`
	// Finding says in words what the verdict rule checks.
	Finding string `toml:"finding"`
	// CKA adds the CKA tables (unbiased, then biased) beside the penalty's.
	CKA bool `toml:"cka"`
	// Figure false leaves the experiment out of the figures (table only).
	Figure *bool `toml:"figure"`
	// Note is shown under the table.
	Note string `toml:"note"`
	// Reading is the authors' one-line interpretation of the verdict, written
	// once the rows are in: why the finding holds here, or why not. It is
	// shown beside the verdict in the summary and under the rule.
	Reading string `toml:"reading"`

	rule *Rule
}

// Rule returns the parsed verdict rule (nil when the experiment has none).
func (e *Experiment) Rule() *Rule { return e.rule }

// Objectives of a trained model.
const (
	ObjectiveSupervised = "supervised"
	ObjectiveSimCLR     = "simclr"
)

// Model kinds.
const (
	KindTrain      = "train"      // trained by the grid
	KindCheckpoint = "checkpoint" // an existing file or shipped model
	KindProbe      = "probe"      // a linear probe fit on another model
	KindSnapshot   = "snapshot"   // a save_at copy of a trained model ("NAME@EPOCH")
)

// Model is a resolved model: a recipe to train, an existing checkpoint, a
// probe on another model, or a snapshot of a run.
type Model struct {
	Name  string
	Kind  string
	Label string

	Checkpoint string // KindCheckpoint
	// Base is the model a probe is fit on or a snapshot is taken of.
	Base         string
	ProbeSamples int
	ProbeEpochs  int
	SnapshotAt   int // KindSnapshot: the epoch

	Recipe Recipe // KindTrain
}

// Recipe is a resolved training recipe.
type Recipe struct {
	Arch         string  `json:"arch"`
	Width        float64 `json:"width"`
	Stem         string  `json:"stem"`
	Objective    string  `json:"objective"`
	Data         string  `json:"data"`
	TrainSamples int     `json:"train_samples"`
	LabelNoise   float64 `json:"label_noise"`
	Labels       string  `json:"labels"`
	Epochs       int     `json:"epochs"`
	// Steps is the step budget the epochs were derived from (0: epochs given).
	Steps       int     `json:"steps,omitempty"`
	Batch       int     `json:"batch"`
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum"`
	WeightDecay float64 `json:"weight_decay"`
	Schedule    string  `json:"schedule"`
	Augment     bool    `json:"augment"`
	Temperature float64 `json:"temperature,omitempty"`
	// BNStats is "data" for an untrained network whose batch-norm statistics
	// are recomputed on its training images ("" for the initial mean 0,
	// variance 1; omitted then, so that other recipes keep their identities).
	BNStats string `json:"bn_stats,omitempty"`
	Seed    int64  `json:"seed"`
	SaveAt  []int  `json:"save_at,omitempty"`
}

// StepsPerEpoch is the number of optimizer steps one epoch takes (the last,
// partial batch is dropped).
func (r Recipe) StepsPerEpoch(trainSplit int) int {
	n := r.TrainSamples
	if n <= 0 || n > trainSplit {
		n = trainSplit
	}
	if r.Batch <= 0 {
		return 0
	}
	if n <= r.Batch {
		return 1
	}
	return n / r.Batch
}

// StitchRecipe is a resolved stitching recipe (one stitching seed).
type StitchRecipe struct {
	Init       string  `json:"init"`
	Epochs     int     `json:"epochs"`
	Batch      int     `json:"batch"`
	LR         float64 `json:"lr"`
	FitSamples int     `json:"fit_samples"`
	// FitAugment crops and flips the fitting images afresh every epoch
	// (omitted when false, so that recipes without it keep their unit ids).
	FitAugment bool   `json:"fit_augment,omitempty"`
	LSSamples  int    `json:"ls_samples"`
	KernelSize int64  `json:"kernel_size"`
	FrozenBN   string `json:"frozen_bn"`
	CKASamples int    `json:"cka_samples"`
	Seed       int64  `json:"seed"`
}

// Pair is a resolved pair: a bottom stitched into a top at some cuts with
// one recipe and one or more stitching seeds.
type Pair struct {
	Name        string
	Bottom, Top string
	Cuts        []string // cut names, or ["all"] until expanded by the plan
	Label       string
	Recipe      StitchRecipe // Seed unset; see Seeds
	Seeds       []int64
	Description string
}

// trainSplitSizes are the training split sizes used to turn steps into epochs.
var trainSplitSizes = map[string]int{"fashion-mnist": 60000, "mnist": 60000, "cifar10": 50000, "cifar100": 50000}

// builtin defaults, below [model_defaults] and [stitch_defaults].
func builtinModel() Recipe {
	return Recipe{Arch: "resnet18", Width: 0.25, Stem: "cifar", Objective: ObjectiveSupervised, Labels: "original",
		Epochs: 4, Batch: 128, LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Schedule: "cosine", Augment: true}
}

func builtinStitch() StitchRecipe {
	return StitchRecipe{Init: "least-squares", Epochs: 1, Batch: 128, LR: 1e-2, FitSamples: 6000, LSSamples: 2000,
		KernelSize: 1, FrozenBN: "eval", CKASamples: 500}
}

// Named stitching recipes (a stitch table's recipe field).
const (
	StitchRecipeCPU   = "cpu"
	StitchRecipePaper = "paper"
)

// PaperStitchEpochs is the paper recipe's number of epochs (stitch.PaperEpochs).
const PaperStitchEpochs = 30

// namedStitch sets a named recipe's fitting settings over r, keeping its
// CKA samples: "cpu" is builtinStitch's (stitch.Defaults), "paper" the
// paper's (stitch.Paper: default init, Adam 1e-3 cosine, crop and flip, the
// whole training split, PaperStitchEpochs epochs, eval-mode frozen halves).
func namedStitch(r StitchRecipe, name string) (StitchRecipe, bool) {
	switch name {
	case StitchRecipeCPU:
		cka := r.CKASamples
		r = builtinStitch()
		r.CKASamples = cka
	case StitchRecipePaper:
		r.Init, r.LR, r.Epochs, r.Batch = "default", 1e-3, PaperStitchEpochs, 128
		r.FitSamples, r.FitAugment, r.FrozenBN, r.KernelSize = 0, true, "eval", 1
	default:
		return r, false
	}
	return r, true
}

// Load reads, decodes strictly and validates a spec file.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes and validates a spec; name is used in error messages. Unknown
// keys, wrong types and inconsistent references are errors naming the key and
// its line.
func Parse(name string, text []byte) (*Spec, error) {
	s := &Spec{Path: name, lines: indexLines(text)}
	md, err := toml.NewDecoder(bytes.NewReader(text)).Decode(s)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var msgs []string
		for _, k := range und {
			msgs = append(msgs, fmt.Sprintf("%s: unknown key %q", s.at(k...), k.String()))
		}
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	if err := s.resolve(); err != nil {
		return nil, err
	}
	if err := s.checkLimits(md); err != nil { // limits.go
		return nil, err
	}
	return s, nil
}

// at formats "file:line" for a key path (the line where it is written, when found).
func (s *Spec) at(key ...string) string {
	if l := s.lines.find(key); l > 0 {
		return fmt.Sprintf("%s:%d", s.Path, l)
	}
	return s.Path
}

// errAt is an error about the key path, naming it and its line.
func (s *Spec) errAt(key []string, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s", s.at(key...), strings.Join(key, "."), fmt.Sprintf(format, args...))
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// resolve applies defaults and checks every reference and value.
func (s *Spec) resolve() error {
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
	if s.ModelDefaults.Checkpoint != nil || s.ModelDefaults.ProbeOf != nil || s.ModelDefaults.SaveAt != nil {
		return s.errAt([]string{"model_defaults"}, "checkpoint, probe_of and save_at belong to one model, not to the defaults")
	}
	base, err := s.applyModel(builtinModel(), s.ModelDefaults, []string{"model_defaults"})
	if err != nil {
		return err
	}
	if len(s.ModelTable) == 0 {
		return s.errAt([]string{"models"}, "no models")
	}
	s.Models = map[string]*Model{}
	for _, name := range sortedKeys(s.ModelTable) {
		f := s.ModelTable[name]
		key := []string{"models", name}
		if !namePattern.MatchString(name) || strings.Contains(name, "@") {
			return s.errAt(key, "model names are letters, digits, '-', '_' and '.'")
		}
		m := &Model{Name: name, Label: name}
		if f.Label != nil {
			m.Label = *f.Label
		}
		switch {
		case f.Checkpoint != nil:
			if f.ProbeOf != nil || f.Epochs != nil || f.Steps != nil || f.Seed != nil || f.SaveAt != nil {
				return s.errAt(key, "a checkpoint model has no recipe (epochs, steps, seed, save_at, probe_of)")
			}
			if *f.Checkpoint == "" {
				return s.errAt(append(key, "checkpoint"), "empty path")
			}
			m.Kind, m.Checkpoint = KindCheckpoint, *f.Checkpoint
		case f.ProbeOf != nil:
			m.Kind, m.Base, m.ProbeEpochs = KindProbe, *f.ProbeOf, 30
			if f.ProbeSamples != nil {
				m.ProbeSamples = *f.ProbeSamples
			}
			if f.ProbeEpochs != nil {
				m.ProbeEpochs = *f.ProbeEpochs
			}
			if m.ProbeSamples < 0 || m.ProbeEpochs < 1 {
				return s.errAt(key, "probe_samples must be ≥ 0 and probe_epochs ≥ 1")
			}
		default:
			m.Kind = KindTrain
			if m.Recipe, err = s.applyModel(base, f, key); err != nil {
				return err
			}
			m.Recipe.SaveAt = f.SaveAt
			for _, e := range f.SaveAt {
				if e < 1 || e > m.Recipe.Epochs {
					return s.errAt(append(key, "save_at"), "epoch %d is outside 1..%d (the run's epochs)", e, m.Recipe.Epochs)
				}
			}
			if len(f.SaveAt) > 0 && m.Recipe.Objective != ObjectiveSupervised {
				return s.errAt(append(key, "save_at"), "only supervised runs keep snapshots")
			}
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

	sbase, err := s.applyStitch(builtinStitch(), []int64{0}, s.StitchDefaults, []string{"stitch_defaults"})
	if err != nil {
		return err
	}
	s.Pairs = map[string]*Pair{}
	for _, name := range sortedKeys(s.PairTable) {
		f := s.PairTable[name]
		key := []string{"pairs", name}
		if !namePattern.MatchString(name) {
			return s.errAt(key, "pair names are letters, digits, '-', '_' and '.'")
		}
		p := &Pair{Name: name, Bottom: f.Bottom, Top: f.Top, Cuts: f.Cuts, Label: f.Label}
		for _, side := range []string{"bottom", "top"} {
			ref := p.Bottom
			if side == "top" {
				ref = p.Top
			}
			if ref == "" {
				return s.errAt(append(key, side), "missing")
			}
			if _, err := s.modelRef(ref); err != nil {
				return s.errAt(append(key, side), "%v", err)
			}
		}
		if len(p.Cuts) == 0 {
			return s.errAt(append(key, "cuts"), "missing (\"all\", a comma list or an array of cut names)")
		}
		if p.Label == "" {
			p.Label = s.label(p.Bottom) + " → " + s.label(p.Top)
		}
		st, err := s.applyStitch(sbase.recipe, sbase.seeds, f.Stitch, append(key, "stitch"))
		if err != nil {
			return err
		}
		p.Recipe, p.Seeds, p.Description = st.recipe, st.seeds, st.description
		s.Pairs[name] = p
	}

	seen := map[string]bool{}
	for i := range s.Experiments {
		e := &s.Experiments[i]
		key := []string{"experiments", e.ID}
		if e.ID == "" {
			return fmt.Errorf("%s: experiments[%d]: missing id", s.Path, i)
		}
		if !namePattern.MatchString(e.ID) {
			return s.errAt(key, "ids are letters, digits, '-', '_' and '.'")
		}
		if seen[e.ID] {
			return s.errAt(key, "duplicate experiment id")
		}
		seen[e.ID] = true
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
		if e.Verdict != "" {
			r, err := ParseRule(e.Verdict)
			if err != nil {
				return s.errAt(append(key, "verdict"), "%v", err)
			}
			for _, p := range r.Pairs() {
				if _, ok := s.Pairs[p]; !ok {
					return s.errAt(append(key, "verdict"), "no pair %q", p)
				}
			}
			e.rule = r
		}
	}
	return nil
}

// label is the display label of a model reference.
func (s *Spec) label(ref string) string {
	name, epoch, _ := strings.Cut(ref, "@")
	m, ok := s.Models[name]
	if !ok {
		return ref
	}
	if epoch != "" {
		return m.Label + " @ epoch " + epoch
	}
	return m.Label
}

// modelRef resolves "NAME" or "NAME@EPOCH" (a save_at snapshot).
func (s *Spec) modelRef(ref string) (*Model, error) {
	name, epoch, snap := strings.Cut(ref, "@")
	m, ok := s.Models[name]
	if !ok {
		return nil, fmt.Errorf("no model %q", name)
	}
	if !snap {
		return m, nil
	}
	var e int
	if _, err := fmt.Sscanf(epoch, "%d", &e); err != nil || fmt.Sprint(e) != epoch {
		return nil, fmt.Errorf("%q: the part after @ must be an epoch number", ref)
	}
	if m.Kind != KindTrain || !slices.Contains(m.Recipe.SaveAt, e) {
		return nil, fmt.Errorf("%q: model %s keeps no snapshot at epoch %d (add it to its save_at)", ref, name, e)
	}
	if e == m.Recipe.Epochs {
		return m, nil // the finished run itself
	}
	return &Model{Name: ref, Kind: KindSnapshot, Label: s.label(ref), Base: name, SnapshotAt: e}, nil
}

var (
	archs      = []string{"resnet18", "resnet34", "resnet50", "resnet101"}
	stems      = []string{"cifar", "imagenet"}
	objectives = []string{ObjectiveSupervised, ObjectiveSimCLR}
	schedules  = []string{"cosine", "onecycle", "step", "constant"}
	labelTasks = []string{"original", "objects-vs-animals", "clothing-vs-accessories"}
)

// applyModel sets f's fields over r and checks the result.
func (s *Spec) applyModel(r Recipe, f ModelFields, key []string) (Recipe, error) {
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
	if f.BNStats != nil {
		r.BNStats = *f.BNStats
		if r.BNStats == "initial" {
			r.BNStats = ""
		}
	}
	r.Data = s.Data
	k := func(field string) []string { return append(slices.Clone(key), field) }
	switch {
	case !slices.Contains(archs, r.Arch):
		return r, s.errAt(k("arch"), "must be one of %s, got %q", strings.Join(archs, ", "), r.Arch)
	case !(r.Width > 0):
		return r, s.errAt(k("width"), "must be positive, got %g", r.Width)
	case !slices.Contains(stems, r.Stem):
		return r, s.errAt(k("stem"), "must be cifar or imagenet, got %q", r.Stem)
	case !slices.Contains(objectives, r.Objective):
		return r, s.errAt(k("objective"), "must be supervised or simclr, got %q", r.Objective)
	case r.TrainSamples < 0:
		return r, s.errAt(k("train_samples"), "must be ≥ 0, got %d", r.TrainSamples)
	case r.LabelNoise < 0 || r.LabelNoise > 1:
		return r, s.errAt(k("label_noise"), "must be in [0, 1], got %g", r.LabelNoise)
	case !slices.Contains(labelTasks, r.Labels):
		return r, s.errAt(k("labels"), "must be one of %s, got %q", strings.Join(labelTasks, ", "), r.Labels)
	case r.Objective == ObjectiveSimCLR && (r.LabelNoise != 0 || r.Labels != "original"):
		return r, s.errAt(k("objective"), "simclr uses no labels: label_noise and labels apply to supervised models")
	case r.Batch < 2:
		return r, s.errAt(k("batch"), "must be at least 2, got %d", r.Batch)
	case !(r.LR > 0):
		return r, s.errAt(k("lr"), "must be positive, got %g", r.LR)
	case r.WeightDecay < 0 || r.Momentum < 0:
		return r, s.errAt(key, "momentum and weight_decay must be ≥ 0")
	case !slices.Contains(schedules, r.Schedule):
		return r, s.errAt(k("schedule"), "must be one of %s, got %q", strings.Join(schedules, ", "), r.Schedule)
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
		split, ok := trainSplitSizes[s.Data]
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
func (s *Spec) applyStitch(r StitchRecipe, seeds []int64, f StitchFields, key []string) (resolvedStitch, error) {
	if f.Recipe != nil {
		var ok bool
		if r, ok = namedStitch(r, *f.Recipe); !ok {
			return resolvedStitch{recipe: r, seeds: seeds}, s.errAt(append(slices.Clone(key), "recipe"),
				"must be %q or %q, got %q", StitchRecipeCPU, StitchRecipePaper, *f.Recipe)
		}
	}
	set(&r.Init, f.Init)
	set(&r.Epochs, f.Epochs)
	set(&r.Batch, f.Batch)
	set(&r.LR, f.LR)
	set(&r.FitSamples, f.FitSamples)
	set(&r.FitAugment, f.FitAugment)
	set(&r.LSSamples, f.LSSamples)
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
	case r.KernelSize < 1 || r.KernelSize%2 == 0:
		return out, s.errAt(k("kernel_size"), "must be odd and positive, got %d", r.KernelSize)
	case r.FrozenBN != "eval" && r.FrozenBN != "train":
		return out, s.errAt(k("frozen_bn"), "must be eval or train, got %q", r.FrozenBN)
	case len(seeds) == 0:
		return out, s.errAt(k("seeds"), "no stitching seeds")
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

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lineIndex finds the line a dotted key is written on, by following table
// headers ([a.b], [[a]]) and "key =" lines. It knows TOML well enough for
// error messages, not to parse it.
type lineIndex struct {
	lines []string
}

func indexLines(text []byte) *lineIndex {
	return &lineIndex{lines: strings.Split(string(text), "\n")}
}

// find returns the 1-based line of key, or of its closest written parent, or 0.
func (ix *lineIndex) find(key []string) int {
	if ix == nil || len(key) == 0 {
		return 0
	}
	for n := len(key); n > 0; n-- {
		if l := ix.findExact(key[:n]); l > 0 {
			return l
		}
	}
	return 0
}

func (ix *lineIndex) findExact(key []string) int {
	var table []string
	arrayIDs := map[string]string{} // for [[experiments]]: the id of the current entry
	for i, raw := range ix.lines {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			inner := strings.Trim(line, "[] \t")
			if c := strings.Index(inner, "]"); c >= 0 {
				inner = inner[:c]
			}
			table = splitKey(inner)
			if strings.HasPrefix(line, "[[") {
				arrayIDs[strings.Join(table, ".")] = ""
			}
			if slices.Equal(table, key) {
				return i + 1
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		full := append(slices.Clone(table), splitKey(strings.TrimSpace(k))...)
		// Entries of [[experiments]] are named by their id.
		if len(table) == 1 && table[0] == "experiments" && len(full) == 2 && full[1] == "id" {
			arrayIDs["experiments"] = strings.Trim(strings.TrimSpace(line[strings.Index(line, "=")+1:]), `"' `)
			if len(key) == 2 && key[0] == "experiments" && key[1] == arrayIDs["experiments"] {
				return i + 1
			}
		}
		if len(table) >= 1 && table[0] == "experiments" && len(key) >= 3 && key[0] == "experiments" &&
			key[1] == arrayIDs["experiments"] && slices.Equal(full[1:], key[2:]) {
			return i + 1
		}
		if slices.Equal(full, key) {
			return i + 1
		}
	}
	return 0
}

// splitKey splits a dotted TOML key, honouring quotes.
func splitKey(k string) []string {
	var out []string
	var cur strings.Builder
	quote := rune(0)
	for _, r := range k {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote = r
		case quote == 0 && r == '.':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}
