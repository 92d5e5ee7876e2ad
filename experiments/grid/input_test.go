package grid

import (
	"slices"
	"strings"
	"testing"
)

// TestInputSettings checks image_size, channels and per-model mean/std:
// refused at their line when they cannot apply, and part of the identity of
// the units they change only when given.
func TestInputSettings(t *testing.T) {
	bad := []struct{ name, text, key, line string }{
		{"image size on fixed-size data", "image_size = 64\n" + minimalSpec, "image_size", "s.toml:1"},
		{"negative image size", "data = \"folder:/x\"\nimage_size = -3\n" + minimalSpec, "image_size", "s.toml:2"},
		{"negative channels", "channels = -1\n" + minimalSpec, "channels", "s.toml:1"},
		{"colour to grey", "data = \"cifar10\"\nchannels = 1\n" + minimalSpec, "channels", "s.toml:2"},
		{"mean without std", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nmean = [0.5]", 1), "models.a.mean", "s.toml:5"},
		{"std without mean", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nstd = [0.5]", 1), "models.a.std", "s.toml:5"},
		{"a mean per channel", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nmean = [0.5, 0.5]\nstd = [0.3, 0.3]", 1), "models.a.mean", "s.toml:5"},
		{"zero std", strings.Replace(minimalSpec, "seed = 1", "seed = 1\nmean = [0.5]\nstd = [0]", 1), "models.a.std", "s.toml:6"},
		{"defaults' mean", minimalSpec + "[model_defaults]\nmean = [0.1, 0.2]\nstd = [1, 1]\n", "model_defaults.mean", "s.toml:12"},
		{"probe's mean", minimalSpec + "[models.p]\nprobe_of = \"a\"\nmean = [0.5]\nstd = [0.3]\n", "models.p", "s.toml:11"},
	}
	for _, c := range bad {
		_, err := Parse("s.toml", []byte(c.text), testVocabulary)
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.line+":") {
			t.Errorf("%s: %v, want an error naming %s at %s", c.name, err, c.key, c.line)
		}
	}
	plan := func(text string) *Plan {
		t.Helper()
		s, err := Parse("s.toml", []byte(text), testVocabulary)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewPlan(s, t.TempDir(), func(*ModelFile, *Plan) ([]string, error) { return resnet18Cuts, nil })
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ck := minimalSpec + "[models.ck]\ncheckpoint = \"embedded:fmnist-resnet18-w0.25-sup-seed1\"\n[models.ckp]\nprobe_of = \"ck\"\n" +
		"[pairs.ck-b]\nbottom = \"ck\"\ntop = \"b\"\ncuts = \"stem\"\n[pairs.a-ckp]\nbottom = \"a\"\ntop = \"ckp\"\ncuts = \"stem\"\n"
	base := plan(ck)
	// Three channels with three means: accepted, and every unit is new.
	rgb := plan("channels = 3\n" + strings.Replace(ck, "seed = 1", "seed = 1\nmean = [0.3, 0.3, 0.3]\nstd = [0.4, 0.4, 0.4]", 1))
	if r := rgb.Spec.Models["a"].Recipe; r.Channels != 3 || len(r.Mean) != 3 || r.ImageSize != 0 {
		t.Errorf("recipe with channels and mean: %+v", r)
	}
	for _, id := range planIDs(base) {
		if _, ok := rgb.Unit(id); ok {
			t.Errorf("unit %s survived channels = 3", id)
		}
	}
	// A checkpoint's mean: its units and its probe's are new, the others stay.
	normed := plan(strings.Replace(ck, "fmnist-resnet18-w0.25-sup-seed1\"", "fmnist-resnet18-w0.25-sup-seed1\"\nmean = [0.2]\nstd = [0.5]", 1))
	for _, u := range base.Units {
		_, kept := normed.Unit(u.ID)
		reads := u.Bottom == "ck" || u.Top == "ckp" || u.Model == "ckp"
		if kept == reads {
			t.Errorf("checkpoint mean given: unit %s kept %v", u.ID, kept)
		}
	}
	for _, ref := range []string{"ck", "ckp"} {
		if m, s := normed.Norm(ref); !slices.Equal(m, []float64{0.2}) || !slices.Equal(s, []float64{0.5}) {
			t.Errorf("Norm(%s) = %v, %v", ref, m, s)
		}
	}
	if m, _ := normed.Norm("a"); m != nil {
		t.Errorf("Norm(a) = %v, want none given", m)
	}
	if m, _ := rgb.Norm("a"); len(m) != 3 {
		t.Errorf("a recipe's Norm = %v", m)
	}
	// A folder data set takes an image size, and 3 channels are its own.
	if _, err := Parse("s.toml", []byte("data = \"folder:/x\"\nimage_size = 96\nchannels = 3\n"+minimalSpec), testVocabulary); err != nil {
		t.Errorf("folder with image_size and channels: %v", err)
	}
}
