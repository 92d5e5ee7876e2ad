package vision

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// paramCount sums the sizes of the parameters (not buffers) among shapes.
func paramCount(names []string, shapes map[string][]int64) int64 {
	var n int64
	for _, k := range names {
		if strings.HasSuffix(k, "running_mean") || strings.HasSuffix(k, "running_var") || strings.HasSuffix(k, "num_batches_tracked") {
			continue
		}
		p := int64(1)
		for _, s := range shapes[k] {
			p *= s
		}
		n += p
	}
	return n
}

// TestTorchvisionParameterCounts checks the arithmetic shapes against
// torchvision's published parameter counts (1000 classes).
func TestTorchvisionParameterCounts(t *testing.T) {
	for depth, want := range map[int]int64{18: 11689512, 34: 21797672, 50: 25557032, 101: 44549160, 152: 60192808} {
		names, shapes, err := stateDictShapes(ResNetConfig{Depth: depth, Classes: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if got := paramCount(names, shapes); got != want {
			t.Errorf("resnet%d has %d parameters, torchvision's %d", depth, got, want)
		}
	}
}

// TestStateDictMatchesArithmetic builds models and compares their state dicts
// (names, order, shapes) with stateDictShapes, and spot-checks torchvision names.
func TestStateDictMatchesArithmetic(t *testing.T) {
	cfgs := []ResNetConfig{
		{Depth: 18, Classes: 1000},
		{Depth: 34, Width: 0.25, Stem: "cifar", InChannels: 1, Classes: 10},
		{Depth: 50, Width: 0.25},
		{Depth: 101, Width: 0.125, Classes: 5},
	}
	for _, cfg := range cfgs {
		t.Run(cfg.String(), func(t *testing.T) {
			r, err := NewResNet(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer nn.Free(r)
			names, shapes, err := stateDictShapes(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sd := nn.StateDict(r)
			if len(sd) != len(names) {
				t.Fatalf("%d state-dict entries, want %d", len(sd), len(names))
			}
			for i, n := range sd {
				if n.Name != names[i] || !slices.Equal(shapeOf(t, n.Tensor), shapes[n.Name]) {
					t.Fatalf("entry %d: %s %v, want %s %v", i, n.Name, shapeOf(t, n.Tensor), names[i], shapes[names[i]])
				}
			}
			if got, want := nn.NumParameters(r), paramCount(names, shapes); got != want {
				t.Errorf("NumParameters = %d, want %d", got, want)
			}
			if got := r.FeatureDim(); got != featureDim(r.Config) || (r.HasClassifier() && r.FC.In != got) {
				t.Errorf("FeatureDim = %d", got)
			}
			if r.HasClassifier() != (cfg.Classes > 0) {
				t.Errorf("HasClassifier = %v", r.HasClassifier())
			}
		})
	}
	want := map[string][]int64{
		"conv1.weight":                      {64, 3, 7, 7},
		"layer2.0.downsample.0.weight":      {128, 64, 1, 1},
		"layer2.0.downsample.1.running_var": {128},
		"layer4.1.bn2.num_batches_tracked":  {},
		"fc.weight":                         {1000, 512},
		"fc.bias":                           {1000},
	}
	_, shapes, _ := stateDictShapes(ResNetConfig{Depth: 18, Classes: 1000})
	for k, s := range want {
		if got, ok := shapes[k]; !ok || !slices.Equal(got, s) {
			t.Errorf("resnet18 %s = %v (present %v), want %v", k, got, ok, s)
		}
	}
	_, shapes, _ = stateDictShapes(ResNetConfig{Depth: 50})
	for k, s := range map[string][]int64{
		"layer1.0.downsample.0.weight": {256, 64, 1, 1},
		"layer3.5.conv2.weight":        {256, 256, 3, 3},
		"layer4.2.conv3.weight":        {2048, 512, 1, 1},
	} {
		if got := shapes[k]; !slices.Equal(got, s) {
			t.Errorf("resnet50 %s = %v, want %v", k, got, s)
		}
	}
	if _, ok := shapes["fc.weight"]; ok {
		t.Error("a backbone has fc.weight")
	}
}

func TestInitialisation(t *testing.T) {
	if err := torch.ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.5, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	std := func(x *torch.Tensor) float64 {
		v, err := x.Std(nil, true, false).Item()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// kaiming_normal_ fan_out relu: std √(2 / (out·k·k)).
	for name, w := range map[string]*torch.Tensor{"conv1": r.Conv1.Weight, "layer3.1.conv2": r.Layer3.Layers[1].(*BasicBlock).Conv2.Weight} {
		s := shapeOf(t, w)
		want := math.Sqrt(2 / float64(s[0]*s[2]*s[3]))
		if got := std(w); got < 0.9*want || got > 1.1*want {
			t.Errorf("%s weight std %.4g, want ≈ %.4g", name, got, want)
		}
	}
	for _, n := range nn.StateDict(r) {
		var want float64
		switch {
		case strings.HasSuffix(n.Name, "bn1.weight") || strings.HasSuffix(n.Name, "bn2.weight") || strings.HasSuffix(n.Name, "running_var") || strings.HasSuffix(n.Name, "downsample.1.weight"):
			want = 1
		case strings.Contains(n.Name, "bn") && !strings.HasSuffix(n.Name, "weight") || strings.HasSuffix(n.Name, "downsample.1.bias") || strings.HasSuffix(n.Name, "running_mean"):
			want = 0
		default:
			continue
		}
		lo, _ := n.Tensor.Min().Item()
		hi, _ := n.Tensor.Max().Item()
		if lo != want || hi != want {
			t.Errorf("%s in [%g, %g], want all %g", n.Name, lo, hi, want)
		}
	}
	// fc: PyTorch's default, uniform in ±1/√in.
	bound := 1 / math.Sqrt(float64(r.FeatureDim()))
	for _, p := range []*torch.Tensor{r.FC.Weight, r.FC.Bias} {
		lo, _ := p.Min().Item()
		hi, _ := p.Max().Item()
		if lo < -bound || hi > bound || hi-lo < bound {
			t.Errorf("fc values in [%g, %g], want spread over ±%g", lo, hi, bound)
		}
	}
}

// TestCuts checks, for every cut of a few networks, that ForwardTo then
// ForwardFrom reproduces Forward exactly, that shapes match CutShapes, and
// that ForwardTo runs nothing past the cut.
func TestCuts(t *testing.T) {
	cases := []struct {
		cfg   ResNetConfig
		input []int64
	}{
		{ResNetConfig{Depth: 18, Width: 0.25, Stem: "cifar", InChannels: 1, Classes: 10}, []int64{1, 28, 28}},
		{ResNetConfig{Depth: 50, Width: 0.125, Classes: 7}, []int64{3, 45, 37}},
		{ResNetConfig{Depth: 34, Width: 0.125, Stem: "cifar"}, []int64{3, 17, 16}},
	}
	for _, c := range cases {
		t.Run(c.cfg.String(), func(t *testing.T) {
			r, err := NewResNet(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer nn.Free(r)
			cuts := r.CutPoints()
			layout := resnetLayouts[c.cfg.Depth]
			if n := layout.blocks[0] + layout.blocks[1] + layout.blocks[2] + layout.blocks[3] + 2; len(cuts) != n || cuts[0] != "stem" || cuts[1] != "layer1.0" || cuts[n-1] != "pool" {
				t.Fatalf("CutPoints = %v", cuts)
			}
			shapes, err := r.CutShapes(c.input)
			if err != nil {
				t.Fatal(err)
			}
			s := torch.NewScope()
			defer s.Close()
			x := s.Track(torch.Randn(append([]int64{2}, c.input...)))

			// ForwardTo stops at the cut: in training mode only the batch
			// norms before it count a batch.
			nn.Train(r)
			r.ForwardTo(x, "layer1.0")
			for _, n := range nn.NamedBuffers(r) {
				if !strings.HasSuffix(n.Name, "num_batches_tracked") {
					continue
				}
				v, _ := n.Tensor.ItemInt()
				before := n.Name == "bn1.num_batches_tracked" || strings.HasPrefix(n.Name, "layer1.0.")
				if (v == 1) != before {
					t.Errorf("after ForwardTo(layer1.0) %s = %d", n.Name, v)
				}
			}

			nn.Eval(r)
			if err := torch.NoGrad(func() error {
				full := r.Forward(x)
				if err := full.Err(); err != nil {
					return err
				}
				for i, cut := range cuts {
					h := r.ForwardTo(x, cut)
					if shapes[i].Name != cut || !slices.Equal(shapeOf(t, h), append([]int64{2}, shapes[i].Shape...)) {
						t.Errorf("%s: ForwardTo shape %v, CutShapes %s %v", cut, shapeOf(t, h), shapes[i].Name, shapes[i].Shape)
					}
					if !r.HasClassifier() {
						if err := r.ForwardFrom(h, cut).Err(); err == nil || !strings.Contains(err.Error(), "no classifier") {
							t.Errorf("ForwardFrom on a backbone: %v", err)
						}
						continue
					}
					d, _, err := maxAbsDiff(r.ForwardFrom(h, cut), full)
					if err != nil || d != 0 {
						t.Errorf("%s: ForwardFrom(ForwardTo(x)) differs from Forward(x) by %g (%v)", cut, d, err)
					}
				}
				if !r.HasClassifier() {
					d, _, err := maxAbsDiff(r.ForwardTo(x, "pool"), full)
					if err != nil || d != 0 {
						t.Errorf("a backbone's Forward is not its pooled features: %g %v", d, err)
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCutErrors(t *testing.T) {
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.125, Stem: "cifar", Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	x := torch.Randn([]int64{1, 3, 8, 8})
	defer x.Free()
	for _, e := range []error{r.ForwardTo(x, "layer5.0").Err(), r.ForwardFrom(x, "fc").Err()} {
		if e == nil || !strings.Contains(e.Error(), "valid cuts: stem, layer1.0, layer1.1, layer2.0") || !strings.Contains(e.Error(), "layer4.1, pool") {
			t.Errorf("unknown cut: %v", e)
		}
	}
	if _, err := r.CutShapes([]int64{1, 8, 8}); err == nil {
		t.Error("CutShapes accepted 1 channel for a 3-channel net")
	}
	if _, err := r.CutShapes([]int64{8, 8}); err == nil {
		t.Error("CutShapes accepted a 2-D shape")
	}
	got, err := r.ParseCuts("stem, layer2.1,pool")
	if err != nil || !reflect.DeepEqual(got, []string{"stem", "layer2.1", "pool"}) {
		t.Errorf("ParseCuts = %v, %v", got, err)
	}
	if got, err := r.ParseCuts("all"); err != nil || len(got) != 10 {
		t.Errorf("ParseCuts(all) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "layer1.2", "stem,conv1"} {
		if _, err := r.ParseCuts(bad); err == nil {
			t.Errorf("ParseCuts(%q) accepted", bad)
		}
	}
}

func TestCutShapesImageNet(t *testing.T) {
	r, err := NewResNet(ResNetConfig{Depth: 50, Width: 0.0625})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	shapes, err := r.CutShapes([]int64{3, 224, 224})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{"stem": {4, 56, 56}, "layer1.2": {16, 56, 56}, "layer2.0": {32, 28, 28},
		"layer3.5": {64, 14, 14}, "layer4.2": {128, 7, 7}, "pool": {128}}
	for _, s := range shapes {
		if w, ok := want[s.Name]; ok && !slices.Equal(w, s.Shape) {
			t.Errorf("%s: %v, want %v", s.Name, s.Shape, w)
		}
	}
	if len(shapes) != 18 {
		t.Errorf("%d cut shapes, want 18", len(shapes))
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  ResNetConfig
		want string
	}{
		{ResNetConfig{Depth: 18, Width: 0.25, Stem: "cifar", InChannels: 1, Classes: 10}, "resnet18 width 0.25 cifar-stem 1ch 10 classes"},
		{ResNetConfig{Depth: 50}, "resnet50 backbone"},
		{ResNetConfig{Depth: 101, Width: 1, Stem: "imagenet", InChannels: 3, Classes: 1000}, "resnet101 1000 classes"},
	} {
		if got := c.cfg.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
	for _, bad := range []ResNetConfig{{Depth: 20}, {Depth: 18, Width: -1}, {Depth: 18, Width: 0.001},
		{Depth: 18, Stem: "tiny"}, {Depth: 18, InChannels: -1}, {Depth: 18, Classes: -2}} {
		if r, err := NewResNet(bad); err == nil {
			nn.Free(r)
			t.Errorf("NewResNet(%+v) accepted", bad)
		}
	}
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.125})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	if want := (ResNetConfig{Depth: 18, Width: 0.125, Stem: "imagenet", InChannels: 3}); r.Config != want {
		t.Errorf("Config = %+v, want defaults filled in: %+v", r.Config, want)
	}
}

func TestParseArch(t *testing.T) {
	for s, want := range map[string]int{"resnet18": 18, "ResNet-50": 50, "resnet_101": 101, " resnet34 ": 34, "resnet152": 152} {
		if got, err := ParseArch(s); err != nil || got != want {
			t.Errorf("ParseArch(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"resnet", "resnet20", "vgg16", "", "resnet18x"} {
		if _, err := ParseArch(s); err == nil {
			t.Errorf("ParseArch(%q) accepted", s)
		}
	}
}

// TestNoLeaks checks that a scoped training step and evaluation free every
// tensor they make.
func TestNoLeaks(t *testing.T) {
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.125, Stem: "cifar", InChannels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	x := torch.Randn([]int64{4, 1, 16, 16})
	y := torch.FromSlice([]int64{0, 1, 2, 3})
	defer torch.FreeAll(x, y)
	step := func() {
		s := torch.NewScope()
		defer s.Close()
		loss := torch.CrossEntropy(r.Forward(s.Track(x.Ref())), y, 0, torch.ReduceMean)
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		for _, c := range r.CutPoints() {
			if err := torch.NoGrad(func() error { return r.ForwardFrom(r.ForwardTo(s.Track(x.Ref()), c), c).Err() }); err != nil {
				t.Fatal(err)
			}
		}
		if err := nn.ZeroGrad(r); err != nil {
			t.Fatal(err)
		}
	}
	// Other tests' unscoped tensors wait for finalizers: collect them first.
	settle := func() int64 {
		for i := 0; i < 3; i++ {
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
		return torch.LiveTensors()
	}
	step()
	before := settle()
	for i := 0; i < 3; i++ {
		step()
	}
	if after := settle(); after != before {
		t.Errorf("live tensors %d → %d over 3 steps", before, after)
	}
}

func ExampleResNet_ForwardTo() {
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.25, Stem: "cifar", InChannels: 1, Classes: 10})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nn.Free(r)
	nn.Eval(r)
	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Randn([]int64{8, 1, 28, 28}))
	h := r.ForwardTo(x, "layer2.1")        // bottom half
	logits := r.ForwardFrom(h, "layer2.1") // top half
	hs, err := h.Shape()
	if err != nil {
		fmt.Println(err)
		return
	}
	ls, err := logits.Shape()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(hs, ls, logits.Err())
	// Output: [8 32 14 14] [8 10] <nil>
}

// shapeOf returns x's shape, failing the test when x carries an error.
func shapeOf(t testing.TB, x *torch.Tensor) []int64 {
	t.Helper()
	s, err := x.Shape()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
