package train

import (
	"fmt"
	"os"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
)

// ntxentScript computes NT-Xent the way the common PyTorch SimCLR code does
// (positives and negatives gathered with a mask, cross-entropy with the
// positive as class 0, summed and divided by 2N) — a formulation independent
// of ours — with gradients, for several shapes and temperatures.
const ntxentScript = `
torch.manual_seed(0)

def nt_xent(z_i, z_j, t):
    n = z_i.shape[0]
    z = torch.cat((z_i, z_j), dim=0)
    sim = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2, eps=1e-12) / t
    pos = torch.cat((torch.diag(sim, n), torch.diag(sim, -n)), dim=0).reshape(2 * n, 1)
    mask = torch.ones((2 * n, 2 * n), dtype=torch.bool)
    mask.fill_diagonal_(False)
    for i in range(n):
        mask[i, n + i] = False
        mask[n + i, i] = False
    neg = sim[mask].reshape(2 * n, -1)
    logits = torch.cat((pos, neg), dim=1)
    labels = torch.zeros(2 * n, dtype=torch.long)
    return F.cross_entropy(logits, labels, reduction="sum") / (2 * n)

for k, (n, d, t, scale) in enumerate([(8, 16, 0.5, 1.0), (5, 3, 0.1, 3.0), (16, 32, 0.5, 0.2), (2, 4, 1.0, 1.0)]):
    z1 = torch.randn(n, d) * scale
    z2 = torch.randn(n, d) * scale
    z2[0] = z1[0] * 2  # one exact positive pair
    save(f"{k}.z1", z1)
    save(f"{k}.z2", z2)
    save(f"{k}.t", t)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = nt_xent(z1, z2, t)
    loss.backward()
    save(f"{k}.loss", loss)
    save(f"{k}.g1", z1.grad)
    save(f"{k}.g2", z2.grad)
`

// TestNTXentMatchesPyTorch checks the loss and its gradients with respect to
// both views' projections against a PyTorch implementation, to 1e-5.
func TestNTXentMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: PyTorch reference test (starts Python)")
	}
	refs := reftest.Run(t, ntxentScript)
	cases := refs.Names("")
	if len(cases) == 0 {
		t.Fatal("no reference cases")
	}
	for k := 0; refs.Has(fmt.Sprintf("%d.loss", k)); k++ {
		name := func(s string) string { return fmt.Sprintf("%d.%s", k, s) }
		s := torch.NewScope()
		z1 := s.Track(refs.Tensor(t, name("z1")))
		z2 := s.Track(refs.Tensor(t, name("z2")))
		if err := z1.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		if err := z2.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		temp := refs.Float(t, name("t"))
		zs, err := z1.Shape()
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("N=%d d=%d τ=%g", zs[0], zs[1], temp)
		loss := NTXent(z1, z2, temp)
		if err := loss.Backward(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		reftest.Compare(t, what+" loss", loss, refs.Get(t, name("loss")), 1e-5, 1e-5)
		reftest.Compare(t, what+" ∂loss/∂z1", s.Track(z1.Grad()), refs.Get(t, name("g1")), 1e-5, 0)
		reftest.Compare(t, what+" ∂loss/∂z2", s.Track(z2.Grad()), refs.Get(t, name("g2")), 1e-5, 0)
		s.Close()
	}
}

func TestNTXentErrors(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	a := s.Track(torch.Randn([]int64{4, 8}))
	b := s.Track(torch.Randn([]int64{3, 8}))
	if NTXent(a, b, 0.5).Err() == nil {
		t.Error("mismatched batch sizes: no error")
	}
	if NTXent(a, a, 0).Err() == nil {
		t.Error("temperature 0: no error")
	}
	if NTXent(a, torch.ErrTensor(os.ErrInvalid), 0.5).Err() == nil {
		t.Error("error operand: no error")
	}
	// The loss joins its operands' scope and leaves no intermediate behind.
	before := torch.LiveTensors()
	l := NTXent(a, s.Track(torch.Randn([]int64{4, 8})), 0.5)
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if l.Scope() != s {
		t.Error("loss is not in its operands' scope")
	}
	if got := torch.LiveTensors() - before; got != 2 {
		t.Errorf("NTXent left %d live tensors, want 2 (the new operand and the loss)", got)
	}
}
