package models

import (
	"fmt"

	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/weights"
)

// FromRaw makes a CPU tensor from a file's raw tensor. Floating-point weights
// of any precision become float32 (the models compute in float32); integer
// buffers stay int64.
func FromRaw(r *weights.RawTensor) (*torch.Tensor, error) {
	if r.DType.IsFloat() {
		v, err := r.Float32s()
		if err != nil {
			return nil, err
		}
		return shaped(torch.FromSlice(v, int64(len(v))), r.Shape)
	}
	v, err := r.Int64s()
	if err != nil {
		return nil, err
	}
	return shaped(torch.FromSlice(v, int64(len(v))), r.Shape)
}

// shaped gives a flat tensor its file shape, including the 0-d shape of
// scalars such as num_batches_tracked.
func shaped(flat *torch.Tensor, shape []int64) (*torch.Tensor, error) {
	t := flat.Reshape(shape...)
	if err := t.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// ToRaw copies a tensor into a raw tensor (float32 or int64).
func ToRaw(t *torch.Tensor) (*weights.RawTensor, error) {
	shape, err := t.Shape()
	if err != nil {
		return nil, err
	}
	if t.DType().IsFloat() {
		v, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		return weights.NewFloat32(shape, v)
	}
	v, err := t.Int64s()
	if err != nil {
		return nil, err
	}
	return weights.NewInt64(shape, v)
}

// ToTensors converts a whole state dict to CPU tensors by name.
func ToTensors(sd *weights.StateDict) (map[string]*torch.Tensor, error) {
	out := make(map[string]*torch.Tensor, sd.Len())
	for _, k := range sd.Keys {
		t, err := FromRaw(sd.Get(k))
		if err != nil {
			freeMap(out)
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = t
	}
	return out, nil
}

// FromModule copies a module's state dict (parameters and buffers, PyTorch
// order and names) into a raw state dict for writing.
func FromModule(m nn.Module) (*weights.StateDict, error) {
	sd := weights.NewStateDict()
	for _, n := range nn.StateDict(m) {
		r, err := ToRaw(n.Tensor)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		sd.Set(n.Name, r)
	}
	return sd, nil
}
