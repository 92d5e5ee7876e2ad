package inprocess

import (
	"reflect"
	"testing"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/stitch"
)

// TestSpecRecipesRunStitchRecipes checks that a spec naming a stitching recipe
// runs exactly package stitch's recipe of that name: every fitting setting
// of the grid's table reaches stitch.Config (the grid keeps its own table
// because it does not link libtorch).
func TestSpecRecipesRunStitchRecipes(t *testing.T) {
	for _, name := range grid.StitchRecipeNames() {
		text := `
title = "t"
[stitch_defaults]
recipe = "` + name + `"
[models.a]
seed = 1
[models.b]
seed = 2
[pairs.ab]
bottom = "a"
top = "b"
cuts = "stem"
`
		s, err := grid.Parse("s.toml", []byte(text), Vocabulary())
		if err != nil {
			t.Fatal(err)
		}
		want, err := stitch.Recipe(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := stitchConfig(s.Pairs["ab"].Recipe); !reflect.DeepEqual(got, want) {
			t.Errorf("recipe %s runs\n %+v\nwant stitch's\n %+v", name, got, want)
		}
	}
}

// TestInputSettingsReachTheRun checks that a spec's image size, channels
// and normalisations reach the data every unit loads and the Runner.
func TestInputSettingsReachTheRun(t *testing.T) {
	text := `
title = "t"
data = "folder:/images"
image_size = 96
[models.a]
seed = 1
mean = [0.4, 0.5, 0.6]
std = [0.2, 0.2, 0.2]
[models.ck]
checkpoint = "embedded:fmnist-resnet18-w0.25-sup-seed1"
mean = [0.1, 0.1, 0.1]
std = [0.3, 0.3, 0.3]
[models.ckp]
probe_of = "ck"
[pairs.ck-a]
bottom = "ck"
top = "a"
cuts = "stem"
[pairs.a-ckp]
bottom = "a"
top = "ckp"
cuts = "stem"
`
	s, err := grid.Parse("s.toml", []byte(text), Vocabulary())
	if err != nil {
		t.Fatal(err)
	}
	p, err := grid.NewPlan(s, t.TempDir(), func(*grid.ModelFile, *grid.Plan) ([]string, error) { return []string{"stem"}, nil })
	if err != nil {
		t.Fatal(err)
	}
	x := &InProcess{}
	if dc := x.dataConfig(s); dc.ImageSize != 96 || dc.Name != "folder:/images" {
		t.Errorf("data config %+v", dc)
	}
	if dc := x.trainData(s, s.Models["a"].Recipe); dc.ImageSize != 96 || !reflect.DeepEqual(dc.Mean, []float64{0.4, 0.5, 0.6}) || dc.Std[2] != 0.2 {
		t.Errorf("training data config %+v", dc)
	}
	for ref, want := range map[string]float64{"a": 0.4, "ck": 0.1, "ckp": 0.1} {
		if n := givenNorm(p, ref); n == nil || n.Mean[0] != want || len(n.Std) != 3 {
			t.Errorf("norm of %s: %+v", ref, n)
		}
	}
	s.Channels = 3
	if dc := x.dataConfig(s); dc.Channels != 3 {
		t.Errorf("channels do not reach the data: %+v", dc)
	}
}
