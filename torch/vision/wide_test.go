package vision

import (
	"strings"
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

func TestParseArchConfig(t *testing.T) {
	for in, want := range map[string]ResNetConfig{
		"wide_resnet50_2":  {Depth: 50, WidthPerGroup: 128},
		"Wide_ResNet101_2": {Depth: 101, WidthPerGroup: 128},
		"resnet34":         {Depth: 34},
	} {
		got, err := ParseArchConfig(in)
		if err != nil || got != want {
			t.Errorf("ParseArchConfig(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if n, _ := got.normalized(); n.ArchName() != strings.ToLower(in) {
			t.Errorf("ArchName of %q is %q", in, n.ArchName())
		}
	}
	for _, bad := range []string{"wide_resnet18_2", "wide_resnet50", "wide_resnet50_x", "vgg16"} {
		if _, err := ParseArchConfig(bad); err == nil {
			t.Errorf("ParseArchConfig(%q) accepted", bad)
		}
	}
	if _, err := NewResNet(ResNetConfig{Depth: 18, WidthPerGroup: 128}); err == nil || !strings.Contains(err.Error(), "only bottleneck") {
		t.Errorf("a wide ResNet-18: %v", err)
	}
}

// TestNotResNetHintIsDeterministic: with several prefixed networks the hint
// names the same one (the first in sorted order) every time, and the flag.
func TestNotResNetHintIsDeterministic(t *testing.T) {
	shapes := map[string][]int64{}
	for _, p := range []string{"module.encoder_q.", "module.encoder_k.", "queue_owner."} {
		for k, v := range shapesOf(t, ResNetConfig{Depth: 18}) {
			shapes[p+k] = v
		}
	}
	for i := 0; i < 20; i++ {
		_, _, err := InferResNetConfig(shapes)
		if err == nil || !strings.Contains(err.Error(), "key (prefix module.encoder_k)") {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}

// TestStemPadding: the stem's padding changes the stem's output size, as in PyTorch.
func TestStemPadding(t *testing.T) {
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.0625, Stem: StemCIFAR, StemPadding: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	x := torch.Zeros([]int64{1, 3, 32, 32})
	defer x.Free()
	h := r.ForwardTo(x, "stem")
	defer h.Free()
	s, err := h.Shape()
	if err != nil {
		t.Fatal(err)
	}
	if s[2] != 34 || s[3] != 34 {
		t.Errorf("stem output %v, want 34×34 (3×3 conv, padding 2, on 32×32)", s)
	}
	if !strings.Contains(r.Config.String(), "stem-padding 2") {
		t.Errorf("String() = %q", r.Config.String())
	}
}
