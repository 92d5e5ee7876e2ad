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
