package grid

import (
	"encoding/json"
	"os"
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
	s, err := Parse("s.toml", []byte(text))
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
	_, err = Parse("s.toml", []byte(minimalSpec+"[pairs.ab.stitch]\nrecipe = \"papr\"\n"))
	if err == nil || !strings.Contains(err.Error(), "s.toml:12") || !strings.Contains(err.Error(), "pairs.ab.stitch.recipe") {
		t.Errorf("unknown recipe: %v, want an error naming pairs.ab.stitch.recipe at line 12", err)
	}
}

// TestNamedRecipesMatchStitch checks that the spec's named recipes are the
// stitching package's: the grid cannot call it while parsing.
func TestNamedRecipesMatchStitch(t *testing.T) {
	for _, c := range []struct {
		name string
		want stitch.Config
	}{{StitchRecipeCPU, stitch.Defaults()}, {StitchRecipePaper, stitch.Paper()}} {
		r, ok := namedStitch(builtinStitch(), c.name)
		w := c.want
		if !ok || r.Init != w.Init || r.Epochs != w.Epochs || r.Batch != w.BatchSize || r.LR != w.LR || r.FitSamples != w.FitSamples ||
			r.FitAugment != w.FitAugment || r.KernelSize != w.KernelSize || r.FrozenBN != w.FrozenBN || r.CKASamples != w.CKASamples ||
			(w.Init == stitch.InitLeastSquares && r.LSSamples != w.LSSamples) {
			t.Errorf("recipe %s: grid %+v, stitch %+v", c.name, r, w)
		}
	}
	if PaperStitchEpochs != stitch.PaperEpochs {
		t.Errorf("paper epochs: grid %d, stitch %d", PaperStitchEpochs, stitch.PaperEpochs)
	}
}

// TestBNStatsField checks a model's bn_stats: "data" on an untrained model,
// refused on a trained one or with another value, and absent from the
// identity of models without it.
func TestBNStatsField(t *testing.T) {
	s, err := Parse("s.toml", []byte(strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 0\nbn_stats = \"data\"", 1)))
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
	init, err := Parse("s.toml", []byte(strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 0\nbn_stats = \"initial\"", 1)))
	if err != nil || init.Models["a"].Recipe.BNStats != "" {
		t.Errorf("bn_stats initial: %v, %+v; want the default", err, init.Models["a"].Recipe)
	}
	for name, text := range map[string]string{
		"trained": strings.Replace(minimalSpec, "seed = 1", "seed = 1\nbn_stats = \"data\"", 1),
		"unknown": strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 0\nbn_stats = \"batch\"", 1),
	} {
		_, err := Parse("s.toml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), "models.a.bn_stats") || !strings.Contains(err.Error(), "s.toml:") {
			t.Errorf("%s bn_stats: %v, want an error naming models.a.bn_stats and its line", name, err)
		}
	}
}

// TestCommittedRowsStayUnits checks that every row committed for the
// Fashion-MNIST spec is still one of its units: a change to the spec or to
// how units are identified that would orphan (and so recompute) finished
// work fails here.
func TestCommittedRowsStayUnits(t *testing.T) {
	const dir = "../runs/paper-fmnist"
	if _, err := os.Stat(RowsDir(dir)); err != nil {
		t.Skip("no committed rows")
	}
	s, err := Load("../paper-fmnist.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s, dir, CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if recs.Len() == 0 {
		t.Skip("no committed rows")
	}
	for _, r := range recs.All() {
		if _, ok := p.Unit(r.Unit); !ok {
			t.Errorf("committed row %s is no longer a unit of the spec", r.Unit)
		}
	}
}
