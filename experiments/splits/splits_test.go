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

// TestChannelsAndStats checks that Channels repeats the grey channel in both
// splits, that Mean and Std replace the statistics (after Channels), and that
// statistics of the wrong length or sign are refused naming their field.
func TestChannelsAndStats(t *testing.T) {
	if _, err := os.Stat(filepath.Join(fmnistDir, "train-labels-idx1-ubyte.gz")); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	mean, std := []float64{0.5, 0.4, 0.3}, []float64{0.2, 0.25, 0.3}
	train, test, err := Load(Config{Name: "fashion-mnist", TrainSamples: 100, TestSamples: 100, Channels: 3, Mean: mean, Std: std})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name string
		c, n int
		m, s []float64
	}{{"train", train.C, train.N, train.Mean, train.Std}, {"test", test.C, test.N, test.Mean, test.Std}} {
		if d.c != 3 || d.n != 100 || len(d.m) != 3 || d.m[2] != 0.3 || d.s[1] != 0.25 {
			t.Errorf("%s: %d channels, %d images, mean %v, std %v", d.name, d.c, d.n, d.m, d.s)
		}
	}
	for field, c := range map[string]Config{
		"mean": {Name: "fashion-mnist", TestSamples: 100, Mean: []float64{0.5}, Std: std, Channels: 3},
		"std":  {Name: "fashion-mnist", TestSamples: 100, Mean: []float64{0.5}, Std: []float64{0}},
	} {
		_, _, err := Load(c)
		var s *invalid.Setting
		if !errors.As(err, &s) || s.Field != field {
			t.Errorf("bad %s: %v", field, err)
		}
	}
}
