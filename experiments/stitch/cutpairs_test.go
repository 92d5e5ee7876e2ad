package stitch

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"modelstitch/experiments/invalid"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
)

func resnet(t *testing.T, depth int) *vision.ResNet {
	t.Helper()
	net, err := vision.NewResNet(vision.ResNetConfig{Depth: depth, Width: 0.125, Stem: vision.StemCIFAR, InChannels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nn.Free(net) })
	return net
}

// TestPairCutsAcrossDepths: a ResNet-18 bottom into a ResNet-50 top is
// paired at the ends of stages ("all" and named stage ends); a block inside
// a stage is refused, since ResNet-50's layer1.1 is mid-stage where
// ResNet-18's is the stage's end; explicit pairs are taken one for one.
func TestPairCutsAcrossDepths(t *testing.T) {
	r18, r50 := resnet(t, 18), resnet(t, 50)
	top, bottom, err := pairCuts(r18, r50, "all", "")
	if err != nil {
		t.Fatal(err)
	}
	wantTop := []string{"stem", "layer1.2", "layer2.3", "layer3.5", "layer4.2", "pool"}
	wantBottom := []string{"stem", "layer1.1", "layer2.1", "layer3.1", "layer4.1", "pool"}
	if !slices.Equal(top, wantTop) || !slices.Equal(bottom, wantBottom) {
		t.Errorf("all: top %v bottom %v, want %v and %v", top, bottom, wantTop, wantBottom)
	}
	if top, bottom, err = pairCuts(r18, r50, "layer2.3,pool", ""); err != nil || !slices.Equal(bottom, []string{"layer2.1", "pool"}) {
		t.Errorf("layer2.3,pool: top %v bottom %v, %v; want the bottom's layer2.1 and pool", top, bottom, err)
	}
	_, _, err = pairCuts(r18, r50, "layer1.1", "")
	var bad *invalid.Setting
	if !errors.As(err, &bad) || bad.Field != "cuts" || !strings.Contains(err.Error(), "inside a stage") {
		t.Errorf("layer1.1 between depths: %v, want an invalid cuts setting saying it is inside a stage", err)
	}
	if top, bottom, err = pairCuts(r18, r50, "layer1.1,layer3.4", "layer1.0,layer3.1"); err != nil ||
		!slices.Equal(top, []string{"layer1.1", "layer3.4"}) || !slices.Equal(bottom, []string{"layer1.0", "layer3.1"}) {
		t.Errorf("explicit pairs: top %v bottom %v, %v", top, bottom, err)
	}
	if _, _, err = pairCuts(r18, r50, "layer1.1,layer3.4", "layer1.0"); !errors.As(err, &bad) || bad.Field != "bottom cuts" {
		t.Errorf("explicit pairs of unequal length: %v, want an invalid bottom cuts setting", err)
	}
	// Same depth: the same names, a mid-stage block included.
	if top, bottom, err = pairCuts(r18, resnet(t, 18), "layer1.0,pool", ""); err != nil || !slices.Equal(top, bottom) {
		t.Errorf("same depth: top %v bottom %v, %v", top, bottom, err)
	}
}
