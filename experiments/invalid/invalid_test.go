package invalid

import (
	"errors"
	"fmt"
	"testing"
)

func TestRenameNamesTheFlag(t *testing.T) {
	base := Errorf("epochs", "must be ≥ 1, got %d", 0)
	if base.Error() != "epochs must be ≥ 1, got 0" {
		t.Errorf("message %q", base)
	}
	wrapped := fmt.Errorf("probe: %w", base)
	got := Rename(wrapped, map[string]string{"epochs": "--epochs"})
	if got.Error() != "probe: --epochs must be ≥ 1, got 0" {
		t.Errorf("renamed %q", got)
	}
	if !errors.Is(got, base) {
		t.Error("the renamed error does not unwrap to the original")
	}
	cause := errors.New("unknown architecture vgg16")
	if got := Rename(Wrap("arch", cause), map[string]string{"arch": "--arch"}); got.Error() != "--arch: unknown architecture vgg16" || !errors.Is(got, cause) {
		t.Errorf("wrapped cause renamed to %q", got)
	}
	if got := Rename(wrapped, map[string]string{"lr": "--lr"}); got != wrapped {
		t.Errorf("a field without a name changed: %v", got)
	}
	plain := errors.New("disk full")
	if got := Rename(plain, map[string]string{"epochs": "--epochs"}); got != plain {
		t.Errorf("an error without a setting changed: %v", got)
	}
	if Wrap("x", nil) != nil {
		t.Error("Wrap of nil is not nil")
	}
}
