package train

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelstitch/torch"
)

// pythonTorch is Debian's interpreter with python3-torch ($MODELSTITCH_PYTHON overrides).
func pythonTorch(t *testing.T) string {
	t.Helper()
	py := os.Getenv("MODELSTITCH_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import torch").CombinedOutput(); err != nil {
		t.Skipf("PyTorch reference unavailable: %s -c 'import torch': %v: %s (apt-get install python3-torch)",
			py, err, strings.TrimSpace(string(out)))
	}
	return py
}

// ntxentScript computes NT-Xent the way the common PyTorch SimCLR code does
// (positives and negatives gathered with a mask, cross-entropy with the
// positive as class 0, summed and divided by 2N) — a formulation independent
// of ours — with gradients, for several shapes and temperatures.
const ntxentScript = `
import json, sys, torch
import torch.nn.functional as F
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

out = []
for n, d, t, scale in [(8, 16, 0.5, 1.0), (5, 3, 0.1, 3.0), (16, 32, 0.5, 0.2), (2, 4, 1.0, 1.0)]:
    z1 = (torch.randn(n, d) * scale).requires_grad_(True)
    z2 = (torch.randn(n, d) * scale).requires_grad_(True)
    z2.data[0] = z1.data[0] * 2  # one exact positive pair
    loss = nt_xent(z1, z2, t)
    loss.backward()
    out.append({"n": n, "d": d, "t": t, "z1": z1.detach().flatten().tolist(), "z2": z2.detach().flatten().tolist(),
                "loss": loss.item(), "g1": z1.grad.flatten().tolist(), "g2": z2.grad.flatten().tolist()})
json.dump(out, open(sys.argv[1], "w"))
`

func TestNTXentMatchesPyTorch(t *testing.T) {
	py := pythonTorch(t)
	dir := t.TempDir()
	script, res := filepath.Join(dir, "ntxent.py"), filepath.Join(dir, "ntxent.json")
	if err := os.WriteFile(script, []byte(ntxentScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script, res)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "PYTHONWARNINGS=ignore")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("PyTorch reference failed: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(res)
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		N, D   int64
		T      float64
		Z1, Z2 []float64
		Loss   float64
		G1, G2 []float64
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no reference cases")
	}
	const tol = 1e-5
	for _, c := range cases {
		s := torch.NewScope()
		z1 := s.Track(torch.FromSlice(f32(c.Z1), c.N, c.D))
		z2 := s.Track(torch.FromSlice(f32(c.Z2), c.N, c.D))
		if err := z1.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		if err := z2.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		loss := NTXent(z1, z2, c.T)
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		got, err := loss.Item()
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-c.Loss) > tol*math.Max(1, math.Abs(c.Loss)) {
			t.Errorf("N=%d d=%d τ=%g: loss %.7f, PyTorch %.7f", c.N, c.D, c.T, got, c.Loss)
		}
		for _, g := range []struct {
			name string
			x    *torch.Tensor
			want []float64
		}{{"z1", z1, c.G1}, {"z2", z2, c.G2}} {
			gv, err := s.Track(g.x.Grad()).Float64s()
			if err != nil {
				t.Fatal(err)
			}
			if len(gv) != len(g.want) {
				t.Fatalf("grad %s: %d values, want %d", g.name, len(gv), len(g.want))
			}
			worst := 0.0
			for k := range gv {
				worst = math.Max(worst, math.Abs(gv[k]-g.want[k]))
			}
			if worst > tol {
				t.Errorf("N=%d d=%d τ=%g: grad %s differs from PyTorch by up to %.2g", c.N, c.D, c.T, g.name, worst)
			}
		}
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

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
