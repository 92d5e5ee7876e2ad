package results

import "testing"

// TestKeyCoversEverySetting changes each setting that changes a row's result
// and checks that the store no longer counts the cut as done, so it is
// recomputed.
func TestKeyCoversEverySetting(t *testing.T) {
	base := Row{Bottom: "b", Top: "t", Cut: "layer1.0", Init: "least-squares", Epochs: 1, Seed: 0, LR: 1e-2, BatchSize: 128,
		FitSamples: 6000, LSSamples: 2000, KernelSize: 1, FrozenBN: "eval", Data: "fashion-mnist", TestSamples: 10000, CKASamples: 500,
		BottomSHA256: "aa", TopSHA256: "bb"}
	changes := map[string]func(*Row){
		"test samples": func(r *Row) { r.TestSamples = 500 },
		"cka samples":  func(r *Row) { r.CKASamples = 2000 },
		"init":         func(r *Row) { r.Init = "default" },
		"epochs":       func(r *Row) { r.Epochs = 2 },
		"lr":           func(r *Row) { r.LR = 1e-3 },
		"fit samples":  func(r *Row) { r.FitSamples = 0 },
		"fit augment":  func(r *Row) { r.FitAugment = true },
		"kernel size":  func(r *Row) { r.KernelSize = 3 },
		"frozen bn":    func(r *Row) { r.FrozenBN = "train" },
		"seed":         func(r *Row) { r.Seed = 1 },
		"ls samples":   func(r *Row) { r.LSSamples = 500 },
		"batch size":   func(r *Row) { r.BatchSize = 64 },
		"data":         func(r *Row) { r.Data = "cifar10" },
		"bottom":       func(r *Row) { r.BottomSHA256 = "cc" },
	}
	s, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(base); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Done(base); !ok {
		t.Fatal("the stored row is not done")
	}
	for name, change := range changes {
		r := base
		change(&r)
		if _, ok := s.Done(r); ok {
			t.Errorf("changing %s keeps the stored cut: it would not be recomputed", name)
		}
	}
}
