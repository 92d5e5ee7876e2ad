package vision

import (
	"fmt"
	"math"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
)

// TestResNetOnCUDAMatchesCPU trains the same ResNet-18 (CIFAR stem, width
// 0.25, 1 channel) from the same weights on the same batch for three SGD
// steps on the CPU and on a GPU (TF32 off), and checks that the losses, the
// first step's gradients, the updated weights and running statistics, and the
// eval-mode logits agree to 1e-3.
func TestResNetOnCUDAMatchesCPU(t *testing.T) {
	reftest.RequireCUDA(t)
	defer torch.SetTF32(torch.SetTF32(false))
	cfg := ResNetConfig{Depth: 18, Width: 0.25, Stem: StemCIFAR, InChannels: 1, Classes: 10}
	if err := torch.ManualSeed(3); err != nil {
		t.Fatal(err)
	}
	cpu, err := NewResNet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(cpu)
	gpu, err := NewResNet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(gpu)
	sd := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(cpu) {
		sd[n.Name] = n.Tensor
	}
	if err := nn.LoadStateDict(gpu, sd, true); err != nil {
		t.Fatal(err)
	}
	if err := nn.ToDevice(gpu, torch.CUDA); err != nil {
		t.Fatal(err)
	}
	x := torch.Randn([]int64{32, 1, 28, 28})
	y := torch.RandInt(0, 10, []int64{32})
	defer torch.FreeAll(x, y)

	type run struct {
		m   *ResNet
		dev torch.Device
		opt *optim.SGD
	}
	runs := []*run{{m: cpu, dev: torch.CPU}, {m: gpu, dev: torch.CUDA}}
	for _, r := range runs {
		r.opt, err = optim.NewSGD(optim.Params(nn.Parameters(r.m), 0.05, 5e-4), optim.SGDConfig{Momentum: 0.9})
		if err != nil {
			t.Fatal(err)
		}
		defer r.opt.Close()
	}
	for step := 0; step < 3; step++ {
		s := torch.NewScope()
		var losses [2]float64
		var grads [2][]*torch.Tensor
		for i, r := range runs {
			loss := torch.CrossEntropy(r.m.Forward(s.Track(x.ToDevice(r.dev))), s.Track(y.ToDevice(r.dev)), 0, torch.ReduceMean)
			if err := loss.Backward(); err != nil {
				t.Fatalf("%v step %d: %v", r.dev, step, err)
			}
			if losses[i], err = loss.Item(); err != nil {
				t.Fatal(err)
			}
			for _, p := range nn.Parameters(r.m) {
				grads[i] = append(grads[i], s.Track(p.Grad()))
			}
			if err := r.opt.Step(); err != nil {
				t.Fatal(err)
			}
			if err := r.opt.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("step %d: loss CPU %.6f, CUDA %.6f", step, losses[0], losses[1])
		if math.Abs(losses[0]-losses[1]) > 1e-3*math.Max(1, math.Abs(losses[0])) {
			t.Errorf("step %d: loss %.6f on the CPU, %.6f on CUDA", step, losses[0], losses[1])
		}
		if step == 0 {
			for j, p := range nn.NamedParameters(cpu) {
				closeTensors(t, "grad "+p.Name, grads[0][j], grads[1][j], 1e-3)
			}
		}
		s.Close()
	}
	gsd := nn.StateDict(gpu)
	for j, n := range nn.StateDict(cpu) {
		closeTensors(t, n.Name, n.Tensor, gsd[j].Tensor, 1e-3)
	}
	for _, m := range []*ResNet{cpu, gpu} {
		nn.Eval(m)
	}
	_ = torch.NoGrad(func() error { // closeTensors reports its own failures
		a := cpu.Forward(x)
		b := gpu.Forward(x.ToDevice(torch.CUDA))
		closeTensors(t, "eval logits", a, b, 1e-3)
		torch.FreeAll(a, b)
		return nil
	})
}

// closeTensors reports an error when a and b (on any devices) differ by more
// than tol·max(1, |a|) anywhere.
func closeTensors(t *testing.T, what string, a, b *torch.Tensor, tol float64) {
	t.Helper()
	av, err := a.Float64s()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	bv, err := b.Float64s()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if len(av) != len(bv) {
		t.Errorf("%s: %d values against %d", what, len(av), len(bv))
		return
	}
	worst, at := 0.0, -1
	for i := range av {
		if d := math.Abs(av[i]-bv[i]) / math.Max(1, math.Abs(av[i])); d > worst {
			worst, at = d, i
		}
	}
	if worst > tol {
		t.Errorf("%s: differs by %.3g (relative) at element %d: %s", what, worst, at, fmt.Sprint(av[at], " vs ", bv[at]))
	}
}
