package datasets

import (
	"slices"
	"strings"
	"testing"
)

func TestWithChannels(t *testing.T) {
	d := &Dataset{Name: "grey", N: 2, C: 1, H: 1, W: 2, Pixels: []uint8{1, 2, 3, 4}, Labels: []int{0, 1},
		Classes: 2, Mean: []float64{0.5}, Std: []float64{0.25}}
	got, err := d.WithChannels(3)
	if err != nil {
		t.Fatal(err)
	}
	if got.C != 3 || !slices.Equal(got.Pixels, []uint8{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}) {
		t.Errorf("repeated pixels %v (C %d)", got.Pixels, got.C)
	}
	if !slices.Equal(got.Mean, []float64{0.5, 0.5, 0.5}) || !slices.Equal(got.Std, []float64{0.25, 0.25, 0.25}) {
		t.Errorf("normalisation %v %v", got.Mean, got.Std)
	}
	if d.C != 1 || len(d.Pixels) != 4 {
		t.Errorf("the original changed: %+v", d)
	}
	if same, _ := d.WithChannels(1); same != d {
		t.Errorf("same channels should return the data set itself")
	}
	if _, err := got.WithChannels(1); err == nil || !strings.Contains(err.Error(), "only 1-channel") {
		t.Errorf("3 → 1 channels: %v", err)
	}
}
