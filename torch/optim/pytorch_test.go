package optim_test

import (
	"fmt"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
	"modelstitch/torch/optim"
)

// trajScript trains a tiny model y = tanh(x·Wᵀ + b) for 10 steps with each of
// PyTorch's optimizers (two groups with their own learning rate and weight
// decay, plus a parameter that never gets a gradient) and saves the
// parameters after every step. It also records the learning rates (and
// momentum) that PyTorch's schedulers set over a run.
const trajScript = `
torch.manual_seed(2)
W0, b0, u0 = torch.randn(4, 3), torch.randn(4), torch.randn(2)
save("W0", W0); save("b0", b0); save("u0", u0)
X = [torch.randn(5, 3) for i in range(10)]
Y = [torch.randn(5, 4) for i in range(10)]
for i in range(10):
    save("x%d" % i, X[i])
    save("y%d" % i, Y[i])

O = torch.optim
S = torch.optim.lr_scheduler
runs = {
    "sgd": (lambda g: O.SGD(g, lr=1), None),
    "sgd_momentum_dampening": (lambda g: O.SGD(g, lr=1, momentum=0.9, dampening=0.1), None),
    "sgd_nesterov_wd": (lambda g: O.SGD(g, lr=1, momentum=0.9, nesterov=True), None),
    "sgd_maximize": (lambda g: O.SGD(g, lr=1, momentum=0.5, maximize=True), None),
    "adam": (lambda g: O.Adam(g, lr=1), None),
    "adam_amsgrad": (lambda g: O.Adam(g, lr=1, betas=(0.8, 0.99), eps=1e-6, amsgrad=True), None),
    "adamw": (lambda g: O.AdamW(g, lr=1), None),
    "adamw_cosine": (lambda g: O.AdamW(g, lr=1), lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    "sgd_onecycle": (lambda g: O.SGD(g, lr=1, momentum=0.9), lambda o: S.OneCycleLR(o, max_lr=[0.1, 0.05], total_steps=10)),
}
for name, (make, make_sched) in runs.items():
    W, b, u = W0.clone().requires_grad_(), b0.clone().requires_grad_(), u0.clone().requires_grad_()
    wd = 0.1 if name.startswith("adamw") else 0.01
    opt = make([{"params": [W, u], "lr": 0.1, "weight_decay": wd}, {"params": [b], "lr": 0.05, "weight_decay": 0.0}])
    sched = make_sched(opt) if make_sched else None
    for i in range(10):
        opt.zero_grad(set_to_none=True)
        loss = torch.square(torch.tanh(F.linear(X[i], W, b)) - Y[i]).mean()
        loss.backward()
        opt.step()
        if sched:
            sched.step()
        save("%s.%d.W" % (name, i), W)
        save("%s.%d.b" % (name, i), b)
    save(name + ".u", u)

def schedule(make, n):
    p1, p2 = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = O.SGD([{"params": [p1], "lr": 0.1}, {"params": [p2], "lr": 0.02}], lr=0.1, momentum=0.9)
    s = make(opt)
    lrs, moms = [], []
    for i in range(n):
        lrs += [g["lr"] for g in opt.param_groups]
        moms += [g["momentum"] for g in opt.param_groups]
        opt.step()
        s.step()
    return lrs, moms

scheds = {
    "step": (lambda o: S.StepLR(o, step_size=3, gamma=0.5), 12),
    "step_default_gamma": (lambda o: S.StepLR(o, step_size=4), 12),
    "multistep": (lambda o: S.MultiStepLR(o, milestones=[3, 6, 8], gamma=0.2), 12),
    "cosine": (lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 25),
    "onecycle": (lambda o: S.OneCycleLR(o, max_lr=[0.1, 0.02], total_steps=20), 20),
    "onecycle_linear": (lambda o: S.OneCycleLR(o, max_lr=[0.1, 0.02], total_steps=16, pct_start=0.25,
        anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9), 16),
    "linear": (lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4), 8),
    "warmup_cosine": (lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=5),
        S.CosineAnnealingLR(o, T_max=10, eta_min=0.0)], milestones=[5]), 20),
    "warmup_multistep": (lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.5, total_iters=2),
        S.MultiStepLR(o, milestones=[3, 5], gamma=0.2)], milestones=[2]), 10),
}
for name, (make, n) in scheds.items():
    lrs, moms = schedule(make, n)
    save("sched." + name + ".lr", lrs)
    save("sched." + name + ".momentum", moms)
`

// trajRun is the Go side of one optimizer run in trajScript.
type trajRun struct {
	name  string
	wd    float64
	make  func([]optim.Group) (optim.Optimizer, error)
	sched optim.Schedule
}

func trajRuns() []trajRun {
	sgd := func(cfg optim.SGDConfig) func([]optim.Group) (optim.Optimizer, error) {
		return func(g []optim.Group) (optim.Optimizer, error) { return optim.NewSGD(g, cfg) }
	}
	adam := func(w bool, cfg optim.AdamConfig) func([]optim.Group) (optim.Optimizer, error) {
		return func(g []optim.Group) (optim.Optimizer, error) {
			if w {
				return optim.NewAdamW(g, cfg)
			}
			return optim.NewAdam(g, cfg)
		}
	}
	return []trajRun{
		{name: "sgd", wd: 0.01, make: sgd(optim.SGDConfig{})},
		{name: "sgd_momentum_dampening", wd: 0.01, make: sgd(optim.SGDConfig{Momentum: 0.9, Dampening: 0.1})},
		{name: "sgd_nesterov_wd", wd: 0.01, make: sgd(optim.SGDConfig{Momentum: 0.9, Nesterov: true})},
		{name: "sgd_maximize", wd: 0.01, make: sgd(optim.SGDConfig{Momentum: 0.5, Maximize: true})},
		{name: "adam", wd: 0.01, make: adam(false, optim.AdamConfig{})},
		{name: "adam_amsgrad", wd: 0.01, make: adam(false, optim.AdamConfig{Betas: [2]float64{0.8, 0.99}, Eps: 1e-6, AMSGrad: true})},
		{name: "adamw", wd: 0.1, make: adam(true, optim.AdamConfig{})},
		{name: "adamw_cosine", wd: 0.1, make: adam(true, optim.AdamConfig{}), sched: optim.CosineAnnealingLR{TMax: 10, EtaMin: 0.001}},
		// PyTorch's OneCycleLR takes max_lr itself; ours takes it from the groups.
		{name: "sgd_onecycle", wd: 0.01, make: sgd(optim.SGDConfig{Momentum: 0.9}), sched: optim.OneCycleLR{TotalSteps: 10, CycleMomentum: true}},
	}
}

// TestOptimizersMatchPyTorch runs 10 steps of each optimizer and compares the
// parameters after every step with PyTorch's.
func TestOptimizersMatchPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch for reference values (tens of seconds on a busy machine); skipped with -short")
	}
	refs := reftest.Run(t, trajScript)
	var xs, ys []*torch.Tensor
	for i := 0; i < 10; i++ {
		xs = append(xs, refs.Tensor(t, fmt.Sprintf("x%d", i)))
		ys = append(ys, refs.Tensor(t, fmt.Sprintf("y%d", i)))
	}
	defer torch.FreeAll(xs...)
	defer torch.FreeAll(ys...)
	// Bitwise agreement is expected (same libtorch, same operations); the
	// tolerance only absorbs libm differences in β^t and √.
	const atol, rtol = 1e-6, 1e-5
	for _, r := range trajRuns() {
		t.Run(r.name, func(t *testing.T) {
			live := torch.LiveTensors()
			W, b, u := refs.Tensor(t, "W0"), refs.Tensor(t, "b0"), refs.Tensor(t, "u0")
			for _, p := range []*torch.Tensor{W, b, u} {
				if err := p.SetRequiresGrad(true); err != nil {
					t.Fatal(err)
				}
			}
			// For OneCycleLR these are the peak rates (PyTorch's max_lr).
			opt, err := r.make([]optim.Group{
				{Params: []*torch.Tensor{W, u}, LR: 0.1, WeightDecay: r.wd},
				{Params: []*torch.Tensor{b}, LR: 0.05},
			})
			if err != nil {
				t.Fatal(err)
			}
			var sched *optim.Scheduler
			if r.sched != nil {
				if sched, err = optim.NewScheduler(opt, r.sched); err != nil {
					t.Fatal(err)
				}
			}
			var maxW, maxB float64
			for i := 0; i < 10; i++ {
				if err := opt.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
				s := torch.NewScope()
				loss := torch.Linear(s.Track(xs[i].Ref()), W, b).Tanh().Sub(ys[i]).Square().Mean()
				if err := loss.Backward(); err != nil {
					t.Fatal(err)
				}
				s.Close()
				if err := opt.Step(); err != nil {
					t.Fatal(err)
				}
				if sched != nil {
					if err := sched.Step(); err != nil {
						t.Fatal(err)
					}
				}
				maxW = max(maxW, compareQuiet(t, fmt.Sprintf("step %d W", i), W, refs.Get(t, fmt.Sprintf("%s.%d.W", r.name, i)), atol, rtol))
				maxB = max(maxB, compareQuiet(t, fmt.Sprintf("step %d b", i), b, refs.Get(t, fmt.Sprintf("%s.%d.b", r.name, i)), atol, rtol))
			}
			t.Logf("max abs diff vs PyTorch over 10 steps: W %.3g, b %.3g", maxW, maxB)
			// u never had a gradient: untouched, as in PyTorch.
			reftest.Compare(t, "u (no grad)", u, refs.Get(t, r.name+".u"), 0, 0)
			opt.Close()
			torch.FreeAll(W, b, u)
			if got := torch.LiveTensors(); got != live {
				t.Errorf("live tensors %d after the run, %d before", got, live)
			}
		})
	}
}

// compareQuiet is reftest.Compare without the log line per call.
func compareQuiet(t *testing.T, what string, got *torch.Tensor, want reftest.Ref, atol, rtol float64) float64 {
	t.Helper()
	g, err := got.Float64s()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(g) != len(want.Data) {
		t.Fatalf("%s: %d values, PyTorch %d", what, len(g), len(want.Data))
	}
	maxAbs, worst := reftest.Diff(g, want.Data, atol, rtol)
	if worst > 0 {
		t.Errorf("%s: differs from PyTorch by up to %.3g\n got  %v\n want %v", what, maxAbs, g, want.Data)
	}
	return maxAbs
}

// TestSchedulesMatchPyTorch compares the learning rates (and OneCycle's
// momentum) set at every step with PyTorch's schedulers on two groups.
func TestSchedulesMatchPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch for reference values (tens of seconds on a busy machine); skipped with -short")
	}
	refs := reftest.Run(t, trajScript)
	cases := []struct {
		name   string
		sched  optim.Schedule
		steps  int
		cycles bool // momentum cycles; otherwise it stays 0.9
	}{
		{"step", optim.StepLR{StepSize: 3, Gamma: 0.5}, 12, false},
		{"step_default_gamma", optim.StepLR{StepSize: 4}, 12, false},
		{"multistep", optim.MultiStepLR{Milestones: []int{3, 6, 8}, Gamma: 0.2}, 12, false},
		{"cosine", optim.CosineAnnealingLR{TMax: 10, EtaMin: 0.001}, 25, false},
		{"onecycle", optim.OneCycleLR{TotalSteps: 20, CycleMomentum: true}, 20, true},
		{"onecycle_linear", optim.OneCycleLR{TotalSteps: 16, PctStart: 0.25, Linear: true, DivFactor: 10,
			FinalDivFactor: 100, CycleMomentum: true, BaseMomentum: 0.8, MaxMomentum: 0.9}, 16, true},
		{"linear", optim.LinearLR{StartFactor: 0.25, EndFactor: 1, Steps: 4}, 8, false},
		{"warmup_cosine", optim.Warmup{Steps: 5, StartFactor: 0.1, Then: optim.CosineAnnealingLR{TMax: 10}}, 20, false},
		{"warmup_multistep", optim.Warmup{Steps: 2, StartFactor: 0.5, Then: optim.MultiStepLR{Milestones: []int{3, 5}, Gamma: 0.2}}, 10, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p1, p2 := torch.Zeros([]int64{1}), torch.Zeros([]int64{1})
			defer torch.FreeAll(p1, p2)
			opt, err := optim.NewSGD([]optim.Group{{Params: []*torch.Tensor{p1}, LR: 0.1}, {Params: []*torch.Tensor{p2}, LR: 0.02}},
				optim.SGDConfig{Momentum: 0.9})
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Close()
			sched, err := optim.NewScheduler(opt, c.sched)
			if err != nil {
				t.Fatal(err)
			}
			var lrs, moms []float64
			for i := 0; i < c.steps; i++ {
				lrs = append(lrs, opt.LR()...)
				moms = append(moms, opt.Momentum(), opt.Momentum())
				if err := sched.Step(); err != nil {
					t.Fatal(err)
				}
			}
			// PyTorch updates most rates recursively (lr·γ, cosine ratios),
			// we use closed forms: they agree to rounding (≤ 5e-16 here).
			reftest.CompareFloats(t, "learning rates", lrs, refs.Get(t, "sched."+c.name+".lr"), 1e-12, 1e-9)
			reftest.CompareFloats(t, "momentum", moms, refs.Get(t, "sched."+c.name+".momentum"), 1e-12, 1e-9)
		})
	}
}
