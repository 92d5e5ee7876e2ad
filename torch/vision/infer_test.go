package vision

import (
	"strings"
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// shapesOf returns the arithmetic state-dict shapes of cfg.
func shapesOf(t *testing.T, cfg ResNetConfig) map[string][]int64 {
	t.Helper()
	_, shapes, err := stateDictShapes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return shapes
}

func TestInferResNetConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  ResNetConfig
		desc string
	}{
		{ResNetConfig{Depth: 18, Classes: 1000}, "a ResNet-18 with a 1000-class classifier"},
		{ResNetConfig{Depth: 18, Width: 0.25, Stem: "cifar", InChannels: 1, Classes: 10}, "a ResNet-18 (width 0.25, CIFAR stem, 1 input channel) with a 10-class classifier"},
		{ResNetConfig{Depth: 34, Width: 2, Stem: "cifar", Classes: 100}, "a ResNet-34 (width 2, CIFAR stem) with a 100-class classifier"},
		{ResNetConfig{Depth: 50}, "a ResNet-50 backbone, no classifier"},
		{ResNetConfig{Depth: 50, Width: 0.5, InChannels: 4, Classes: 7}, "a ResNet-50 (width 0.5, 4 input channels) with a 7-class classifier"},
		{ResNetConfig{Depth: 101, Classes: 1000}, "a ResNet-101 with a 1000-class classifier"},
		{ResNetConfig{Depth: 152}, "a ResNet-152 backbone, no classifier"},
		{ResNetConfig{Depth: 50, WidthPerGroup: 128, Classes: 1000}, "a Wide ResNet-50-2 with a 1000-class classifier"},
		{ResNetConfig{Depth: 101, WidthPerGroup: 128, Width: 0.25}, "a Wide ResNet-101-2 (width 0.25) backbone, no classifier"},
	} {
		want, _ := c.cfg.normalized()
		got, desc, err := InferResNetConfig(shapesOf(t, c.cfg))
		if err != nil {
			t.Errorf("%v: %v", c.cfg, err)
			continue
		}
		if got != want || desc != c.desc {
			t.Errorf("InferResNetConfig(%v) = %+v, %q; want %+v, %q", c.cfg, got, desc, want, c.desc)
		}
	}

	// Old checkpoints lack num_batches_tracked; heads beside the backbone are ignored.
	shapes := shapesOf(t, ResNetConfig{Depth: 50})
	for k := range shapes {
		if strings.HasSuffix(k, "num_batches_tracked") {
			delete(shapes, k)
		}
	}
	shapes["projector.0.weight"] = []int64{2048, 2048}
	if got, _, err := InferResNetConfig(shapes); err != nil || got.Depth != 50 {
		t.Errorf("without num_batches_tracked, with a projector: %+v, %v", got, err)
	}
}

func TestInferResNetConfigErrors(t *testing.T) {
	r18 := func(edit func(map[string][]int64)) map[string][]int64 {
		s := shapesOf(t, ResNetConfig{Depth: 18, Classes: 10})
		edit(s)
		return s
	}
	prefixed := map[string][]int64{}
	for k, v := range shapesOf(t, ResNetConfig{Depth: 18}) {
		prefixed["module."+k] = v
	}
	wide := shapesOf(t, ResNetConfig{Depth: 50})
	wide["layer1.0.conv1.weight"] = []int64{128, 64, 1, 1} // wide_resnet50_2's inner width
	for _, c := range []struct {
		name   string
		shapes map[string][]int64
		want   string
	}{
		{"empty", map[string][]int64{}, "no conv1.weight (the state dict is empty)"},
		{"vgg", map[string][]int64{"features.0.weight": {64, 3, 3, 3}, "classifier.6.bias": {1000}}, "no conv1.weight (keys are classifier.6.bias, features.0.weight)"},
		{"prefixed", prefixed, `pick that network by its key (prefix module)`},
		{"timm deep stem", r18(func(s map[string][]int64) {
			delete(s, "conv1.weight")
			s["conv1.0.weight"] = []int64{32, 3, 3, 3}
		}), "timm deep stem"},
		{"5x5 stem", r18(func(s map[string][]int64) { s["conv1.weight"] = []int64{64, 3, 5, 5} }), "5×5 kernel"},
		{"no layer3", r18(func(s map[string][]int64) {
			for k := range s {
				if strings.HasPrefix(k, "layer3.") {
					delete(s, k)
				}
			}
		}), "no layer3.* blocks"},
		{"gap", r18(func(s map[string][]int64) { s["layer4.3.conv1.weight"] = []int64{512, 512, 3, 3} }), "layer4 has 3 blocks but no layer4.2"},
		{"odd depth", r18(func(s map[string][]int64) {
			s["layer4.2.conv1.weight"] = []int64{512, 512, 3, 3}
		}), "[2 2 2 3] basic blocks in layer1..layer4 match no ResNet"},
		{"missing tensor", r18(func(s map[string][]int64) { delete(s, "layer2.0.downsample.1.running_var") }), "missing: layer2.0.downsample.1.running_var"},
		{"fc shape", r18(func(s map[string][]int64) { s["fc.weight"] = []int64{10, 256} }), "wrong shape: fc.weight [10 256] (want [10 512])"},
		{"fc head", r18(func(s map[string][]int64) {
			delete(s, "fc.weight")
			delete(s, "fc.bias")
			s["fc.0.weight"] = []int64{512, 512}
		}), "unexpected: fc.0.weight"},
		{"half-wide resnet", wide, "look like wide_resnet50_2 backbone but do not fit it; wrong shape: layer1.0.bn1.weight [64] (want [128])"},
	} {
		_, _, err := InferResNetConfig(c.shapes)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestResNetFromStateDict(t *testing.T) {
	src, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.125, Stem: "cifar", InChannels: 1, Classes: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(src)
	sd := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(src) {
		if !strings.HasSuffix(n.Name, "num_batches_tracked") {
			sd[n.Name] = n.Tensor
		}
	}
	sd["projector.weight"] = torch.Zeros([]int64{3, 3})
	defer sd["projector.weight"].Free()

	r, desc, err := ResNetFromStateDict(sd, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	if desc != "a ResNet-18 (width 0.125, CIFAR stem, 1 input channel) with a 4-class classifier" {
		t.Errorf("description %q", desc)
	}
	nn.Eval(src)
	nn.Eval(r)
	x := torch.Randn([]int64{2, 1, 12, 12})
	defer x.Free()
	if err := torch.NoGrad(func() error {
		d, _, err := maxAbsDiff(r.Forward(x), src.Forward(x))
		if err != nil {
			return err
		}
		if d != 0 {
			t.Errorf("loaded model differs by %g", d)
		}
		return nil
	}); err != nil {
		t.Errorf("comparing the loaded model: %v", err)
	}

	// A config cannot have a 3×3 conv with the ImageNet stem's max pool.
	if _, _, err := ResNetFromStateDict(sd, func(c *ResNetConfig) { c.Stem = StemImageNet }); err == nil || !strings.Contains(err.Error(), "conv1.weight [8 1 3 3] (want [8 1 7 7])") {
		t.Errorf("ImageNet stem over a 3×3 conv1: %v", err)
	}
	if _, _, err := ResNetFromStateDict(sd, func(c *ResNetConfig) { c.Classes = 5 }); err == nil {
		t.Error("an override that contradicts the shapes was accepted")
	}
}
