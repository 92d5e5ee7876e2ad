package torch_test

import (
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
)

// rssBytes returns the resident set size of this process (0 if unknown).
// settledLiveTensors collects garbage until the live tensor count stops
// changing and returns it: tensors that earlier code dropped without freeing
// are released by the garbage collector's cleanups, at a time of its choosing,
// which a count compared step by step must not see.
func settledLiveTensors() int64 {
	n := torch.LiveTensors()
	for stable := 0; stable < 3; {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
		if m := torch.LiveTensors(); m != n {
			n, stable = m, 0
		} else {
			stable++
		}
	}
	return n
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestTrainingLoopDoesNotLeak trains a small conv net (conv, batch norm, ReLU,
// max pool, linear; SGD with momentum; cross-entropy) on random batches of 16
// for 1,000 steps with a per-step Scope, and checks that the live tensor
// count returns exactly to where it was and RSS stays flat.
func TestTrainingLoopDoesNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 training steps (a minute on a busy machine); skipped with -short")
	}
	steps := 1000
	if err := torch.ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	// A warm-up pass first, so that constants the layers make once per
	// process are not counted as leaks.
	warm := nn.NewBatchNorm2d(1)
	in := torch.Ones([]int64{2, 1, 1, 1})
	if err := torch.NoGrad(func() error {
		out := warm.Forward(in)
		defer out.Free()
		return out.Err()
	}); err != nil {
		t.Fatal(err)
	}
	nn.Free(warm)
	in.Free()
	start := settledLiveTensors()
	m := nn.NewSequential(
		nn.NewConv2d(3, 8, 3, nn.Conv2dConfig{Padding: 1}),
		nn.NewBatchNorm2d(8),
		nn.NewReLU(),
		nn.NewMaxPool2d(2, 2, 0),
		nn.NewFlatten(),
		nn.NewLinear(8*6*6, 10, true),
	)
	opt, err := optim.NewSGD(optim.Params(nn.Parameters(m), 0.05, 5e-4), optim.SGDConfig{Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	var afterFirst, rssWarm int64
	var firstLoss, lastLoss float64
	for i := 0; i < steps; i++ {
		s := torch.NewScope()
		x := s.Track(torch.Randn([]int64{16, 3, 12, 12}))
		y := s.Track(torch.RandInt(0, 10, []int64{16}))
		loss := torch.CrossEntropy(m.Forward(x), y, 0, torch.ReduceMean)
		if err := loss.Backward(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		l, err := loss.Item()
		if err != nil || math.IsNaN(l) {
			t.Fatalf("step %d: loss %v, %v", i, l, err)
		}
		if i == 0 {
			firstLoss = l
		}
		lastLoss = l
		s.Close()
		switch i {
		case 0:
			afterFirst = settledLiveTensors() // + the momentum buffers
		case steps / 10:
			torch.ReleaseMemory()
			rssWarm = rssBytes()
		}
		if got := torch.LiveTensors(); got != afterFirst {
			t.Fatalf("step %d: %d live tensors, %d after the first step", i, got, afterFirst)
		}
	}
	torch.ReleaseMemory()
	rssEnd := rssBytes()
	t.Logf("%d steps: loss %.3f → %.3f; RSS %.1f MB at step %d, %.1f MB at the end",
		steps, firstLoss, lastLoss, float64(rssWarm)/1e6, steps/10, float64(rssEnd)/1e6)
	if rssWarm > 0 && rssEnd-rssWarm > 64<<20 {
		t.Errorf("RSS grew by %.1f MB over %d steps", float64(rssEnd-rssWarm)/1e6, steps-steps/10)
	}
	opt.Close()
	nn.Free(m)
	if got := torch.LiveTensors(); got != start {
		t.Errorf("%d live tensors after freeing everything, %d at the start", got, start)
	}
}

// TestScope checks scope membership rules: results join their first scoped
// operand's scope, Keep takes a tensor out, Track moves one in.
func TestScope(t *testing.T) {
	start := torch.LiveTensors()
	s := torch.NewScope()
	a := s.Track(torch.Ones([]int64{2}))
	b := torch.Ones([]int64{2}) // unscoped
	c := b.Add(a)               // joins a's scope
	kept := s.Keep(a.MulScalar(2))
	if s.Len() != 2 {
		t.Errorf("scope holds %d tensors, want 2", s.Len())
	}
	s.Close()
	if !a.Freed() || !c.Freed() || b.Freed() || kept.Freed() {
		t.Errorf("after Close: a freed %v, c freed %v, b freed %v, kept freed %v", a.Freed(), c.Freed(), b.Freed(), kept.Freed())
	}
	if got := floats(t, kept); got[0] != 2 {
		t.Errorf("kept tensor %v", got)
	}
	torch.FreeAll(b, kept)
	if got := torch.LiveTensors(); got != start {
		t.Errorf("%d live tensors, %d at the start", got, start)
	}
}
