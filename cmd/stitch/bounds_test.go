package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelstitch/weights/defaults"
)

// TestResourceFlagsRefusedBeforeWork: thread counts, batch sizes, widths,
// schedules and kernel sizes that cannot work are refused with an error
// naming the flag before anything is allocated or started. Each case is
// built so that, before the check existed, another error came first (a
// missing data directory, an unknown architecture, a missing file), or the
// work ran: --threads 500 spawned ~940 threads, --threads 0 and --batch-size
// 0 were ignored, --width 0 trained width 1, --schedule bogus trained cosine.
func TestResourceFlagsRefusedBeforeWork(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.pt")
	missing := filepath.Join(dir, "missing.pt")
	noData := filepath.Join(dir, "no-data")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"train", "--threads", "500", "--arch", "vgg16", "--out", out}, []string{"--threads 500", "CPUs"}},
		{[]string{"train", "--threads", "100000", "--arch", "vgg16", "--out", out}, []string{"--threads 100000"}},
		{[]string{"train", "--threads", "0", "--arch", "vgg16", "--out", out}, []string{"--threads must be at least 1"}},
		{[]string{"eval", "--threads", "-3", "--checkpoint", missing}, []string{"--threads"}},
		{[]string{"eval", "--batch-size", "0", "--checkpoint", missing}, []string{"--batch-size must be at least 1"}},
		{[]string{"probe", "--batch-size", "0", "--backbone", missing}, []string{"--batch-size must be at least 1"}},
		{[]string{"train", "--width", "0", "--data-dir", noData, "--out", out}, []string{"--width must be a positive number, got 0"}},
		{[]string{"train", "--width", "-1", "--data-dir", noData, "--out", out}, []string{"--width"}},
		{[]string{"train", "--width", "1e6", "--data-dir", noData, "--out", out}, []string{"--width 1e+06 is too large", "needs at least", "available"}},
		{[]string{"train", "--objective", "simclr", "--width", "1e6", "--data-dir", noData, "--out", out}, []string{"--width 1e+06 is too large"}},
		{[]string{"train", "--schedule", "bogus", "--data-dir", noData, "--out", out}, []string{"--schedule", "bogus", "cosine, onecycle, step, constant"}},
		{[]string{"train", "--epochs", "99999999999", "--data-dir", noData, "--out", out}, []string{"--epochs must be in 0..1000000, got 99999999999"}},
	}
	for _, c := range cases {
		args := c.args
		if !strings.Contains(strings.Join(args, " "), "--threads") {
			args = append(args, "--threads", "1")
		}
		err := run(append([]string{"stitch"}, args...))
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("stitch %s: error %v, want one saying %q", strings.Join(c.args, " "), err, w)
			}
		}
	}
}

// TestHugeNetworksRefused: --width 1e6 with real data (train, and probe's
// random backbone, checked after reading the data) is refused with the estimate and the
// limit, in a child process whose address space is limited to 1.5 GiB above
// what it maps at start, so that the network the command used to start allocating
// (24 GB, until the OOM killer came) cannot be allocated even where the
// check is missing.
func TestHugeNetworksRefused(t *testing.T) {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("no Fashion-MNIST")
	}
	const limit = 3 << 29
	out := filepath.Join(t.TempDir(), "x.pt")
	for _, args := range [][]string{
		{"train", "--width", "1e6", "--train-samples", "100", "--out", out, "--threads", "1"},
		{"probe", "--backbone", "random", "--width", "1e6", "--data", "fashion-mnist", "--train-samples", "100", "--threads", "1", "--quiet"},
	} {
		code, stderr := runChild(t, 2*time.Minute, limit, args...)
		if code != 1 || !strings.Contains(stderr, "--width 1e+06 is too large") || !strings.Contains(stderr, "needs at least") {
			t.Errorf("stitch %s: exit %d, stderr %q; want 1 and the refusal naming --width", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestHugeKernelRefusedBeforeWork: --kernel-size 1001 ran for hours; a
// kernel wider than the activations at a cut allow is refused, naming the
// flag and the cut, before any stitching work (in a child process with a
// time limit, so that a missing check fails the test instead of hanging it).
func TestHugeKernelRefusedBeforeWork(t *testing.T) {
	sup := defaults.Prefix + "fmnist-resnet18-w0.25-sup-seed1"
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist"); err != nil {
		t.Skip("no Fashion-MNIST")
	}
	start := time.Now()
	code, stderr := runChild(t, 90*time.Second, 0, "--bottom", sup, "--top", sup, "--layer", "layer1.1,layer4.1", "--recipe", "quick", "--control=false", "--kernel-size", "1001",
		"--fit-samples", "64", "--test-samples", "64", "--cka-samples", "0", "--out", "", "--plot", "", "--quiet", "--threads", "1")
	for _, want := range []string{"--kernel-size 1001", "cut layer1.1", "at most 55"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr %q: want 1 and %q", code, stderr, want)
		}
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	// The largest kernel a cut allows is accepted there (layer4.1: 4×4 maps, 7).
	err := run([]string{"stitch", "--bottom", sup, "--top", sup, "--layer", "layer4.1", "--recipe", "quick", "--control=false", "--kernel-size", "7", "--epochs", "1",
		"--fit-samples", "64", "--ls-samples", "64", "--test-samples", "64", "--cka-samples", "0", "--out", "", "--plot", "", "--quiet", "--threads", "1"})
	if err != nil {
		t.Errorf("kernel 7 at layer4.1: %v", err)
	}
}
