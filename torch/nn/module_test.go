package nn_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

func floats(t *testing.T, x *torch.Tensor) []float64 {
	t.Helper()
	v, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func names(ns []nn.Named) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// block is a module with its own parameter and a nested child, as a ResNet block.
type block struct {
	*nn.Base
	Scale *torch.Tensor
	Conv  *nn.Conv2d
	BN    *nn.BatchNorm
}

func newBlock() *block {
	b := &block{Base: nn.NewBase(), Scale: torch.Ones([]int64{1})}
	b.RegisterParameter("scale", &b.Scale)
	b.Conv = b.RegisterModule("conv", nn.NewConv2d(2, 2, 1, nn.Conv2dConfig{NoBias: true})).(*nn.Conv2d)
	b.BN = b.RegisterModule("bn", nn.NewBatchNorm2d(2)).(*nn.BatchNorm)
	return b
}

func (b *block) Forward(x *torch.Tensor) *torch.Tensor {
	return b.BN.Forward(b.Conv.Forward(x)).Mul(b.Scale)
}

func TestStateDictNamesAndOrder(t *testing.T) {
	m := nn.NewSequential(nn.NewConv2d(1, 2, 3, nn.Conv2dConfig{}), newBlock(), nn.NewReLU(), nn.NewLinear(2, 3, false))
	defer nn.Free(m)
	want := []string{
		"0.weight", "0.bias",
		"1.scale", "1.conv.weight", "1.bn.weight", "1.bn.bias", "1.bn.running_mean", "1.bn.running_var", "1.bn.num_batches_tracked",
		"3.weight",
	}
	if got := names(nn.StateDict(m)); !slices.Equal(got, want) {
		t.Errorf("state dict\n got  %v\n want %v", got, want)
	}
	wantParams := []string{"0.weight", "0.bias", "1.scale", "1.conv.weight", "1.bn.weight", "1.bn.bias", "3.weight"}
	if got := names(nn.NamedParameters(m)); !slices.Equal(got, wantParams) {
		t.Errorf("parameters %v", got)
	}
	if got := names(nn.NamedBuffers(m)); !slices.Equal(got, []string{"1.bn.running_mean", "1.bn.running_var", "1.bn.num_batches_tracked"}) {
		t.Errorf("buffers %v", got)
	}
	if n := nn.NumParameters(m); n != 2*9+2+1+4+2+2+6 {
		t.Errorf("NumParameters %d", n)
	}
	shapes, err := nn.Shapes(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := shapes["1.conv.weight"]; !slices.Equal(got, []int64{2, 2, 1, 1}) {
		t.Errorf("Shapes: %v", got)
	}
	if nn.Child(m, "1") == nil || nn.Child(m, "7") != nil || len(nn.Children(m)) != 4 {
		t.Error("Child/Children")
	}
	for _, p := range nn.Parameters(m) {
		if !p.RequiresGrad() {
			t.Error("a parameter does not require grad")
		}
	}
}

func TestDefaultInit(t *testing.T) {
	c := nn.NewConv2d(4, 8, 3, nn.Conv2dConfig{Stride: 2, Padding: 1})
	l := nn.NewLinear(50, 10, true)
	bn := nn.NewBatchNorm2d(5)
	defer nn.Free(c)
	defer nn.Free(l)
	defer nn.Free(bn)
	if c.Stride != torch.P(2) || c.Padding != torch.P(1) || c.Dilation != torch.P(1) || c.Groups != 1 {
		t.Errorf("conv config %+v", c)
	}
	// PyTorch's default: uniform(±1/√fan_in) for weights and biases.
	for _, w := range []struct {
		name  string
		x     *torch.Tensor
		bound float64
	}{{"conv weight", c.Weight, 1 / math.Sqrt(36)}, {"conv bias", c.Bias, 1 / math.Sqrt(36)}, {"linear weight", l.Weight, 1 / math.Sqrt(50)}, {"linear bias", l.Bias, 1 / math.Sqrt(50)}} {
		v := floats(t, w.x)
		lo, hi := slices.Min(v), slices.Max(v)
		if lo < -w.bound || hi > w.bound || (len(v) > 100 && hi-lo < w.bound) { // weights: spread too
			t.Errorf("%s in [%v, %v], want spread over ±%v", w.name, lo, hi, w.bound)
		}
	}
	for name, want := range map[string][]float64{"weight": {1, 1, 1, 1, 1}, "bias": {0, 0, 0, 0, 0}, "running_mean": {0, 0, 0, 0, 0}, "running_var": {1, 1, 1, 1, 1}, "num_batches_tracked": {0}} {
		var x *torch.Tensor
		for _, n := range nn.StateDict(bn) {
			if n.Name == name {
				x = n.Tensor
			}
		}
		if got := floats(t, x); !slices.Equal(got, want) {
			t.Errorf("batch norm %s = %v", name, got)
		}
	}
	if bn.Momentum != 0.1 || bn.Eps != 1e-5 || bn.NumBatches.DType() != torch.Int64 {
		t.Errorf("batch norm defaults: momentum %v eps %v counter %v", bn.Momentum, bn.Eps, bn.NumBatches.DType())
	}
	w := torch.Zeros([]int64{64, 16, 3, 3})
	defer w.Free()
	if err := nn.KaimingNormalFanOut(w); err != nil {
		t.Fatal(err)
	}
	if sd, _ := w.Std(nil, true, false).Item(); math.Abs(sd-math.Sqrt(2.0/(64*9))) > 0.005 {
		t.Errorf("kaiming fan-out std %v, want %v", sd, math.Sqrt(2.0/(64*9)))
	}
	if err := nn.KaimingNormalFanOut(torch.Zeros([]int64{3})); err == nil {
		t.Error("kaiming init of a vector succeeded")
	}
}

func TestTrainEvalBatchNorm(t *testing.T) {
	bn := nn.NewBatchNorm2d(2)
	m := nn.NewSequential(bn)
	defer nn.Free(m)
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Arange(0, 16, 1)).Reshape(2, 2, 2, 2)
	if !bn.Training() {
		t.Fatal("modules start in training mode")
	}
	y := m.Forward(x)
	// Training: batch statistics → each channel has mean 0 afterwards.
	if mean := floats(t, y.MeanDims([]int64{0, 2, 3}, false)); math.Abs(mean[0])+math.Abs(mean[1]) > 1e-5 {
		t.Errorf("training output channel means %v", mean)
	}
	if n, _ := bn.NumBatches.ItemInt(); n != 1 {
		t.Errorf("num_batches_tracked %d after one training batch", n)
	}
	// Channel 0 holds 0..3 and 8..11: mean 5.5, unbiased var 138/7.
	rm, rv := floats(t, bn.RunningMean), floats(t, bn.RunningVar)
	if math.Abs(rm[0]-0.55) > 1e-6 || math.Abs(rv[0]-(0.9+0.1*(138.0/7))) > 1e-5 {
		t.Errorf("running stats %v %v", rm, rv)
	}
	nn.Eval(m)
	if bn.Training() {
		t.Fatal("Eval did not reach the child")
	}
	if err := torch.NoGrad(func() error { y = m.Forward(x); return y.Err() }); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 16)
	xs := floats(t, x)
	for i, v := range xs {
		c := (i / 4) % 2
		want[i] = (v - rm[c]) / math.Sqrt(rv[c]+1e-5)
	}
	got := floats(t, y)
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-5 {
			t.Fatalf("eval output %v, want %v", got, want)
		}
	}
	if n, _ := bn.NumBatches.ItemInt(); n != 1 {
		t.Errorf("num_batches_tracked counted an evaluation batch: %d", n)
	}
	nn.Train(m)
	if !bn.Training() {
		t.Error("Train did not reach the child")
	}
}

func TestFreezeAndZeroGrad(t *testing.T) {
	m := nn.NewSequential(nn.NewLinear(3, 2, true), nn.NewLinear(2, 1, true))
	defer nn.Free(m)
	s := torch.NewScope()
	defer s.Close()
	if err := m.Forward(s.Track(torch.Ones([]int64{4, 3}))).Sum().Backward(); err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(m) {
		if p.Tensor.Grad() == nil {
			t.Errorf("%s has no gradient", p.Name)
		}
	}
	if err := nn.ZeroGrad(m); err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(m) {
		if p.Tensor.Grad() != nil {
			t.Errorf("%s still has a gradient", p.Name)
		}
	}
	if err := nn.Freeze(nn.Child(m, "0")); err != nil {
		t.Fatal(err)
	}
	if got := len(nn.TrainableParameters(m)); got != 2 {
		t.Errorf("%d trainable parameters after freezing the first layer, want 2", got)
	}
	if err := m.Forward(s.Track(torch.Ones([]int64{4, 3}))).Sum().Backward(); err != nil {
		t.Fatal(err)
	}
	if g := m.Layers[0].(*nn.Linear).Weight.Grad(); g != nil {
		t.Error("a frozen layer got a gradient")
	}
	if err := nn.SetRequiresGrad(m, true); err != nil || len(nn.TrainableParameters(m)) != 4 {
		t.Errorf("unfreezing: %v", err)
	}
}

func TestLoadStateDict(t *testing.T) {
	m := nn.NewSequential(nn.NewLinear(2, 2, true))
	defer nn.Free(m)
	w := torch.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
	b := torch.FromSlice([]float64{5, 6}) // converted to float32 on load
	extra := torch.Zeros([]int64{1})
	wrong := torch.Zeros([]int64{3})
	defer torch.FreeAll(w, b, extra, wrong)

	if err := nn.LoadStateDict(m, map[string]*torch.Tensor{"0.weight": w, "0.bias": b}, true); err != nil {
		t.Fatal(err)
	}
	l := m.Layers[0].(*nn.Linear)
	if got := floats(t, l.Weight); !slices.Equal(got, []float64{1, 2, 3, 4}) || l.Bias.DType() != torch.Float32 {
		t.Errorf("loaded weight %v, bias %v", got, l.Bias)
	}
	if !l.Weight.RequiresGrad() {
		t.Error("loading dropped requires_grad")
	}
	// A copy, not an alias.
	_ = w.Fill(0)
	if got := floats(t, l.Weight); got[0] != 1 {
		t.Error("LoadStateDict aliased the source tensor")
	}

	var le *nn.LoadError
	err := nn.LoadStateDict(m, map[string]*torch.Tensor{"0.weight": w, "head.weight": extra}, true)
	if !errors.As(err, &le) || !slices.Equal(le.Missing, []string{"0.bias"}) || !slices.Equal(le.Unexpected, []string{"head.weight"}) {
		t.Errorf("strict load with a missing and an unexpected key: %v", err)
	}
	if err := nn.LoadStateDict(m, map[string]*torch.Tensor{"0.weight": w, "head.weight": extra}, false); err != nil {
		t.Errorf("non-strict load: %v", err)
	}
	err = nn.LoadStateDict(m, map[string]*torch.Tensor{"0.weight": w, "0.bias": wrong}, false)
	if !errors.As(err, &le) || len(le.WrongShape) != 1 || !strings.Contains(err.Error(), "0.bias") {
		t.Errorf("wrong shape: %v", err)
	}
}

func TestToDevice(t *testing.T) {
	m := nn.NewSequential(nn.NewLinear(2, 2, true))
	defer nn.Free(m)
	if err := nn.ToDevice(m, torch.CPU); err != nil {
		t.Errorf("to CPU: %v", err)
	}
	if torch.BuiltWithCUDA() && torch.CUDAAvailable() {
		t.Skip("a CUDA device is present")
	}
	before := m.Layers[0].(*nn.Linear).Weight
	var te *torch.Error
	if err := nn.ToDevice(m, torch.CUDA); !errors.As(err, &te) || te.Code != torch.CodeNoCUDA {
		t.Errorf("to CUDA on a CPU-only build: %v", err)
	}
	if after := m.Layers[0].(*nn.Linear).Weight; after != before || after.Freed() {
		t.Error("a failed move changed the parameters")
	}
}

// TestConstructorFailureIsKept checks that a layer whose parameters cannot be
// made keeps the failure: nn.Err names the entry, and Forward returns the
// same error instead of computing with a broken weight.
func TestConstructorFailureIsKept(t *testing.T) {
	for name, m := range map[string]nn.Module{
		"linear": nn.NewLinear(-2, 3, true),
		"conv":   nn.NewConv2d(2, -4, 3, nn.Conv2dConfig{}),
		"bn":     nn.NewBatchNorm2d(-1),
	} {
		err := nn.Err(m)
		if err == nil || !strings.Contains(err.Error(), "weight") {
			t.Errorf("%s: nn.Err = %v, want an error naming the weight", name, err)
			continue
		}
		y := m.Forward(torch.Ones([]int64{1, 2, 4, 4}))
		if !errors.Is(err, y.Err()) {
			t.Errorf("%s: Forward gave %v, want the constructor's failure %v", name, y.Err(), err)
		}
		nn.Free(m)
	}
	ok := nn.NewLinear(2, 3, true)
	defer nn.Free(ok)
	if err := nn.Err(ok); err != nil {
		t.Errorf("a good layer reports %v", err)
	}
}
