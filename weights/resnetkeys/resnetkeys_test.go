package resnetkeys

import (
	"errors"
	"math/rand"
	"strings"
	"testing"

	"modelstitch/weights"
)

// resnetKeys lists a ResNet-18's keys (shapes do not matter to the mapping,
// except conv weights, which are 4-D) under prefix, in torchvision's names or
// renamed by rename.
func resnetKeys(prefix string, rename func(string) string) []string {
	keys := []string{"conv1.weight", "bn1.weight", "bn1.running_mean"}
	for l := 1; l <= 4; l++ {
		for b := 0; b < 2; b++ {
			p := "layer" + string(rune('0'+l)) + "." + string(rune('0'+b)) + "."
			keys = append(keys, p+"conv1.weight", p+"bn1.weight", p+"conv2.weight", p+"bn2.weight")
			if l > 1 && b == 0 {
				keys = append(keys, p+"downsample.0.weight", p+"downsample.1.weight")
			}
		}
	}
	keys = append(keys, "fc.weight", "fc.bias")
	out := make([]string, len(keys))
	for i, k := range keys {
		if rename != nil {
			k = rename(k)
		}
		out[i] = prefix + k
	}
	return out
}

// stateWithConvs is stateWithKeys with 4-D tensors for conv weights.
func stateWithConvs(keys ...string) *weights.StateDict {
	sd := weights.NewStateDict()
	for _, k := range keys {
		shape := []int64{1}
		if strings.HasSuffix(k, "conv1.weight") || strings.HasSuffix(k, "conv2.weight") || strings.HasSuffix(k, ".0.weight") {
			shape = []int64{1, 1, 1, 1}
		}
		t, _ := weights.NewFloat32(shape, make([]float32, shape[0]))
		sd.Set(k, t)
	}
	return sd
}

func TestResolveKeysChoosesByRole(t *testing.T) {
	tests := []struct {
		name, want string
		prefixes   []string
	}{
		{"moco v2", "module.encoder_q.", []string{"module.encoder_k.", "module.encoder_q."}},
		{"moco v3", "module.base_encoder.", []string{"module.momentum_encoder.", "module.base_encoder."}},
		{"byol", "online_encoder.net.", []string{"target_encoder.net.", "net.", "online_encoder.net."}},
		{"robustness", "module.model.", []string{"module.attacker.model.", "module.model."}},
		{"dino-like", "teacher.", []string{"student.", "teacher."}},
		{"ema", "model.", []string{"model_ema.", "model."}},
		{"neutral: shortest, then alphabetical", "a.", []string{"b.", "x.y.", "a."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var keys []string
			for _, p := range tc.prefixes {
				keys = append(keys, resnetKeys(p, nil)...)
			}
			var first string
			for i := 0; i < 5; i++ { // any key order gives the same choice
				rand.New(rand.NewSource(int64(i))).Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
				sd := stateWithConvs(keys...)
				res, err := ResolveKeys(sd, "")
				if err != nil {
					t.Fatal(err)
				}
				out, notes := res.State, res.Notes
				if out.Len() != len(resnetKeys("", nil)) {
					t.Fatalf("kept %d keys: %v", out.Len(), out.Keys)
				}
				joined := strings.Join(notes, "\n")
				if !strings.Contains(joined, "chose "+strings.TrimSuffix(tc.want, ".")+" ") || !strings.Contains(joined, "the key setting") {
					t.Errorf("notes do not say %s was chosen or name the key setting:\n%s", tc.want, joined)
				}
				if i == 0 {
					first = joined
				} else if joined != first {
					t.Errorf("notes differ with the key order:\n%s\n---\n%s", first, joined)
				}
				// The tensors are the chosen network's.
				if out.Get("conv1.weight") != sd.Get(tc.want+"conv1.weight") {
					t.Errorf("conv1.weight is not %sconv1.weight", tc.want)
				}
			}
		})
	}
}

func TestResolveKeysLayouts(t *testing.T) {
	seq := func(k string) string { // torchvision children in an nn.Sequential
		for from, to := range map[string]string{"conv1.": "0.", "bn1.": "1.", "layer1.": "4.", "layer2.": "5.", "layer3.": "6.", "layer4.": "7."} {
			if strings.HasPrefix(k, from) {
				return to + k[len(from):]
			}
		}
		return "" // fc dropped by children()[:-1]
	}
	var seqKeys []string
	for _, k := range resnetKeys("backbone.", seq) {
		if k != "backbone." {
			seqKeys = append(seqKeys, k)
		}
	}
	kuang := resnetKeys("module.", func(k string) string {
		k = strings.Replace(k, "downsample", "shortcut", 1)
		return strings.Replace(k, "fc.", "linear.", 1)
	})
	tests := []struct {
		name  string
		keys  []string
		want  int // keys kept
		notes []string
		meta  map[string]string
	}{
		{"lightly", append(seqKeys, "projection_head.layers.0.weight"), len(resnetKeys("", nil)) - 2,
			[]string{"renamed nn.Sequential children", "projection_head."}, nil},
		{"kuangliu", kuang, len(resnetKeys("", nil)), []string{"shortcut.* → downsample.*"}, map[string]string{MetaFamily: "kuangliu pytorch-cifar"}},
		{"stray key", append(resnetKeys("model.", nil), "criterion.weight"), len(resnetKeys("", nil)),
			[]string{"used the ResNet under model; ignored 1 other keys (criterion.)"}, nil},
		{"solo-learn", append(resnetKeys("backbone.", func(k string) string {
			if strings.HasPrefix(k, "fc.") {
				return "projector." + k
			}
			return k
		}), "classifier.weight", "classifier.bias"), len(resnetKeys("", nil)),
			[]string{"solo-learn layout", "classifier"}, map[string]string{MetaFamily: "solo-learn"}},
		{"vissl", resnetKeys("trunk._feature_blocks.", nil), len(resnetKeys("", nil)), nil, map[string]string{MetaFamily: "VISSL trunk"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sd := stateWithConvs(tc.keys...)
			if tc.name == "solo-learn" {
				w, _ := weights.NewFloat32([]int64{10, 512}, make([]float32, 5120))
				sd.Set("classifier.weight", w)
			}
			res, err := ResolveKeys(sd, "")
			if err != nil {
				t.Fatal(err)
			}
			out, meta, notes := res.State, res.Meta, res.Notes
			if out.Len() != tc.want {
				t.Errorf("kept %d keys, want %d: %v", out.Len(), tc.want, out.Keys)
			}
			for _, k := range out.Keys {
				first, _, _ := strings.Cut(k, ".")
				if !strings.HasPrefix(first, "layer") && first != "conv1" && first != "bn1" && first != "fc" ||
					strings.Contains(k, "shortcut") {
					t.Errorf("key %s is not a torchvision ResNet name", k)
				}
			}
			joined := strings.Join(notes, "\n")
			for _, n := range tc.notes {
				if !strings.Contains(joined, n) {
					t.Errorf("notes lack %q:\n%s", n, joined)
				}
			}
			for k, v := range tc.meta {
				if meta[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
				}
			}
		})
	}
}

func TestResolveKeysRefusals(t *testing.T) {
	deep := resnetKeys("", func(k string) string {
		if k == "conv1.weight" {
			return "conv1.0.weight"
		}
		return k
	})
	deep = append(deep, "conv1.1.weight", "conv1.3.weight", "conv1.4.weight", "conv1.6.weight")
	if _, err := ResolveKeys(stateWithConvs(deep...), ""); !errors.Is(err, ErrDeepStem) {
		t.Errorf("deep stem: %v", err)
	}
	sd := stateWithConvs(resnetKeys("module.encoder_q.", nil)...)
	_, err := ResolveKeys(sd, "module.encoder_z")
	if err == nil || !strings.Contains(err.Error(), "key module.encoder_z") || !strings.Contains(err.Error(), "module.encoder_q.") {
		t.Errorf("unknown key: %v", err)
	}
	if oe := (*weights.OptionError)(nil); !errors.As(err, &oe) || oe.SettingField() != "key" {
		t.Errorf("unknown key: %v is not an OptionError about the key", err)
	}
	// A key prefix with or without the final dot.
	for _, k := range []string{"module.encoder_q", "module.encoder_q.", "module"} {
		res, err := ResolveKeys(sd, k)
		if err != nil || res.State.Get("conv1.weight") == nil {
			t.Errorf("--key %s: %v", k, err)
		}
	}
}
