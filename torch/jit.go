package torch

/*
#include <stdlib.h>
#include "cbridge.h"
*/
import "C"

import (
	"unsafe"
)

// LoadTorchScript reads a TorchScript archive (torch.jit.save) through libtorch
// onto the CPU and returns its parameters and buffers with their dotted names,
// parameters first, in the module's order.
func LoadTorchScript(path string) ([]string, []*Tensor, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var n C.int
	var names **C.char
	var hs *C.tb_tensor
	if err := takeError("jit_load", C.tb_jit_load_named(cpath, &n, &names, &hs)); err != nil {
		return nil, nil, err
	}
	defer C.tb_free_strings(names, n)
	defer C.tb_free_tensor_array(hs)
	cnames := unsafe.Slice(names, int(n))
	chs := unsafe.Slice(hs, int(n))
	outNames := make([]string, n)
	out := make([]*Tensor, n)
	for i := range outNames {
		outNames[i] = C.GoString(cnames[i])
		out[i] = wrapHandle(chs[i], nil)
	}
	return outNames, out, nil
}
