package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
	"modelstitch/weights"
	"modelstitch/weights/defaults"
)

// TestInspectFailsOnNonModel: inspect reports what a file holds, and exits
// with an error when it cannot be loaded as a model.
func TestInspectFailsOnNonModel(t *testing.T) {
	sd := weights.NewStateDict()
	r, _ := weights.NewFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})
	sd.Set("encoder.layers.0.weight", r)
	p := filepath.Join(t.TempDir(), "notresnet.safetensors")
	if err := weights.WriteSafetensors(p, sd, nil); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"stitch", "inspect", "--json", p})
	if err == nil || !strings.Contains(err.Error(), "cannot be loaded as a model") || !strings.Contains(err.Error(), "notresnet") {
		t.Errorf("inspect of a non-model: %v", err)
	}
}

// TestEvalChannels: a 3-channel model on grey data is refused with a message
// naming --channels, and --channels 3 runs it.
func TestEvalChannels(t *testing.T) {
	if _, err := os.Stat(datasets.DefaultFashionMNISTDir); err != nil {
		t.Skipf("no Fashion-MNIST (%v)", err)
	}
	meta := models.Meta{Arch: "resnet18", Width: 0.0625, Stem: "cifar", InChannels: 3, Classes: 10, Dataset: "fashion-mnist"}
	m, err := models.NewRandom(meta, 1, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	p := filepath.Join(t.TempDir(), "rgb.pth.tar")
	if err := models.Save(p, m.Net, meta); err != nil {
		t.Fatal(err)
	}
	err = run([]string{"stitch", "eval", "--checkpoint", p, "--quiet", "--threads", "1"})
	if err == nil || !strings.Contains(err.Error(), "--channels 3") {
		t.Errorf("3-channel model on grey data: %v", err)
	}
	if err := run([]string{"stitch", "eval", "--checkpoint", p, "--quiet", "--threads", "1", "--channels", "3", "--json"}); err != nil {
		t.Errorf("--channels 3: %v", err)
	}
}

// TestKeyErrorsNameTheFlag: a key that names nothing in the file is refused
// naming the flag that set it (weights names the setting "key"; each
// command names its own flag).
func TestKeyErrorsNameTheFlag(t *testing.T) {
	t.Chdir(t.TempDir())
	ck := defaults.Prefix + defaults.Names()[0]
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stitch", "inspect", "--key", "nosuch", ck}, "--key nosuch: no key starts with"},
		{[]string{"stitch", "--top", ck, "--bottom", ck, "--top-key", "nosuch", "--quiet"}, "--top-key nosuch: no key starts with"},
		{[]string{"stitch", "--top", ck, "--bottom", ck, "--bottom-key", "nosuch", "--quiet"}, "--bottom-key nosuch: no key starts with"},
	} {
		if err := run(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
