package grid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkpointSpec is a spec with an existing checkpoint "ck.pt" stitched into
// a trained model, and its probe as a top.
const checkpointSpec = `
title = "t"
[models.ck]
checkpoint = "ck.pt"
[models.ck-probe]
probe_of = "ck"
[models.b]
seed = 2
[pairs.ck-b]
bottom = "ck"
top = "b"
cuts = "stem"
[pairs.b-probe]
bottom = "b"
top = "ck-probe"
cuts = "stem"
`

// planIn writes ck.pt with the given bytes and the spec into dir, and plans it.
func planIn(t *testing.T, dir, text, weights string) (*Plan, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "ck.pt"), []byte(weights), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Parse(filepath.Join(dir, "s.toml"), []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	return NewPlan(s, filepath.Join(dir, "out"), func(*ModelFile, *Plan) ([]string, error) { return resnet18Cuts, nil })
}

// TestUnitsKeyedByContent checks that an existing checkpoint's units are
// keyed by its bytes: another file with the same bytes keeps them, a
// replaced file makes new ones (its probe too), a missing file is an error
// naming the model; key_by_content = false keeps the path key of older specs.
func TestUnitsKeyedByContent(t *testing.T) {
	dir := t.TempDir()
	ids := func(p *Plan) []string { return planIDs(p) }
	p1, err := planIn(t, dir, checkpointSpec, "weights v1")
	if err != nil {
		t.Fatal(err)
	}
	if f := p1.Files["ck"]; f.Digest == "" || !strings.HasPrefix(f.identity, "sha256:") {
		t.Errorf("checkpoint keyed by %q", f.identity)
	}
	// The same bytes under another path: the same units.
	other := t.TempDir()
	p2, err := planIn(t, other, strings.Replace(checkpointSpec, `"ck.pt"`, `"./ck.pt"`, 1), "weights v1")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := ids(p1), ids(p2); strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("same bytes, other path: units\n %v\n %v", a, b)
	}
	// Replaced bytes: every unit that reads the file is new, the others stay.
	p3, err := planIn(t, dir, checkpointSpec, "weights v2")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range p1.Units {
		_, kept := p3.Unit(u.ID)
		reads := u.Model == "ck-probe" || u.Bottom == "ck" || u.Top == "ck-probe"
		if kept == reads {
			t.Errorf("replaced checkpoint: unit %s kept %v", u.ID, kept)
		}
	}
	// By path: the stitch unit of the checkpoint keeps its id across a
	// replacement (the probe, fit on the content, does not).
	byPath := "key_by_content = false\n" + checkpointSpec
	p4, err := planIn(t, dir, byPath, "weights v1")
	if err != nil {
		t.Fatal(err)
	}
	p5, err := planIn(t, dir, byPath, "weights v2")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := p4.PairUnits["ck-b"][0].ID, p5.PairUnits["ck-b"][0].ID; a != b || p4.Files["ck"].identity != "checkpoint:ck.pt" {
		t.Errorf("key_by_content = false: ids %s, %s, identity %q", a, b, p4.Files["ck"].identity)
	}
	if a, b := p4.PairUnits["b-probe"][0].ID, p5.PairUnits["b-probe"][0].ID; a == b {
		t.Errorf("key_by_content = false: the probe's unit %s survived a replaced backbone", a)
	}
	// A missing file cannot be keyed.
	if err := os.Remove(filepath.Join(dir, "ck.pt")); err != nil {
		t.Fatal(err)
	}
	s, err := Parse(filepath.Join(dir, "s.toml"), []byte(checkpointSpec), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPlan(s, dir, func(*ModelFile, *Plan) ([]string, error) { return resnet18Cuts, nil })
	if err == nil || !strings.Contains(err.Error(), "model ck") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing checkpoint: %v", err)
	}
}

// TestEmbeddedKeyedByContent checks that an embedded: name is keyed by the
// embedded bytes.
func TestEmbeddedKeyedByContent(t *testing.T) {
	text := strings.Replace(checkpointSpec, `"ck.pt"`, `"embedded:fmnist-resnet18-w0.25-sup-seed1"`, 1)
	p, err := planIn(t, t.TempDir(), text, "unused")
	if err != nil {
		t.Fatal(err)
	}
	if f := p.Files["ck"]; len(f.Digest) != 64 || f.Path != "embedded:fmnist-resnet18-w0.25-sup-seed1" {
		t.Errorf("embedded checkpoint: path %q, digest %q", f.Path, f.Digest)
	}
}
