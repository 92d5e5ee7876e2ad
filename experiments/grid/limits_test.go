package grid

import (
	"strings"
	"testing"
)

// TestSpecLimitsRefusedWhenRead: settings the commands refuse are refused
// when the spec is read, naming the file, the line and the key that set
// them, with the commands' own reason. Before, plan accepted every one of
// them and the units failed one by one at run time (width 1e300: "needs
// at least +Inf TiB") or never finished (epochs 99999999999).
func TestSpecLimitsRefusedWhenRead(t *testing.T) {
	model := func(extra string) string { return strings.Replace(minimalSpec, "seed = 1", "seed = 1\n"+extra, 1) }
	stitchTable := func(extra string) string { return minimalSpec + "[pairs.ab.stitch]\n" + extra + "\n" }
	cases := []struct {
		name, text string
		want       []string
	}{
		{"huge width", model("width = 1e300"), []string{"spec.toml:5: models.a.width: 1e+300 is too large", "more than any machine can address"}},
		{"width of no channel", model("width = 1e-9"), []string{"spec.toml:5: models.a.width", "fewer than 1 base channel"}},
		{"infinite width", model("width = inf"), []string{"spec.toml:5: models.a.width", "finite"}},
		{"width in the defaults", minimalSpec + "[model_defaults]\nwidth = 1e300\n", []string{"spec.toml:12: model_defaults.width", "too large"}},
		{"epochs", model("epochs = 99999999999"), []string{"spec.toml:5: models.a.epochs: must be in 0..1000000, got 99999999999"}},
		{"steps", model("steps = 99999999999999"), []string{"spec.toml:5: models.a.steps: must be in 0..1000000"}},
		{"epochs in the defaults", minimalSpec + "[model_defaults]\nepochs = 99999999999\n", []string{"spec.toml:12: model_defaults.epochs"}},
		{"train samples", model("train_samples = 60001"), []string{"spec.toml:5: models.a.train_samples: 60001: the training split has 60000 images"}},
		{"label noise NaN", model("label_noise = nan"), []string{"spec.toml:5: models.a.label_noise: must be a finite number, got NaN"}},
		{"learning rate", model("lr = inf"), []string{"spec.toml:5: models.a.lr", "finite"}},
		{"test samples", "test_samples = 99999999999999\n" + minimalSpec, []string{"spec.toml:1: test_samples: 99999999999999: the test split has 10000 images"}},
		{"test samples of CIFAR-10", "data = \"cifar10\"\ntest_samples = 10001\n" + minimalSpec, []string{"spec.toml:2: test_samples", "10000 images"}},
		{"probe epochs", minimalSpec + "[models.p]\nprobe_of = \"a\"\nprobe_epochs = 99999999999\n", []string{"spec.toml:13: models.p.probe_epochs: must be in 0..1000000"}},
		{"probe samples", minimalSpec + "[models.p]\nprobe_of = \"a\"\nprobe_samples = 70000\n", []string{"spec.toml:13: models.p.probe_samples: 70000: the training split has 60000 images"}},
		{"kernel size", stitchTable("kernel_size = 100001"), []string{"spec.toml:12: pairs.ab.stitch.kernel_size: 100001 is wider than the 28×28 activations allow (at most 55"}},
		{"kernel size in the defaults", minimalSpec + "[stitch_defaults]\nkernel_size = 57\n", []string{"spec.toml:12: stitch_defaults.kernel_size", "at most 55"}},
		{"kernel size on CIFAR-10", "data = \"cifar10\"\n" + stitchTable("kernel_size = 65"), []string{"pairs.ab.stitch.kernel_size", "32×32", "at most 63"}},
		{"stitch epochs", stitchTable("epochs = 99999999999"), []string{"spec.toml:12: pairs.ab.stitch.epochs: must be in 0..1000000"}},
		{"stitch learning rate", stitchTable("lr = inf"), []string{"spec.toml:12: pairs.ab.stitch.lr", "finite"}},
	}
	for _, c := range cases {
		_, err := Parse("spec.toml", []byte(c.text), testVocabulary)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	// The largest settings the commands take pass.
	for _, text := range []string{
		model("width = 8\nepochs = 1000000\ntrain_samples = 60000"),
		"test_samples = 10000\n" + stitchTable("kernel_size = 55\nepochs = 1000000"),
		"data = \"folder:/x\"\ntest_samples = 99999999\n" + stitchTable("kernel_size = 1001"), // sizes unknown until read
	} {
		if _, err := Parse("spec.toml", []byte(text), testVocabulary); err != nil {
			t.Errorf("refused: %v\n%s", err, text)
		}
	}
}
