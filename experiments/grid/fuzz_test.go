package grid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzCuts stands in for CutPoints in the fuzzers: it opens no file (a
// fuzzed checkpoint path could name a device that never ends).
func fuzzCuts(*ModelFile, *Plan) ([]string, error) {
	return []string{"stem", "layer1.0", "layer2.1", "layer4.1"}, nil
}

// FuzzParseSpec feeds the spec reader (TOML decoding, defaults, references,
// verdict rules, limits) arbitrary text. It must never panic; a spec it
// accepts must be consistent (every pair's models and every experiment's
// pairs exist, every verdict is parsed) and must plan.
func FuzzParseSpec(f *testing.F) {
	for _, p := range []string{"testdata/tiny.toml", "testdata/group.toml", "../paper-fmnist.toml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(minimalSpec))
	f.Add([]byte(minimalSpec + "[pairs.ab.stitch]\nkernel_size = 3\nrecipe = \"paper\"\nseeds = [1, 2]\n[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\nverdict = \"max(penalty, ab) <= 3 and last(cka, ab, stem) > 0.5 - mean(top_acc, ab)\"\n"))
	f.Add([]byte(minimalSpec + "[models.p]\nprobe_of = \"a\"\n[models.c]\ncheckpoint = \"embedded:x\"\n[models.s]\nsteps = 100\nsave_at = [1]\nobjective = \"simclr\"\n"))
	f.Add([]byte("[model_defaults]\nwidth = 1e300\n" + minimalSpec))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.toml", data, testVocabulary)
		if err != nil {
			if s != nil {
				t.Fatal("a spec and an error")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if len(s.Models) == 0 {
			t.Fatal("accepted a spec without models")
		}
		for name, p := range s.Pairs {
			for _, ref := range []string{p.Bottom, p.Top} {
				if _, err := s.modelRef(ref); err != nil {
					t.Fatalf("pair %s: %v", name, err)
				}
			}
			if len(p.Seeds) == 0 || len(p.Cuts) == 0 {
				t.Fatalf("pair %s has no seeds or no cuts", name)
			}
		}
		for _, e := range s.Experiments {
			for _, p := range e.Pairs {
				if s.Pairs[p] == nil {
					t.Fatalf("experiment %s: no pair %s", e.ID, p)
				}
			}
			if (e.Verdict != "") != (e.Rule() != nil) {
				t.Fatalf("experiment %s: verdict %q, rule %v", e.ID, e.Verdict, e.Rule())
			}
		}
		if _, err := NewPlan(s, filepath.Join(os.TempDir(), "fuzz-grid-unused"), fuzzCuts); err != nil {
			// A plan may refuse what only the cuts tell (a cut a model lacks).
			if !strings.Contains(err.Error(), "cut") {
				t.Fatalf("accepted spec does not plan: %v", err)
			}
		}
	})
}

// rulePoints is a fixed set of rows for every pair: two cuts, one with two
// stitching seeds, and a pair named "gap" whose rows are incomplete.
type rulePoints struct{}

func (rulePoints) Values(pair, metric string) ([]string, [][]float64, bool) {
	return []string{"stem", "layer1.0"}, [][]float64{{1, 2}, {3}}, pair != "gap"
}

// FuzzParseRule feeds the verdict-rule parser arbitrary text. It must never
// panic; a rule it accepts must evaluate without panicking, and writing it
// back (each comparison's sides and operator) must parse to the same rule.
func FuzzParseRule(f *testing.F) {
	for _, r := range []string{
		"max(penalty, a-b) <= 100 and last(penalty, random-b) > -100",
		"max(penalty, seeds-2-1+seeds-1-2) <= 3 and last(penalty, random-1) > 10",
		"mean(cka, a, stem+layer1.0) ≥ 0.5 - first(cka_unbiased, a+b) + 1e-3",
		"maxsd(stitched_acc, gap) < 1", "min(top_acc, x, layer9) > 0", "-1 < max(direct_acc, p)",
		"max(penalty, a) <= 3 and", "max(penalty a) < 3", "1 < 2", "max(,)", "(((", "≤≥<>=",
	} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := ParseRule(text)
		if err != nil {
			if r != nil {
				t.Fatal("a rule and an error")
			}
			return
		}
		if len(r.Conds) == 0 {
			t.Fatal("a rule without comparisons")
		}
		o := r.Evaluate(rulePoints{})
		if o.State != Holds && o.State != Fails && o.State != NotYetRun {
			t.Fatalf("state %q", o.State)
		}
		written := writeRule(r)
		again, err := ParseRule(written)
		if err != nil {
			t.Fatalf("%q written back as %q does not parse: %v", text, written, err)
		}
		if w2 := writeRule(again); w2 != written {
			t.Fatalf("%q written back as %q, then as %q", text, written, w2)
		}
	})
}

// writeRule writes a parsed rule back as text.
func writeRule(r *Rule) string {
	parts := make([]string, len(r.Conds))
	for i, c := range r.Conds {
		parts[i] = c.Left.String() + " " + c.Op + " " + c.Right.String()
	}
	return strings.Join(parts, " and ")
}
