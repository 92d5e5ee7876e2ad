package weights_test

import (
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/weights"
	"modelstitch/weights/resnetkeys"
)

// TestReadTorchFileFixtures reads the Python-made files and brings their
// keys to torchvision's names (the path every checkpoint takes): the same
// tensors as PyTorch's own state dicts, and notes saying what was done.
func TestReadTorchFileFixtures(t *testing.T) {
	dir := weights.Fixtures(t)
	tests := []struct {
		name   string
		format string
		notes  []string // substrings that must appear in the notes
	}{
		{"resnet18", weights.FormatTorchZip, nil},
		{"dataparallel", weights.FormatTorchZip, []string{"state dict found under state_dict", "epoch", "optimizer", "args", "stripped prefix module."}},
		{"ssl", weights.FormatTorchZip, []string{"ignored 3 projector.* keys", "stripped prefix backbone."}},
		{"lightning", weights.FormatTorchZip, []string{"state dict found under state_dict", "hyper_parameters", "stripped prefix model."}},
		{"dino", weights.FormatTorchZip, []string{"state dict found under teacher", "ignored 1 head.* keys", "stripped prefix backbone."}},
		{"legacy", weights.FormatTorchLegacy, nil},
		{"views", weights.FormatTorchZip, nil},
		{"views_legacy", weights.FormatTorchLegacy, nil},
		{"fullmodel", weights.FormatTorchZip, []string{"pickled __main__.Net"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".pt")
			ck, err := weights.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := resnetkeys.Resolve(ck); err != nil {
				t.Fatal(err)
			}
			if ck.Format != tc.format {
				t.Errorf("format %q, want %q", ck.Format, tc.format)
			}
			if ck.Path != path {
				t.Errorf("path %q, want %q", ck.Path, path)
			}
			e := weights.LoadExpected(t, dir, tc.name)
			weights.CheckState(t, ck.State, e)
			notes := strings.Join(ck.Notes, "\n")
			for _, n := range tc.notes {
				if !strings.Contains(notes, n) {
					t.Errorf("notes lack %q:\n%s", n, notes)
				}
			}
			for k, v := range e.Metadata {
				if ck.Metadata[k] != v {
					t.Errorf("metadata %q = %q, want %q (all: %v)", k, ck.Metadata[k], v, ck.Metadata)
				}
			}
			if tc.notes == nil && len(ck.Notes) > 0 {
				t.Errorf("unexpected notes: %v", ck.Notes)
			}
		})
	}
}
