package torch_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"sort"
	"strings"
	"testing"

	"modelstitch/torch"
)

// propagation lists, for every exported function and method of package torch
// that takes a tensor, how to call it with tensor operands a and b (a in the
// first tensor slot, b in the second; other slots get good tensors) and the
// error the call reports: its error result, or the Err of the tensor(s) it
// returns. Functions without an error result report the operand's Err after
// the call, once their zero-value results have been checked.
type propCase struct {
	// operands is the number of tensor slots the case fills from a and b
	// (1 or 2); with 2 the test also puts the error tensor in the second slot.
	operands int
	call     func(a, b *torch.Tensor) error
}

func one(f func(a *torch.Tensor) *torch.Tensor) propCase {
	return propCase{1, func(a, _ *torch.Tensor) error { return f(a).Err() }}
}

func two(f func(a, b *torch.Tensor) *torch.Tensor) propCase {
	return propCase{2, func(a, b *torch.Tensor) error { return f(a, b).Err() }}
}

func oneErr(f func(a *torch.Tensor) error) propCase {
	return propCase{1, func(a, _ *torch.Tensor) error { return f(a) }}
}

func twoErr(f func(a, b *torch.Tensor) error) propCase {
	return propCase{2, func(a, b *torch.Tensor) error { return f(a, b) }}
}

// pairErr returns the error both tensors of a pair carry, or one saying they differ.
func pairErr(v, i *torch.Tensor) error {
	if v.Err() != i.Err() {
		return fmt.Errorf("values carry %v, indices %v", v.Err(), i.Err())
	}
	return v.Err()
}

// zeroThen returns err when the accessor's result is its zero value, else an
// error naming what the error tensor claimed.
func zeroThen[T comparable](got T, what string, err error) error {
	var zero T
	if got != zero {
		return fmt.Errorf("%s of an error tensor is %v, want %v", what, got, zero)
	}
	return err
}

func propagationCases(good *torch.Tensor, s *torch.Scope) map[string]propCase {
	g := func() *torch.Tensor { return s.Track(good.Clone()) }
	neg := (*torch.Tensor).Neg
	return map[string]propCase{
		// autograd.go
		"SetRNGState":            oneErr(func(a *torch.Tensor) error { return torch.SetRNGState(torch.CPU, a) }),
		"Tensor.SetRequiresGrad": oneErr(func(a *torch.Tensor) error { return a.SetRequiresGrad(true) }),
		"Tensor.Backward":        oneErr((*torch.Tensor).Backward),
		"Tensor.BackwardWith":    twoErr(func(a, b *torch.Tensor) error { return a.BackwardWith(b, false) }),
		"Tensor.Grad":            one((*torch.Tensor).Grad),
		"Tensor.ZeroGrad":        oneErr((*torch.Tensor).ZeroGrad),
		"Tensor.Detach":          one((*torch.Tensor).Detach),
		// create.go
		"ToSlice":         oneErr(func(a *torch.Tensor) error { _, err := torch.ToSlice[float32](a); return err }),
		"Tensor.Float32s": oneErr(func(a *torch.Tensor) error { _, err := a.Float32s(); return err }),
		"Tensor.Float64s": oneErr(func(a *torch.Tensor) error { _, err := a.Float64s(); return err }),
		"Tensor.Int64s":   oneErr(func(a *torch.Tensor) error { _, err := a.Int64s(); return err }),
		"Tensor.Item":     oneErr(func(a *torch.Tensor) error { _, err := a.Item(); return err }),
		"Tensor.ItemInt":  oneErr(func(a *torch.Tensor) error { _, err := a.ItemInt(); return err }),
		// foreach.go
		"ForeachAddScaledInPlace": twoErr(func(a, b *torch.Tensor) error {
			return torch.ForeachAddScaledInPlace([]*torch.Tensor{a}, []*torch.Tensor{b}, 1)
		}),
		"ForeachAddScaled": twoErr(func(a, b *torch.Tensor) error {
			_, err := torch.ForeachAddScaled([]*torch.Tensor{a}, []*torch.Tensor{b}, 1)
			return err
		}),
		"ForeachMulScalarInPlace": oneErr(func(a *torch.Tensor) error {
			return torch.ForeachMulScalarInPlace([]*torch.Tensor{g(), a}, 2)
		}),
		// functional.go
		"Conv2d": two(func(a, b *torch.Tensor) *torch.Tensor {
			return torch.Conv2d(a, b, g(), torch.P(1), torch.P(0), torch.P(1), 1)
		}),
		"BatchNorm": two(func(a, b *torch.Tensor) *torch.Tensor {
			return torch.BatchNorm(a, b, g(), g(), g(), false, 0.1, 1e-5)
		}),
		"MaxPool2d": one(func(a *torch.Tensor) *torch.Tensor {
			return torch.MaxPool2d(a, torch.P(2), torch.P(2), torch.P(0), torch.P(1), false)
		}),
		"AvgPool2d":         one(func(a *torch.Tensor) *torch.Tensor { return torch.AvgPool2d(a, torch.P(2), torch.P(2), torch.P(0)) }),
		"AdaptiveAvgPool2d": one(func(a *torch.Tensor) *torch.Tensor { return torch.AdaptiveAvgPool2d(a, torch.P(1)) }),
		"Linear":            two(func(a, b *torch.Tensor) *torch.Tensor { return torch.Linear(a, b, nil) }),
		"Softmax":           one(func(a *torch.Tensor) *torch.Tensor { return torch.Softmax(a, 1) }),
		"LogSoftmax":        one(func(a *torch.Tensor) *torch.Tensor { return torch.LogSoftmax(a, 1) }),
		"CrossEntropy": two(func(a, b *torch.Tensor) *torch.Tensor {
			return torch.CrossEntropy(a, b, 0, torch.ReduceMean)
		}),
		"MSELoss":   two(func(a, b *torch.Tensor) *torch.Tensor { return torch.MSELoss(a, b, torch.ReduceMean) }),
		"Normalize": one(func(a *torch.Tensor) *torch.Tensor { return torch.Normalize(a, 2, 1, 1e-12) }),
		"Interpolate": one(func(a *torch.Tensor) *torch.Tensor {
			return torch.Interpolate(a, torch.P(2), "bilinear", false)
		}),
		"AffineGrid": one(func(a *torch.Tensor) *torch.Tensor { return torch.AffineGrid(a, []int64{1, 1, 2, 2}, false) }),
		"GridSample": two(func(a, b *torch.Tensor) *torch.Tensor {
			return torch.GridSample(a, b, "bilinear", "zeros", false)
		}),
		// ops.go
		"Tensor.Neg":             one(neg),
		"Tensor.Exp":             one((*torch.Tensor).Exp),
		"Tensor.Log":             one((*torch.Tensor).Log),
		"Tensor.Sqrt":            one((*torch.Tensor).Sqrt),
		"Tensor.Abs":             one((*torch.Tensor).Abs),
		"Tensor.Relu":            one((*torch.Tensor).Relu),
		"Tensor.ReluInPlace":     one((*torch.Tensor).ReluInPlace),
		"Tensor.Sigmoid":         one((*torch.Tensor).Sigmoid),
		"Tensor.Tanh":            one((*torch.Tensor).Tanh),
		"Tensor.Floor":           one((*torch.Tensor).Floor),
		"Tensor.Round":           one((*torch.Tensor).Round),
		"Tensor.Square":          one((*torch.Tensor).Square),
		"Tensor.IsNaN":           one((*torch.Tensor).IsNaN),
		"Tensor.Pinverse":        one((*torch.Tensor).Pinverse),
		"Tensor.Diagonal":        one((*torch.Tensor).Diagonal),
		"Tensor.ClampMin":        one(func(a *torch.Tensor) *torch.Tensor { return a.ClampMin(0) }),
		"Tensor.ZerosLike":       one((*torch.Tensor).ZerosLike),
		"Tensor.OnesLike":        one((*torch.Tensor).OnesLike),
		"Tensor.Add":             two((*torch.Tensor).Add),
		"Tensor.Sub":             two((*torch.Tensor).Sub),
		"Tensor.Mul":             two((*torch.Tensor).Mul),
		"Tensor.Div":             two((*torch.Tensor).Div),
		"Tensor.Maximum":         two((*torch.Tensor).Maximum),
		"Tensor.Minimum":         two((*torch.Tensor).Minimum),
		"Tensor.Eq":              two((*torch.Tensor).Eq),
		"Tensor.Lt":              two((*torch.Tensor).Lt),
		"Tensor.Ge":              two((*torch.Tensor).Ge),
		"Tensor.LogicalAnd":      two((*torch.Tensor).LogicalAnd),
		"Tensor.Matmul":          two((*torch.Tensor).Matmul),
		"Tensor.Mm":              two((*torch.Tensor).Mm),
		"Tensor.AddScalar":       one(func(a *torch.Tensor) *torch.Tensor { return a.AddScalar(1) }),
		"Tensor.SubScalar":       one(func(a *torch.Tensor) *torch.Tensor { return a.SubScalar(1) }),
		"Tensor.MulScalar":       one(func(a *torch.Tensor) *torch.Tensor { return a.MulScalar(2) }),
		"Tensor.DivScalar":       one(func(a *torch.Tensor) *torch.Tensor { return a.DivScalar(2) }),
		"Tensor.RSubScalar":      one(func(a *torch.Tensor) *torch.Tensor { return a.RSubScalar(1) }),
		"Tensor.EqScalar":        one(func(a *torch.Tensor) *torch.Tensor { return a.EqScalar(1) }),
		"Tensor.LtScalar":        one(func(a *torch.Tensor) *torch.Tensor { return a.LtScalar(1) }),
		"Tensor.LeScalar":        one(func(a *torch.Tensor) *torch.Tensor { return a.LeScalar(1) }),
		"Tensor.GtScalar":        one(func(a *torch.Tensor) *torch.Tensor { return a.GtScalar(1) }),
		"Tensor.RemainderScalar": one(func(a *torch.Tensor) *torch.Tensor { return a.RemainderScalar(2) }),
		"Tensor.Clamp":           one(func(a *torch.Tensor) *torch.Tensor { return a.Clamp(0, 1) }),
		"Where": two(func(a, b *torch.Tensor) *torch.Tensor {
			return torch.Where(a, b, g())
		}),
		"Tensor.MaskedFill":       two(func(a, b *torch.Tensor) *torch.Tensor { return a.MaskedFill(b, 0) }),
		"Tensor.AddInPlace":       twoErr((*torch.Tensor).AddInPlace),
		"Tensor.CopyFrom":         twoErr((*torch.Tensor).CopyFrom),
		"Tensor.MaximumInPlace":   twoErr((*torch.Tensor).MaximumInPlace),
		"Tensor.AddScalarInPlace": oneErr(func(a *torch.Tensor) error { return a.AddScalarInPlace(1) }),
		"Tensor.MulScalarInPlace": oneErr(func(a *torch.Tensor) error { return a.MulScalarInPlace(2) }),
		"Tensor.Fill":             oneErr(func(a *torch.Tensor) error { return a.Fill(1) }),
		"Tensor.AddScaledInPlace": twoErr(func(a, b *torch.Tensor) error { return a.AddScaledInPlace(b, 2) }),
		"Tensor.AddcmulInPlace":   twoErr(func(a, b *torch.Tensor) error { return a.AddcmulInPlace(b, g(), 1) }),
		"Tensor.AddcdivInPlace":   twoErr(func(a, b *torch.Tensor) error { return a.AddcdivInPlace(b, g(), 1) }),
		"Tensor.FillUniform":      oneErr(func(a *torch.Tensor) error { return a.FillUniform(0, 1, nil) }),
		"Tensor.FillNormal":       oneErr(func(a *torch.Tensor) error { return a.FillNormal(0, 1, nil) }),
		// reduce.go
		"Tensor.Sum":       one((*torch.Tensor).Sum),
		"Tensor.SumDims":   one(func(a *torch.Tensor) *torch.Tensor { return a.SumDims([]int64{0}, false) }),
		"Tensor.Mean":      one((*torch.Tensor).Mean),
		"Tensor.MeanDims":  one(func(a *torch.Tensor) *torch.Tensor { return a.MeanDims([]int64{0}, false) }),
		"Tensor.Max":       one((*torch.Tensor).Max),
		"Tensor.Min":       one((*torch.Tensor).Min),
		"Tensor.AmaxDims":  one(func(a *torch.Tensor) *torch.Tensor { return a.AmaxDims([]int64{0}, false) }),
		"Tensor.Var":       one(func(a *torch.Tensor) *torch.Tensor { return a.Var(nil, true, false) }),
		"Tensor.Std":       one(func(a *torch.Tensor) *torch.Tensor { return a.Std(nil, true, false) }),
		"Tensor.Norm":      one(func(a *torch.Tensor) *torch.Tensor { return a.Norm(2, nil, false) }),
		"Tensor.LogSumExp": one(func(a *torch.Tensor) *torch.Tensor { return a.LogSumExp([]int64{0}, false) }),
		"Tensor.MaxDim":    oneErr(func(a *torch.Tensor) error { return pairErr(a.MaxDim(0, false)) }),
		"Tensor.TopK":      oneErr(func(a *torch.Tensor) error { return pairErr(a.TopK(1, 0)) }),
		"Tensor.Argmax":    one(func(a *torch.Tensor) *torch.Tensor { return a.Argmax(0, false) }),
		"AllClose": twoErr(func(a, b *torch.Tensor) error {
			ok, err := torch.AllClose(a, b, 0, 0)
			return zeroThen(ok, "AllClose", err)
		}),
		// shape.go
		"Tensor.To":            one(func(a *torch.Tensor) *torch.Tensor { return a.To(torch.Float64) }),
		"Tensor.ToDevice":      one(func(a *torch.Tensor) *torch.Tensor { return a.ToDevice(torch.CPU) }),
		"Tensor.ToDeviceDType": one(func(a *torch.Tensor) *torch.Tensor { return a.ToDeviceDType(torch.CPU, torch.Float64) }),
		"Tensor.Clone":         one((*torch.Tensor).Clone),
		"Tensor.Ref":           one((*torch.Tensor).Ref),
		"Tensor.Contiguous":    one((*torch.Tensor).Contiguous),
		"Tensor.Reshape":       one(func(a *torch.Tensor) *torch.Tensor { return a.Reshape(-1) }),
		"Tensor.View":          one(func(a *torch.Tensor) *torch.Tensor { return a.View(-1) }),
		"Tensor.Expand":        one(func(a *torch.Tensor) *torch.Tensor { return a.Expand(2, -1, -1) }),
		"Tensor.Repeat":        one(func(a *torch.Tensor) *torch.Tensor { return a.Repeat(1, 2) }),
		"Tensor.Permute":       one(func(a *torch.Tensor) *torch.Tensor { return a.Permute(1, 0) }),
		"Tensor.Transpose":     one(func(a *torch.Tensor) *torch.Tensor { return a.Transpose(0, 1) }),
		"Tensor.T":             one((*torch.Tensor).T),
		"Tensor.Flatten":       one(func(a *torch.Tensor) *torch.Tensor { return a.Flatten(0, -1) }),
		"Tensor.Squeeze":       one(func(a *torch.Tensor) *torch.Tensor { return a.Squeeze(0) }),
		"Tensor.Unsqueeze":     one(func(a *torch.Tensor) *torch.Tensor { return a.Unsqueeze(0) }),
		"Tensor.Slice":         one(func(a *torch.Tensor) *torch.Tensor { return a.Slice(0, 0, 1, 1) }),
		"Tensor.Narrow":        one(func(a *torch.Tensor) *torch.Tensor { return a.Narrow(0, 0, 1) }),
		"Tensor.Select":        one(func(a *torch.Tensor) *torch.Tensor { return a.Select(0, 0) }),
		"Tensor.IndexSelect":   two(func(a, b *torch.Tensor) *torch.Tensor { return a.IndexSelect(0, b) }),
		"Tensor.Gather":        two(func(a, b *torch.Tensor) *torch.Tensor { return a.Gather(0, b) }),
		"Tensor.Flip":          one(func(a *torch.Tensor) *torch.Tensor { return a.Flip(0) }),
		"Tensor.Pad":           one(func(a *torch.Tensor) *torch.Tensor { return a.Pad([]int64{1, 1}, 0) }),
		"Cat":                  two(func(a, b *torch.Tensor) *torch.Tensor { return torch.Cat([]*torch.Tensor{a, b}, 0) }),
		"Stack":                two(func(a, b *torch.Tensor) *torch.Tensor { return torch.Stack([]*torch.Tensor{a, b}, 0) }),
		// tensor.go
		"Tensor.Err":   oneErr((*torch.Tensor).Err),
		"Tensor.Scope": oneErr(func(a *torch.Tensor) error { return zeroThen(a.Scope(), "Scope", a.Err()) }),
		"Tensor.Freed": oneErr(func(a *torch.Tensor) error { return zeroThen(a.Freed(), "Freed", a.Err()) }),
		"Tensor.Free":  oneErr(func(a *torch.Tensor) error { a.Free(); return a.Err() }),
		"Scope.Track":  one(func(a *torch.Tensor) *torch.Tensor { return torch.NewScope().Track(a) }),
		"Scope.Keep":   one(func(a *torch.Tensor) *torch.Tensor { return s.Keep(a) }),
		"Tensor.Shape": oneErr(func(a *torch.Tensor) error {
			shape, err := a.Shape()
			if shape != nil {
				return fmt.Errorf("Shape of an error tensor is %v", shape)
			}
			return err
		}),
		"Tensor.Size": oneErr(func(a *torch.Tensor) error {
			n, err := a.Size(0)
			return zeroThen(n, "Size", err)
		}),
		"Tensor.Dim": oneErr(func(a *torch.Tensor) error {
			n, err := a.Dim()
			return zeroThen(n, "Dim", err)
		}),
		"Tensor.Numel":        oneErr(func(a *torch.Tensor) error { return zeroThen(a.Numel(), "Numel", a.Err()) }),
		"Tensor.DType":        oneErr(func(a *torch.Tensor) error { return zeroThen(a.DType(), "DType", a.Err()) }),
		"Tensor.Device":       oneErr(func(a *torch.Tensor) error { return zeroThen(a.Device(), "Device", a.Err()) }),
		"Tensor.RequiresGrad": oneErr(func(a *torch.Tensor) error { return zeroThen(a.RequiresGrad(), "RequiresGrad", a.Err()) }),
		"Tensor.IsLeaf":       oneErr(func(a *torch.Tensor) error { return zeroThen(a.IsLeaf(), "IsLeaf", a.Err()) }),
		"Tensor.IsMkldnn":     oneErr(func(a *torch.Tensor) error { return zeroThen(a.IsMkldnn(), "IsMkldnn", a.Err()) }),
		"Tensor.ToMkldnn":     one((*torch.Tensor).ToMkldnn),
		"Tensor.ToDense":      one((*torch.Tensor).ToDense),
		"MkldnnConv2dWeight": one(func(a *torch.Tensor) *torch.Tensor {
			return torch.MkldnnConv2dWeight(a, torch.P(1), torch.P(0), torch.P(1), 1)
		}),
		"MkldnnConv2d": two(func(a, b *torch.Tensor) *torch.Tensor {
			return torch.MkldnnConv2d(a, b, nil, torch.P(1), torch.P(0), torch.P(1), 1)
		}),
		"Tensor.String": oneErr(func(a *torch.Tensor) error {
			if err := a.Err(); err != nil && !strings.Contains(a.String(), err.Error()) {
				return fmt.Errorf("String %q does not show the error", a.String())
			}
			return a.Err()
		}),
		"FirstError":    twoErr(func(a, b *torch.Tensor) error { return torch.FirstError(a, b) }),
		"FreeAll":       twoErr(func(a, b *torch.Tensor) error { torch.FreeAll(a, b); return torch.FirstError(a, b) }),
		"Tensor.Escape": one((*torch.Tensor).Escape),
		"Tensor.Then":   one(func(a *torch.Tensor) *torch.Tensor { return a.Then(neg) }),
	}
}

// takesTensors lists the exported functions and methods of this package's
// non-test files that take a *Tensor (as receiver or parameter), as
// "Name" or "Receiver.Name".
func takesTensors(t *testing.T) []string {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	mentions := func(e ast.Expr) bool {
		found := false
		ast.Inspect(e, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "Tensor" {
				found = true
			}
			return !found
		})
		return found
	}
	var names []string
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() {
				continue
			}
			name, tensor := fd.Name.Name, false
			if fd.Recv != nil {
				rt := fd.Recv.List[0].Type
				if st, ok := rt.(*ast.StarExpr); ok {
					rt = st.X
				}
				id, ok := rt.(*ast.Ident)
				if !ok || !id.IsExported() {
					continue
				}
				name = id.Name + "." + name
				tensor = id.Name == "Tensor"
			}
			for _, p := range fd.Type.Params.List {
				tensor = tensor || mentions(p.Type)
			}
			if tensor {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names
}

// TestErrorTensorPropagates passes a tensor that carries an error through
// every exported function and method of the package that takes a tensor, in
// each tensor slot the case fills, and checks that the very same *torch.Error
// comes back (no function hides it behind a later failure, a -1 or a nil).
func TestErrorTensorPropagates(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	good := s.Track(torch.Ones([]int64{2, 2}))
	cases := propagationCases(good, s)
	listed := map[string]bool{}
	for _, name := range takesTensors(t) {
		listed[name] = true
		if _, ok := cases[name]; !ok {
			t.Errorf("%s takes a tensor but has no case here: add one", name)
		}
	}
	for name := range cases {
		if !listed[name] {
			t.Errorf("case %s: no such exported function takes a tensor (removed or renamed?)", name)
		}
	}
	// One error tensor serves every case: no call may change what it carries.
	bad := torch.Zeros([]int64{-1})
	want := bad.Err()
	var te *torch.Error
	if !errors.As(want, &te) {
		t.Fatalf("making the error tensor: %v", want)
	}
	for name, c := range cases {
		for slot := 0; slot < c.operands; slot++ {
			a, b := bad, s.Track(good.Clone())
			if slot == 1 {
				a, b = b, a
			}
			got := c.call(a, b)
			if got != want && !errors.Is(got, want) {
				t.Errorf("%s with the error tensor in slot %d: got %v, want the tensor's own error %v", name, slot+1, got, want)
			}
		}
	}
}
