package vision

import (
	"fmt"
	"strings"
)

// CutShape is the shape of the activations at one cut point for a single
// input (no batch dimension): [C, H, W] after the stem and blocks, [C] at "pool".
type CutShape struct {
	Name  string
	Shape []int64
}

// CutShapes returns the activation shape at every cut point, in forward order,
// for an input of shape [C, H, W] (no batch dimension). The shapes follow from
// the convolution arithmetic; nothing is run.
func (r *ResNet) CutShapes(input []int64) ([]CutShape, error) {
	if len(input) != 3 {
		return nil, fmt.Errorf("vision: CutShapes wants an input shape [C, H, W], got %v", input)
	}
	c, h, w := input[0], input[1], input[2]
	if c != int64(r.Config.InChannels) {
		return nil, fmt.Errorf("vision: %v takes %d input channels, input shape %v has %d", r.Config, r.Config.InChannels, input, c)
	}
	if h < 1 || w < 1 {
		return nil, fmt.Errorf("vision: input shape %v has no pixels", input)
	}
	// out is the output size of a k×k convolution or pool with padding (k−1)/2.
	out := func(n, k, stride int64) int64 { return (n+2*((k-1)/2)-k)/stride + 1 }
	if r.Config.Stem == StemImageNet {
		h, w = out(out(h, 7, 2), 3, 2), out(out(w, 7, 2), 3, 2)
	}
	ch := r.Config.baseWidth()
	shapes := []CutShape{{"stem", []int64{ch, h, w}}}
	for i, l := range r.layers() {
		for j, m := range l.Layers {
			if i > 0 && j == 0 {
				h, w = out(h, 3, 2), out(w, 3, 2)
			}
			ch = m.(Block).OutChannels()
			shapes = append(shapes, CutShape{fmt.Sprintf("layer%d.%d", i+1, j), []int64{ch, h, w}})
		}
	}
	shapes = append(shapes, CutShape{"pool", []int64{ch}})
	return shapes, nil
}

// ParseCuts turns a comma-separated list of cut names into a list of cut
// points, in the order given; "all" stands for every cut point. Unknown
// names are an error that lists the valid ones.
func (r *ResNet) ParseCuts(spec string) ([]string, error) {
	var cuts []string
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			continue
		case f == "all":
			cuts = append(cuts, r.CutPoints()...)
		default:
			if _, err := r.cutIndex(f); err != nil {
				return nil, err
			}
			cuts = append(cuts, f)
		}
	}
	if len(cuts) == 0 {
		return nil, fmt.Errorf("vision: no cut points in %q; valid cuts: all, %s", spec, strings.Join(r.CutPoints(), ", "))
	}
	return cuts, nil
}
