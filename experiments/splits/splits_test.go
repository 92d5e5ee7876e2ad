package splits

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"modelstitch/experiments/invalid"
)

const fmnistDir = "/usr/share/datasets/fashion-mnist"

func TestLoadErrors(t *testing.T) {
	if _, err := os.Stat(filepath.Join(fmnistDir, "train-labels-idx1-ubyte.gz")); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	cases := []Config{
		{Name: "fashion-mnist", TrainSamples: 70000},
		{Name: "fashion-mnist", LabelNoise: 1.5},
		{Name: "fashion-mnist", ObjectsVsAnimals: true},
		{Name: "no-such-data"},
	}
	for i, c := range cases {
		_, _, err := Load(c)
		if err == nil {
			t.Errorf("%+v: no error", c)
			continue
		}
		t.Logf("%+v: %v", c, err)
		var s *invalid.Setting
		if i < 3 && !errors.As(err, &s) {
			t.Errorf("%+v: %v does not name the setting", c, err)
		}
	}
	train, _, err := Load(Config{Name: "fashion-mnist", TrainSamples: 1000, LabelNoise: 0.5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 1000 || train.Noise == nil || len(train.Noise.Replaced) != 500 {
		t.Errorf("subset %d, noise %+v", train.N, train.Noise)
	}
}
