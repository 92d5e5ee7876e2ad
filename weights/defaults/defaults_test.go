package defaults

import (
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
		b, err := Bytes(Prefix + n)
		if err != nil {
			t.Fatal(err)
		}
		ck, err := weights.ReadTorchBytes(b)
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
	if _, err := Bytes("no-such-model"); err == nil || !strings.Contains(err.Error(), names[0]) {
		t.Errorf("unknown name should list the shipped ones: %v", err)
	}
}
