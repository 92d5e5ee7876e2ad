package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/experiments/results"
	"modelstitch/internal/reftest"
	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
	"modelstitch/weights/defaults"
)

// TestBadInputGivesClearErrors runs the command line on bad input and checks
// that each error names the flag, file or value at fault.
func TestBadInputGivesClearErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pt")
	noCUDA := "cuda" // a device this machine cannot use
	if torch.BuiltWithCUDA() && torch.CUDAAvailable() {
		noCUDA = fmt.Sprintf("cuda:%d", torch.CUDADeviceCount())
	}
	sup := defaults.Prefix + "fmnist-resnet18-w0.25-sup-seed1" // a classifier (the SimCLR default is a backbone)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bottom", missing, "--top", sup, "--quiet"}, "missing.pt"},
		{[]string{"--bottom", sup, "--top", sup, "--layer", "layer7.3", "--quiet", "--out", "", "--plot", ""}, "layer7.3"},
		{[]string{"--bottom", sup, "--top", sup, "--device", "tpu"}, "--device"},
		{[]string{"--bottom", sup, "--top", sup, "--device", noCUDA}, noCUDA},
		{[]string{"--bottom", sup, "--top", sup, "--device", noCUDA}, "--device cpu"}, // the hint is the command's
		{[]string{"--bottom", sup, "--top", sup, "--init", "magic"}, "--init"},
		{[]string{"--bottom", sup, "--top", sup, "--data", "imagenet-21k", "--quiet"}, "imagenet-21k"},
		{[]string{"--bottom", sup, "--top", "embedded:nope"}, "nope"},
		{[]string{"leftover"}, "leftover"},
		{[]string{"eval", "--checkpoint", missing}, "missing.pt"},
		{[]string{"train", "--out", filepath.Join(t.TempDir(), "x.pt"), "--arch", "vgg16"}, "--arch"},
		{[]string{"train", "--out", filepath.Join(t.TempDir(), "x.pt"), "--labels", "odd-vs-even"}, "--labels"},
		{[]string{"train", "--out", filepath.Join(t.TempDir(), "x.pt"), "--labels", "odd-vs-even"}, "clothing-vs-accessories"}, // every task is offered
		{[]string{"inspect"}, "usage"},
	}
	for _, c := range cases {
		err := run(append([]string{"stitch"}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("stitch %s: error %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

func TestInspectShippedDefault(t *testing.T) {
	if err := run([]string{"stitch", "inspect", "--json", defaults.Prefix + defaults.Names()[0]}); err != nil {
		t.Fatal(err)
	}
}

// TestStitchOnCUDA stitches the shipped seed-2 bottom into the seed-1 top at
// two cuts on the CPU and on a GPU, with the same subsets and seed, and checks
// that each row records its device and that the accuracies agree to within
// 1.5 points (GPU kernels round differently, and fitting amplifies it).
// Fashion-MNIST comes from $MODELSTITCH_FASHION_MNIST_DIR when set.
func TestStitchOnCUDA(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: fits stitching layers on the CPU and a GPU")
	}
	reftest.RequireCUDA(t)
	dataDir := os.Getenv("MODELSTITCH_FASHION_MNIST_DIR")
	if dataDir == "" {
		dataDir = datasets.DefaultFashionMNISTDir
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Skipf("no Fashion-MNIST (%v): install dataset-fashion-mnist or set MODELSTITCH_FASHION_MNIST_DIR", err)
	}
	rows := map[string][]results.Row{}
	for _, dev := range []string{"cpu", "cuda"} {
		out := filepath.Join(t.TempDir(), dev+".jsonl")
		args := []string{"stitch", "--device", dev, "--layer", "layer1.1,layer4.0", "--recipe", "quick", "--control=false", "--data-dir", dataDir,
			"--fit-samples", "1000", "--ls-samples", "500", "--test-samples", "1000", "--cka-samples", "200",
			"--out", out, "--plot", "", "--quiet"}
		if err := run(args); err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		r, err := results.Read(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != 2 {
			t.Fatalf("%s: %d rows, want 2", dev, len(r))
		}
		rows[dev] = r
	}
	for i, c := range rows["cuda"] {
		p := rows["cpu"][i]
		t.Logf("%s: stitched %.2f%% on the CPU, %.2f%% on CUDA; top %.2f%% / %.2f%%", c.Cut, p.StitchedAcc, c.StitchedAcc, p.TopAcc, c.TopAcc)
		if c.Device != "cuda" || p.Device != "cpu" {
			t.Errorf("%s: rows record devices %q and %q", c.Cut, p.Device, c.Device)
		}
		for _, v := range []struct {
			what     string
			cpu, gpu float64
		}{{"top accuracy", p.TopAcc, c.TopAcc}, {"stitched accuracy", p.StitchedAcc, c.StitchedAcc}} {
			if math.Abs(v.cpu-v.gpu) > 1.5 {
				t.Errorf("%s %s: %.2f on the CPU, %.2f on CUDA", c.Cut, v.what, v.cpu, v.gpu)
			}
		}
	}
}

// TestPlotGoesBesideOut checks the default --plot: beside --out, not in the
// working directory.
func TestPlotGoesBesideOut(t *testing.T) {
	for out, want := range map[string]string{
		"/tmp/x.jsonl":         "/tmp/x.png",
		"results/stitch.jsonl": "results/stitch.png",
		"runs/a.b/rows":        "runs/a.b/rows.png",
		"":                     "",
	} {
		if got := plotBeside(out); got != want {
			t.Errorf("--out %q: plot %q, want %q", out, got, want)
		}
	}
}

// TestSubcommandsInHelpOrder checks the one list of subcommands.
func TestSubcommandsInHelpOrder(t *testing.T) {
	var names []string
	for _, c := range subcommands() {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, " "); got != "train probe eval inspect grid" {
		t.Errorf("subcommands %q", got)
	}
}
