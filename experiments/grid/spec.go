// Package grid runs a whole set of stitching experiments from one declarative
// spec file: it plans every unit of work (train a model; stitch one pair at
// one cut with one stitching seed), runs what is missing (resuming after an
// interruption with no result lost or duplicated), and regenerates a report
// with every figure, table and verdict from the recorded rows.
//
// # Spec files (TOML; unknown keys are errors naming the key and its line)
//
// Top level: title, description, data (fashion-mnist, mnist, cifar10, ...),
// data_dir, image_size (the side of a folder: data set's images), channels
// (repeat a grey data set's channel, e.g. 3 for colour models), test_samples (a class-balanced test subset, the same for every
// unit; 0: all), out (checkpoints and rows), report (README.md and figures),
// budget (in words), control (true: a self-stitch control unit for every
// stitch unit, see below), key_by_content (default true: an existing checkpoint
// is known by the SHA-256 of its bytes, so replacing the file re-runs its
// units; false: by its path as written, for specs whose rows were made
// before, which record no digests to check).
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
// A checkpoint or a recipe may give mean and std: the input normalisation,
// one value per channel, for pixels in [0, 1]. A recipe's model is trained
// and scored with it (its checkpoint records it); a checkpoint's is fed
// with it when stitched and probed, over what its metadata records. A probe
// is fed as its backbone is.
//
// [stitch_defaults] and [pairs.NAME]: bottom, top (model references), cuts
// ("all", "stem,layer2.1" or an array), label, and a stitch table overriding
// the stitching recipe: recipe ("cpu", "quick" or "paper": start from that
// named recipe's settings, which the table's other fields then override;
// without one, [stitch_defaults] start from "cpu"), init (least-squares or
// default), epochs (the cap of a validated fit), batch, lr, fit_samples,
// fit_augment (crop and flip the fitting images), ls_samples, val_samples
// (held-out training images a validated fit converges on; 0: none, the end of
// a cosine decay is kept), check_every, patience, lr_cuts, kernel_size,
// frozen_bn (eval or train), cka_samples, seeds (one unit per stitching seed
// and cut), description (shown in the report). The named recipes are package
// stitch's: "cpu" the converged fit (stitch.Defaults), "quick" the one-epoch
// fit of earlier versions (stitch.Quick), "paper" the paper's (stitch.Paper).
//
// [[experiments]]: id, title, paper (the paper's reading; without it the
// report says nothing of the paper), pairs (the series), y (penalty,
// stitched_acc, direct_acc, cka, cka_unbiased, top_acc, self, excess; x is
// the cut), finding (the rule in words), verdict (a Rule, see ParseRule), cka
// (add a CKA table), figure (false: table only), note, reading.
//
// # Self-stitch controls
//
// With control = true the plan adds, for every stitch unit (bottom B, top T,
// cut C, recipe R, seed s), the unit (T, T, C, R, s) unless the plan has it:
// the top stitched onto itself, a unit of no pair (it is in no figure) that
// is run and recorded like the others. Its penalty is what the stitching
// recipe costs the top by itself; the report shows it per cut beside every
// pair's penalty (metric self) with the pair's excess over it (metric
// excess = penalty − self, per stitching seed), and rules may read both. A
// spec whose rules or figures read self or excess must set control = true.
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
	// ImageSize is the side of a folder: data set's images (0: its default).
	ImageSize int `toml:"image_size"`
	// Channels > 0 repeats a grey data set's channel that many times, for
	// models that take colour images (0: the data set's own channels).
	Channels int `toml:"channels"`
	// TestSamples > 0 scores stitched models on a class-balanced subset of the
	// test split (0: all of it).
	TestSamples int `toml:"test_samples"`
	// Out is the directory of checkpoints and rows (relative paths are relative
	// to the working directory); the command line may override it.
	Out string `toml:"out"`
	// Report is the directory the report (README.md and figures) goes to.
	Report string `toml:"report"`
	// Budget is the wall time the spec is sized for, in words (shown in the report).
	Budget string `toml:"budget"`
	// Control adds a self-stitch control for every stitch unit: its top
	// stitched onto itself at the same cut with the same recipe and seed
	// (a unit of no pair), so that the report can show each top's
	// self-stitch penalty and the excess of a pair's penalty over it.
	Control bool `toml:"control"`
	// KeyByContent keys an existing checkpoint by the SHA-256 of its bytes
	// (an embedded: name by the embedded bytes), so that a replaced file
	// makes new units; false keys it by the path as written, as specs run
	// before content keys were (spec key key_by_content, default true).
	KeyByContent bool `toml:"-"`

	// Experiments are the [[experiments]] entries, in the file's order.
	Experiments []Experiment `toml:"experiments"`

	// Models and Pairs are the resolved [models] and [pairs] tables
	// (defaults applied, values and references checked), by name.
	Models map[string]*Model `toml:"-"`
	Pairs  map[string]*Pair  `toml:"-"`

	lines *lineIndex
}

// Experiment is one [[experiments]] entry: a figure and a table of some pairs,
// the paper's finding and the rule that decides whether it holds here.
type Experiment struct {
	ID    string `toml:"id"`
	Title string `toml:"title"`
	// Paper is the paper's reading or number, in words (empty: the report
	// says nothing of the paper for this experiment).
	Paper string `toml:"paper"`
	// Pairs are the series, in legend order.
	Pairs []string `toml:"pairs"`
	// Y is what the figure plots against the cut: penalty (default),
	// stitched_acc, direct_acc, cka (biased linear CKA), cka_unbiased
	// (debiased), top_acc, or (with control = true) self or excess.
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
	// Mean and Std are a checkpoint's given input normalisation (nil: what
	// its metadata records); a trained model's are its Recipe's.
	Mean, Std []float64
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
	// ImageSize and Channels are the spec's (0 and omitted when not set);
	// Mean and Std the given input normalisation (nil: the data set's).
	ImageSize int       `json:"image_size,omitempty"`
	Channels  int       `json:"channels,omitempty"`
	Mean      []float64 `json:"mean,omitempty"`
	Std       []float64 `json:"std,omitempty"`
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
	FitAugment bool `json:"fit_augment,omitempty"`
	LSSamples  int  `json:"ls_samples"`
	// ValSamples > 0 makes the fit a validated one (stitch.Config): that many
	// class-balanced training images are held out, the layer is scored on
	// them at the start and every CheckEvery steps, the best is kept, the
	// rate is cut tenfold after Patience checks without improvement and the
	// fit stops at the plateau after LRCuts cuts (or at its cap of Epochs).
	// All four are 0 without validation and then omitted, so that recipes
	// without them keep their unit ids.
	ValSamples int    `json:"val_samples,omitempty"`
	CheckEvery int    `json:"check_every,omitempty"`
	Patience   int    `json:"patience,omitempty"`
	LRCuts     int    `json:"lr_cuts,omitempty"`
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

// Load reads, decodes strictly and validates a spec file; v is what its
// models may name (see Vocabulary).
func Load(path string, v Vocabulary) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return Parse(path, b, v)
}

// Parse decodes and validates a spec; name is used in error messages. Unknown
// keys, wrong types, names outside v and inconsistent references are errors
// naming the key and its line.
func Parse(name string, text []byte, v Vocabulary) (*Spec, error) {
	s := &Spec{Path: name, lines: indexLines(text)}
	f := &specFile{Spec: s}
	md, err := toml.NewDecoder(bytes.NewReader(text)).Decode(f)
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
	if err := (&resolver{s: s, f: f, vocab: v}).resolve(); err != nil {
		return nil, err
	}
	if err := s.checkLimits(md, v.Limits); err != nil { // limits.go
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

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
