// Package invalid is the error of a bad setting, named by its field in the
// library's configuration ("epochs must be ≥ 1, got 0"), so that a front end
// can name the setting its own way (a flag, a key in a file) without the
// library knowing about flags.
package invalid

import (
	"errors"
	"fmt"
	"strings"
)

// Setting is the error of one setting's bad value.
type Setting struct {
	// Field names the setting in lower-case words: "epochs", "batch size".
	Field string
	// Problem says what is wrong with it, beginning after the name: "must be
	// ≥ 1, got 0". Empty when Err says it.
	Problem string
	// Err is the underlying error, if any.
	Err error
}

// Error is the field's name followed by the problem (or ": " and Err).
func (e *Setting) Error() string {
	switch {
	case e.Problem != "" && e.Err != nil:
		return e.Field + " " + e.Problem + ": " + e.Err.Error()
	case e.Err != nil:
		return e.Field + ": " + e.Err.Error()
	}
	return e.Field + " " + e.Problem
}

// Unwrap returns the underlying error.
func (e *Setting) Unwrap() error { return e.Err }

// SettingField is the field the error is about (see Named).
func (e *Setting) SettingField() string { return e.Field }

// Named is an error about one setting whose message begins with the
// setting's field. *Setting is one; a package this one cannot be imported
// by (weights, below experiments) defines its own, and Rename renames it
// all the same.
type Named interface {
	error
	// SettingField names the setting in lower-case words ("key").
	SettingField() string
}

// Errorf returns a *Setting for field whose Problem is the formatted text.
func Errorf(field, format string, args ...any) error {
	return &Setting{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Wrap returns a *Setting for field caused by err (nil when err is nil).
func Wrap(field string, err error) error {
	if err == nil {
		return nil
	}
	return &Setting{Field: field, Err: err}
}

// Rename rewrites the message of err when its chain holds a bad setting (a
// Named error) whose field is a key of names, so that its message names the
// setting as the front end does (e.g. "epochs" → "--epochs"): "probe: epochs
// must be ≥ 1, got 0" becomes "probe: --epochs must be ≥ 1, got 0". The
// result still unwraps to err. Errors without such a setting are returned
// unchanged.
func Rename(err error, names map[string]string) error {
	var s Named
	if !errors.As(err, &s) {
		return err
	}
	field, own := s.SettingField(), s.Error()
	name, ok := names[field]
	if !ok || !strings.HasPrefix(own, field) {
		return err
	}
	renamed := name + own[len(field):]
	msg := err.Error()
	if i := strings.Index(msg, own); i >= 0 {
		return &renamedError{msg: msg[:i] + renamed + msg[i+len(own):], err: err}
	}
	return &renamedError{msg: renamed + " (" + msg + ")", err: err}
}

// renamedError is an error whose message names a setting the front end's way.
type renamedError struct {
	msg string
	err error
}

// Error is the renamed message.
func (e *renamedError) Error() string { return e.msg }

// Unwrap returns the original error.
func (e *renamedError) Unwrap() error { return e.err }
