package resnetkeys

import (
	"errors"
	"strings"
	"testing"

	"modelstitch/weights"
)

func stateWithKeys(keys ...string) *weights.StateDict {
	sd := weights.NewStateDict()
	for i, k := range keys {
		t, _ := weights.NewFloat32([]int64{1}, []float32{float32(i)})
		sd.Set(k, t)
	}
	return sd
}

func TestNormalizeKeys(t *testing.T) {
	tests := []struct {
		name  string
		in    []string
		want  []string
		notes []string
	}{
		{"plain", []string{"conv1.weight", "fc.bias"}, []string{"conv1.weight", "fc.bias"}, nil},
		{"module", []string{"module.conv1.weight", "module.fc.bias"}, []string{"conv1.weight", "fc.bias"},
			[]string{"stripped prefix module. from 2 keys"}},
		{"lightning", []string{"model.conv1.weight", "model.layer1.0.bn1.running_mean"}, []string{"conv1.weight", "layer1.0.bn1.running_mean"},
			[]string{"stripped prefix model."}},
		{"nested", []string{"model.backbone.conv1.weight", "model.backbone.fc.bias"}, []string{"conv1.weight", "fc.bias"},
			[]string{"stripped prefix model.", "stripped prefix backbone."}},
		{"ssl", []string{"backbone.conv1.weight", "projector.0.weight", "projector.0.bias"}, []string{"conv1.weight"},
			[]string{"ignored 2 projector.* keys", "stripped prefix backbone."}},
		{"module ssl", []string{"module.encoder.conv1.weight", "module.predictor.0.weight", "module.projection_head.w"}, []string{"conv1.weight"},
			[]string{"stripped prefix module.", "ignored 1 predictor.* keys", "ignored 1 projection_head.* keys", "stripped prefix encoder."}},
		{"compiled", []string{"_orig_mod.conv1.weight"}, []string{"conv1.weight"}, []string{"stripped prefix _orig_mod."}},
		{"partial prefix kept", []string{"model.conv1.weight", "model.fc.bias", "criterion.weight"},
			[]string{"model.conv1.weight", "model.fc.bias", "criterion.weight"},
			[]string{"kept prefix model.: only 2 of 3 keys have it"}},
		{"encoder-decoder kept", []string{"encoder.x", "decoder.y"}, []string{"encoder.x", "decoder.y"}, nil},
		{"double module", []string{"module.a", "module.module.a"}, []string{"a", "module.a"}, nil},
		{"only heads kept", []string{"head.weight"}, []string{"head.weight"}, nil},
		{"dino", []string{"backbone.blocks.0.w", "head.mlp.0.weight", "head.last_layer.weight_g"}, []string{"blocks.0.w"},
			[]string{"ignored 2 head.* keys"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := stateWithKeys(tc.in...)
			got, notes := NormalizeKeys(in)
			if strings.Join(got.Keys, " ") != strings.Join(tc.want, " ") {
				t.Errorf("keys %v, want %v", got.Keys, tc.want)
			}
			joined := strings.Join(notes, "\n")
			for _, n := range tc.notes {
				if !strings.Contains(joined, n) {
					t.Errorf("notes lack %q:\n%s", n, joined)
				}
			}
			if tc.notes == nil && len(notes) > 0 && tc.name != "double module" {
				t.Errorf("unexpected notes %v", notes)
			}
			for _, k := range got.Keys {
				if got.Tensors[k] == nil {
					t.Errorf("key %q lost its tensor", k)
				}
			}
			if strings.Join(in.Keys, " ") != strings.Join(tc.in, " ") {
				t.Errorf("input modified")
			}
		})
	}
}

func TestNormalizeKeysKeepsTensors(t *testing.T) {
	in := stateWithKeys("module.a", "module.b")
	got, _ := NormalizeKeys(in)
	if got.Tensors["a"] != in.Tensors["module.a"] || got.Tensors["b"] != in.Tensors["module.b"] {
		t.Error("tensors not carried over to the new names")
	}
}

func TestCompareKeys(t *testing.T) {
	have := weights.NewStateDict()
	w, _ := weights.NewFloat32([]int64{10, 512}, make([]float32, 5120))
	have.Set("fc.weight", w)
	n, _ := weights.NewInt64(nil, []int64{0})
	have.Set("bn1.num_batches_tracked", n)
	have.Set("extra", n)
	want := map[string][]int64{
		"fc.weight":               {1000, 512},
		"bn1.num_batches_tracked": {},
		"fc.bias":                 {1000},
		"conv1.weight":            {64, 3, 7, 7},
	}
	m := CompareKeys(want, have)
	if m == nil {
		t.Fatal("no mismatch reported")
	}
	if strings.Join(m.Missing, ",") != "conv1.weight,fc.bias" || strings.Join(m.Unexpected, ",") != "extra" ||
		len(m.WrongShape) != 1 || m.WrongShape[0].Key != "fc.weight" {
		t.Errorf("mismatch %+v", m)
	}
	msg := m.Error()
	for _, s := range []string{"2 missing (conv1.weight, fc.bias)", "1 unexpected (extra)", "1 of the wrong shape (fc.weight: want [1000 512], have [10 512])"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	if !errors.Is(m.Err(), ErrMismatch) {
		t.Error("errors.Is(m, ErrMismatch) is false")
	}
	if m := CompareKeys(have.Shapes(), have); m != nil || m.Err() != nil {
		t.Errorf("identical: %v", m)
	}
	many := map[string][]int64{}
	for i := 0; i < 30; i++ {
		many[strings.Repeat("k", i+1)] = []int64{1}
	}
	if msg := CompareKeys(many, weights.NewStateDict()).Error(); !strings.Contains(msg, "30 missing") || !strings.Contains(msg, "and 25 more") {
		t.Errorf("long message %q", msg)
	}
}
