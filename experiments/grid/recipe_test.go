package grid

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/experiments/stitch"
)

// TestStitchRecipeField checks a stitch table's recipe: "paper" gives the
// paper's setting, the table's other fields override it, the defaults' CKA
// samples and seeds are kept, and an unknown name is refused at its line.
func TestStitchRecipeField(t *testing.T) {
	text := minimalSpec + `
[stitch_defaults]
cka_samples = 700
seeds = [3]
[pairs.paper]
bottom = "a"
top = "b"
cuts = "stem"
stitch = { recipe = "paper" }
[pairs.paper-cpu]
bottom = "a"
top = "b"
cuts = "stem"
[pairs.paper-cpu.stitch]
recipe = "paper"
epochs = 3
fit_samples = 6000
[pairs.aug]
bottom = "a"
top = "b"
cuts = "stem"
stitch = { fit_augment = true }
`
	s, err := Parse("s.toml", []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Pairs["paper"].Recipe
	if p.Init != "default" || p.LR != 1e-3 || !p.FitAugment || p.FitSamples != 0 || p.Epochs != PaperStitchEpochs ||
		p.FrozenBN != "eval" || p.CKASamples != 700 || s.Pairs["paper"].Seeds[0] != 3 {
		t.Errorf("recipe = \"paper\" resolved to %+v (seeds %v)", p, s.Pairs["paper"].Seeds)
	}
	c := s.Pairs["paper-cpu"].Recipe
	if c.Epochs != 3 || c.FitSamples != 6000 || c.Init != "default" || !c.FitAugment || c.LR != 1e-3 {
		t.Errorf("paper recipe with overrides resolved to %+v", c)
	}
	if a := s.Pairs["aug"].Recipe; !a.FitAugment || a.Init != "least-squares" {
		t.Errorf("fit_augment alone resolved to %+v", a)
	}
	if a, ab := s.Pairs["aug"].Recipe, s.Pairs["ab"].Recipe; a.FitAugment == ab.FitAugment {
		t.Error("fit_augment did not change the recipe")
	}
	_, err = Parse("s.toml", []byte(minimalSpec+"[pairs.ab.stitch]\nrecipe = \"papr\"\n"), testVocabulary)
	if err == nil || !strings.Contains(err.Error(), "s.toml:12") || !strings.Contains(err.Error(), "pairs.ab.stitch.recipe") {
		t.Errorf("unknown recipe: %v, want an error naming pairs.ab.stitch.recipe at line 12", err)
	}
}

// TestNamedRecipesMatchStitch checks that the spec's named recipes are the
// stitching package's (the grid cannot call it while parsing), that a spec
// without a recipe gets "cpu", and that a recipe without validation keeps
// no validation settings (so it keeps the unit ids it had before they were).
func TestNamedRecipesMatchStitch(t *testing.T) {
	for _, name := range StitchRecipeNames() {
		w, err := stitch.Recipe(name)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := namedStitch(builtinStitch(), name)
		if !ok || r.Init != w.Init || r.Epochs != w.Epochs || r.Batch != w.BatchSize || r.LR != w.LR || r.FitSamples != w.FitSamples ||
			r.FitAugment != w.FitAugment || r.KernelSize != w.KernelSize || r.FrozenBN != w.FrozenBN || r.CKASamples != w.CKASamples ||
			r.LSSamples != w.LSSamples || r.ValSamples != w.ValSamples || r.CheckEvery != w.CheckEvery || r.Patience != w.Patience ||
			r.LRCuts != w.LRCuts {
			t.Errorf("recipe %s: grid %+v, stitch %+v", name, r, w)
		}
	}
	if PaperStitchEpochs != stitch.PaperEpochs {
		t.Errorf("paper epochs: grid %d, stitch %d", PaperStitchEpochs, stitch.PaperEpochs)
	}
	s, err := Parse("s.toml", []byte(minimalSpec+`
[pairs.quick]
bottom = "a"
top = "b"
cuts = "stem"
stitch = { recipe = "quick" }
[pairs.noval]
bottom = "a"
top = "b"
cuts = "stem"
stitch = { val_samples = 0 }
[pairs.val]
bottom = "a"
top = "b"
cuts = "stem"
stitch = { recipe = "quick", val_samples = 1000, patience = 3 }
`), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Pairs["ab"].Recipe; got != stitchRecipes[StitchRecipeCPU] {
		t.Errorf("a spec without a recipe: %+v, want cpu", got)
	}
	q, _ := json.Marshal(s.Pairs["quick"].Recipe)
	if want := `{"init":"least-squares","epochs":1,"batch":128,"lr":0.01,"fit_samples":6000,"ls_samples":2000,"kernel_size":1,"frozen_bn":"eval","cka_samples":500,"seed":0}`; string(q) != want {
		t.Errorf("quick recipe's identity\n got  %s\n want %s (the old builtin's)", q, want)
	}
	if r := s.Pairs["noval"].Recipe; r.ValSamples != 0 || r.CheckEvery != 0 || r.Patience != 0 || r.LRCuts != 0 {
		t.Errorf("val_samples = 0 kept validation settings: %+v", r)
	}
	if r := s.Pairs["val"].Recipe; r.ValSamples != 1000 || r.Patience != 3 || r.Epochs != 1 || r.FitSamples != 6000 {
		t.Errorf("quick with validation resolved to %+v", r)
	}
	for field, text := range map[string]string{"val_samples": "val_samples = -1", "check_every": "check_every = -5",
		"patience": "patience = -1", "lr_cuts": "lr_cuts = -2"} {
		_, err := Parse("s.toml", []byte(minimalSpec+"[pairs.ab.stitch]\n"+text+"\n"), testVocabulary)
		if err == nil || !strings.Contains(err.Error(), "s.toml:12") || !strings.Contains(err.Error(), "pairs.ab.stitch."+field) {
			t.Errorf("%s: %v, want an error naming pairs.ab.stitch.%s at line 12", text, err, field)
		}
	}
}

// TestBNStatsField checks a model's bn_stats: "data" on an untrained model,
// refused on a trained one or with another value, and absent from the
// identity of models without it.
func TestBNStatsField(t *testing.T) {
	s, err := Parse("s.toml", []byte(strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 0\nbn_stats = \"data\"", 1)), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Models["a"].Recipe; r.BNStats != "data" || r.Epochs != 0 {
		t.Errorf("bn_stats data resolved to %+v", r)
	}
	js, _ := json.Marshal(s.Models["b"].Recipe)
	if strings.Contains(string(js), "bn_stats") {
		t.Errorf("a model without bn_stats has it in its identity: %s", js)
	}
	init, err := Parse("s.toml", []byte(strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 0\nbn_stats = \"initial\"", 1)), testVocabulary)
	if err != nil || init.Models["a"].Recipe.BNStats != "" {
		t.Errorf("bn_stats initial: %v, %+v; want the default", err, init.Models["a"].Recipe)
	}
	for name, text := range map[string]string{
		"trained": strings.Replace(minimalSpec, "seed = 1", "seed = 1\nbn_stats = \"data\"", 1),
		"unknown": strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 0\nbn_stats = \"batch\"", 1),
	} {
		_, err := Parse("s.toml", []byte(text), testVocabulary)
		if err == nil || !strings.Contains(err.Error(), "models.a.bn_stats") || !strings.Contains(err.Error(), "s.toml:") {
			t.Errorf("%s bn_stats: %v, want an error naming models.a.bn_stats and its line", name, err)
		}
	}
}

// TestReportCKATables writes records by hand (one with both CKA estimators,
// one with only the biased one, as rows made before the unbiased estimator
// was recorded) and checks the CKA experiment's tables: the unbiased one
// first, a dash where a done row lacks it, the biased one beside it, and
// the paper recipe's augmentation and a pair's description in the recipes.
func TestReportCKATables(t *testing.T) {
	text := strings.Replace(minimalSpec, `cuts = "stem"`, `cuts = "stem,layer1.0"`, 1) + `
[pairs.paper]
bottom = "a"
top = "b"
cuts = "stem"
[pairs.paper.stitch]
recipe = "paper"
epochs = 2
description = "CPU-sized: 2 epochs"
[[experiments]]
id = "cka"
pairs = ["ab"]
y = "cka_unbiased"
figure = false
cka = true
verdict = "max(cka_unbiased, ab, stem) > 0.5"
reading = "the stem is a linear image of the pixels | in both nets"
`
	s, err := Parse("s.toml", []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cuts := func(*ModelFile, *Plan) ([]string, error) { return []string{"stem", "layer1.0", "pool"}, nil }
	p, err := NewPlan(s, dir, cuts)
	if err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(dir, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	for _, u := range p.PairUnits["ab"] {
		st := &StitchResult{Bottom: "a", Top: "b", Cut: u.Cut, Recipe: *u.Recipe}
		st.TopAcc, st.StitchedAcc, st.Penalty, st.CKA = 90, 89, 1, f(0.812)
		if u.Cut == "stem" {
			st.CKAUnbiased = f(0.734)
		}
		if err := w.Append(Record{Unit: u.ID, Kind: UnitStitch, Stitch: st}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	res, err := Report(p, filepath.Join(dir, "report"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	unb := strings.Index(out, "unbiased linear CKA per cut")
	bia := strings.Index(out, "biased linear CKA per cut (the same")
	if unb < 0 || bia < 0 || unb > bia {
		t.Fatalf("report lacks the unbiased table before the biased one:\n%s", out)
	}
	if !strings.Contains(out[unb:bia], "| 0.734 | – |") {
		t.Errorf("unbiased table: want 0.734 at stem and a dash at layer1.0:\n%s", out[unb:bia])
	}
	if !strings.Contains(out[bia:], "| 0.812 | 0.812 |") {
		t.Errorf("biased table: want 0.812 at both cuts:\n%s", out[bia:])
	}
	if res.Verdicts["cka"] != Holds {
		t.Errorf("verdict on cka_unbiased: %s, want %s", res.Verdicts["cka"], Holds)
	}
	for _, want := range []string{"Read the unbiased CKA", "cropped and flipped afresh each epoch", "frozen BN eval — CPU-sized: 2 epochs", "| 0.812 | 0.734 |",
		"| **holds** | the stem is a linear image of the pixels \\| in both nets |", "**Reading:** the stem is a linear image of the pixels \\| in both nets"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
