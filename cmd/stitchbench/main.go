// Command stitchbench times this project's stitching of one pair at every cut
// against a plain PyTorch script doing the same work (script.py, written out
// and run with python3): the paper's recipe without augmentation (default
// initialisation, Adam 1e-3 with cosine decay, N fitting images, every cut),
// on the same images, threads and seed, both with OMP_WAIT_POLICY=PASSIVE,
// one after the other in interleaved rounds. It prints each side's wall
// times, the ratio, each child's peak memory (its getrusage maxrss) and the
// largest difference between the two sides' penalties.
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
	"modelstitch/torch/vision/datasets"
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
	maxRSS    int64 // bytes, largest over the rounds
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
		out, wall, rss, err := child(work, env, o.stitchBin, args...)
		if err != nil {
			return fmt.Errorf("round %d, stitch: %w", round, err)
		}
		ours.add(wall, rss)
		if err := ours.parseRows(out); err != nil {
			return fmt.Errorf("round %d, stitch output: %w", round, err)
		}
		fmt.Fprintf(os.Stderr, "round %d: ours %.1f s, %.0f MiB\n", round, wall, mib(rss))

		out, wall, rss, err = child(work, env, o.python, filepath.Join(work, "script.py"), filepath.Join(work, "args.json"))
		if err != nil {
			return fmt.Errorf("round %d, PyTorch script: %w", round, err)
		}
		theirs.add(wall, rss)
		var res struct{ Penalties map[string]float64 }
		if err := json.Unmarshal(lastLine(out), &res); err != nil {
			return fmt.Errorf("round %d, PyTorch script output %q: %w", round, out, err)
		}
		theirs.penalties = res.Penalties
		fmt.Fprintf(os.Stderr, "round %d: PyTorch %.1f s, %.0f MiB\n", round, wall, mib(rss))
	}
	worst, worstCut := 0.0, ""
	for _, c := range cuts {
		a, ok1 := ours.penalties[c]
		b, ok2 := theirs.penalties[c]
		if !ok1 || !ok2 {
			return fmt.Errorf("cut %s: a penalty is missing (ours %v, PyTorch %v)", c, ok1, ok2)
		}
		if d := math.Abs(a - b); d >= worst {
			worst, worstCut = d, c
		}
	}
	mo, mt := median(ours.walls), median(theirs.walls)
	fmt.Printf("stitching %s → %s, %d cuts, %d fitting / %d test images, batch %d, %d epoch(s), %d threads, %s, %d rounds\n",
		filepath.Base(o.bottom), filepath.Base(o.top), len(cuts), o.fitN, o.testN, o.batch, o.epochs, o.threads, o.device, o.rounds)
	fmt.Printf("ours:    wall %s s (median %.2f), peak RSS %.0f MiB\n", fmtAll(ours.walls), mo, mib(ours.maxRSS))
	fmt.Printf("PyTorch: wall %s s (median %.2f), peak RSS %.0f MiB\n", fmtAll(theirs.walls), mt, mib(theirs.maxRSS))
	fmt.Printf("ratio PyTorch/ours: %.2f×\n", mt/mo)
	fmt.Printf("largest |penalty difference|: %.2f pp (cut %s)\n", worst, worstCut)
	return nil
}

func (s *side) add(wall float64, rss int64) {
	s.walls = append(s.walls, wall)
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

// child runs a command in dir and returns its stdout, wall time (s) and peak
// resident memory (bytes, from its rusage).
func child(dir string, env []string, name string, args ...string) ([]byte, float64, int64, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stderr = dir, env, os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	wall := time.Since(start).Seconds()
	if err != nil {
		return out, wall, 0, err
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = int64(ru.Maxrss) * 1024
	}
	return out, wall, rss, nil
}

// writeInputs writes the script, its arguments and the exact images both
// sides use (the subsets the stitch command draws), and returns the cuts.
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
	args := map[string]any{"bottom": mb, "top": mt, "cuts": cuts, "seed": o.seed, "lr": o.lr, "epochs": o.epochs,
		"batch_size": o.batch, "threads": o.threads, "device": o.device, "fit_n": fit.N, "test_n": test.N,
		"chw": []int{test.C, test.H, test.W}, "fit": filepath.Join(work, "fit"), "test": filepath.Join(work, "test")}
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
