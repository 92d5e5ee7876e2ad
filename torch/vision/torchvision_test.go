package vision

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// TestAgainstTorchvision builds ResNets in torchvision (testdata/resnet_ref.py:
// torchvision's resnet18(num_classes=10), a width-0.25 ResNet-50, a CIFAR-stem
// 1-channel width-0.25 ResNet-18 and a ResNet-34 backbone), loads their state
// dicts strictly into NewResNet and checks names, order, shapes, eval logits,
// every cut's activations, a train-mode step's logits, loss, gradients and
// batch-norm statistics, and shape inference.
func TestAgainstTorchvision(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Python; skipped with -short")
	}
	if ok, why := haveTorchvision(); !ok {
		t.Skip(why)
	}
	dir := t.TempDir()
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "testdata", "resnet_ref.py")
	cmd := exec.Command(python, script, "export", dir, strconv.Itoa(torch.NumThreads()))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s export: %v", script, err)
	}
	for _, name := range []string{"resnet18", "resnet50_w0.25", "resnet18_cifar_1ch", "resnet34_backbone"} {
		t.Run(name, func(t *testing.T) { checkRefCase(t, dir, name) })
	}
}

func checkRefCase(t *testing.T, dir, name string) {
	rc, err := readRefCase(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, x := range rc.tensors {
			x.Free()
		}
	}()
	cfg := configOf(rc.Config)
	r, err := NewResNet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)

	// Names, order and shapes.
	sd := map[string]*torch.Tensor{}
	var pyNames []string
	pyShapes := map[string][]int64{}
	for _, e := range rc.Entries {
		if k, ok := cutPrefix(e.Name, "sd/"); ok {
			sd[k] = rc.tensors[e.Name]
			pyNames = append(pyNames, k)
			pyShapes[k] = e.Shape
		}
	}
	goSD := nn.StateDict(r)
	if len(goSD) != len(pyNames) {
		t.Errorf("state dict has %d entries, torchvision %d", len(goSD), len(pyNames))
	}
	for i := 0; i < len(goSD) && i < len(pyNames); i++ {
		if goSD[i].Name != pyNames[i] {
			t.Fatalf("state dict entry %d is %s, torchvision's is %s", i, goSD[i].Name, pyNames[i])
		}
	}
	if err := nn.LoadStateDict(r, sd, true); err != nil {
		t.Fatal(err)
	}

	// Shape inference recovers the configuration.
	got, desc, err := InferResNetConfig(pyShapes)
	if err != nil {
		t.Fatalf("InferResNetConfig: %v", err)
	}
	if want := r.Config; got != want {
		t.Errorf("InferResNetConfig = %+v, want %+v", got, want)
	}
	t.Logf("%v: %s, %d parameters", r.Config, desc, nn.NumParameters(r))

	tol := func(what string, a, b *torch.Tensor, tol float64) {
		t.Helper()
		d, scale, err := maxAbsDiff(a, b)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if d > tol*max(1, scale) {
			t.Errorf("%s: max |Go − PyTorch| = %.3g (scale %.3g), want ≤ %g relative", what, d, scale, tol)
		}
	}

	x := rc.tensors["input"]
	nn.Eval(r)
	_ = torch.NoGrad(func() error { // tol reports its own failures
		s := torch.NewScope()
		defer s.Close()
		xs := s.Track(x.Ref())
		tol("eval output", r.Forward(xs), rc.tensors["eval/out"], 1e-4)
		for _, cut := range r.CutPoints() {
			tol("activations at "+cut, r.ForwardTo(xs, cut), rc.tensors["cut/"+cut], 1e-4)
		}
		return nil
	})

	if _, ok := rc.tensors["train/out"]; !ok {
		return
	}
	nn.Train(r)
	s := torch.NewScope()
	defer s.Close()
	out := r.Forward(s.Track(x.Ref()))
	loss := torch.CrossEntropy(out, rc.tensors["train/target"], 0, torch.ReduceMean)
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	tol("train-mode output", out, rc.tensors["train/out"], 1e-4)
	tol("train-mode loss", loss, rc.tensors["train/loss"], 1e-4)
	params := map[string]*torch.Tensor{}
	for _, n := range nn.NamedParameters(r) {
		params[n.Name] = n.Tensor
	}
	bufs := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(r) {
		bufs[n.Name] = n.Tensor
	}
	var keys []string
	for k := range rc.tensors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if p, ok := cutPrefix(k, "grad/"); ok {
			tol("gradient of "+p, s.Track(params[p].Grad()), rc.tensors[k], 1e-4)
		}
		if b, ok := cutPrefix(k, "after/"); ok {
			tol(b+" after the step", bufs[b], rc.tensors[k], 1e-5)
		}
	}
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}
