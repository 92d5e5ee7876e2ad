package datasets

import (
	"slices"
	"strings"
	"testing"
)

// TestClothingVsAccessories checks Fashion-MNIST's two-class task, with label
// noise carried over and class names matched by name, not position.
func TestClothingVsAccessories(t *testing.T) {
	d := synthetic([]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	d.Name, d.ClassNames = "fashion-mnist", slices.Clone(FashionMNISTClasses)
	noisy := d.WithLabelNoise(0.5, 3)
	two, err := noisy.Relabel(TaskClothingVsAccessories)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, len(noisy.Labels))
	for i, l := range noisy.Labels {
		switch FashionMNISTClasses[l] {
		case "Sandal", "Sneaker", "Bag", "Ankle boot":
			want[i] = 1
		}
	}
	if !slices.Equal(two.Labels, want) || two.Classes != 2 || two.ClassNames[1] != "footwear+bags" || two.Name != "fashion-mnist:clothing-vs-accessories" {
		t.Errorf("labels %v (want %v) classes %d %v name %s", two.Labels, want, two.Classes, two.ClassNames, two.Name)
	}
	if !slices.Equal(two.Noise.Original, []int{0, 0, 0, 0, 0, 1, 0, 1, 1, 1}) {
		t.Errorf("clean labels after relabelling: %v", two.Noise.Original)
	}
	if err := two.Validate(); err != nil {
		t.Error(err)
	}
	// Classes listed in another order (a folder export sorts them) map by name.
	r := synthetic([]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	r.ClassNames = slices.Clone(FashionMNISTClasses)
	slices.Reverse(r.ClassNames)
	rt, err := r.Relabel(TaskClothingVsAccessories)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rt.Labels, []int{1, 1, 1, 0, 1, 0, 0, 0, 0, 0}) {
		t.Errorf("reversed class order: %v", rt.Labels)
	}
	if _, err := two.Relabel(TaskClothingVsAccessories); err == nil {
		t.Error("applied twice")
	}
	if _, err := d.Relabel("odd-vs-even"); err == nil || !strings.Contains(err.Error(), "clothing-vs-accessories") {
		t.Errorf("unknown task: %v", err)
	}
}
