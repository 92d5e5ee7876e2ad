package grid

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const minimalSpec = `
title = "t"
[models.a]
seed = 1
[models.b]
seed = 2
[pairs.ab]
bottom = "a"
top = "b"
cuts = "stem"
`

// TestSpecErrorsNameKeyAndLine checks that bad specs are refused with an
// error naming the key at fault and the line it is on.
func TestSpecErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown top-level key", "titel = \"x\"\n" + minimalSpec, []string{"spec.toml:1", `"titel"`}},
		{"unknown model key", strings.Replace(minimalSpec, "seed = 2", "seed = 2\nepochz = 3", 1), []string{"spec.toml:7", `"models.b.epochz"`}},
		{"unknown stitch key", minimalSpec + "[pairs.ab.stitch]\nkernel = 3\n", []string{"spec.toml:12", `"pairs.ab.stitch.kernel"`}},
		{"unknown experiment key", minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\nfigur = false\n", []string{"spec.toml:14", `"experiments.figur"`}},
		{"wrong type", strings.Replace(minimalSpec, "seed = 1", `seed = "one"`, 1), []string{"spec.toml", "seed"}},
		{"syntax error", minimalSpec + "[pairs.ab\n", []string{"spec.toml:12", "table name"}},
		{"unknown bottom", strings.Replace(minimalSpec, `bottom = "a"`, `bottom = "z"`, 1), []string{"spec.toml:8", "pairs.ab.bottom", `no model "z"`}},
		{"bad width", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nwidth = -1", 1), []string{"spec.toml:5", "models.a.width"}},
		{"unknown schedule", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nschedule = \"linear\"", 1), []string{"spec.toml:5", "models.a.schedule", "cosine"}},
		{"unknown arch", strings.Replace(minimalSpec, "seed = 1", "seed = 1\narch = \"vgg16\"", 1), []string{"spec.toml:5", "models.a.arch", "resnet50"}},
		{"bad snapshot", strings.Replace(minimalSpec, `bottom = "a"`, `bottom = "a@3"`, 1), []string{"pairs.ab.bottom", "save_at"}},
		{"save_at past the end", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 2\nsave_at = [5]", 1), []string{"spec.toml:6", "models.a.save_at", "epoch 5"}},
		{"even kernel", minimalSpec + "[pairs.ab.stitch]\nkernel_size = 2\n", []string{"spec.toml:12", "pairs.ab.stitch.kernel_size"}},
		{"missing cuts", strings.Replace(minimalSpec, `cuts = "stem"`, "", 1), []string{"pairs.ab.cuts", "missing"}},
		{"unknown pair in experiment", minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"zz\"]\n", []string{"spec.toml:13", "experiments.e.pairs", `"zz"`}},
		{"bad rule", minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\nverdict = \"max(penalty ab) < 3\"\n", []string{"spec.toml:14", "experiments.e.verdict", `","`}},
		{"rule on unknown pair", minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\nverdict = \"max(penalty, xy) < 3\"\n", []string{"experiments.e.verdict", `"xy"`}},
		{"steps and epochs", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nepochs = 2\nsteps = 100", 1), []string{"models.a", "epochs or steps"}},
		{"labels on simclr", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nobjective = \"simclr\"\nlabel_noise = 0.5", 1), []string{"models.a.objective", "no labels"}},
	}
	for _, c := range cases {
		_, err := Parse("spec.toml", []byte(c.text), testVocabulary)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", c.name, err, w)
			}
		}
	}
}

// TestSpecDefaultsAndSteps checks that defaults apply below a model's own
// fields and that a step budget becomes whole epochs.
func TestSpecDefaultsAndSteps(t *testing.T) {
	text := `
[model_defaults]
batch = 100
lr = 0.1
[stitch_defaults]
seeds = [4, 5]
lr = 0.02
[models.a]
train_samples = 1000
steps = 25
[models.b]
lr = 0.3
epochs = 0
[pairs.ab]
bottom = "a"
top = "b"
cuts = ["stem", "pool"]
[pairs.ab.stitch]
kernel_size = 3
`
	s, err := Parse("s.toml", []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.Models["a"].Recipe, s.Models["b"].Recipe
	if a.Epochs != 3 || a.Steps != 25 || a.LR != 0.1 || a.Batch != 100 || a.Arch != "resnet18" {
		t.Errorf("model a resolved to %+v; want 3 epochs (25 steps of 10 per epoch), lr 0.1, batch 100", a)
	}
	if b.LR != 0.3 || b.Epochs != 0 {
		t.Errorf("model b resolved to %+v", b)
	}
	p := s.Pairs["ab"]
	if p.Recipe.KernelSize != 3 || p.Recipe.LR != 0.02 || len(p.Seeds) != 2 || p.Recipe.Init != "least-squares" || p.Label != "a → b" {
		t.Errorf("pair resolved to %+v", p)
	}
}

// fakePoints serves fixed values to rules.
type fakePoints map[string][][]float64

func (f fakePoints) Values(pair, metric string) ([]string, [][]float64, bool) {
	v, ok := f[pair]
	cuts := []string{"stem", "layer1.0", "pool"}[:len(v)]
	return cuts, v, ok
}

// TestRules checks parsing and evaluating verdict rules.
func TestRules(t *testing.T) {
	pts := fakePoints{
		"seeds":  {{1, 2, 3}, {0.5}, {2.5}},
		"random": {{0}, {10}, {40}},
	}
	cases := []struct {
		rule, want string
	}{
		{"max(penalty, seeds) <= 3", Holds}, // the stem's mean is 2
		{"max(penalty, seeds) <= 2.4", Fails},
		{"min(penalty, seeds) >= 0.5", Holds},
		{"last(penalty, random) > 33 and first(penalty, random) < 1", Holds},
		{"last(penalty, seeds) < last(penalty, random)", Holds},
		{"mean(penalty, seeds+random) ≥ 9.1", Holds}, // (2+0.5+2.5+0+10+40)/6 = 9.17
		{"maxsd(penalty, seeds) < 1", Fails},         // sd of 1,2,3 is 1
		{"max(penalty, random, stem+layer1.0) <= 10", Holds},
		{"max(penalty, missing) <= 10", NotYetRun},
		{"mean(penalty, seeds) - mean(penalty, random) < -11", Holds}, // 5/3 - 50/3 = -15
		{"max(penalty, random) - 39 > 1.5", Fails},
		{"max(penalty, random) - 39 + 1 > 1.5", Holds},
	}
	for _, c := range cases {
		r, err := ParseRule(c.rule)
		if err != nil {
			t.Errorf("%s: %v", c.rule, err)
			continue
		}
		if got := r.Evaluate(pts); got.State != c.want {
			t.Errorf("%s: %s (%s), want %s", c.rule, got.State, got.Detail, c.want)
		}
	}
	for _, bad := range []string{"", "max(penalty, a)", "3 < 4", "max(loss, a) < 1", "median(penalty, a) < 1", "max(penalty, a) < 1 or max(penalty, b) < 2", "max(penalty, a+) < 1", "max(penalty, a) - < 1", "1 + 2 < 3"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("rule %q parsed", bad)
		}
	}
}

// TestShards checks that shards partition any set of ids.
func TestShards(t *testing.T) {
	ids := []string{"train/a-1", "train/b-2", "stitch/a~b/stem/s0-x", "stitch/a~b/pool/s0-y", "stitch/r~b/stem/s1-z"}
	for n := 1; n <= 4; n++ {
		for _, id := range ids {
			owners := 0
			for i := 0; i < n; i++ {
				if (Shard{i, n}).Owns(id) {
					owners++
				}
			}
			if owners != 1 {
				t.Errorf("%s has %d owners among %d shards", id, owners, n)
			}
		}
	}
	for _, bad := range []string{"1/1", "2/1", "a/b", "-1/2", "0/0", "1/2/3"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("shard %q accepted", bad)
		}
	}
}

// TestProbeUnitFollowsBaseContent checks that a linear probe of a checkpoint
// is a new unit when the checkpoint's content changes under the same name.
func TestProbeUnitFollowsBaseContent(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "backbone.pt")
	text := minimalSpec + "[models.bb]\ncheckpoint = " + strconv.Quote(ck) + "\n[models.probe]\nprobe_of = \"bb\"\n"
	s, err := Parse("s.toml", []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	cuts := func(*ModelFile, *Plan) ([]string, error) { return []string{"stem"}, nil }
	unitFor := func(content string) string {
		if err := os.WriteFile(ck, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := NewPlan(s, t.TempDir(), cuts)
		if err != nil {
			t.Fatal(err)
		}
		return p.Files["probe"].Unit
	}
	a, b, a2 := unitFor("old weights"), unitFor("new weights"), unitFor("old weights")
	if a == b {
		t.Errorf("probe unit %s did not change with its backbone's content", a)
	}
	if a != a2 {
		t.Errorf("probe unit not stable for the same content: %s then %s", a, a2)
	}
}
