package stitch

import (
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/experiments/splits"
	"modelstitch/torch/vision/datasets"
	"modelstitch/weights"
)

// writeFolder writes the first n images of each of train and test as grey
// PNGs in an image folder (root/train/<class>/, root/val/<class>/).
func writeFolder(t *testing.T, root string, train, test *datasets.Dataset, n int) {
	t.Helper()
	for split, ds := range map[string]*datasets.Dataset{"train": train, "val": test} {
		for i := range min(n, ds.N) {
			dir := filepath.Join(root, split, fmt.Sprintf("class%d", ds.Labels[i]))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			img := &image.Gray{Pix: slices.Clone(ds.Image(i)), Stride: ds.W, Rect: image.Rect(0, 0, ds.W, ds.H)}
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%05d.png", i)))
			if err != nil {
				t.Fatal(err)
			}
			if err := png.Encode(f, img); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
}

// foreignRGB writes m as a plain state dict (no metadata: no normalisation
// recorded, as a checkpoint from elsewhere) for 3-channel input: the stem's
// weights split evenly over three copies of the grey channel, so that the
// RGB network computes on a grey image exactly what m does.
func foreignRGB(t *testing.T, m *models.Model, path string) {
	t.Helper()
	sd, err := models.FromModule(m.Net)
	if err != nil {
		t.Fatal(err)
	}
	w := sd.Tensors["conv1.weight"]
	out, k := w.Shape[0], w.Shape[2]*w.Shape[3]
	rgb := make([]byte, 0, len(w.Data)*3)
	for o := range out {
		src := w.Data[o*k*4 : (o+1)*k*4]
		for range 3 {
			for i := range k {
				v := math.Float32frombits(binary.LittleEndian.Uint32(src[i*4:]))
				rgb = binary.LittleEndian.AppendUint32(rgb, math.Float32bits(v/3))
			}
		}
	}
	sd.Tensors["conv1.weight"] = &weights.RawTensor{DType: w.DType, Shape: []int64{w.Shape[0], 3, w.Shape[2], w.Shape[3]}, Data: rgb}
	if err := weights.WriteTorchFile(path, sd, nil); err != nil {
		t.Fatal(err)
	}
}

// TestForeignNormalisationOnFolderData: a checkpoint trained with
// Fashion-MNIST's statistics but recording none, given as an image folder
// (whose statistics are not known), is fed ImageNet's: the rows say the
// normalisation was guessed and warn; given its own statistics, the top
// scores what the model scores on those images.
func TestForeignNormalisationOnFolderData(t *testing.T) {
	path := trained(t)
	trainSet, testSet := fashionSplits(t)
	m := load(t, path)
	dir := t.TempDir()
	writeFolder(t, filepath.Join(dir, "imgs"), trainSet, testSet, 300)
	foreign := filepath.Join(dir, "foreign.pt")
	foreignRGB(t, m, foreign)
	fm, err := models.Load(foreign, models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Free()
	if len(fm.Meta.Mean) != 0 {
		t.Fatalf("the foreign checkpoint records a normalisation %v", fm.Meta.Mean)
	}
	data := "folder:" + filepath.Join(dir, "imgs")
	ftrain, ftest, err := splits.Load(splits.Config{Name: data, ImageSize: 28})
	if err != nil {
		t.Fatal(err)
	}
	// The grey model's own accuracy on the same 300 images.
	sub, err := testSet.Slice(0, 300)
	if err != nil {
		t.Fatal(err)
	}
	own := stitchOnce(t, m, m, trainSet, sub, "fashion-mnist", nil)
	run := func(given *results.Norm) results.Row {
		return stitchOnce(t, fm, fm, ftrain, ftest, data, given)
	}
	guessed := run(nil)
	mean, std := m.Meta.Mean[0], m.Meta.Std[0]
	right := run(&results.Norm{Mean: []float64{mean, mean, mean}, Std: []float64{std, std, std}})
	t.Logf("own %.2f%%, guessed normalisation %.2f%%, given %.2f%%", own.TopAcc, guessed.TopAcc, right.TopAcc)
	if guessed.TopNorm == nil || guessed.TopNorm.Source != NormGuessed ||
		!slices.Contains(guessed.Warnings, results.WarnTopNormGuessed) || !slices.Contains(guessed.Warnings, results.WarnBottomNormGuessed) {
		t.Errorf("guessed normalisation: top norm %+v, warnings %v; want it marked guessed and both warnings", guessed.TopNorm, guessed.Warnings)
	}
	if right.TopNorm == nil || right.TopNorm.Source != NormGiven || slices.Contains(right.Warnings, results.WarnTopNormGuessed) {
		t.Errorf("given normalisation: top norm %+v, warnings %v; want it marked given, no guess warning", right.TopNorm, right.Warnings)
	}
	if math.Abs(right.TopAcc-own.TopAcc) > 0.5 {
		t.Errorf("with its statistics the foreign top scores %.2f%%, the model itself %.2f%% on the same images", right.TopAcc, own.TopAcc)
	}
	if guessed.TopAcc > right.TopAcc-5 {
		t.Errorf("ImageNet's statistics cost the top only %.2f points (%.2f%% against %.2f%%): the test needs a visible shift", right.TopAcc-guessed.TopAcc, guessed.TopAcc, right.TopAcc)
	}
}

// stitchOnce stitches bottom into top at layer4.1 by the quick recipe and
// returns the row.
func stitchOnce(t *testing.T, bottom, top *models.Model, train, test *datasets.Dataset, data string, norm *results.Norm) results.Row {
	t.Helper()
	cfg := quickConfig("layer4.1")
	cfg.CKASamples, cfg.Data = 0, data
	store, err := results.Open("")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Bottom: bottom, Top: top, Train: train, Test: test, Config: cfg, Store: store, BottomNorm: norm, TopNorm: norm}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rows[0]
}

// TestWarnings: each warning fires on a crafted row and not on a clean one.
func TestWarnings(t *testing.T) {
	rec := 90.0
	r := &Runner{Top: &models.Model{Meta: models.Meta{TestAccuracy: &rec}}, Test: &datasets.Dataset{Classes: 10}}
	f := func(v float64) *float64 { return &v }
	clean := results.Row{Scores: results.Scores{TopAcc: 89, SelfPenalty: f(-0.5)},
		BottomNorm: &results.Norm{Source: NormCheckpoint}, TopNorm: &results.Norm{Source: NormData}}
	if w := r.warnings(clean); len(w) != 0 {
		t.Errorf("clean row warns %v", w)
	}
	for _, c := range []struct {
		want string
		edit func(*results.Row)
	}{
		{results.WarnTopNearChance, func(x *results.Row) { x.TopAcc = 14.9 }},
		{results.WarnTopBelowRecorded, func(x *results.Row) { x.TopAcc = 84.9 }},
		{results.WarnSelfGain, func(x *results.Row) { x.SelfPenalty = f(-1.2) }},
		{results.WarnBottomNormGuessed, func(x *results.Row) { x.BottomNorm = &results.Norm{Source: NormGuessed} }},
		{results.WarnTopNormGuessed, func(x *results.Row) { x.TopNorm = &results.Norm{Source: NormGuessed} }},
	} {
		row := clean
		c.edit(&row)
		if w := r.warnings(row); !slices.Contains(w, c.want) {
			t.Errorf("%s: warnings %v", c.want, w)
		}
	}
}
