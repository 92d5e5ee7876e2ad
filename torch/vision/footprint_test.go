package vision

import (
	"strings"
	"testing"

	"modelstitch/torch/nn"
)

// TestFootprintMatchesBuiltNetworks: the parameters and batch-norm buffers
// Footprint counts without building a network are those of the network
// built, and its largest activation is the largest cut's.
func TestFootprintMatchesBuiltNetworks(t *testing.T) {
	for _, c := range []struct {
		cfg  ResNetConfig
		h, w int64
	}{
		{ResNetConfig{Depth: 18, Width: 0.25, Stem: StemCIFAR, InChannels: 1, Classes: 10}, 28, 28},
		{ResNetConfig{Depth: 34, Width: 0.125, Stem: StemImageNet, InChannels: 3}, 64, 48},
		{ResNetConfig{Depth: 50, Width: 0.125, Stem: StemImageNet, InChannels: 3, Classes: 7}, 32, 32},
		{ResNetConfig{Depth: 50, Width: 0.0625, WidthPerGroup: 128, Stem: StemCIFAR, InChannels: 3}, 16, 16},
	} {
		f, err := c.cfg.Footprint(c.h, c.w)
		if err != nil {
			t.Fatal(err)
		}
		net, err := NewResNet(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var params, buffers float64
		for _, p := range nn.Parameters(net) {
			params += float64(p.Numel())
		}
		for _, n := range nn.StateDict(net) {
			if strings.HasSuffix(n.Name, "running_mean") || strings.HasSuffix(n.Name, "running_var") {
				buffers += float64(n.Tensor.Numel())
			}
		}
		var largest float64
		cuts, err := net.CutShapes([]int64{int64(c.cfg.InChannels), c.h, c.w})
		if err != nil {
			t.Fatal(err)
		}
		for _, cut := range cuts {
			n := 1.0
			for _, d := range cut.Shape {
				n *= float64(d)
			}
			largest = max(largest, n)
		}
		nn.Free(net)
		if f.Params != params || f.Buffers != buffers {
			t.Errorf("%v: footprint %v parameters and %v buffers, the network has %v and %v", c.cfg, f.Params, f.Buffers, params, buffers)
		}
		if f.LargestActivation < largest {
			t.Errorf("%v: largest activation %v, but a cut has %v values", c.cfg, f.LargestActivation, largest)
		}
		if f.Activations < 3*largest {
			t.Errorf("%v: %v activations per image, fewer than three times the largest cut (%v)", c.cfg, f.Activations, largest)
		}
	}
	// An absurd width is counted, not built (nor overflowed).
	f, err := ResNetConfig{Depth: 18, Width: 1e6, Stem: StemCIFAR, InChannels: 1}.Footprint(28, 28)
	if err != nil || !(f.Params > 1e18) {
		t.Errorf("width 1e6: %v parameters, %v", f.Params, err)
	}
}
