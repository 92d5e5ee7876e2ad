// Command soak trains a tiny ResNet for many steps through the real training
// path (train.Supervised: loader, augmentation, SGD with momentum, schedule,
// a checkpoint and optimizer state written after every epoch) and reports
// whether memory grows: the resident set size and the number of live tensor
// handles (torch.LiveTensors) every 1,000 steps, and the drift of both
// between step 1,000 (after warm-up) and the last step. It is a benchmark,
// not a test: it takes minutes (make soak).
//
//	go run ./cmd/soak --steps 10000 --threads 1
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/splits"
	"modelstitch/experiments/train"
	"modelstitch/torch"
)

func main() {
	steps := flag.Int("steps", 10000, "optimizer steps to run (a multiple of the steps per epoch is used)")
	every := flag.Int("every", 1000, "report every this many steps")
	batch := flag.Int("batch-size", 16, "images per step")
	samples := flag.Int("train-samples", 1600, "Fashion-MNIST training images (an epoch is train-samples/batch-size steps)")
	width := flag.Float64("width", 0.0625, "ResNet-18 width multiplier")
	threads := flag.Int("threads", 1, "libtorch threads")
	goal := flag.Float64("goal", 2, "largest acceptable resident-memory drift, percent (exit status 1 above it)")
	flag.Parse()
	if err := run(*steps, *every, *batch, *samples, *width, *threads, *goal); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// sample is the memory measured after a step.
type sample struct {
	step       int
	rss        int64 // bytes
	liveTensor int64
	at         time.Duration
}

func run(steps, every, batch, samples int, width float64, threads int, goal float64) error {
	if steps < 2*every || every < 1 || batch < 2 || samples < batch {
		return fmt.Errorf("need --steps ≥ 2 × --every ≥ 2, --batch-size ≥ 2 and --train-samples ≥ --batch-size")
	}
	if err := torch.SetNumThreads(threads); err != nil {
		return err
	}
	if _, err := torch.TuneHeapForTraining(); err != nil {
		fmt.Fprintln(os.Stderr, "soak: warning:", err)
	}
	dir, err := os.MkdirTemp("", "modelstitch-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	perEpoch := samples / batch
	epochs := (steps + perEpoch - 1) / perEpoch
	cfg := train.Defaults()
	cfg.Width, cfg.BatchSize, cfg.Epochs = width, batch, epochs
	cfg.Data = splits.Config{Name: "fashion-mnist", TrainSamples: samples, TestSamples: 1000, Seed: 1}
	cfg.Out = filepath.Join(dir, "soak.pt")
	fmt.Printf("soak: ResNet-18 width %g, batch %d, %d steps (%d epochs of %d, a checkpoint and optimizer state written after each), %d thread(s)\n",
		width, batch, epochs*perEpoch, epochs, perEpoch, threads)
	var got []sample
	step := 0
	start := time.Now()
	cfg.Progress = func(e progress.Event) {
		if !strings.HasPrefix(e.Stage, "epoch ") || e.End || e.Unit != "batches" {
			return
		}
		step++
		if step%every != 0 {
			return
		}
		runtime.GC() // tensors only the Go collector would free are not a leak
		runtime.GC()
		s := sample{step: step, rss: budget.ResidentBytes(), liveTensor: torch.LiveTensors(), at: time.Since(start)}
		got = append(got, s)
		fmt.Printf("step %6d  RSS %7.1f MiB  live tensors %6d  (%s)\n", s.step, float64(s.rss)/(1<<20), s.liveTensor, s.at.Round(time.Second))
	}
	res, err := train.Supervised(cfg)
	if err != nil {
		return err
	}
	if len(got) < 2 {
		return fmt.Errorf("only %d samples", len(got))
	}
	first, last := got[0], got[len(got)-1]
	drift := 100 * float64(last.rss-first.rss) / float64(first.rss)
	fmt.Printf("resident memory: %.1f MiB at step %d, %.1f MiB at step %d: drift %+.2f %% (goal < %g %%)\n",
		float64(first.rss)/(1<<20), first.step, float64(last.rss)/(1<<20), last.step, drift, goal)
	fmt.Printf("live tensors: %d at step %d, %d at step %d (%+d)\n", first.liveTensor, first.step, last.liveTensor, last.step, last.liveTensor-first.liveTensor)
	fmt.Printf("test accuracy after training %.2f %% (%.0f images/s)\n", res.TestAccuracy, res.ImagesPerSec)
	if drift >= goal || last.liveTensor > first.liveTensor {
		return fmt.Errorf("memory grew: drift %+.2f %%, live tensors %+d", drift, last.liveTensor-first.liveTensor)
	}
	return nil
}
