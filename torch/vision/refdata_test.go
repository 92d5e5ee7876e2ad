package vision

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"modelstitch/internal/reftest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// This file reads and writes the test-only raw tensor format of
// testdata/resnet_ref.py: NAME.bin (little-endian tensor bytes, concatenated)
// and NAME.json ({"config": {...}, "entries": [{name, dtype, shape, offset}]}).

// python is the interpreter with PyTorch and torchvision: Debian's, or
// $MODELSTITCH_PYTHON (see reftest.Python).
var python = reftest.Python()

// refEntry locates one tensor in a case's .bin file.
type refEntry struct {
	Name   string  `json:"name"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Offset int64   `json:"offset"`
}

// refCase is one exported model with its inputs and expected outputs.
type refCase struct {
	Config  map[string]any `json:"config"`
	Entries []refEntry     `json:"entries"`
	tensors map[string]*torch.Tensor
}

// haveTorchvision reports whether python can import torch and torchvision,
// with the reason when it cannot.
func haveTorchvision() (bool, string) {
	out, err := exec.Command(python, "-c", "import torch, torchvision").CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("%s cannot import torch/torchvision (apt-get install python3-torch python3-torchvision): %v %s", python, err, out)
	}
	return true, ""
}

// readRefCase loads dir/name.{json,bin}.
func readRefCase(dir, name string) (*refCase, error) {
	js, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		return nil, err
	}
	var c refCase
	if err := json.Unmarshal(js, &c); err != nil {
		return nil, fmt.Errorf("%s.json: %w", name, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, name+".bin"))
	if err != nil {
		return nil, err
	}
	c.tensors = map[string]*torch.Tensor{}
	for _, e := range c.Entries {
		n := int64(1)
		for _, s := range e.Shape {
			n *= s
		}
		var t *torch.Tensor
		switch e.DType {
		case "float32":
			v := make([]float32, n)
			if _, err := binary.Decode(data[e.Offset:e.Offset+4*n], binary.LittleEndian, v); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name, err)
			}
			t = torch.FromSlice(v).Reshape(e.Shape...)
		case "int64":
			v := make([]int64, n)
			if _, err := binary.Decode(data[e.Offset:e.Offset+8*n], binary.LittleEndian, v); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name, err)
			}
			t = torch.FromSlice(v).Reshape(e.Shape...)
		default:
			return nil, fmt.Errorf("%s: dtype %q", e.Name, e.DType)
		}
		if err := t.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name, err)
		}
		c.tensors[e.Name] = t
	}
	return &c, nil
}

// writeRefCase writes named tensors (float32 or int64) and a config as dir/name.{json,bin}.
func writeRefCase(dir, name string, config map[string]any, tensors []nn.Named) error {
	var bin []byte
	c := refCase{Config: config}
	for _, n := range tensors {
		shape, err := n.Tensor.Shape()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		e := refEntry{Name: n.Name, Shape: shape, Offset: int64(len(bin))}
		if n.Tensor.DType() == torch.Int64 {
			v, err := n.Tensor.Int64s()
			if err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			e.DType = "int64"
			bin, _ = binary.Append(bin, binary.LittleEndian, v)
		} else {
			v, err := n.Tensor.Float32s()
			if err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			e.DType = "float32"
			bin, _ = binary.Append(bin, binary.LittleEndian, v)
		}
		if e.Shape == nil {
			e.Shape = []int64{}
		}
		c.Entries = append(c.Entries, e)
	}
	js, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".bin"), bin, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".json"), js, 0o644)
}

// configOf reads a ResNetConfig from a case's config.
func configOf(m map[string]any) ResNetConfig {
	num := func(k string) float64 {
		v, _ := m[k].(float64)
		return v
	}
	s, _ := m["Stem"].(string)
	return ResNetConfig{Depth: int(num("Depth")), Width: num("Width"), Stem: s,
		InChannels: int(num("InChannels")), Classes: int(num("Classes"))}
}

// maxAbsDiff returns max |a−b| and max |b|, or an error for different shapes.
func maxAbsDiff(a, b *torch.Tensor) (diff, scale float64, err error) {
	if err := torch.FirstError(a, b); err != nil {
		return 0, 0, err
	}
	as, err := a.Shape()
	if err != nil {
		return 0, 0, err
	}
	bs, err := b.Shape()
	if err != nil {
		return 0, 0, err
	}
	if !slices.Equal(as, bs) {
		return 0, 0, fmt.Errorf("shape %v, want %v", as, bs)
	}
	av, err := a.Float64s()
	if err != nil {
		return 0, 0, err
	}
	bv, err := b.Float64s()
	if err != nil {
		return 0, 0, err
	}
	for i := range av {
		diff = math.Max(diff, math.Abs(av[i]-bv[i]))
		scale = math.Max(scale, math.Abs(bv[i]))
	}
	return diff, scale, nil
}
