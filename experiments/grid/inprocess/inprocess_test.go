package inprocess

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"modelstitch/experiments/grid"
	"modelstitch/torch/vision/datasets"
)

// oneRandomModel is the smallest grid that trains and stitches: an
// untrained thin ResNet-18 (epochs 0: built, saved and scored, no step
// taken) stitched into itself at two cuts on a few images.
const oneRandomModel = `
title = "one random model"
data = "fashion-mnist"
test_samples = 100
[model_defaults]
train_samples = 128
epochs = 0
batch = 64
width = 0.0625
[stitch_defaults]
fit_samples = 64
ls_samples = 32
batch = 32
cka_samples = 32
[models.r]
seed = 1
[pairs.r-r]
bottom = "r"
top = "r"
cuts = "stem,layer1.0"
`

// TestInProcessRunsAGrid runs the smallest grid through InProcess in -short
// mode: the model is made, its two cuts stitched as one group, every record
// complete; a second run finds everything done.
func TestInProcessRunsAGrid(t *testing.T) {
	if _, err := os.Stat(filepath.Join(datasets.DefaultFashionMNISTDir, "train-images-idx3-ubyte.gz")); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	s, err := grid.Parse("one.toml", []byte(oneRandomModel), Vocabulary())
	if err != nil {
		t.Fatal(err)
	}
	p, err := grid.NewPlan(s, t.TempDir(), CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	var groups int
	sum, err := grid.Run(context.Background(), p, grid.Options{Exec: &InProcess{}, Cores: 1, OnEvent: func(e grid.Event) {
		if e.Kind == grid.EventStart && len(e.Group) == 2 {
			groups++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ran != 3 || groups != 1 {
		t.Fatalf("ran %+v with %d groups of two cuts, want 3 units (a model, two cuts in one group)", sum, groups)
	}
	recs, err := grid.ReadRecords(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs.All() {
		switch {
		case r.Kind == grid.UnitTrain && (r.Model == nil || r.Model.TestAcc <= 0 || r.CPUSeconds <= 0):
			t.Errorf("train record %+v lacks its accuracy or CPU time", r)
		case r.Kind == grid.UnitStitch && (r.Stitch == nil || r.Stitch.TestSamples != 100 || r.Stitch.CKA == nil || r.Stitch.Device != "cpu"):
			t.Errorf("stitch record %+v lacks what was asked for", r)
		}
	}
	if sum, err := grid.Run(context.Background(), p, grid.Options{Exec: &InProcess{}}); err != nil || sum.Ran != 0 || sum.Skipped != 3 {
		t.Errorf("second run: %+v, %v; want everything done", sum, err)
	}
}
