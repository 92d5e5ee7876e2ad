package train

import (
	"strings"
	"testing"
)

// SimCLRViews builds the transforms it names, in order, and refuses bad values.
func TestSimCLRViews(t *testing.T) {
	tr, err := DefaultSimCLRViews().Transform()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.(interface{ String() string }).String(), "RandomResizedCrop"; !strings.Contains(got, want) || !strings.Contains(got, "RandomErasing") {
		t.Errorf("default views %q: want a crop and erasing", got)
	}
	weak := SimCLRViews{CropMin: 1, Flip: true, Jitter: 0.4, JitterP: 0.8}
	tr, err = weak.Transform()
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.(interface{ String() string }).String(); strings.Contains(got, "Crop") || strings.Contains(got, "Noise") ||
		!strings.Contains(got, "HorizontalFlip") || !strings.Contains(got, "ColorJitter") {
		t.Errorf("views %+v became %q", weak, got)
	}
	for _, v := range []SimCLRViews{{CropMin: 0}, {CropMin: 1.5}, {CropMin: 0.5, NoiseStd: -1}, {CropMin: 0.5, EraseP: 2}, {CropMin: 0.5, Jitter: 0.4, JitterP: -0.1}} {
		if _, err := v.Transform(); err == nil {
			t.Errorf("views %+v: no error", v)
		}
	}
}
