package nn_test

import (
	"sort"
	"strings"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// netScript builds a small network from PyTorch's modules, perturbs the batch
// norms so that none is the identity, and saves its state dict (with the key
// order), one training forward/backward pass and an evaluation pass.
const netScript = `
torch.manual_seed(1)
nn = torch.nn
m = nn.Sequential(
    nn.Conv2d(3, 4, 3, stride=2, padding=1),
    nn.BatchNorm2d(4),
    nn.ReLU(),
    nn.MaxPool2d(2, 2),
    nn.Conv2d(4, 6, 3, padding=1, bias=False),
    nn.BatchNorm2d(6),
    nn.AdaptiveAvgPool2d((1, 1)),
    nn.Flatten(),
    nn.Linear(6, 5),
    nn.BatchNorm1d(5),
)
with torch.no_grad():
    for mod in m:
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.normal_()
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2)
            mod.num_batches_tracked.fill_(3)
for i, (k, v) in enumerate(m.state_dict().items()):
    save("init." + k, v)
    save("order." + k, i)
x = torch.randn(8, 3, 12, 12)
save("x", x)
m.train()
y = m(x)
save("train.out", y)
g = torch.randn_like(y)
save("gout", g)
y.backward(g)
for k, p in m.named_parameters():
    save("grad." + k, p.grad)
for k, v in m.state_dict().items():
    save("after." + k, v)
m.eval()
with torch.no_grad():
    save("eval.out", m(x))
`

func newTestNet() *nn.Sequential {
	return nn.NewSequential(
		nn.NewConv2d(3, 4, 3, nn.Conv2dConfig{Stride: 2, Padding: 1}),
		nn.NewBatchNorm2d(4),
		nn.NewReLU(),
		nn.NewMaxPool2d(2, 2, 0),
		nn.NewConv2d(4, 6, 3, nn.Conv2dConfig{Padding: 1, NoBias: true}),
		nn.NewBatchNorm2d(6),
		nn.NewAdaptiveAvgPool2d(1, 1),
		nn.NewFlatten(),
		nn.NewLinear(6, 5, true),
		nn.NewBatchNorm1d(5),
	)
}

// TestModulesMatchPyTorch loads PyTorch's weights into the same network built
// from our modules and checks the state-dict names and order, the training
// output, every parameter gradient, the updated running statistics and
// batch counters, and the evaluation output.
func TestModulesMatchPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch for reference values (tens of seconds on a busy machine); skipped with -short")
	}
	refs := reftest.Run(t, netScript)
	const atol, rtol = 1e-5, 1e-5
	m := newTestNet()
	defer nn.Free(m)

	// Names and order.
	want := refs.Names("order.")
	sort.Slice(want, func(i, j int) bool { return refs.Float(t, want[i]) < refs.Float(t, want[j]) })
	sd := nn.StateDict(m)
	if len(sd) != len(want) {
		t.Fatalf("state dict has %d entries, PyTorch %d", len(sd), len(want))
	}
	for i, n := range sd {
		if w := strings.TrimPrefix(want[i], "order."); n.Name != w {
			t.Errorf("state dict entry %d is %q, PyTorch %q", i, n.Name, w)
		}
	}

	init := map[string]*torch.Tensor{}
	for _, n := range refs.Names("init.") {
		init[strings.TrimPrefix(n, "init.")] = refs.Tensor(t, n)
	}
	if err := nn.LoadStateDict(m, init, true); err != nil {
		t.Fatal(err)
	}
	for _, v := range init {
		v.Free()
	}

	s := torch.NewScope()
	defer s.Close()
	x := s.Track(refs.Tensor(t, "x"))
	nn.Train(m)
	y := m.Forward(x)
	reftest.Compare(t, "train forward", y, refs.Get(t, "train.out"), atol, rtol)
	if err := y.BackwardWith(s.Track(refs.Tensor(t, "gout")), false); err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(m) {
		g := p.Tensor.Grad()
		if g == nil {
			t.Errorf("%s: no gradient", p.Name)
			continue
		}
		reftest.Compare(t, "grad "+p.Name, s.Track(g), refs.Get(t, "grad."+p.Name), atol, rtol)
	}
	for _, n := range nn.StateDict(m) {
		reftest.Compare(t, "after "+n.Name, n.Tensor, refs.Get(t, "after."+n.Name), atol, rtol)
	}
	nn.Eval(m)
	_ = torch.NoGrad(func() error { // Compare reports its own failures
		reftest.Compare(t, "eval forward", m.Forward(x), refs.Get(t, "eval.out"), atol, rtol)
		return nil
	})
}
