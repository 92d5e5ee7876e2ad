package main

import (
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/vision"
)

// TestEvalChannelMismatchNamesTheFile: an RGB model evaluated on grey
// images is refused naming the file and the fix, not with libtorch's raw
// convolution message.
func TestEvalChannelMismatchNamesTheFile(t *testing.T) {
	needData(t)
	meta := models.MetaFor(vision.ResNetConfig{Depth: 18, Width: 0.125, Stem: vision.StemCIFAR, InChannels: 3, Classes: 10})
	meta.Dataset = "fashion-mnist"
	m, err := models.NewRandom(meta, 1, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rgb.pt")
	err = models.Save(path, m.Net, m.Meta)
	m.Free()
	if err != nil {
		t.Fatal(err)
	}
	err = run([]string{"stitch", "eval", "--checkpoint", path, "--quiet", "--threads", "1"})
	for _, want := range []string{path, "3-channel", "--channels 3"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one saying %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "weight of size") {
		t.Errorf("libtorch's raw message reaches the user: %v", err)
	}
}
