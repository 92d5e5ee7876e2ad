// Command stitchbench times this project's stitching of one pair at every cut
// against a plain PyTorch script doing the same work (script.py, written out
// and run with python3): the paper's recipe without augmentation (default
// initialisation, Adam 1e-3 with cosine decay, N fitting images, every cut),
// on the same images, threads and seed, both with OMP_WAIT_POLICY=PASSIVE,
// one after the other in interleaved rounds. Both sides start every cut's
// stitching layer from the same weights (made here by stitch.NewLayer after
// torch.ManualSeed(seed), as the stitch command makes them) and see the
// fitting images in the same order (the stitch command's loader's), so
// their penalties differ by float rounding only. It prints each side's wall
// and CPU times (user+sys, which other processes on the machine disturb less
// than wall time), the ratios, each child's peak memory (its getrusage
// maxrss) and the largest difference between the two sides' penalties.
//
//	go run ./cmd/stitchbench --fit-samples 6000 --rounds 3
//
// Extra flags after -- go to the stitch command (e.g. -- --no-fold-bn).
package main

import (
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"modelstitch/experiments/models"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/stitch"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
	"modelstitch/weights"
)

//go:embed script.py
var script string

type options struct {
	bottom, top, data, device, python, stitchBin, cuts, workDir string
	fitN, testN, rounds, threads, batch, epochs                 int
	seed                                                        int64
	lr                                                          float64
	extra                                                       []string
}

func main() {
	// Checkpoints may be TorchScript archives, loaded in a child process: this binary.
	if child, status, err := models.TorchScriptChild(); child {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(status)
	}
	var o options
	flag.StringVar(&o.bottom, "bottom", "weights/defaults/fmnist-resnet18-w0.25-sup-seed2.pt", "bottom checkpoint (a basic-block ResNet with the CIFAR stem)")
	flag.StringVar(&o.top, "top", "weights/defaults/fmnist-resnet18-w0.25-sup-seed1.pt", "top checkpoint")
	flag.StringVar(&o.data, "data", "fashion-mnist", "data set")
	flag.StringVar(&o.device, "device", "cpu", "cpu or cuda")
	flag.StringVar(&o.python, "python", defaultPython(), "Python with PyTorch (default: $MODELSTITCH_PYTHON, else Debian's /usr/bin/python3 with python3-torch)")
	flag.StringVar(&o.stitchBin, "stitch", "", "stitch binary (empty: go build ./cmd/stitch into the work directory)")
	flag.StringVar(&o.cuts, "cuts", "all", "cuts: all or a comma list")
	flag.StringVar(&o.workDir, "work", "", "work directory (empty: a temporary one, removed afterwards)")
	flag.IntVar(&o.fitN, "fit-samples", 6000, "fitting images (class-balanced subset of the training split)")
	flag.IntVar(&o.testN, "test-samples", 10000, "test images (class-balanced subset; 0 or ≥ the split: all)")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (ours, then PyTorch, per round)")
	flag.IntVar(&o.threads, "threads", runtime.NumCPU(), "intra-op threads of both sides")
	flag.IntVar(&o.batch, "batch-size", 128, "training batch size")
	flag.IntVar(&o.epochs, "epochs", 1, "epochs")
	flag.Int64Var(&o.seed, "seed", 0, "seed of the subsets and the stitching layers")
	flag.Float64Var(&o.lr, "lr", 1e-3, "Adam learning rate (cosine decay)")
	flag.Parse()
	o.extra = flag.Args()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "stitchbench:", err)
		os.Exit(1)
	}
}

// side is one program's measurements.
type side struct {
	walls     []float64
	cpus      []float64 // user+sys seconds
	maxRSS    int64     // bytes, largest over the rounds
	penalties map[string]float64
}

func run(o options) error {
	if o.rounds < 1 || o.fitN < 2 || o.threads < 1 || o.batch < 2 || o.epochs < 1 {
		return errors.New("--rounds, --threads and --epochs must be ≥ 1, --fit-samples and --batch-size ≥ 2")
	}
	work := o.workDir
	if work == "" {
		d, err := os.MkdirTemp("", "stitchbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	for _, p := range []*string{&o.bottom, &o.top} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if o.stitchBin == "" {
		o.stitchBin = filepath.Join(work, "stitch")
		fmt.Fprintln(os.Stderr, "building ./cmd/stitch")
		b := exec.Command("go", "build", "-o", o.stitchBin, "./cmd/stitch")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/stitch: %w", err)
		}
	}
	cuts, err := writeInputs(o, work)
	if err != nil {
		return err
	}
	env := append(os.Environ(), "OMP_WAIT_POLICY=PASSIVE", fmt.Sprintf("OMP_NUM_THREADS=%d", o.threads))
	testArg := o.testN
	ours := side{penalties: map[string]float64{}}
	theirs := side{penalties: map[string]float64{}}
	for round := 1; round <= o.rounds; round++ {
		args := []string{"--bottom", o.bottom, "--top", o.top, "--layer", strings.Join(cuts, ","), "--data", o.data,
			"--fit-samples", fmt.Sprint(o.fitN), "--test-samples", fmt.Sprint(testArg), "--seed", fmt.Sprint(o.seed),
			"--init", "default", "--lr", fmt.Sprint(o.lr), "--epochs", fmt.Sprint(o.epochs), "--batch-size", fmt.Sprint(o.batch),
			"--cka-samples", "0", "--threads", fmt.Sprint(o.threads), "--device", o.device, "--json", "--quiet",
			"--out", filepath.Join(work, fmt.Sprintf("rows-%d.jsonl", round)), "--plot", ""}
		args = append(args, o.extra...)
		out, wall, cpu, rss, err := child(work, env, o.stitchBin, args...)
		if err != nil {
			return fmt.Errorf("round %d, stitch: %w", round, err)
		}
		ours.add(wall, cpu, rss)
		if err := ours.parseRows(out); err != nil {
			return fmt.Errorf("round %d, stitch output: %w", round, err)
		}
		fmt.Fprintf(os.Stderr, "round %d: ours %.1f s (CPU %.1f s), %.0f MiB\n", round, wall, cpu, mib(rss))

		out, wall, cpu, rss, err = child(work, env, o.python, filepath.Join(work, "script.py"), filepath.Join(work, "args.json"))
		if err != nil {
			return fmt.Errorf("round %d, PyTorch script: %w", round, err)
		}
		theirs.add(wall, cpu, rss)
		var res struct{ Penalties map[string]float64 }
		if err := json.Unmarshal(lastLine(out), &res); err != nil {
			return fmt.Errorf("round %d, PyTorch script output %q: %w", round, out, err)
		}
		theirs.penalties = res.Penalties
		fmt.Fprintf(os.Stderr, "round %d: PyTorch %.1f s (CPU %.1f s), %.0f MiB\n", round, wall, cpu, mib(rss))
	}
	worst, worstCut := 0.0, ""
	for _, c := range cuts {
		a, ok1 := ours.penalties[c]
		b, ok2 := theirs.penalties[c]
		if !ok1 || !ok2 {
			return fmt.Errorf("cut %s: a penalty is missing (ours %v, PyTorch %v)", c, ok1, ok2)
		}
		fmt.Fprintf(os.Stderr, "cut %-9s penalty ours %6.2f pp, PyTorch %6.2f pp\n", c, a, b)
		if d := math.Abs(a - b); d >= worst {
			worst, worstCut = d, c
		}
	}
	mo, mt := median(ours.walls), median(theirs.walls)
	fmt.Printf("stitching %s → %s, %d cuts, %d fitting / %d test images, batch %d, %d epoch(s), %d threads, %s, %d rounds\n",
		filepath.Base(o.bottom), filepath.Base(o.top), len(cuts), o.fitN, o.testN, o.batch, o.epochs, o.threads, o.device, o.rounds)
	co, ct := median(ours.cpus), median(theirs.cpus)
	fmt.Printf("ours:    wall %s s (median %.2f), CPU %s s (median %.2f), peak RSS %.0f MiB\n", fmtAll(ours.walls), mo, fmtAll(ours.cpus), co, mib(ours.maxRSS))
	fmt.Printf("PyTorch: wall %s s (median %.2f), CPU %s s (median %.2f), peak RSS %.0f MiB\n", fmtAll(theirs.walls), mt, fmtAll(theirs.cpus), ct, mib(theirs.maxRSS))
	fmt.Printf("ratio PyTorch/ours: %.2f× wall, %.2f× CPU\n", mt/mo, ct/co)
	fmt.Printf("largest |penalty difference|: %.2f pp (cut %s)\n", worst, worstCut)
	return nil
}

func (s *side) add(wall, cpu float64, rss int64) {
	s.walls = append(s.walls, wall)
	s.cpus = append(s.cpus, cpu)
	s.maxRSS = max(s.maxRSS, rss)
}

// parseRows reads the stitch command's JSON rows (one per line).
func (s *side) parseRows(out []byte) error {
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var row struct {
			Cut     string
			Penalty float64
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return err
		}
		s.penalties[row.Cut] = row.Penalty
		n++
	}
	if n == 0 {
		return fmt.Errorf("no rows in %q", out)
	}
	return nil
}

// child runs a command in dir and returns its stdout, wall time (s), CPU time
// (user+sys, s) and peak resident memory (bytes, from its rusage).
func child(dir string, env []string, name string, args ...string) ([]byte, float64, float64, int64, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stderr = dir, env, os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	wall := time.Since(start).Seconds()
	if err != nil {
		return out, wall, 0, 0, err
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = int64(ru.Maxrss) * 1024
	}
	return out, wall, cpu, rss, nil
}

// writeInputs writes the script, its arguments, the exact images both sides
// use (the subsets the stitch command draws), the fitting order of every
// epoch (the stitch command's loader's) and every cut's initial stitching
// layer (stitch.NewLayer after torch.ManualSeed(seed), as the stitch command
// makes it), and returns the cuts.
func writeInputs(o options, work string) ([]string, error) {
	bottom, err := models.Load(o.bottom, models.LoadOptions{})
	if err != nil {
		return nil, err
	}
	defer bottom.Free()
	top, err := models.Load(o.top, models.LoadOptions{})
	if err != nil {
		return nil, err
	}
	defer top.Free()
	train, test, err := splits.Load(splits.Config{Name: o.data, TestSamples: o.testN, Seed: o.seed})
	if err != nil {
		return nil, err
	}
	fit := train
	if o.fitN < train.N {
		if fit, err = train.Subset(o.fitN, o.seed); err != nil {
			return nil, err
		}
	}
	cuts, err := top.Net.ParseCuts(o.cuts)
	if err != nil {
		return nil, err
	}
	meta := func(m *models.Model) (map[string]any, error) {
		c := m.Net.Config
		if c.Stem != "cifar" || (c.Depth != 18 && c.Depth != 34) || !m.Net.HasClassifier() {
			return nil, fmt.Errorf("%s is %v: the PyTorch script knows basic-block ResNets (18, 34) with the CIFAR stem and a classifier", m.Path, c)
		}
		mean, std := m.Meta.Mean, m.Meta.Std
		if len(mean) != test.C || len(std) != test.C {
			mean, std = test.Mean, test.Std
		}
		return map[string]any{"path": m.Path, "width": c.Width, "depth": c.Depth, "in_channels": c.InChannels,
			"classes": c.Classes, "stem_padding": c.StemPadding, "mean": mean, "std": std}, nil
	}
	mb, err := meta(bottom)
	if err != nil {
		return nil, err
	}
	mt, err := meta(top)
	if err != nil {
		return nil, err
	}
	steps, err := writeOrder(fit, o, filepath.Join(work, "fit-order.i64"))
	if err != nil {
		return nil, err
	}
	layers, err := writeLayers(bottom, top, test, cuts, o.seed, work)
	if err != nil {
		return nil, err
	}
	args := map[string]any{"bottom": mb, "top": mt, "cuts": cuts, "seed": o.seed, "lr": o.lr, "epochs": o.epochs,
		"batch_size": o.batch, "threads": o.threads, "device": o.device, "fit_n": fit.N, "test_n": test.N,
		"chw": []int{test.C, test.H, test.W}, "fit": filepath.Join(work, "fit"), "test": filepath.Join(work, "test"),
		"order": filepath.Join(work, "fit-order.i64"), "steps": steps, "layers": layers}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "args.json"), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "script.py"), []byte(script), 0o644); err != nil {
		return nil, err
	}
	for name, ds := range map[string]*datasets.Dataset{"fit": fit, "test": test} {
		if err := os.WriteFile(filepath.Join(work, name+".u8"), ds.Pixels, 0o644); err != nil {
			return nil, err
		}
		ys := make([]byte, 8*len(ds.Labels))
		for i, y := range ds.Labels {
			binary.LittleEndian.PutUint64(ys[8*i:], uint64(y))
		}
		if err := os.WriteFile(filepath.Join(work, name+".i64"), ys, 0o644); err != nil {
			return nil, err
		}
	}
	return cuts, nil
}

// writeOrder writes the order in which the stitch command's fitting loader
// (stitch.Runner's: shuffled from the seed, the last partial batch dropped)
// visits the fitting images in each epoch, epochs × N int64s, and returns the
// number of batches per epoch.
func writeOrder(fit *datasets.Dataset, o options, path string) (int, error) {
	l, err := data.NewLoader(fit, data.Config{BatchSize: o.batch, Shuffle: true, Seed: o.seed, DropLast: fit.N > o.batch})
	if err != nil {
		return 0, err
	}
	b := make([]byte, 0, 8*fit.N*o.epochs)
	for e := 0; e < o.epochs; e++ {
		for _, i := range l.Order(e) {
			b = binary.LittleEndian.AppendUint64(b, uint64(i))
		}
	}
	return l.Len(), os.WriteFile(path, b, 0o644)
}

// writeLayers writes each cut's initial stitching layer, made as the stitch
// command makes it (torch.ManualSeed(seed), then stitch.NewLayer with kernel
// size 1), to layer-<cut>.pt in work for torch.load, and returns the files by cut.
func writeLayers(bottom, top *models.Model, test *datasets.Dataset, cuts []string, seed int64, work string) (map[string]string, error) {
	input := []int64{int64(test.C), int64(test.H), int64(test.W)}
	shapes := func(m *models.Model) (map[string][]int64, error) {
		cs, err := m.Net.CutShapes(input)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Path, err)
		}
		out := map[string][]int64{}
		for _, c := range cs {
			out[c.Name] = c.Shape
		}
		return out, nil
	}
	in, err := shapes(bottom)
	if err != nil {
		return nil, err
	}
	out, err := shapes(top)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, cut := range cuts {
		if err := torch.ManualSeed(uint64(seed)); err != nil {
			return nil, err
		}
		layer, err := stitch.NewLayer(in[cut], out[cut], 1)
		if err != nil {
			return nil, fmt.Errorf("cut %s: %w", cut, err)
		}
		sd, err := rawState(layer)
		nn.Free(layer)
		if err != nil {
			return nil, fmt.Errorf("cut %s: %w", cut, err)
		}
		path := filepath.Join(work, "layer-"+cut+".pt")
		if err := weights.WriteTorchFile(path, sd, nil); err != nil {
			return nil, err
		}
		files[cut] = path
	}
	return files, nil
}

// rawState copies a module's parameters and buffers (float32, and int64
// counters) into a state dict.
func rawState(m nn.Module) (*weights.StateDict, error) {
	sd := weights.NewStateDict()
	for _, e := range nn.StateDict(m) {
		shape, err := e.Tensor.Shape()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name, err)
		}
		var raw *weights.RawTensor
		switch e.Tensor.DType() {
		case torch.Float32:
			v, err := e.Tensor.Float32s()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name, err)
			}
			raw, err = weights.NewFloat32(shape, v)
			if err != nil {
				return nil, err
			}
		case torch.Int64:
			v, err := e.Tensor.Int64s()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name, err)
			}
			raw, err = weights.NewInt64(shape, v)
			if err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s: dtype %v", e.Name, e.Tensor.DType())
		}
		sd.Set(e.Name, raw)
	}
	return sd, nil
}

// defaultPython is the interpreter the PyTorch reference tests use.
func defaultPython() string {
	if p := os.Getenv("MODELSTITCH_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

func lastLine(b []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return []byte(lines[len(lines)-1])
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtAll(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
