package torch_test

import (
	"strings"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
)

// opsScript builds each case's inputs with a fixed seed, runs the op in
// PyTorch, back-propagates a random output gradient and saves inputs,
// output, output gradient, input gradients and the inputs afterwards (to
// catch in-place updates such as batch norm's running statistics).
const opsScript = `
torch.manual_seed(0)

def case(name, fn, grad="", **inputs):
    req = set(grad.split(",")) - {""}
    ins = {}
    for k, v in inputs.items():
        save(name + ".in." + k, v)
        v = v.clone()
        if k in req:
            v.requires_grad_(True)
        ins[k] = v
    y = fn(**ins)
    save(name + ".out", y)
    if req:
        g = torch.randn_like(y)
        save(name + ".gout", g)
        y.backward(g)
        for k in sorted(req):
            save(name + ".grad." + k, ins[k].grad)
    for k, v in ins.items():
        if k not in req:
            save(name + ".post." + k, v)

r = torch.randn
case("conv2d_s1p0", lambda x, w, b: F.conv2d(x, w, b), "x,w,b", x=r(2, 3, 7, 7), w=r(4, 3, 3, 3), b=r(4))
case("conv2d_s2p1", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), "x,w,b", x=r(2, 3, 9, 9), w=r(4, 3, 3, 3), b=r(4))
case("conv2d_s2p2d2_nobias", lambda x, w: F.conv2d(x, w, None, stride=2, padding=2, dilation=2), "x,w", x=r(2, 3, 9, 9), w=r(5, 3, 3, 3))
case("conv2d_groups2_p1", lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2), "x,w,b", x=r(2, 4, 6, 6), w=r(6, 2, 3, 3), b=r(6))
case("conv2d_7x7_s2p3", lambda x, w: F.conv2d(x, w, None, stride=2, padding=3), "x,w", x=r(2, 3, 16, 16), w=r(8, 3, 7, 7))

bn = lambda tr: (lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training=tr, momentum=0.1, eps=1e-5))
case("batch_norm_train", bn(True), "x,w,b", x=r(4, 3, 5, 5) * 2 + 1, w=r(3), b=r(3), rm=r(3), rv=torch.rand(3) + 0.5)
case("batch_norm_train_1d", bn(True), "x,w,b", x=r(8, 5) * 3 - 1, w=r(5), b=r(5), rm=r(5), rv=torch.rand(5) + 0.5)
case("batch_norm_eval", bn(False), "x,w,b", x=r(4, 3, 5, 5), w=r(3), b=r(3), rm=r(3), rv=torch.rand(3) + 0.5)

case("linear", lambda x, w, b: F.linear(x, w, b), "x,w,b", x=r(5, 6), w=r(4, 6), b=r(4))
case("linear_3d_nobias", lambda x, w: F.linear(x, w), "x,w", x=r(2, 5, 6), w=r(3, 6))
case("relu", lambda x: F.relu(x), "x", x=r(3, 4, 5))
case("sigmoid", lambda x: torch.sigmoid(x), "x", x=r(3, 4))
case("tanh", lambda x: torch.tanh(x), "x", x=r(3, 4))
case("max_pool2d_k3s2p1", lambda x: F.max_pool2d(x, 3, 2, 1), "x", x=r(2, 3, 9, 9))
case("max_pool2d_k2s2", lambda x: F.max_pool2d(x, 2, 2), "x", x=r(2, 3, 8, 8))
case("avg_pool2d_k2s2", lambda x: F.avg_pool2d(x, 2, 2), "x", x=r(2, 3, 8, 8))
case("adaptive_avg_pool2d_3x3", lambda x: F.adaptive_avg_pool2d(x, (3, 3)), "x", x=r(2, 3, 7, 7))
case("adaptive_avg_pool2d_1x1", lambda x: F.adaptive_avg_pool2d(x, (1, 1)), "x", x=r(2, 3, 7, 5))
case("softmax", lambda x: F.softmax(x, 1), "x", x=r(4, 7) * 3)
case("softmax_last", lambda x: F.softmax(x, -1), "x", x=r(2, 3, 5))
case("log_softmax", lambda x: F.log_softmax(x, 1), "x", x=r(4, 7) * 3)
t6 = torch.randint(0, 5, (6,))
case("cross_entropy", lambda x, y: F.cross_entropy(x, y), "x", x=r(6, 5) * 2, y=t6)
case("cross_entropy_smooth", lambda x, y: F.cross_entropy(x, y, label_smoothing=0.1), "x", x=r(6, 5) * 2, y=t6)
case("cross_entropy_sum", lambda x, y: F.cross_entropy(x, y, reduction="sum"), "x", x=r(6, 5), y=t6)
case("cross_entropy_none_smooth", lambda x, y: F.cross_entropy(x, y, reduction="none", label_smoothing=0.2), "x", x=r(6, 5), y=t6)
case("mse_loss", lambda a, b: F.mse_loss(a, b), "a,b", a=r(4, 3), b=r(4, 3))
case("normalize", lambda x: F.normalize(x, p=2.0, dim=1, eps=1e-12), "x", x=r(4, 8))
case("normalize_dim0_p1", lambda x: F.normalize(x, p=1.0, dim=0, eps=1e-12), "x", x=r(4, 8))
case("interpolate_bilinear_up", lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=False), "x", x=r(2, 3, 4, 5))
case("interpolate_bilinear_up_ac", lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True), "x", x=r(2, 3, 4, 5))
case("interpolate_bilinear_down", lambda x: F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=False), "x", x=r(2, 3, 8, 7))
case("matmul_batched", lambda a, b: torch.matmul(a, b), "a,b", a=r(2, 3, 4), b=r(4, 5))
case("matmul_vec", lambda a, b: torch.matmul(a, b), "a,b", a=r(3, 4), b=r(4))
case("mm", lambda a, b: torch.mm(a, b), "a,b", a=r(3, 4), b=r(4, 2))
case("sum", lambda x: x.sum(), "x", x=r(3, 4, 5))
case("sum_dim1_keep", lambda x: x.sum(dim=[1], keepdim=True), "x", x=r(3, 4, 5))
case("mean", lambda x: x.mean(), "x", x=r(3, 4, 5))
case("mean_dims02", lambda x: x.mean(dim=[0, 2]), "x", x=r(3, 4, 5))
case("var_unbiased_dim1", lambda x: x.var(dim=[1], unbiased=True), "x", x=r(3, 4, 5))
case("var_biased_all", lambda x: x.var(unbiased=False), "x", x=r(3, 4, 5))
case("std_unbiased_dim2_keep", lambda x: x.std(dim=[2], unbiased=True, keepdim=True), "x", x=r(3, 4, 5))
case("norm_p2_all", lambda x: x.norm(2), "x", x=r(3, 4, 5))
case("norm_p1_dim1", lambda x: torch.norm(x, p=1, dim=[1]), "x", x=r(3, 4, 5))
case("logsumexp_dim1", lambda x: torch.logsumexp(x, dim=[1]), "x", x=r(3, 4, 5))
case("max_dim1_values", lambda x: x.max(dim=1).values, "x", x=r(3, 4, 5))
case("max_dim2_keep_indices", lambda x: x.max(dim=2, keepdim=True).indices, "", x=r(3, 4, 5))
`

// randomScript draws seeded random numbers for TestSeededRandomMatchesPyTorch.
const randomScript = `
g = torch.Generator().manual_seed(123)
save("g.rand", torch.rand(4, 5, generator=g))
save("g.randn", torch.randn(20, generator=g))
save("g.randint", torch.randint(0, 10, (7,), generator=g))
save("g.randperm", torch.randperm(10, generator=g))
save("g.randn_small", torch.randn(3, generator=g))
torch.manual_seed(7)
save("global.rand", torch.rand(6))
save("global.randn", torch.randn(2, 9))
`

// refScript runs both scripts in one Python process (starting PyTorch costs seconds).
const refScript = opsScript + randomScript

// opCase is one PyTorch-checked operation: Go's version of the script's lambda.
type opCase struct {
	name string
	fn   func(in map[string]*torch.Tensor) *torch.Tensor
	// atol and rtol default to 1e-5 each.
	atol, rtol float64
}

func opCases() []opCase {
	conv := func(stride, pad, dil, groups int64) func(in map[string]*torch.Tensor) *torch.Tensor {
		return func(in map[string]*torch.Tensor) *torch.Tensor {
			return torch.Conv2d(in["x"], in["w"], in["b"], torch.P(stride), torch.P(pad), torch.P(dil), groups)
		}
	}
	bn := func(training bool) func(in map[string]*torch.Tensor) *torch.Tensor {
		return func(in map[string]*torch.Tensor) *torch.Tensor {
			return torch.BatchNorm(in["x"], in["w"], in["b"], in["rm"], in["rv"], training, 0.1, 1e-5)
		}
	}
	x := func(f func(*torch.Tensor) *torch.Tensor) func(in map[string]*torch.Tensor) *torch.Tensor {
		return func(in map[string]*torch.Tensor) *torch.Tensor { return f(in["x"]) }
	}
	ce := func(ls float64, r torch.Reduction) func(in map[string]*torch.Tensor) *torch.Tensor {
		return func(in map[string]*torch.Tensor) *torch.Tensor { return torch.CrossEntropy(in["x"], in["y"], ls, r) }
	}
	interp := func(h, w int64, ac bool) func(in map[string]*torch.Tensor) *torch.Tensor {
		return x(func(t *torch.Tensor) *torch.Tensor { return torch.Interpolate(t, torch.Pair{h, w}, "bilinear", ac) })
	}
	ab := func(f func(a, b *torch.Tensor) *torch.Tensor) func(in map[string]*torch.Tensor) *torch.Tensor {
		return func(in map[string]*torch.Tensor) *torch.Tensor { return f(in["a"], in["b"]) }
	}
	return []opCase{
		{name: "conv2d_s1p0", fn: conv(1, 0, 1, 1)},
		{name: "conv2d_s2p1", fn: conv(2, 1, 1, 1)},
		{name: "conv2d_s2p2d2_nobias", fn: conv(2, 2, 2, 1)},
		{name: "conv2d_groups2_p1", fn: conv(1, 1, 1, 2)},
		// 147-term dot products of unit normals: sums reach ~±40, so float32
		// rounding alone is ~4e-6; allow 2e-5 absolute.
		{name: "conv2d_7x7_s2p3", fn: conv(2, 3, 1, 1), atol: 2e-5},
		{name: "batch_norm_train", fn: bn(true)},
		{name: "batch_norm_train_1d", fn: bn(true)},
		{name: "batch_norm_eval", fn: bn(false)},
		{name: "linear", fn: func(in map[string]*torch.Tensor) *torch.Tensor { return torch.Linear(in["x"], in["w"], in["b"]) }},
		{name: "linear_3d_nobias", fn: func(in map[string]*torch.Tensor) *torch.Tensor { return torch.Linear(in["x"], in["w"], nil) }},
		{name: "relu", fn: x((*torch.Tensor).Relu)},
		{name: "sigmoid", fn: x((*torch.Tensor).Sigmoid)},
		{name: "tanh", fn: x((*torch.Tensor).Tanh)},
		{name: "max_pool2d_k3s2p1", fn: x(func(t *torch.Tensor) *torch.Tensor {
			return torch.MaxPool2d(t, torch.P(3), torch.P(2), torch.P(1), torch.P(1), false)
		})},
		{name: "max_pool2d_k2s2", fn: x(func(t *torch.Tensor) *torch.Tensor {
			return torch.MaxPool2d(t, torch.P(2), torch.P(2), torch.P(0), torch.P(1), false)
		})},
		{name: "avg_pool2d_k2s2", fn: x(func(t *torch.Tensor) *torch.Tensor {
			return torch.AvgPool2d(t, torch.P(2), torch.P(2), torch.P(0))
		})},
		{name: "adaptive_avg_pool2d_3x3", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.AdaptiveAvgPool2d(t, torch.P(3)) })},
		{name: "adaptive_avg_pool2d_1x1", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.AdaptiveAvgPool2d(t, torch.P(1)) })},
		{name: "softmax", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.Softmax(t, 1) })},
		{name: "softmax_last", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.Softmax(t, -1) })},
		{name: "log_softmax", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.LogSoftmax(t, 1) })},
		{name: "cross_entropy", fn: ce(0, torch.ReduceMean)},
		{name: "cross_entropy_smooth", fn: ce(0.1, torch.ReduceMean)},
		{name: "cross_entropy_sum", fn: ce(0, torch.ReduceSum)},
		{name: "cross_entropy_none_smooth", fn: ce(0.2, torch.ReduceNone)},
		{name: "mse_loss", fn: ab(func(a, b *torch.Tensor) *torch.Tensor { return torch.MSELoss(a, b, torch.ReduceMean) })},
		{name: "normalize", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.Normalize(t, 2, 1, 1e-12) })},
		{name: "normalize_dim0_p1", fn: x(func(t *torch.Tensor) *torch.Tensor { return torch.Normalize(t, 1, 0, 1e-12) })},
		{name: "interpolate_bilinear_up", fn: interp(7, 9, false)},
		{name: "interpolate_bilinear_up_ac", fn: interp(7, 9, true)},
		{name: "interpolate_bilinear_down", fn: interp(3, 3, false)},
		{name: "matmul_batched", fn: ab((*torch.Tensor).Matmul)},
		{name: "matmul_vec", fn: ab((*torch.Tensor).Matmul)},
		{name: "mm", fn: ab((*torch.Tensor).Mm)},
		{name: "sum", fn: x((*torch.Tensor).Sum)},
		{name: "sum_dim1_keep", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.SumDims([]int64{1}, true) })},
		{name: "mean", fn: x((*torch.Tensor).Mean)},
		{name: "mean_dims02", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.MeanDims([]int64{0, 2}, false) })},
		{name: "var_unbiased_dim1", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.Var([]int64{1}, true, false) })},
		{name: "var_biased_all", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.Var(nil, false, false) })},
		{name: "std_unbiased_dim2_keep", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.Std([]int64{2}, true, true) })},
		{name: "norm_p2_all", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.Norm(2, nil, false) })},
		{name: "norm_p1_dim1", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.Norm(1, []int64{1}, false) })},
		{name: "logsumexp_dim1", fn: x(func(t *torch.Tensor) *torch.Tensor { return t.LogSumExp([]int64{1}, false) })},
		{name: "max_dim1_values", fn: x(func(t *torch.Tensor) *torch.Tensor { v, _ := t.MaxDim(1, false); return v })},
		{name: "max_dim2_keep_indices", fn: x(func(t *torch.Tensor) *torch.Tensor { _, i := t.MaxDim(2, true); return i })},
	}
}

// TestOpsMatchPyTorch checks forward values, input and weight gradients, and
// in-place side effects of the functional ops against PyTorch 1.13.
func TestOpsMatchPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch for reference values (tens of seconds on a busy machine); skipped with -short")
	}
	runOpCases(t, reftest.Run(t, refScript), torch.CPU, 1e-5)
}

// TestOpsMatchPyTorchOnCUDA runs the same cases on a CUDA device (inputs
// copied there, results copied back) against PyTorch's CPU values, with TF32
// off and tolerances of 1e-4: GPU kernels sum in other orders.
func TestOpsMatchPyTorchOnCUDA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch for reference values (tens of seconds on a busy machine); skipped with -short")
	}
	reftest.RequireCUDA(t)
	defer torch.SetTF32(torch.SetTF32(false))
	runOpCases(t, reftest.Run(t, refScript), torch.CUDA, 1e-4)
}

// runOpCases runs every opCase on device dev and compares the forward value,
// input gradients and updated inputs with PyTorch's, to at least tol.
func runOpCases(t *testing.T, refs reftest.Refs, dev torch.Device, tol float64) {
	for _, c := range opCases() {
		t.Run(c.name, func(t *testing.T) {
			s := torch.NewScope()
			defer s.Close()
			atol, rtol := max(c.atol, tol), max(c.rtol, tol)
			prefix := c.name + ".in."
			names := refs.Names(prefix)
			if len(names) == 0 {
				t.Fatalf("no PyTorch inputs for %s", c.name)
			}
			in := map[string]*torch.Tensor{}
			for _, n := range names {
				k := strings.TrimPrefix(n, prefix)
				x := s.Track(refs.Tensor(t, n)).ToDevice(dev)
				if refs.Has(c.name + ".grad." + k) {
					if err := x.SetRequiresGrad(true); err != nil {
						t.Fatal(err)
					}
				}
				in[k] = x
			}
			y := c.fn(in)
			if got := y.Device(); y.Err() == nil && got != dev {
				t.Errorf("result on %v, inputs on %v", got, dev)
			}
			reftest.Compare(t, "forward", y, refs.Get(t, c.name+".out"), atol, rtol)
			if refs.Has(c.name + ".gout") {
				if err := y.BackwardWith(s.Track(refs.Tensor(t, c.name+".gout")).ToDevice(dev), false); err != nil {
					t.Fatal(err)
				}
				for _, n := range refs.Names(c.name + ".grad.") {
					k := strings.TrimPrefix(n, c.name+".grad.")
					g := in[k].Grad()
					if g == nil {
						t.Errorf("grad %s: none recorded", k)
						continue
					}
					reftest.Compare(t, "grad "+k, g, refs.Get(t, n), atol, rtol)
				}
			}
			for _, n := range refs.Names(c.name + ".post.") {
				k := strings.TrimPrefix(n, c.name+".post.")
				reftest.Compare(t, "after "+k, in[k], refs.Get(t, n), atol, rtol)
			}
		})
	}
}

// TestSeededRandomMatchesPyTorch checks that a seeded Generator, and the
// global generator after ManualSeed, draw exactly PyTorch's numbers.
func TestSeededRandomMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PyTorch for reference values (tens of seconds on a busy machine); skipped with -short")
	}
	refs := reftest.Run(t, refScript)
	g, err := torch.NewGenerator(123, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	o := torch.Options{Generator: g}
	s := torch.NewScope()
	defer s.Close()
	reftest.Compare(t, "rand", s.Track(torch.Rand([]int64{4, 5}, o)), refs.Get(t, "g.rand"), 0, 0)
	reftest.Compare(t, "randn", s.Track(torch.Randn([]int64{20}, o)), refs.Get(t, "g.randn"), 0, 0)
	reftest.Compare(t, "randint", s.Track(torch.RandInt(0, 10, []int64{7}, o)), refs.Get(t, "g.randint"), 0, 0)
	reftest.Compare(t, "randperm", s.Track(torch.RandPerm(10, o)), refs.Get(t, "g.randperm"), 0, 0)
	reftest.Compare(t, "randn small", s.Track(torch.Randn([]int64{3}, o)), refs.Get(t, "g.randn_small"), 0, 0)
	if err := torch.ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	reftest.Compare(t, "global rand", s.Track(torch.Rand([]int64{6})), refs.Get(t, "global.rand"), 0, 0)
	reftest.Compare(t, "global randn", s.Track(torch.Randn([]int64{2, 9})), refs.Get(t, "global.randn"), 0, 0)
}
