package grid

import (
	"fmt"
	"slices"
	"strings"
)

// specFile is a spec file as written: its top-level settings and
// [[experiments]] (decoded straight into the Spec, whose resolution fills
// in their defaults) and the model and pair tables, which the resolver
// turns into the Spec's Models and Pairs.
type specFile struct {
	*Spec
	KeyByContent   *bool                 `toml:"key_by_content"`
	ModelDefaults  modelTable            `toml:"model_defaults"`
	StitchDefaults stitchTable           `toml:"stitch_defaults"`
	ModelTables    map[string]modelTable `toml:"models"`
	PairTables     map[string]pairTable  `toml:"pairs"`
}

// modelTable is one [models.NAME] table (or [model_defaults]) as written;
// unset fields take the defaults.
type modelTable struct {
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
	// Labels is LabelsOriginal or one of the Vocabulary's Tasks.
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
	// Mean and Std are the model's input normalisation, one value per
	// channel (a recipe's or a checkpoint's; not a probe's).
	Mean []float64 `toml:"mean"`
	Std  []float64 `toml:"std"`
}

// stitchTable is a stitching recipe as written ([stitch_defaults] or a
// pair's stitch table); unset fields take the defaults.
type stitchTable struct {
	// Recipe names the settings the others override: "cpu" (the converged
	// CPU default, stitch.Defaults), "quick" (one unvalidated epoch,
	// stitch.Quick) or "paper" (the paper's, stitch.Paper).
	Recipe *string `toml:"recipe"`
	// Init is "least-squares" or "default".
	Init        *string  `toml:"init"`
	Epochs      *int     `toml:"epochs"`
	Batch       *int     `toml:"batch"`
	LR          *float64 `toml:"lr"`
	FitSamples  *int     `toml:"fit_samples"`
	FitAugment  *bool    `toml:"fit_augment"`
	LSSamples   *int     `toml:"ls_samples"`
	ValSamples  *int     `toml:"val_samples"`
	CheckEvery  *int     `toml:"check_every"`
	Patience    *int     `toml:"patience"`
	LRCuts      *int     `toml:"lr_cuts"`
	KernelSize  *int64   `toml:"kernel_size"`
	FrozenBN    *string  `toml:"frozen_bn"`
	CKASamples  *int     `toml:"cka_samples"`
	Seeds       []int64  `toml:"seeds"`
	Description *string  `toml:"description"`
}

// pairTable is one [pairs.NAME] table as written.
type pairTable struct {
	Bottom string `toml:"bottom"`
	Top    string `toml:"top"`
	// Cuts is "all", a comma list, or an array of cut names.
	Cuts   cutList     `toml:"cuts"`
	Label  string      `toml:"label"`
	Stitch stitchTable `toml:"stitch"`
}

// cutList is a pair's cuts: "all", "stem,layer2.1", or ["stem", "layer2.1"].
type cutList []string

// UnmarshalTOML accepts a string (comma list or "all") or an array of strings.
func (c *cutList) UnmarshalTOML(v any) error {
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
