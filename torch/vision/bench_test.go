package vision

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

// Benchmark settings: the design's reference workload.
const (
	benchBatch       = 128
	benchTrainSteps  = 3 // training steps per timed round
	benchEvalSteps   = 5 // frozen forward passes per timed round
	benchLR          = 0.01
	benchMomentum    = 0.9
	benchWeightDecay = 5e-4
)

var benchConfig = ResNetConfig{Depth: 18, Width: 0.25, Stem: StemCIFAR, InChannels: 1, Classes: 10}

// BenchmarkResNet18TrainStep times training steps (forward, cross-entropy,
// backward, SGD with momentum and weight decay done inline with in-place
// updates under NoGrad) of a ResNet-18 with the CIFAR stem and base width 16
// on 1×28×28 inputs, batch 128, 10 classes, in Go and, in a PyTorch process
// (testdata/resnet_ref.py) started with the same intra-op thread count, the
// same initial weights and the same batch, with torch.optim.SGD. It also times
// a frozen copy's forward pass (eval mode, no grad) both ways. Go and PyTorch
// rounds alternate, since this kind of machine is ±15% noisy, and the medians
// are reported: images/s for each, the ratio Go/PyTorch, and as ns/op the
// median Go training step.
//
// Run it alone with
//
//	go test ./torch/vision -run '^$' -bench ResNet18TrainStep -benchtime 1x
//
// b.N sets the number of rounds (2·b.N+1), so `make bench` (-benchtime 3x)
// gives a 3-round probe and then 7 rounds; MODELSTITCH_BENCH_ROUNDS
// overrides. Without python3-torch/python3-torchvision only Go is timed.
//
// On a machine whose cores are oversubscribed (load average above the core
// count, logged), OpenMP's default spin-waiting makes both sides erratic and
// PyTorch far slower than Go (seen: 4–5×); OMP_WAIT_POLICY=PASSIVE in the
// environment, which both processes then share, gives comparable figures.
func BenchmarkResNet18TrainStep(b *testing.B) {
	// The project's training and evaluation loops run on one locked OS thread
	// (libtorch's thread pools are per OS thread); so does the Go side here.
	// MODELSTITCH_BENCH_UNLOCKED=1 measures a migrating goroutine instead.
	if os.Getenv("MODELSTITCH_BENCH_UNLOCKED") == "" {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	b.StopTimer()
	b.Logf("load average at start: %s (%d CPUs); OMP_WAIT_POLICY=%q", loadAverage(), runtime.NumCPU(), os.Getenv("OMP_WAIT_POLICY"))
	defer func() { b.Logf("load average at end: %s", loadAverage()) }()
	rounds := 2*b.N + 1
	if s := os.Getenv("MODELSTITCH_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("MODELSTITCH_BENCH_ROUNDS=%q is not a positive number", s)
		}
		rounds = n
	}
	threads := torch.NumThreads()

	if err := torch.ManualSeed(0); err != nil {
		b.Fatal(err)
	}
	model, err := NewResNet(benchConfig)
	if err != nil {
		b.Fatal(err)
	}
	defer nn.Free(model)
	frozen, err := NewResNet(benchConfig)
	if err != nil {
		b.Fatal(err)
	}
	defer nn.Free(frozen)
	sd := map[string]*torch.Tensor{}
	var entries []nn.Named
	for _, n := range nn.StateDict(model) {
		sd[n.Name] = n.Tensor
		entries = append(entries, nn.Named{Name: "sd/" + n.Name, Tensor: n.Tensor})
	}
	if err := nn.LoadStateDict(frozen, sd, true); err != nil {
		b.Fatal(err)
	}
	nn.Eval(frozen)
	if err := nn.Freeze(frozen); err != nil {
		b.Fatal(err)
	}
	x := torch.Randn([]int64{benchBatch, 1, 28, 28})
	y := torch.RandInt(0, int64(benchConfig.Classes), []int64{benchBatch})
	defer torch.FreeAll(x, y)
	if err := torch.FirstError(x, y); err != nil {
		b.Fatal(err)
	}
	entries = append(entries, nn.Named{Name: "input", Tensor: x}, nn.Named{Name: "target", Tensor: y})

	// The frozen model's loss, to check that PyTorch got the same model and batch.
	var goLoss float64
	torch.NoGrad(func() {
		goLoss, err = torch.CrossEntropy(frozen.Forward(x), y, 0, torch.ReduceMean).Item()
	})
	if err != nil {
		b.Fatal(err)
	}

	// Go's training step and frozen forward pass.
	sgd := newInlineSGD(benchLR, benchMomentum, benchWeightDecay)
	trainStep := func() error {
		s := torch.NewScope()
		defer s.Close()
		if err := nn.ZeroGrad(model); err != nil {
			return err
		}
		loss := torch.CrossEntropy(model.Forward(s.Track(x.Ref())), y, 0, torch.ReduceMean)
		if err := loss.Backward(); err != nil {
			return err
		}
		return sgd.step(s, nn.Parameters(model))
	}
	evalStep := func() error {
		var err error
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			err = frozen.Forward(s.Track(x.Ref())).Err()
		})
		return err
	}
	timeGo := func(f func() error, steps int) float64 {
		start := time.Now()
		for i := 0; i < steps; i++ {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start).Seconds()
	}

	// PyTorch's side, in one process that answers timing requests.
	var py *pyBench
	if ok, why := haveTorchvision(); !ok {
		b.Log("PyTorch side skipped: " + why)
	} else {
		dir := b.TempDir()
		config := map[string]any{"Depth": benchConfig.Depth, "Width": benchConfig.Width, "Stem": benchConfig.Stem,
			"InChannels": benchConfig.InChannels, "Classes": benchConfig.Classes,
			"LR": benchLR, "Momentum": benchMomentum, "WeightDecay": benchWeightDecay}
		if err := writeRefCase(dir, "bench", config, entries); err != nil {
			b.Fatal(err)
		}
		py, err = startPyBench(dir, threads)
		if err != nil {
			b.Fatal(err)
		}
		defer py.close()
		if math.Abs(py.loss-goLoss) > 1e-4*math.Max(1, math.Abs(goLoss)) {
			b.Fatalf("PyTorch's frozen loss %.6f differs from Go's %.6f: not the same model or batch", py.loss, goLoss)
		}
		if py.threads != threads {
			b.Fatalf("PyTorch runs %d threads, Go %d", py.threads, threads)
		}
	}

	// Warm up both (allocator, first-call costs), then alternate.
	timeGo(trainStep, 1)
	timeGo(evalStep, 1)
	if py != nil {
		if _, err := py.time("train", 1); err != nil {
			b.Fatal(err)
		}
		if _, err := py.time("eval", 1); err != nil {
			b.Fatal(err)
		}
	}
	var goTrain, pyTrain, goEval, pyEval []float64 // images/s per round
	imgs := func(steps int, sec float64) float64 { return float64(steps*benchBatch) / sec }
	for r := 0; r < rounds; r++ {
		b.StartTimer()
		sec := timeGo(trainStep, benchTrainSteps)
		b.StopTimer()
		goTrain = append(goTrain, imgs(benchTrainSteps, sec))
		if py != nil {
			sec, err := py.time("train", benchTrainSteps)
			if err != nil {
				b.Fatal(err)
			}
			pyTrain = append(pyTrain, imgs(benchTrainSteps, sec))
		}
		goEval = append(goEval, imgs(benchEvalSteps, timeGo(evalStep, benchEvalSteps)))
		if py != nil {
			sec, err := py.time("eval", benchEvalSteps)
			if err != nil {
				b.Fatal(err)
			}
			pyEval = append(pyEval, imgs(benchEvalSteps, sec))
		}
	}

	gt, ge := median(goTrain), median(goEval)
	b.ReportMetric(1e9*benchBatch/gt, "ns/op")
	b.ReportMetric(gt, "go-train-img/s")
	b.ReportMetric(ge, "go-eval-img/s")
	b.ReportMetric(float64(threads), "threads")
	b.Logf("%v, batch %d, %d threads, %d interleaved rounds of %d training steps and %d frozen forward passes",
		benchConfig, benchBatch, threads, rounds, benchTrainSteps, benchEvalSteps)
	b.Logf("Go train img/s per round: %s", formatRates(goTrain))
	b.Logf("Go eval  img/s per round: %s", formatRates(goEval))
	if py != nil {
		pt, pe := median(pyTrain), median(pyEval)
		b.ReportMetric(pt, "py-train-img/s")
		b.ReportMetric(pe, "py-eval-img/s")
		b.ReportMetric(gt/pt, "go/py-train")
		b.ReportMetric(ge/pe, "go/py-eval")
		b.Logf("Py train img/s per round: %s", formatRates(pyTrain))
		b.Logf("Py eval  img/s per round: %s", formatRates(pyEval))
		b.Logf("median: train Go %.0f img/s, PyTorch %.0f img/s, Go/PyTorch %.2f; frozen forward Go %.0f, PyTorch %.0f, Go/PyTorch %.2f",
			gt, pt, gt/pt, ge, pe, ge/pe)
	}
}

// inlineSGD is torch.optim.SGD's update (momentum, dampening 0, weight decay,
// no Nesterov) written with in-place tensor operations, for the benchmark only.
type inlineSGD struct {
	lr, momentum, weightDecay float64
	bufs                      map[*torch.Tensor]*torch.Tensor
}

func newInlineSGD(lr, momentum, weightDecay float64) *inlineSGD {
	return &inlineSGD{lr: lr, momentum: momentum, weightDecay: weightDecay, bufs: map[*torch.Tensor]*torch.Tensor{}}
}

// step updates params from their gradients: d = g + wd·p; buf = m·buf + d
// (buf = d on the first step); p −= lr·buf. Gradient handles join scope s.
func (o *inlineSGD) step(s *torch.Scope, params []*torch.Tensor) error {
	var err error
	torch.NoGrad(func() {
		for _, p := range params {
			g := p.Grad()
			if g == nil {
				continue
			}
			s.Track(g)
			if err = g.AddScaledInPlace(p, o.weightDecay); err != nil {
				return
			}
			buf, ok := o.bufs[p]
			if !ok {
				buf = s.Keep(g.Detach().Clone()) // lives across steps
				if err = buf.Err(); err != nil {
					return
				}
				o.bufs[p] = buf
			} else {
				if err = buf.MulScalarInPlace(o.momentum); err != nil {
					return
				}
				if err = buf.AddInPlace(g); err != nil {
					return
				}
			}
			if err = p.AddScaledInPlace(buf, -o.lr); err != nil {
				return
			}
		}
	})
	return err
}

// pyBench is a running `resnet_ref.py bench` process.
type pyBench struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	threads int
	loss    float64
}

func startPyBench(dir string, threads int) (*pyBench, error) {
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "testdata", "resnet_ref.py")
	cmd := exec.Command(python, script, "bench", dir, strconv.Itoa(threads))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &pyBench{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	line, err := p.line()
	if err != nil {
		p.close()
		return nil, err
	}
	if _, err := fmt.Sscanf(line, "ready %d %g", &p.threads, &p.loss); err != nil {
		p.close()
		return nil, fmt.Errorf("resnet_ref.py bench said %q: %v", line, err)
	}
	return p, nil
}

func (p *pyBench) line() (string, error) {
	if !p.out.Scan() {
		if err := p.out.Err(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("resnet_ref.py bench exited")
	}
	return strings.TrimSpace(p.out.Text()), nil
}

// time runs steps "train" or "eval" steps in PyTorch and returns the seconds they took.
func (p *pyBench) time(what string, steps int) (float64, error) {
	if _, err := fmt.Fprintf(p.in, "%s %d\n", what, steps); err != nil {
		return 0, err
	}
	line, err := p.line()
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(line, 64)
}

func (p *pyBench) close() {
	p.in.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// loadAverage returns the 1-, 5- and 15-minute load averages, or "unknown".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func formatRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, " ")
}
