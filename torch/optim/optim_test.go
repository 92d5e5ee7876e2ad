package optim_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/optim"
)

// param returns a leaf tensor requiring grad with the given values.
func param(t *testing.T, v ...float32) *torch.Tensor {
	t.Helper()
	p := torch.FromSlice(v)
	if err := p.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Free)
	return p
}

// setGrad gives p the gradient g by back-propagating sum(p·g).
func setGrad(t *testing.T, p *torch.Tensor, g ...float32) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	if err := p.Mul(s.Track(torch.FromSlice(g))).Sum().Backward(); err != nil {
		t.Fatal(err)
	}
}

func values(t *testing.T, p *torch.Tensor) []float32 {
	t.Helper()
	v, err := torch.ToSlice[float32](p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func near(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol {
			return false
		}
	}
	return true
}

func TestConstructorErrors(t *testing.T) {
	p := param(t, 1, 2)
	q := param(t, 3)
	ints := torch.FromSlice([]int64{1, 2})
	defer ints.Free()
	nonLeaf := p.MulScalar(2)
	defer nonLeaf.Free()
	freed := param(t, 1)
	freed.Free()
	sgd := func(g []optim.Group, c optim.SGDConfig) error { _, err := optim.NewSGD(g, c); return err }
	adam := func(g []optim.Group, c optim.AdamConfig) error { _, err := optim.NewAdam(g, c); return err }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"empty", sgd(nil, optim.SGDConfig{}), "empty parameter list"},
		{"empty group", sgd([]optim.Group{{LR: 0.1}}, optim.SGDConfig{}), "empty parameter list"},
		{"nil param", sgd(optim.Params([]*torch.Tensor{p, nil}, 0.1, 0), optim.SGDConfig{}), "parameter 1 is nil"},
		{"duplicate", sgd([]optim.Group{{Params: []*torch.Tensor{p}, LR: 0.1}, {Params: []*torch.Tensor{q, p}, LR: 0.1}}, optim.SGDConfig{}), "one group only"},
		{"integer", sgd(optim.Params([]*torch.Tensor{ints}, 0.1, 0), optim.SGDConfig{}), "floating-point"},
		{"non-leaf", sgd(optim.Params([]*torch.Tensor{nonLeaf}, 0.1, 0), optim.SGDConfig{}), "not a leaf"},
		{"freed", sgd(optim.Params([]*torch.Tensor{freed}, 0.1, 0), optim.SGDConfig{}), "freed"},
		{"negative lr", sgd(optim.Params([]*torch.Tensor{p}, -1, 0), optim.SGDConfig{}), "learning rate"},
		{"NaN wd", sgd(optim.Params([]*torch.Tensor{p}, 0.1, math.NaN()), optim.SGDConfig{}), "weight decay"},
		{"negative momentum", sgd(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{Momentum: -0.1}), "momentum"},
		{"nesterov without momentum", sgd(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{Nesterov: true}), "Nesterov"},
		{"nesterov with dampening", sgd(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{Nesterov: true, Momentum: 0.9, Dampening: 0.1}), "Nesterov"},
		{"beta1 = 1", adam(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.AdamConfig{Betas: [2]float64{1, 0.999}}), "beta1"},
		{"beta2 < 0", adam(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.AdamConfig{Betas: [2]float64{0.9, -1}}), "beta2"},
		{"negative eps", adam(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.AdamConfig{Eps: -1}), "eps"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, c.err, c.want)
		}
	}
}

func TestSGDFirstSteps(t *testing.T) {
	// Momentum's buffer starts as the first gradient itself (no dampening on step 1).
	p := param(t, 1, -2)
	opt, err := optim.NewSGD(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{Momentum: 0.9, Dampening: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	setGrad(t, p, 2, 4)
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	if got, want := values(t, p), []float32{1 - 0.1*2, -2 - 0.1*4}; !near(got, want, 1e-6) {
		t.Errorf("after step 1: %v, want %v", got, want)
	}
	if got := values(t, opt.MomentumBuffer(p)); !near(got, []float32{2, 4}, 0) {
		t.Errorf("buffer after step 1: %v, want the gradient [2 4]", got)
	}
	// Gradients accumulate unless zeroed: zero, then a fresh gradient.
	if err := opt.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	if p.Grad() != nil {
		t.Fatal("ZeroGrad left a gradient")
	}
	setGrad(t, p, 1, 1)
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	// buf = 0.9·[2 4] + 0.5·[1 1] = [2.3 4.1]
	if got := values(t, opt.MomentumBuffer(p)); !near(got, []float32{2.3, 4.1}, 1e-6) {
		t.Errorf("buffer after step 2: %v, want [2.3 4.1]", got)
	}
	if got, want := values(t, p), []float32{0.8 - 0.23, -2.4 - 0.41}; !near(got, want, 1e-6) {
		t.Errorf("after step 2: %v, want %v", got, want)
	}
}

func TestAdamFirstStep(t *testing.T) {
	// With bias correction the first Adam step moves each weight by lr·g/(|g|+eps).
	for _, w := range []bool{false, true} {
		p := param(t, 1, -2, 3)
		mk := optim.NewAdam
		if w {
			mk = optim.NewAdamW
		}
		opt, err := mk(optim.Params([]*torch.Tensor{p}, 0.01, 0.5), optim.AdamConfig{})
		if err != nil {
			t.Fatal(err)
		}
		setGrad(t, p, 0.5, -3, 0)
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		var want []float32
		if w { // decay first: p·(1 − 0.01·0.5), then the step on the raw gradient
			d := float32(1 - 0.01*0.5)
			want = []float32{1*d - 0.01, -2*d + 0.01, 3 * d}
		} else { // g + 0.5·p = [1, -4, 1.5]
			want = []float32{1 - 0.01, -2 + 0.01, 3 - 0.01}
		}
		if got := values(t, p); !near(got, want, 1e-6) {
			t.Errorf("AdamW=%v: after step 1: %v, want %v", w, got, want)
		}
		if n := opt.StepCount(p); n != 1 {
			t.Errorf("step count %d, want 1", n)
		}
		opt.Close()
	}
}

func TestSkipsParamsWithoutGrad(t *testing.T) {
	a, b := param(t, 1), param(t, 5)
	for _, mk := range []func([]optim.Group) (optim.Optimizer, error){
		func(g []optim.Group) (optim.Optimizer, error) {
			return optim.NewSGD(g, optim.SGDConfig{Momentum: 0.9})
		},
		func(g []optim.Group) (optim.Optimizer, error) { return optim.NewAdam(g, optim.AdamConfig{}) },
	} {
		opt, err := mk([]optim.Group{{Params: []*torch.Tensor{a}, LR: 0.1}, {Params: []*torch.Tensor{b}, LR: 0.1, WeightDecay: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil { // nothing has a gradient yet
			t.Fatal(err)
		}
		setGrad(t, a, 1)
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		if got := values(t, b); got[0] != 5 {
			t.Errorf("%T: parameter without a gradient changed to %v (weight decay must not apply)", opt, got)
		}
		if got := values(t, a); got[0] == 1 {
			t.Errorf("%T: parameter with a gradient did not change", opt)
		}
		_ = opt.ZeroGrad()
		opt.Close()
	}
}

func TestSetLRAndGroups(t *testing.T) {
	a, b := param(t, 1), param(t, 2)
	opt, err := optim.NewSGD([]optim.Group{{Params: []*torch.Tensor{a}, LR: 0.1, WeightDecay: 1e-4}, {Params: []*torch.Tensor{b}, LR: 0.01}}, optim.SGDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	var o optim.Optimizer = opt
	if got := o.LR(); got[0] != 0.1 || got[1] != 0.01 {
		t.Fatalf("LR %v", got)
	}
	if err := o.SetLR(0.5); err != nil {
		t.Fatal(err)
	}
	if got := o.LR(); got[0] != 0.5 || got[1] != 0.5 {
		t.Errorf("SetLR(0.5): %v", got)
	}
	if err := o.SetLR(0.3, 0.03); err != nil {
		t.Fatal(err)
	}
	if got := o.LR(); got[0] != 0.3 || got[1] != 0.03 {
		t.Errorf("SetLR(0.3, 0.03): %v", got)
	}
	if err := o.SetLR(1, 2, 3); err == nil {
		t.Error("SetLR with 3 values for 2 groups succeeded")
	}
	if err := o.SetLR(-1); err == nil {
		t.Error("negative SetLR succeeded")
	}
	gs := o.Groups()
	if len(gs) != 2 || gs[0].WeightDecay != 1e-4 || gs[1].Params[0] != b {
		t.Errorf("Groups %+v", gs)
	}
	gs[0].LR = 99
	gs[0].Params[0] = nil
	if o.LR()[0] == 99 || o.Groups()[0].Params[0] != a {
		t.Error("Groups is not a copy")
	}
	// Learning rate updates apply to the next step.
	setGrad(t, a, 1)
	if err := o.Step(); err != nil {
		t.Fatal(err)
	}
	if got := values(t, a); !near(got, []float32{1 - 0.3*(1+1e-4)}, 1e-6) {
		t.Errorf("after step at lr 0.3: %v", got)
	}
}

func TestStepErrors(t *testing.T) {
	p := param(t, 1)
	opt, err := optim.NewSGD(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	setGrad(t, p, 1)
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	// A parameter freed behind the optimizer's back is an error, not a crash.
	p.Free()
	err = opt.Step()
	var te *torch.Error
	if err == nil || !errors.As(err, &te) || !strings.Contains(err.Error(), "group 0 parameter 0") {
		t.Errorf("step on a freed parameter: %v", err)
	}
	opt.Close()
	if err := opt.Step(); !errors.Is(err, optim.ErrClosed) {
		t.Errorf("step after Close: %v, want ErrClosed", err)
	}
	opt.Close() // twice is fine
}

// TestNoLeaks checks that steps free their temporaries and Close frees the state.
func TestNoLeaks(t *testing.T) {
	for _, name := range []string{"sgd", "sgd_nesterov_wd", "adam_amsgrad", "adamw"} {
		start := torch.LiveTensors()
		w := torch.Randn([]int64{8, 4})
		b := torch.Zeros([]int64{8})
		_ = w.SetRequiresGrad(true)
		_ = b.SetRequiresGrad(true)
		x := torch.Randn([]int64{16, 4})
		groups := optim.Params([]*torch.Tensor{w, b}, 0.01, 1e-3)
		var opt optim.Optimizer
		var err error
		switch name {
		case "sgd":
			opt, err = optim.NewSGD(groups, optim.SGDConfig{})
		case "sgd_nesterov_wd":
			opt, err = optim.NewSGD(groups, optim.SGDConfig{Momentum: 0.9, Nesterov: true, Maximize: true})
		case "adam_amsgrad":
			opt, err = optim.NewAdam(groups, optim.AdamConfig{AMSGrad: true, Maximize: true})
		case "adamw":
			opt, err = optim.NewAdamW(groups, optim.AdamConfig{})
		}
		if err != nil {
			t.Fatal(err)
		}
		sched, err := optim.NewScheduler(opt, optim.OneCycleLR{TotalSteps: 20, CycleMomentum: true})
		if err != nil {
			t.Fatal(err)
		}
		var afterFirst int64
		for i := 0; i < 20; i++ {
			s := torch.NewScope()
			loss := torch.Linear(s.Track(x.Ref()), w, b).Relu().Mean()
			if err := loss.Backward(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := opt.Step(); err != nil {
				t.Fatal(err)
			}
			if err := opt.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
			if err := sched.Step(); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				afterFirst = torch.LiveTensors()
			}
		}
		if got := torch.LiveTensors(); got != afterFirst {
			t.Errorf("%s: %d live tensors after 20 steps, %d after the first", name, got, afterFirst)
		}
		opt.Close()
		torch.FreeAll(w, b, x)
		if got := torch.LiveTensors(); got != start {
			t.Errorf("%s: %d live tensors after Close, %d before", name, got, start)
		}
	}
}

func TestSchedules(t *testing.T) {
	const base = 0.1
	cases := []struct {
		name  string
		s     optim.Schedule
		steps []int
		want  []float64
	}{
		{"constant", optim.Constant{}, []int{0, 100}, []float64{0.1, 0.1}},
		{"step", optim.StepLR{StepSize: 10, Gamma: 0.5}, []int{0, 9, 10, 25}, []float64{0.1, 0.1, 0.05, 0.025}},
		// The paper's schedule: ×0.2 at epochs 60, 120 and 160.
		{"multistep ×0.2", optim.MultiStepLR{Milestones: []int{60, 120, 160}, Gamma: 0.2}, []int{59, 60, 119, 120, 160, 199},
			[]float64{0.1, 0.02, 0.02, 0.004, 0.0008, 0.0008}},
		{"multistep unsorted, repeated", optim.MultiStepLR{Milestones: []int{5, 2, 5}}, []int{1, 2, 5}, []float64{0.1, 0.01, 0.0001}},
		{"cosine", optim.CosineAnnealingLR{TMax: 10, EtaMin: 0.01}, []int{0, 5, 10, 15, 20}, []float64{0.1, 0.055, 0.01, 0.055, 0.1}},
		{"onecycle", optim.OneCycleLR{TotalSteps: 100}, []int{0, 29, 99, 150},
			[]float64{0.1 / 25, 0.1, 0.1 / 25 / 1e4, 0.1 / 25 / 1e4}},
		{"linear", optim.LinearLR{StartFactor: 0.5, EndFactor: 1, Steps: 4}, []int{0, 2, 4, 9}, []float64{0.05, 0.075, 0.1, 0.1}},
		{"warmup", optim.Warmup{Steps: 4, Then: optim.StepLR{StepSize: 2}}, []int{0, 1, 3, 4, 5, 6}, []float64{0, 0.025, 0.075, 0.1, 0.1, 0.01}},
		{"warmup constant", optim.Warmup{Steps: 2, StartFactor: 0.5}, []int{0, 1, 2, 50}, []float64{0.05, 0.075, 0.1, 0.1}},
		{"func", optim.ScheduleFunc(func(b float64, s int) float64 { return b / float64(s+1) }), []int{0, 1, 3}, []float64{0.1, 0.05, 0.025}},
	}
	for _, c := range cases {
		for i, step := range c.steps {
			if got := c.s.LR(base, step); math.Abs(got-c.want[i]) > 1e-12 {
				t.Errorf("%s: LR(%v, %d) = %v, want %v", c.name, base, step, got, c.want[i])
			}
		}
	}
	oc := optim.OneCycleLR{TotalSteps: 100, CycleMomentum: true}
	for _, c := range []struct {
		step int
		want float64
	}{{0, 0.95}, {29, 0.85}, {99, 0.95}} {
		if m, ok := oc.Momentum(c.step); !ok || math.Abs(m-c.want) > 1e-12 {
			t.Errorf("OneCycle momentum at %d = %v, %v; want %v", c.step, m, ok, c.want)
		}
	}
	if _, ok := (optim.OneCycleLR{TotalSteps: 100}).Momentum(3); ok {
		t.Error("momentum cycles without CycleMomentum")
	}
}

func TestScheduleValidation(t *testing.T) {
	p := param(t, 1)
	opt, err := optim.NewSGD(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	for _, s := range []optim.Schedule{
		optim.StepLR{},
		optim.CosineAnnealingLR{TMax: 0},
		optim.OneCycleLR{},
		optim.OneCycleLR{TotalSteps: 10, PctStart: 1.5},
		optim.OneCycleLR{TotalSteps: 10, PctStart: 0.1}, // a rising phase of no steps
		optim.MultiStepLR{Milestones: []int{-1}},
		optim.LinearLR{},
		optim.Warmup{Steps: 5, Then: optim.StepLR{}},
	} {
		if _, err := optim.NewScheduler(opt, s); err == nil {
			t.Errorf("NewScheduler accepted %#v", s)
		}
	}
	if opt.LR()[0] != 0.1 {
		t.Errorf("a rejected schedule changed the rate to %v", opt.LR()[0])
	}
}

// ExampleScheduler shows the paper's multi-step schedule driving SGD.
func ExampleScheduler() {
	w := torch.Zeros([]int64{3})
	defer w.Free()
	_ = w.SetRequiresGrad(true)
	opt, err := optim.NewSGD(optim.Params([]*torch.Tensor{w}, 0.1, 5e-4), optim.SGDConfig{Momentum: 0.9, Nesterov: true})
	if err != nil {
		panic(err)
	}
	defer opt.Close()
	sched, err := optim.NewScheduler(opt, optim.MultiStepLR{Milestones: []int{2, 4}, Gamma: 0.2})
	if err != nil {
		panic(err)
	}
	for epoch := 0; epoch < 5; epoch++ {
		fmt.Printf("epoch %d: lr %.4f\n", epoch, opt.LR()[0])
		// ... train one epoch, calling opt.Step() after each backward pass ...
		_ = sched.Step()
	}
	// Output:
	// epoch 0: lr 0.1000
	// epoch 1: lr 0.1000
	// epoch 2: lr 0.0200
	// epoch 3: lr 0.0200
	// epoch 4: lr 0.0040
}
