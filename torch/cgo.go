// Package torch is modelstitch's Go binding over libtorch: tensors, operations,
// autograd, random generators, devices and memory scopes.
//
// The binding reaches libtorch only through the plain C ABI in cbridge/cbridge.h,
// built by CMake into build/libcbridge.so (run `make build` first). No torch
// header is compiled by cgo.
//
// Errors: an operation that fails in libtorch does not panic. It returns a
// tensor that carries the error (see Tensor.Err); every later operation on such
// a tensor returns the same error without calling libtorch, so a whole forward
// pass can be written without checks and the error read once at the end, the
// way bufio.Scanner reports its error.
//
// Memory: tensors hold libtorch memory the Go garbage collector cannot see.
// Tensors made in loops belong in a Scope that is closed each step; results of
// an operation join the scope of its first operand that has one. Cleanups
// (runtime.AddCleanup) free unscoped tensors only as a safety net.
// LiveTensors counts the handles alive, for tests.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/../cbridge
#cgo LDFLAGS: -L${SRCDIR}/../build -lcbridge -Wl,-rpath,${SRCDIR}/../build
#include <stdlib.h>
#include "cbridge.h"
*/
import "C"

import "unsafe"

// cInts returns a C pointer to the elements of s (nil for an empty slice).
// The slice must stay alive for the duration of the C call.
func cInts(s []int64) *C.int64_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&s[0]))
}

// cBool converts a Go bool to a C int flag.
func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
