package weights

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// The Python side of the tests: Debian's python3-torch (PyTorch 1.13) and
// python3-torchvision, called by absolute path because `python3` on PATH may
// be another interpreter without torch.
const pythonBin = "/usr/bin/python3"

var (
	torchOnce sync.Once
	torchErr  error
)

// needTorch skips the test unless /usr/bin/python3 can import torch.
func needTorch(t *testing.T) {
	t.Helper()
	torchOnce.Do(func() {
		out, err := exec.Command(pythonBin, "-c", "import torch, torchvision").CombinedOutput()
		if err != nil {
			torchErr = err
			if len(out) > 0 {
				torchErr = &pyError{err, out}
			}
		}
	})
	if torchErr != nil {
		t.Skipf("python3-torch not installed: apt-get install python3-torch python3-torchvision (%v)", torchErr)
	}
}

type pyError struct {
	err error
	out []byte
}

func (e *pyError) Error() string { return e.err.Error() + ": " + string(bytes.TrimSpace(e.out)) }

// runPython runs script with args, failing the test with its output on error.
func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	needTorch(t)
	cmd := exec.Command(pythonBin, append([]string{"-c", script}, args...)...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python failed: %v\n%s", err, out)
	}
	return string(out)
}

// fixtureScript writes every Python-made fixture into argv[1]. For each
// fixture NAME.pt it also writes NAME.expect.json (the keys, dtypes and shapes
// the Go reader should return, after normalisation) and NAME.expect.bin (their
// contiguous bytes, concatenated in key order), so values compare exactly.
const fixtureScript = `
import sys, os, json, argparse, collections
import numpy as np
import torch, torch.nn as nn, torchvision
torch.manual_seed(0)
out = sys.argv[1]

def raw(t):
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()

def expect(name, sd, meta=None):
    keys = list(sd.keys())
    info = {"keys": keys,
            "dtypes": [str(sd[k].dtype).replace("torch.", "") for k in keys],
            "shapes": [list(sd[k].shape) for k in keys],
            "metadata": meta or {}}
    with open(os.path.join(out, name + ".expect.json"), "w") as f:
        json.dump(info, f)
    with open(os.path.join(out, name + ".expect.bin"), "wb") as f:
        for k in keys:
            f.write(raw(sd[k]))

def save(name, obj, **kw):
    torch.save(obj, os.path.join(out, name + ".pt"), **kw)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, 5)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
    def forward(self, x):
        x = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))

# 1. a plain torchvision state dict (an OrderedDict with _metadata).
r18 = torchvision.models.resnet18(num_classes=10)
for m in r18.modules():
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-1, 1); m.running_var.uniform_(0.5, 2); m.num_batches_tracked.fill_(7)
sd = r18.state_dict()
save("resnet18", sd)
expect("resnet18", sd)

net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
net(torch.randn(2, 3, 8, 8)).sum().backward(); opt.step()
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1); m.num_batches_tracked.fill_(3)
small = net.state_dict()

# 2. DataParallel keys in a wrapper with epoch, optimizer state, argparse args, a numpy scalar.
dp = nn.DataParallel(net).state_dict()
assert all(k.startswith("module.") for k in dp)
save("dataparallel", {"state_dict": dp, "epoch": 3, "optimizer": opt.state_dict(),
                      "args": argparse.Namespace(lr=0.1, arch="net"), "best_acc1": np.float64(0.5),
                      "arch": "net"})
expect("dataparallel", small, {"epoch": "3", "arch": "net"})

# 3. self-supervised: backbone. prefix with a projector head beside it.
ssl = collections.OrderedDict(("backbone." + k, v) for k, v in small.items())
ssl["projector.0.weight"] = torch.randn(8, 4); ssl["projector.0.bias"] = torch.randn(8)
ssl["projector.2.weight"] = torch.randn(3, 8)
save("ssl", ssl)
expect("ssl", small)

# 4. Lightning: model. prefix, hyper_parameters, version string, optimizer states.
save("lightning", {"epoch": 5, "global_step": 100, "pytorch-lightning_version": "1.9.0",
                   "state_dict": collections.OrderedDict(("model." + k, v) for k, v in small.items()),
                   "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
                   "hyper_parameters": {"lr": 0.1, "arch": "resnet18", "betas": (0.9, 0.99),
                                        "dtype": torch.float32, "tags": {"a", "b"}}})
expect("lightning", small, {"pytorch-lightning_version": "1.9.0", "epoch": "5", "global_step": "100"})

# 5. DINO-style teacher/student with heads.
teacher = collections.OrderedDict(("backbone." + k, v) for k, v in small.items())
teacher["head.mlp.0.weight"] = torch.randn(6, 4)
student = collections.OrderedDict(("backbone." + k, v * 2) for k, v in small.items())
save("dino", {"student": student, "teacher": teacher, "epoch": 1})
expect("dino", small)

# 6. legacy (non-zip) format.
save("legacy", small, _use_new_zipfile_serialization=False)
expect("legacy", small)

# 7. dtypes and views: non-contiguous and storage-sharing tensors.
base = torch.arange(20, dtype=torch.float32)
m = torch.randn(3, 4)
odd = collections.OrderedDict([
    ("f16", torch.tensor([1.5, -2.25, 65504, 6e-5, float("inf")], dtype=torch.float16)),
    ("bf16", torch.tensor([1.5, -2.25, 3e38, 1e-30], dtype=torch.bfloat16)),
    ("f64", torch.randn(2, 2, dtype=torch.float64)),
    ("i64", torch.tensor([-3, 0, 2**40], dtype=torch.int64)),
    ("i32", torch.tensor([-7, 9], dtype=torch.int32)),
    ("i16", torch.tensor([-7, 9], dtype=torch.int16)),
    ("i8", torch.tensor([-7, 9], dtype=torch.int8)),
    ("u8", torch.tensor([7, 250], dtype=torch.uint8)),
    ("flag", torch.tensor([True, False, True])),
    ("scalar", torch.tensor(42)),
    ("empty", torch.zeros(0, 3)),
    ("base", base),
    ("narrow", base[5:10]),
    ("every3", base[1::3]),
    ("t", m.t()),
    ("col", m[:, 1]),
    ("perm", torch.randn(2, 3, 4).permute(2, 0, 1)),
])
assert not odd["t"].is_contiguous()
save("views", odd)
expect("views", odd)
save("views_legacy", odd, _use_new_zipfile_serialization=False)
expect("views_legacy", odd)

# 8. a whole pickled model (torch.save(model)).
save("fullmodel", net)
expect("fullmodel", small)

# 9. a hostile pickle.
class E:
    def __reduce__(self):
        return (os.system, ("echo pwned",))
save("malicious", {"x": E(), "w": torch.zeros(1)})
save("malicious_legacy", {"x": E()}, _use_new_zipfile_serialization=False)

# 10. TorchScript.
torch.jit.save(torch.jit.script(nn.Linear(2, 2)), os.path.join(out, "script.pt"))
print("ok")
`

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  string
)

// fixtures returns the directory holding the Python-made fixtures, making
// them once per test binary (python startup and torchvision import take
// seconds on a small machine).
func fixtures(t *testing.T) string {
	t.Helper()
	needTorch(t)
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weights-fixtures-")
		if err != nil {
			fixtureErr = err.Error()
			return
		}
		cmd := exec.Command(pythonBin, "-c", fixtureScript, dir)
		cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = err.Error() + "\n" + string(out)
			return
		}
		fixtureDir = dir
	})
	if fixtureErr != "" {
		t.Fatalf("making fixtures: %s", fixtureErr)
	}
	return fixtureDir
}

// expected is a fixture's .expect.json plus its tensors from .expect.bin.
type expected struct {
	Keys     []string          `json:"keys"`
	DTypes   []string          `json:"dtypes"`
	Shapes   [][]int64         `json:"shapes"`
	Metadata map[string]string `json:"metadata"`
	data     map[string][]byte
}

func loadExpected(t *testing.T, dir, name string) *expected {
	t.Helper()
	js, err := os.ReadFile(filepath.Join(dir, name+".expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e expected
	if err := json.Unmarshal(js, &e); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(filepath.Join(dir, name+".expect.bin"))
	if err != nil {
		t.Fatal(err)
	}
	e.data = map[string][]byte{}
	off := 0
	for i, k := range e.Keys {
		n, _ := byteSize(e.Shapes[i], DType(e.DTypes[i]))
		if off+int(n) > len(bin) {
			t.Fatalf("%s.expect.bin too short at %s", name, k)
		}
		e.data[k] = bin[off : off+int(n)]
		off += int(n)
	}
	return &e
}

// checkState compares a state dict with the expectation exactly: same keys in
// the same order, dtypes, shapes and bytes.
func checkState(t *testing.T, sd *StateDict, e *expected) {
	t.Helper()
	if len(sd.Keys) != len(e.Keys) {
		t.Fatalf("got %d keys %v,\nwant %d keys %v", len(sd.Keys), sd.Keys, len(e.Keys), e.Keys)
	}
	for i, k := range e.Keys {
		if sd.Keys[i] != k {
			t.Fatalf("key %d: got %q, want %q", i, sd.Keys[i], k)
		}
		got := sd.Tensors[k]
		if got == nil {
			t.Fatalf("key %q: no tensor", k)
		}
		if string(got.DType) != e.DTypes[i] {
			t.Errorf("%s: dtype %s, want %s", k, got.DType, e.DTypes[i])
		}
		if !slices.Equal(got.Shape, e.Shapes[i]) {
			t.Errorf("%s: shape %v, want %v", k, got.Shape, e.Shapes[i])
		}
		if !bytes.Equal(got.Data, e.data[k]) {
			t.Errorf("%s: values differ", k)
		}
	}
}

// TestMain removes the shared fixture directory after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}
