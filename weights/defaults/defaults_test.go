package defaults

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"modelstitch/weights"
)

func TestShippedCheckpointsRead(t *testing.T) {
	names := Names()
	if len(names) < 2 {
		t.Fatalf("want at least two shipped checkpoints, have %v", names)
	}
	for _, n := range names {
		f, err := Open(Prefix + n)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		ck, err := weights.ReadFrom(f, st.Size(), Prefix+n, weights.ReadOptions{})
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		var meta map[string]any
		if err := ck.ModelstitchMeta(&meta); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if meta["dataset"] != "fashion-mnist" || meta["test_accuracy"] == nil {
			t.Errorf("%s: metadata %v", n, meta)
		}
		t.Logf("%s: %s, test accuracy %v%%", n, meta["objective"], meta["test_accuracy"])
	}
	if _, err := Open(Prefix + "no-such-model"); err == nil || !strings.Contains(err.Error(), names[0]) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown name should list the shipped ones: %v", err)
	}
}
