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

// Rename rewrites the message of err when its chain holds a bad setting whose
// field is a key of names, so that its message names the setting as the front end does (e.g. "epochs"
// → "--epochs"): "probe: epochs must be ≥ 1, got 0" becomes "probe: --epochs
// must be ≥ 1, got 0". The result still unwraps to err. Errors without such a
// setting are returned unchanged.
func Rename(err error, names map[string]string) error {
	var s *Setting
	if !errors.As(err, &s) {
		return err
	}
	name, ok := names[s.Field]
	if !ok {
		return err
	}
	renamed := *s
	renamed.Field = name
	msg := err.Error()
	if i := strings.Index(msg, s.Error()); i >= 0 {
		return &renamedError{msg: msg[:i] + renamed.Error() + msg[i+len(s.Error()):], err: err}
	}
	return &renamedError{msg: renamed.Error() + " (" + msg + ")", err: err}
}

// renamedError is an error whose message names a setting the front end's way.
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }
