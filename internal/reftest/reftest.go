// Package reftest runs real PyTorch from Go tests to produce reference values,
// and compares tensors against them. It is for tests only.
//
// A test passes Run a Python script; the script sees a prelude that imports
// torch and defines save(name, value), and whatever it saves comes back as
// Refs. Values travel as JSON numbers (float32 values are exact in float64),
// so a test can rebuild the script's inputs bit for bit in Go.
//
// The interpreter is /usr/bin/python3 (Debian's, with python3-torch), or
// $MODELSTITCH_PYTHON when set. When `import torch` fails, Run skips the test.
package reftest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"modelstitch/torch"
)

// DefaultPython is the interpreter with PyTorch on the project's machines.
const DefaultPython = "/usr/bin/python3"

// SkipReason is given when PyTorch cannot be imported.
const SkipReason = "python3-torch not installed: apt-get install python3-torch"

// Python returns the interpreter Run uses.
func Python() string {
	if p := os.Getenv("MODELSTITCH_PYTHON"); p != "" {
		return p
	}
	return DefaultPython
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Require skips t unless the interpreter can import torch.
func Require(t testing.TB) {
	t.Helper()
	probeOnce.Do(func() {
		out, err := exec.Command(Python(), "-c", "import torch").CombinedOutput()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			probeErr = fmt.Errorf("%s -c 'import torch': %v: %s", Python(), err, lines[len(lines)-1])
		}
	})
	if probeErr != nil {
		t.Skipf("%s (%v)", SkipReason, probeErr)
	}
}

// RequireCUDA skips t unless the bridge was built against a CUDA libtorch and
// a GPU is there: the CUDA tests' common guard. With MODELSTITCH_REQUIRE_CUDA=1
// in the environment (make test-cuda) it fails t instead, so that a run meant
// for a GPU cannot pass by skipping everything.
func RequireCUDA(t testing.TB) {
	t.Helper()
	stop := t.Skip
	if os.Getenv("MODELSTITCH_REQUIRE_CUDA") == "1" {
		stop = t.Fatal
	}
	if !torch.BuiltWithCUDA() {
		stop("the bridge was built against a CPU-only libtorch (build it against a CUDA libtorch: README, Building for CUDA)")
		return
	}
	if !torch.CUDAAvailable() {
		stop("no CUDA device on this machine")
	}
}

// prelude is prepended to every script. save() accepts tensors, numbers and
// lists of numbers.
const prelude = `
import json, math, os, sys
import torch
import torch.nn.functional as F
torch.set_num_threads(%d)
_refs = {}
def save(name, v):
    if name in _refs:
        raise KeyError("saved twice: " + name)
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        dt = str(v.dtype).replace("torch.", "")
        data = v.flatten().to(torch.float64).tolist() if v.dtype != torch.bool else [float(x) for x in v.flatten().tolist()]
        _refs[name] = {"dtype": dt, "shape": list(v.shape), "data": data}
    elif isinstance(v, (list, tuple)):
        _refs[name] = {"dtype": "float64", "shape": [len(v)], "data": [float(x) for x in v]}
    else:
        _refs[name] = {"dtype": "float64", "shape": [], "data": [float(v)]}
`

const epilogue = `
with open(os.path.join(sys.argv[1], "refs.json"), "w") as _f:
    json.dump(_refs, _f)
`

// Ref is one saved value: PyTorch's dtype name, shape and row-major data.
type Ref struct {
	DType string    `json:"dtype"`
	Shape []int64   `json:"shape"`
	Data  []float64 `json:"data"`
}

// Refs are the values a script saved, by name.
type Refs map[string]Ref

var (
	cacheMu sync.Mutex
	cache   = map[string]Refs{}
)

// Run runs script under PyTorch in a temporary directory and returns what it
// saved. It skips t when PyTorch is missing and fails t when the script fails.
// Results are cached per script for the test binary's lifetime, since
// starting Python and importing torch takes seconds on a busy machine.
func Run(t testing.TB, script string) Refs {
	t.Helper()
	Require(t)
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if r, ok := cache[script]; ok {
		return r
	}
	r := run(t, script)
	cache[script] = r
	return r
}

func run(t testing.TB, script string) Refs {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(prelude, torch.NumThreads()) + script + epilogue
	path := filepath.Join(dir, "ref.py")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Python(), path, dir)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONWARNINGS=ignore", "OMP_NUM_THREADS="+fmt.Sprint(torch.NumThreads()))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("PyTorch reference script failed: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "refs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refs Refs
	if err := json.Unmarshal(b, &refs); err != nil {
		t.Fatalf("reading PyTorch references: %v", err)
	}
	return refs
}

// Get returns the value saved under name, failing t if there is none.
func (r Refs) Get(t testing.TB, name string) Ref {
	t.Helper()
	v, ok := r[name]
	if !ok {
		t.Fatalf("PyTorch reference %q missing", name)
	}
	return v
}

// Has reports whether name was saved.
func (r Refs) Has(name string) bool { _, ok := r[name]; return ok }

// Names returns the saved names that start with prefix, sorted.
func (r Refs) Names(prefix string) []string {
	var out []string
	for k := range r {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Float returns a saved number.
func (r Refs) Float(t testing.TB, name string) float64 {
	t.Helper()
	v := r.Get(t, name)
	if len(v.Data) != 1 {
		t.Fatalf("PyTorch reference %q has %d values, want 1", name, len(v.Data))
	}
	return v.Data[0]
}

// Tensor rebuilds a saved tensor as a new CPU tensor: int64 for PyTorch's
// integer types, bool for bool, float64 for float64 and float32 otherwise.
func (r Refs) Tensor(t testing.TB, name string) *torch.Tensor {
	t.Helper()
	return r.Get(t, name).Tensor()
}

// Tensor builds the value as a new CPU tensor (see Refs.Tensor).
func (v Ref) Tensor() *torch.Tensor {
	if len(v.Shape) == 0 { // FromSlice makes 1-D tensors from an empty shape
		flat := Ref{DType: v.DType, Shape: []int64{1}, Data: v.Data}.Tensor()
		defer flat.Free()
		return flat.Reshape()
	}
	switch v.DType {
	case "int64", "int32", "int16", "int8", "uint8":
		d := make([]int64, len(v.Data))
		for i, x := range v.Data {
			d[i] = int64(x)
		}
		return torch.FromSlice(d, v.Shape...)
	case "bool":
		d := make([]bool, len(v.Data))
		for i, x := range v.Data {
			d[i] = x != 0
		}
		return torch.FromSlice(d, v.Shape...)
	case "float64":
		return torch.FromSlice(append([]float64(nil), v.Data...), v.Shape...)
	}
	d := make([]float32, len(v.Data))
	for i, x := range v.Data {
		d[i] = float32(x)
	}
	return torch.FromSlice(d, v.Shape...)
}

// Diff returns the largest |got−want| and the largest excess of |got−want|
// over atol + rtol·|want| (≤ 0 when every element is within tolerance).
func Diff(got, want []float64, atol, rtol float64) (maxAbs, worst float64) {
	worst = math.Inf(-1)
	for i := range got {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = math.Max(maxAbs, d)
		worst = math.Max(worst, d-(atol+rtol*math.Abs(want[i])))
	}
	return maxAbs, worst
}

// Compare checks got against want elementwise, |got−want| ≤ atol + rtol·|want|,
// after checking the shapes agree, and logs the largest difference. It
// returns the largest absolute difference.
func Compare(t testing.TB, what string, got *torch.Tensor, want Ref, atol, rtol float64) float64 {
	t.Helper()
	if err := got.Err(); err != nil {
		t.Errorf("%s: %v", what, err)
		return math.Inf(1)
	}
	if gs, err := got.Shape(); err != nil || !slices.Equal(gs, want.Shape) {
		t.Errorf("%s: shape %v, PyTorch %v", what, gs, want.Shape)
		return math.Inf(1)
	}
	g, err := got.Float64s()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return math.Inf(1)
	}
	maxAbs, worst := Diff(g, want.Data, atol, rtol)
	if worst > 0 {
		t.Errorf("%s: differs from PyTorch by up to %.3g (atol %g, rtol %g)", what, maxAbs, atol, rtol)
	} else {
		t.Logf("%s: max abs diff vs PyTorch %.3g", what, maxAbs)
	}
	return maxAbs
}

// CompareFloats is Compare for plain numbers (learning rates, losses).
func CompareFloats(t testing.TB, what string, got []float64, want Ref, atol, rtol float64) float64 {
	t.Helper()
	if len(got) != len(want.Data) {
		t.Errorf("%s: %d values, PyTorch %d", what, len(got), len(want.Data))
		return math.Inf(1)
	}
	maxAbs, worst := Diff(got, want.Data, atol, rtol)
	if worst > 0 {
		t.Errorf("%s: differs from PyTorch by up to %.3g (atol %g, rtol %g)\n got  %v\n want %v", what, maxAbs, atol, rtol, got, want.Data)
	} else {
		t.Logf("%s: max abs diff vs PyTorch %.3g", what, maxAbs)
	}
	return maxAbs
}
