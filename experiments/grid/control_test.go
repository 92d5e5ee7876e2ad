package grid

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// controlSpec stitches a into b at two cuts with two seeds, and b into
// itself at the stem (a pair that is its own control), with controls on.
const controlSpec = `
title = "t"
control = true
[stitch_defaults]
recipe = "quick"
seeds = [0, 1]
[models.a]
seed = 1
[models.b]
seed = 2
[pairs.ab]
bottom = "a"
top = "b"
cuts = "stem,layer1.0"
[pairs.bb]
bottom = "b"
top = "b"
cuts = "stem"
[[experiments]]
id = "e"
pairs = ["ab"]
verdict = "max(excess, ab) <= 2.6"
`

func controlPlan(t *testing.T, text, dir string) *Plan {
	t.Helper()
	s, err := Parse("s.toml", []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s, dir, func(*ModelFile, *Plan) ([]string, error) { return resnet18Cuts, nil })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestControlUnits checks that control = true adds the top's self-stitch
// for every stitch unit that has none (a unit of no pair, needing only the
// top), reuses a pair's own b → b unit, and that a run runs them.
func TestControlUnits(t *testing.T) {
	p := controlPlan(t, controlSpec, t.TempDir())
	var controls []*Unit
	for _, u := range p.Units {
		if u.Control {
			controls = append(controls, u)
		}
	}
	// ab: 2 cuts × 2 seeds; bb: 1 cut × 2 seeds, its own controls. The
	// stem controls of ab are bb's units: 2 new controls (layer1.0 × 2 seeds).
	if len(controls) != 2 {
		t.Fatalf("%d control units, want 2", len(controls))
	}
	for _, c := range controls {
		if c.Bottom != "b" || c.Top != "b" || c.Cut != "layer1.0" || len(c.Pairs) != 0 ||
			!slices.Equal(c.Deps, []string{p.Files["b"].Unit}) || !strings.HasPrefix(c.ID, "stitch/b~b/layer1.0/") {
			t.Errorf("control unit %+v", c)
		}
	}
	for _, u := range p.PairUnits["ab"] {
		c, ok := p.Control(u)
		if !ok || c.Top != "b" || c.Bottom != "b" || c.Cut != u.Cut || c.Recipe.Seed != u.Recipe.Seed {
			t.Errorf("unit %s: control %+v, %v", u.ID, c, ok)
		}
		if u.Cut == "stem" && !slices.Contains(p.PairUnits["bb"], c) {
			t.Errorf("unit %s: stem control %s is not the bb pair's unit", u.ID, c.ID)
		}
	}
	for _, u := range p.PairUnits["bb"] {
		if c, _ := p.Control(u); c != u {
			t.Errorf("a self pair's unit %s is not its own control", u.ID)
		}
	}
	// Without control = true: no control units.
	plain := controlPlan(t, strings.Replace(strings.Replace(controlSpec, "control = true\n", "", 1), `verdict = "max(excess, ab) <= 2.6"`, "", 1), t.TempDir())
	if len(plain.Units) != len(p.Units)-2 {
		t.Errorf("without control: %d units, with: %d", len(plain.Units), len(p.Units))
	}
	// They run like the others.
	sum, err := Run(context.Background(), p, Options{Exec: &fakeExec{}, Jobs: 1, Cores: 1})
	if err != nil || sum.Ran != len(p.Units) {
		t.Fatalf("run: %+v, %v (want %d units)", sum, err, len(p.Units))
	}
}

// TestControlReport writes rows by hand and checks the self and excess
// tables and rules: a dash and a "not yet run" verdict naming the control
// while a control row is missing, the values once it is in, and controls in
// no figure series.
func TestControlReport(t *testing.T) {
	dir := t.TempDir()
	p := controlPlan(t, controlSpec, dir)
	w, err := OpenWriter(dir, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	put := func(u *Unit, penalty float64) {
		t.Helper()
		st := &StitchResult{Bottom: u.Bottom, Top: u.Top, Cut: u.Cut, Recipe: *u.Recipe}
		st.TopAcc, st.StitchedAcc, st.Penalty = 90, 90-penalty, penalty
		if err := w.Append(Record{Unit: u.ID, Kind: UnitStitch, Stitch: st}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range p.PairUnits["ab"] {
		put(u, 3)
	}
	for _, u := range p.PairUnits["bb"] {
		put(u, 0.5) // the stem controls
	}
	report := func() (string, *ReportResult) {
		t.Helper()
		res, err := Report(p, filepath.Join(dir, "report"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(res.Path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), res
	}
	out, res := report()
	self := strings.Index(out, "self-stitch penalty (pp) per cut")
	excess := strings.Index(out, "excess penalty (pp) per cut")
	if self < 0 || excess < self {
		t.Fatalf("no self and excess tables:\n%s", out)
	}
	if !strings.Contains(out[self:excess], "| a → b | `ab` | 2 | +0.50 ± 0.00 | – |") || !strings.Contains(out[excess:], "| a → b | `ab` | 2 | +2.50 ± 0.00 | – |") {
		t.Errorf("tables with the layer1.0 controls missing:\n%s", out[self:])
	}
	if res.Verdicts["e"] != NotYetRun || !strings.Contains(out, "has no excess at cut layer1.0: its top's self-stitch control has no row there yet") {
		t.Errorf("rule over a missing control: %s\n%s", res.Verdicts["e"], out)
	}
	for _, u := range p.Units {
		if u.Control {
			put(u, 0.25)
		}
	}
	w.Close()
	out, res = report()
	excess = strings.Index(out, "excess penalty (pp) per cut")
	if !strings.Contains(out[excess:], "| a → b | `ab` | 2 | +2.50 ± 0.00 | +2.75 ± 0.00 |") {
		t.Errorf("excess table:\n%s", out[excess:])
	}
	if res.Verdicts["e"] != Fails || !strings.Contains(out, "max(excess, ab) = 2.75 <= 2.6") {
		t.Errorf("rule over excess: %s\n%s", res.Verdicts["e"], out)
	}
	if !strings.Contains(out, "self-stitch control of `b`") {
		t.Errorf("the unit table does not name the controls")
	}
	_, series := figureData(p, pairPoints{p, mustRecords(t, dir)}, &p.Spec.Experiments[0])
	if len(series) != 1 || series[0].label != p.Spec.Pairs["ab"].Label {
		t.Errorf("figure series %+v, want ab only", series)
	}
}

func mustRecords(t *testing.T, dir string) *Records {
	t.Helper()
	recs, err := ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestControlMetricsNeedControl checks that a rule or a figure reading self
// or excess is refused, at its line, in a spec without control = true.
func TestControlMetricsNeedControl(t *testing.T) {
	for _, c := range []struct{ text, key string }{
		{minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\nverdict = \"mean(excess, ab) < 1\"\n", "experiments.e.verdict"},
		{minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\ny = \"self\"\n", "experiments.e.y"},
	} {
		_, err := Parse("s.toml", []byte(c.text), testVocabulary)
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), "s.toml:14") || !strings.Contains(err.Error(), "control = true") {
			t.Errorf("%s: %v", c.key, err)
		}
	}
}
