package evaluate

import (
	"math"
	"testing"

	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// TestAccuracyCountsAndReports scores a "classifier" whose logits are the
// two pixels of each 1×2 image on images whose bright pixel is the label for
// 7 of 10 images.
func TestAccuracyCountsAndReports(t *testing.T) {
	ds := &datasets.Dataset{Name: "two-pixels", Split: "test", N: 10, C: 1, H: 1, W: 2, Classes: 2,
		ClassNames: []string{"left", "right"}, Mean: []float64{0}, Std: []float64{1}}
	for i := 0; i < ds.N; i++ {
		label := i % 2
		bright := label
		if i >= 7 {
			bright = 1 - label // wrong
		}
		px := []uint8{0, 0}
		px[bright] = 255
		ds.Pixels = append(ds.Pixels, px...)
		ds.Labels = append(ds.Labels, label)
	}
	loader, err := data.NewLoader(ds, data.Config{BatchSize: 4, Device: torch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	var events []progress.Event
	acc, err := Accuracy(func(x *torch.Tensor) *torch.Tensor { return x.Flatten(1, -1) }, loader,
		func(e progress.Event) { events = append(events, e) }, "test accuracy")
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(acc-70) > 1e-9 {
		t.Errorf("accuracy %g, want 70", acc)
	}
	if len(events) != 4 {
		t.Fatalf("%d events, want 3 batches and the end: %+v", len(events), events)
	}
	if e := events[3]; !e.End || e.Done != 10 || e.Total != 10 || e.Unit != "images" || e.Stage != "test accuracy" {
		t.Errorf("last event %+v", e)
	}
	if Percent(1, 0) != 0 || Percent(1, 4) != 25 {
		t.Errorf("Percent: %g %g", Percent(1, 0), Percent(1, 4))
	}
}
