package stitch

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"modelstitch/experiments/results"
	"modelstitch/internal/reftest"
	"modelstitch/torch"
)

// TestRenormaliseGivesTheTopsOwnInputs checks that a batch normalised for the
// bottom is mapped to the same images normalised for the top.
func TestRenormaliseGivesTheTopsOwnInputs(t *testing.T) {
	from := [2][]float64{{0.2860}, {0.3530}}
	to := [2][]float64{{0.5}, {0.25}}
	r, err := renormalise(from, to, torch.CPU)
	if err != nil || r == nil {
		t.Fatalf("renormalise: %v, %v", r, err)
	}
	defer r.free()
	pixels := []float32{0, 0.1, 0.5, 0.9, 1}
	xb := make([]float32, len(pixels))
	for i, p := range pixels {
		xb[i] = float32((float64(p) - from[0][0]) / from[1][0])
	}
	x := torch.FromSlice(xb, 1, 1, 1, int64(len(xb)))
	y := r.apply(x)
	defer torch.FreeAll(x, y)
	got, err := torch.ToSlice[float32](y)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pixels {
		want := (float64(p) - to[0][0]) / to[1][0]
		if math.Abs(float64(got[i])-want) > 1e-5 {
			t.Errorf("pixel %g: got %g, want %g (the top's own normalisation)", p, got[i], want)
		}
	}
	if same, err := renormalise(from, from, torch.CPU); same != nil || err != nil {
		t.Errorf("equal normalisations need no map: %v, %v", same, err)
	}
}

// TestTopClassCountMustMatchData checks that a top trained on other classes
// is refused with an error naming its file and both counts, and that a bottom
// with other classes gets no bottom accuracy.
func TestTopClassCountMustMatchData(t *testing.T) {
	path := trained(t)
	tr, te := fashionSplits(t)
	store, _ := results.Open("")
	top := load(t, path)
	top.Meta.Classes = 2
	r := &Runner{Bottom: load(t, path), Top: top, Train: tr, Test: te, Config: quickConfig("layer1.0"), Store: store}
	_, err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "2 classes") || !strings.Contains(err.Error(), fmt.Sprint(te.Classes)) {
		t.Errorf("a 2-class top on %d-class data: %v", te.Classes, err)
	}
	bottom := load(t, path)
	bottom.Meta.Classes = 2
	cfg := quickConfig("layer1.0")
	cfg.CKASamples = 0
	r = &Runner{Bottom: bottom, Top: load(t, path), Train: tr, Test: te, Config: cfg, Store: store}
	rows, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].BottomAcc != nil {
		t.Errorf("a 2-class bottom on %d-class data reported bottom_acc %v", te.Classes, *rows[0].BottomAcc)
	}
}

// ckaScript computes biased and unbiased linear CKA in PyTorch, written from
// the papers' matrix formulas (Kornblith et al. 2019; Song et al. 2012 /
// Nguyen et al. 2021) with explicit ones vectors and filled diagonals.
const ckaScript = `
torch.manual_seed(0)
x = torch.randn(60, 3, 2, 5, dtype=torch.float64)
w = torch.randn(30, 20, dtype=torch.float64)
y = x.flatten(1) @ w + 2.0 * torch.randn(60, 20, dtype=torch.float64)
def gram(a):
    a = a.flatten(1)
    a = a - a.mean(0, keepdim=True)
    return a @ a.T
def hsic_u(k, l):
    n = k.shape[0]
    k = k.clone(); l = l.clone()
    k.fill_diagonal_(0); l.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=torch.float64)
    t1 = torch.trace(k @ l)
    t2 = (one.T @ k @ one) * (one.T @ l @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (one.T @ k @ l @ one)
    return ((t1 + t2 - t3) / (n * (n - 3))).item()
def hsic_b(k, l):
    return (k * l).sum().item()
K, L = gram(x), gram(y)
save("x", x); save("y", y)
save("biased", hsic_b(K, L) / math.sqrt(hsic_b(K, K) * hsic_b(L, L)))
save("unbiased", hsic_u(K, L) / math.sqrt(hsic_u(K, K) * hsic_u(L, L)))
xs = x[:8]; ys = torch.randn(8, 20, dtype=torch.float64)
save("xs", xs); save("ys", ys)
Ks, Ls = gram(xs), gram(ys)
save("biased_small", hsic_b(Ks, Ls) / math.sqrt(hsic_b(Ks, Ks) * hsic_b(Ls, Ls)))
save("unbiased_small", hsic_u(Ks, Ls) / math.sqrt(hsic_u(Ks, Ks) * hsic_u(Ls, Ls)))
`

// TestCKAEstimatorsMatchPyTorch checks both CKA estimators against the
// papers' formulas run in PyTorch.
func TestCKAEstimatorsMatchPyTorch(t *testing.T) {
	refs := reftest.Run(t, ckaScript)
	for _, c := range []struct{ x, y, biased, unbiased string }{{"x", "y", "biased", "unbiased"}, {"xs", "ys", "biased_small", "unbiased_small"}} {
		x, y := refs.Tensor(t, c.x), refs.Tensor(t, c.y)
		b, err := LinearCKA(x, y)
		if err != nil {
			t.Fatal(err)
		}
		u, err := UnbiasedLinearCKA(x, y)
		if err != nil {
			t.Fatal(err)
		}
		torch.FreeAll(x, y)
		if want := refs.Float(t, c.biased); math.Abs(b-want) > 1e-9 {
			t.Errorf("%s: biased CKA %v, PyTorch %v", c.x, b, want)
		}
		if want := refs.Float(t, c.unbiased); math.Abs(u-want) > 1e-9 {
			t.Errorf("%s: unbiased CKA %v, PyTorch %v", c.x, u, want)
		}
		t.Logf("%s: biased %.4f unbiased %.4f", c.x, b, u)
	}
	x := torch.Randn([]int64{3, 4})
	defer x.Free()
	if _, err := UnbiasedLinearCKA(x, x); err == nil || !strings.Contains(err.Error(), "4 samples") {
		t.Errorf("3 samples: %v", err)
	}
}
