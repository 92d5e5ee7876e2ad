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
	"syscall"
	"testing"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
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
// backward, SGD with momentum and weight decay) of a ResNet-18 with the CIFAR
// stem and base width 16 on 1×28×28 inputs, batch 128, 10 classes, in Go
// with optim.SGD and, in a PyTorch process (testdata/resnet_ref.py) started
// with the same intra-op thread count, the same initial weights and the same
// batch, with torch.optim.SGD. MODELSTITCH_BENCH_DEVICE=cuda runs both on a
// GPU (each timed round ends with a device synchronisation). It also times
// a frozen copy's forward pass (eval mode, no grad) both ways. Go and PyTorch
// rounds alternate, taking turns to go first, since this kind of machine is
// ±15% noisy. Reported: median images/s for each, the median of the rounds'
// Go/PyTorch ratios with its quartiles, minor page faults per training step
// on each side, and as ns/op the median Go training step.
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
	// As the stitch command does at start-up (MODELSTITCH_MALLOC=system opts out).
	if _, err := torch.TuneHeapForTraining(); err != nil {
		b.Fatal(err)
	}
	// Go's benchmark output keeps 10 log lines: these are 10 at most.
	loadAtStart := loadAverage()
	defer func() {
		b.Logf("load average at start %s, at end %s (%d CPUs)", loadAtStart, loadAverage(), runtime.NumCPU())
	}()
	rounds := 2*b.N + 1
	if s := os.Getenv("MODELSTITCH_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("MODELSTITCH_BENCH_ROUNDS=%q is not a positive number", s)
		}
		rounds = n
	}
	threads := torch.NumThreads()
	dev := torch.CPU
	if v := os.Getenv("MODELSTITCH_BENCH_DEVICE"); v != "" {
		var err error
		if dev, err = torch.ParseDevice(v); err != nil {
			b.Fatalf("MODELSTITCH_BENCH_DEVICE: %v", err)
		}
		if err := torch.CheckDevice(dev); err != nil {
			b.Fatalf("MODELSTITCH_BENCH_DEVICE=%s: %v", v, err)
		}
	}

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
	// PyTorch's copy of the model and batch, written while they are on the CPU.
	dir := b.TempDir()
	config := map[string]any{"Depth": benchConfig.Depth, "Width": benchConfig.Width, "Stem": benchConfig.Stem,
		"InChannels": benchConfig.InChannels, "Classes": benchConfig.Classes,
		"LR": benchLR, "Momentum": benchMomentum, "WeightDecay": benchWeightDecay}
	if err := writeRefCase(dir, "bench", config, entries); err != nil {
		b.Fatal(err)
	}
	if dev != torch.CPU {
		for _, m := range []*ResNet{model, frozen} {
			if err := nn.ToDevice(m, dev); err != nil {
				b.Fatal(err)
			}
		}
		xd, yd := x.ToDevice(dev), y.ToDevice(dev)
		torch.FreeAll(x, y)
		x, y = xd, yd
	}

	// The frozen model's loss, to check that PyTorch got the same model and batch.
	var goLoss float64
	if err := torch.NoGrad(func() (err error) {
		goLoss, err = torch.CrossEntropy(frozen.Forward(x), y, 0, torch.ReduceMean).Item()
		return err
	}); err != nil {
		b.Fatal(err)
	}

	// Go's training step (with the project's SGD) and frozen forward pass.
	sgd, err := optim.NewSGD(optim.Params(nn.Parameters(model), benchLR, benchWeightDecay), optim.SGDConfig{Momentum: benchMomentum})
	if err != nil {
		b.Fatal(err)
	}
	defer sgd.Close()
	trainStep := func() error {
		s := torch.NewScope()
		defer s.Close()
		if err := sgd.ZeroGrad(); err != nil {
			return err
		}
		loss := torch.CrossEntropy(model.Forward(s.Track(x.Ref())), y, 0, torch.ReduceMean)
		if err := loss.Backward(); err != nil {
			return err
		}
		return sgd.Step()
	}
	evalStep := func() error {
		return torch.NoGrad(func() error {
			s := torch.NewScope()
			defer s.Close()
			return frozen.Forward(s.Track(x.Ref())).Err()
		})
	}
	// timeGo runs steps of f and returns the seconds they took (to the end of
	// the device's work) and the minor page faults the process took meanwhile.
	timeGo := func(f func() error, steps int) measure {
		faults := minorFaults()
		start := time.Now()
		for i := 0; i < steps; i++ {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		if err := torch.Synchronize(dev); err != nil {
			b.Fatal(err)
		}
		return measure{time.Since(start).Seconds(), minorFaults() - faults}
	}

	// PyTorch's side, in one process that answers timing requests.
	var py *pyBench
	if ok, why := haveTorchvision(); !ok {
		b.Log("PyTorch side skipped: " + why)
	} else {
		py, err = startPyBench(dir, threads, dev)
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
	timePy := func(what string, steps int) measure {
		m, err := py.time(what, steps)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}

	// Warm up both (allocator, first-call costs), then alternate, Go first in
	// even rounds and PyTorch first in odd ones, so that neither always runs
	// right after the other (whose OpenMP threads may still be spinning).
	timeGo(trainStep, 1)
	timeGo(evalStep, 1)
	if py != nil {
		timePy("train", 1)
		timePy("eval", 1)
	}
	var goTrain, pyTrain, goEval, pyEval series
	for r := 0; r < rounds; r++ {
		goFirst := r%2 == 0
		if py != nil && !goFirst {
			pyTrain.add(timePy("train", benchTrainSteps), benchTrainSteps)
		}
		b.StartTimer()
		goTrain.add(timeGo(trainStep, benchTrainSteps), benchTrainSteps)
		b.StopTimer()
		if py != nil && goFirst {
			pyTrain.add(timePy("train", benchTrainSteps), benchTrainSteps)
		}
		if py != nil && !goFirst {
			pyEval.add(timePy("eval", benchEvalSteps), benchEvalSteps)
		}
		goEval.add(timeGo(evalStep, benchEvalSteps), benchEvalSteps)
		if py != nil && goFirst {
			pyEval.add(timePy("eval", benchEvalSteps), benchEvalSteps)
		}
	}

	// Both sides have now taken the same training steps from the same start:
	// their models must agree, or they did not do the same work.
	if py != nil {
		var goTrained float64
		nn.Eval(model)
		err := torch.NoGrad(func() (err error) {
			goTrained, err = torch.CrossEntropy(model.Forward(x), y, 0, torch.ReduceMean).Item()
			return err
		})
		nn.Train(model)
		if err != nil {
			b.Fatal(err)
		}
		pyTrained := timePy("loss", 0).sec
		tol := 1e-3
		if dev != torch.CPU {
			tol = 1e-2 // cuDNN's backward kernels are not deterministic
		}
		b.Logf("after %d training steps each, eval-mode loss: Go %.6f, PyTorch %.6f", 1+rounds*benchTrainSteps, goTrained, pyTrained)
		if math.Abs(goTrained-pyTrained) > tol*math.Max(1, math.Abs(pyTrained)) {
			b.Fatalf("after the same training steps Go's model has loss %.6f, PyTorch's %.6f: the two sides did not train alike", goTrained, pyTrained)
		}
	}

	gt, ge := median(goTrain.rates), median(goEval.rates)
	b.ReportMetric(1e9*benchBatch/gt, "ns/op")
	b.ReportMetric(gt, "go-train-img/s")
	b.ReportMetric(ge, "go-eval-img/s")
	b.ReportMetric(float64(threads), "threads")
	b.Logf("%v on %v, batch %d, %d threads, %d interleaved rounds of %d training steps and %d frozen forward passes; heap tuned %v (MODELSTITCH_MALLOC=%q, GLIBC_TUNABLES=%q), OMP_WAIT_POLICY=%q",
		benchConfig, dev, benchBatch, threads, rounds, benchTrainSteps, benchEvalSteps,
		torch.HeapTuned(), os.Getenv("MODELSTITCH_MALLOC"), os.Getenv("GLIBC_TUNABLES"), os.Getenv("OMP_WAIT_POLICY"))
	b.Logf("Go train img/s per round: %s", formatRates(goTrain.rates))
	b.Logf("Go eval  img/s per round: %s", formatRates(goEval.rates))
	if py != nil {
		pt, pe := median(pyTrain.rates), median(pyEval.rates)
		rt, re := median(ratios(goTrain.rates, pyTrain.rates)), median(ratios(goEval.rates, pyEval.rates))
		b.ReportMetric(pt, "py-train-img/s")
		b.ReportMetric(pe, "py-eval-img/s")
		b.ReportMetric(rt, "go/py-train")
		b.ReportMetric(re, "go/py-eval")
		b.Logf("Py train img/s per round: %s", formatRates(pyTrain.rates))
		b.Logf("Py eval  img/s per round: %s", formatRates(pyEval.rates))
		b.Logf("minor page faults per step, median: training Go %.0f, PyTorch %.0f; frozen forward Go %.0f, PyTorch %.0f",
			median(goTrain.faults), median(pyTrain.faults), median(goEval.faults), median(pyEval.faults))
		b.Logf("median: train Go %.0f img/s, PyTorch %.0f img/s; frozen forward Go %.0f, PyTorch %.0f", gt, pt, ge, pe)
		b.Logf("Go/PyTorch, median of the rounds' ratios: train %.2f (quartiles %.2f–%.2f), frozen forward %.2f (quartiles %.2f–%.2f)",
			rt, quantile(ratios(goTrain.rates, pyTrain.rates), 0.25), quantile(ratios(goTrain.rates, pyTrain.rates), 0.75),
			re, quantile(ratios(goEval.rates, pyEval.rates), 0.25), quantile(ratios(goEval.rates, pyEval.rates), 0.75))
	}
}

// measure is one timed round: seconds and minor page faults.
type measure struct {
	sec    float64
	faults int64
}

// series collects rounds as images/s and page faults per step.
type series struct {
	rates, faults []float64
}

func (s *series) add(m measure, steps int) {
	s.rates = append(s.rates, float64(steps*benchBatch)/m.sec)
	s.faults = append(s.faults, float64(m.faults)/float64(steps))
}

// ratios returns a[i]/b[i] for each round.
func ratios(a, b []float64) []float64 {
	r := make([]float64, min(len(a), len(b)))
	for i := range r {
		r[i] = a[i] / b[i]
	}
	return r
}

// minorFaults returns this process's minor page faults so far.
func minorFaults() int64 {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return r.Minflt
}

// pyBench is a running `resnet_ref.py bench` process.
type pyBench struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	threads int
	loss    float64
}

func startPyBench(dir string, threads int, dev torch.Device) (*pyBench, error) {
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "testdata", "resnet_ref.py")
	cmd := exec.Command(python, script, "bench", dir, strconv.Itoa(threads), dev.String())
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

// time runs steps "train" or "eval" steps in PyTorch and returns the seconds
// they took and the page faults its process took meanwhile.
func (p *pyBench) time(what string, steps int) (measure, error) {
	if _, err := fmt.Fprintf(p.in, "%s %d\n", what, steps); err != nil {
		return measure{}, err
	}
	line, err := p.line()
	if err != nil {
		return measure{}, err
	}
	var m measure
	if _, err := fmt.Sscanf(line, "%g %d", &m.sec, &m.faults); err != nil {
		return measure{}, fmt.Errorf("resnet_ref.py bench said %q: %v", line, err)
	}
	return m, nil
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

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// quantile returns the q-quantile of xs, interpolating between neighbours.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

func formatRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, " ")
}
