package stitch

import (
	"errors"
	"strings"
	"testing"

	"modelstitch/experiments/invalid"
	"modelstitch/torch/nn"
)

// TestKernelWiderThanActivationsRefused: a stitching kernel wider than
// 2·side−1 only sees padding and costs kernel² (1001 ran for hours); it is
// refused as the kernel size setting, the widest useful one is accepted.
func TestKernelWiderThanActivationsRefused(t *testing.T) {
	for _, c := range []struct {
		shape  []int64
		kernel int64
		ok     bool
	}{
		{[]int64{1, 7, 7}, 1001, false},
		{[]int64{1, 7, 7}, 15, false},
		{[]int64{1, 7, 7}, 13, true},
		{[]int64{1, 4, 2}, 7, true},
		{[]int64{1, 4, 2}, 9, false},
		{[]int64{8}, 3, true}, // pooled: a linear layer, no kernel to bound
	} {
		l, err := NewLayer(c.shape, c.shape, c.kernel)
		if l != nil {
			nn.Free(l)
		}
		var s *invalid.Setting
		switch {
		case c.ok && err != nil:
			t.Errorf("%v kernel %d: %v", c.shape, c.kernel, err)
		case !c.ok && (!errors.As(err, &s) || s.Field != "kernel size" || !strings.Contains(err.Error(), "at most")):
			t.Errorf("%v kernel %d: error %v, want the kernel size refused with its bound", c.shape, c.kernel, err)
		}
	}
}
