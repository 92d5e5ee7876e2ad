package invalid

import (
	"errors"
	"fmt"
	"testing"
)

// optionError is a Named error of another package (weights.OptionError).
type optionError struct{ option, problem string }

func (e *optionError) Error() string        { return e.option + " " + e.problem }
func (e *optionError) SettingField() string { return e.option }

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
	foreign := fmt.Errorf("model m.pt: %w", &optionError{"key", "module: no such entry"})
	if got := Rename(foreign, map[string]string{"key": "--top-key"}); got.Error() != "model m.pt: --top-key module: no such entry" {
		t.Errorf("another package's setting error renamed to %q", got)
	}
	if Wrap("x", nil) != nil {
		t.Error("Wrap of nil is not nil")
	}
}
