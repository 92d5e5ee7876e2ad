package torch

/*
#include "cbridge.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// ErrorCode classifies a libtorch failure.
type ErrorCode int

// Error codes carried by *Error, mirroring the bridge's TB_ERR_* values.
const (
	CodeOther          ErrorCode = 1
	CodeOutOfMemory    ErrorCode = 2
	CodeIndex          ErrorCode = 3
	CodeType           ErrorCode = 4
	CodeValue          ErrorCode = 5
	CodeNotImplemented ErrorCode = 6
	CodeNoCUDA         ErrorCode = 7
)

// Error is a failure inside libtorch (or a misuse the binding caught), naming
// the operation and carrying libtorch's message.
type Error struct {
	Op   string
	Code ErrorCode
	Msg  string
}

// Error formats the error as "torch: OP: message".
func (e *Error) Error() string { return fmt.Sprintf("torch: %s: %s", e.Op, e.Msg) }

// ErrOutOfMemory matches (with errors.Is) any out-of-memory *Error.
var ErrOutOfMemory = errors.New("torch: out of memory")

// Is reports whether target is ErrOutOfMemory and e is an out-of-memory error.
func (e *Error) Is(target error) bool {
	return target == ErrOutOfMemory && e.Code == CodeOutOfMemory
}

// takeError converts a bridge error object into a Go error (nil for none) and frees it.
func takeError(op string, e C.tb_error) error {
	if e == nil {
		return nil
	}
	err := &Error{Op: op, Code: ErrorCode(C.tb_error_code(e)), Msg: C.GoString(C.tb_error_message(e))}
	C.tb_error_free(e)
	return err
}

// errorf builds an *Error for a misuse detected on the Go side.
func errorf(op string, format string, args ...any) error {
	return &Error{Op: op, Code: CodeValue, Msg: fmt.Sprintf(format, args...)}
}
