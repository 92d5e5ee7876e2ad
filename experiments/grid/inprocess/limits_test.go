package inprocess

import (
	"strings"
	"testing"

	"modelstitch/experiments/grid"
)

// TestVocabularyCarriesTheLimits: the vocabulary the commands read specs
// with refuses, when the spec is read, what the libraries refuse (grid
// itself links none of them).
func TestVocabularyCarriesTheLimits(t *testing.T) {
	base := "data = \"fashion-mnist\"\n[models.a]\nseed = 1\n[models.b]\nseed = 2\n[pairs.ab]\nbottom = \"a\"\ntop = \"b\"\ncuts = \"stem\"\n"
	for _, c := range []struct{ extra, want string }{
		{"[model_defaults]\nwidth = 1e300\n", "width"},
		{"[model_defaults]\nepochs = 99999999999\n", "epochs"},
		{"test_samples = 99999999999999\n", "test_samples"},
		{"[stitch_defaults]\nkernel_size = 100001\n", "kernel_size"},
	} {
		text := c.extra + base
		if strings.HasPrefix(c.extra, "[") {
			text = base + c.extra // a table's keys after every top-level key
		}
		_, err := grid.Parse("s.toml", []byte(text), Vocabulary())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", strings.TrimSpace(c.extra), err, c.want)
		}
	}
}
