package torch_test

import (
	"errors"
	"strings"
	"testing"

	"modelstitch/torch"
)

// TestErrors checks that failures inside libtorch come back as *torch.Error
// values naming the operation and carrying libtorch's message, with a code,
// and never abort the process.
func TestErrors(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	a := s.Track(torch.Ones([]int64{2, 3}))
	f64 := s.Track(torch.Ones([]int64{3, 2}, torch.Options{DType: torch.Float64}))
	cudaOK := torch.BuiltWithCUDA() && torch.CUDAAvailable()
	cases := []struct {
		name string
		x    *torch.Tensor
		op   string
		code torch.ErrorCode // 0: any
		msg  string          // libtorch's words
		skip bool
	}{
		{"bad shape", a.Mm(a), "mm", torch.CodeOther, "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)", false},
		{"broadcast", a.Add(s.Track(torch.Ones([]int64{4}))), "add", 0, "must match the size of tensor b (4)", false},
		{"dtype mismatch", a.Mm(f64), "mm", 0, "expected scalar type Float but found Double", false},
		{"index dtype", a.IndexSelect(1, s.Track(torch.FromSlice([]float32{1}))), "index_select", 0, "Expected dtype int32 or int64 for index", false},
		{"index out of range", a.Select(1, 5), "select", torch.CodeIndex, "index 5 out of range", false},
		{"index_select out of range", a.IndexSelect(1, s.Track(torch.FromSlice([]int64{7}))), "index_select", 0, "out of", false},
		{"view of non-contiguous", a.T().View(6), "view", 0, "view size is not compatible", false},
		{"CUDA tensor", torch.Zeros([]int64{2}, torch.Options{Device: torch.CUDA}), "full", torch.CodeNoCUDA, "CUDA", cudaOK},
		{"to CUDA", a.ToDevice(torch.CUDA), "to", torch.CodeNoCUDA, "CUDA", cudaOK},
		{"CPU out of memory", torch.Zeros([]int64{1 << 45}), "full", torch.CodeOutOfMemory, "can't allocate memory", false},
		{"bad FromSlice shape", torch.FromSlice([]float32{1, 2, 3}, 2, 2), "from_slice", torch.CodeValue, "needs 4 elements", false},
	}
	for _, c := range cases {
		if c.skip {
			continue
		}
		err := c.x.Err()
		var te *torch.Error
		if !errors.As(err, &te) {
			t.Errorf("%s: error %v (%T), want *torch.Error", c.name, err, err)
			continue
		}
		if te.Op != c.op || (c.code != 0 && te.Code != c.code) || !strings.Contains(te.Msg, c.msg) {
			t.Errorf("%s: got op %q code %d msg %q; want op %q code %d, message containing %q", c.name, te.Op, te.Code, te.Msg, c.op, c.code, c.msg)
		}
		if !strings.HasPrefix(err.Error(), "torch: "+c.op+": ") {
			t.Errorf("%s: %q does not name the op", c.name, err.Error())
		}
		if s, err := c.x.Shape(); s != nil || err != te || c.x.Numel() != 0 {
			t.Errorf("%s: error tensor reports shape %v and error %v", c.name, s, err)
		}
	}
	oom := torch.Zeros([]int64{1 << 45}).Err()
	if !errors.Is(oom, torch.ErrOutOfMemory) {
		t.Errorf("allocation failure %v is not ErrOutOfMemory", oom)
	}
	if !cudaOK {
		if err := torch.CheckDevice(torch.CUDA); err == nil || err.(*torch.Error).Code != torch.CodeNoCUDA {
			t.Errorf("CheckDevice(cuda): %v", err)
		}
		if _, err := torch.NewGenerator(1, torch.CUDA); err == nil {
			t.Error("CUDA generator on a CPU-only machine succeeded")
		}
	}
	if _, err := torch.ToSlice[int64](a); err == nil || err.(*torch.Error).Op != "to_slice" {
		t.Errorf("ToSlice of the wrong type: %v", err)
	}
}

// TestErrorPropagation checks that an error tensor passes its error through
// later operations without calling libtorch, like bufio.Scanner's Err.
func TestErrorPropagation(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	a := s.Track(torch.Ones([]int64{2, 3}))
	bad := a.Mm(a)
	live := torch.LiveTensors()
	out := bad.Add(a).Relu().MulScalar(2).Sum()
	out2 := torch.Cat([]*torch.Tensor{a, bad}, 0)
	out3 := torch.Conv2d(a, bad, nil, torch.P(1), torch.P(0), torch.P(1), 1)
	if got := torch.LiveTensors(); got != live {
		t.Errorf("operations on an error tensor made %d handles", got-live)
	}
	for i, x := range []*torch.Tensor{out, out2, out3} {
		if x.Err() != bad.Err() {
			t.Errorf("result %d: error %v, want the original %v", i, x.Err(), bad.Err())
		}
	}
	if _, err := out.Item(); err != bad.Err() {
		t.Errorf("Item: %v", err)
	}
	if err := bad.AddInPlace(a); err != bad.Err() {
		t.Errorf("in-place op on an error tensor: %v", err)
	}
	if err := out.Backward(); err != bad.Err() {
		t.Errorf("Backward: %v", err)
	}
	if _, err := out.Float32s(); err != bad.Err() {
		t.Errorf("Float32s: %v", err)
	}
	if err := torch.FirstError(a, out2); err != bad.Err() {
		t.Errorf("FirstError: %v", err)
	}
	if !strings.Contains(out.String(), "error") {
		t.Errorf("String of an error tensor: %s", out)
	}

	// nil and freed operands are errors too.
	var nilT *torch.Tensor
	if err := a.Add(nilT).Err(); err == nil || !strings.Contains(err.Error(), "nil tensor") {
		t.Errorf("nil operand: %v", err)
	}
	if nilT.Err() == nil {
		t.Error("nil tensor has no error")
	}
	f := torch.Ones([]int64{2})
	f.Free()
	f.Free() // twice is fine
	if !f.Freed() {
		t.Error("Freed is false after Free")
	}
	if err := f.Relu().Err(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("freed operand: %v", err)
	}
}
