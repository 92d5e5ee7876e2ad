package main

import (
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/weights/defaults"
)

// TestBadInputGivesClearErrors runs the command line on bad input and checks
// that each error names the flag, file or value at fault.
func TestBadInputGivesClearErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pt")
	sup := defaults.Prefix + "fmnist-resnet18-w0.25-sup-seed1" // a classifier (the SimCLR default is a backbone)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bottom", missing, "--top", sup, "--quiet"}, "missing.pt"},
		{[]string{"--bottom", sup, "--top", sup, "--layer", "layer7.3", "--quiet", "--out", "", "--plot", ""}, "layer7.3"},
		{[]string{"--bottom", sup, "--top", sup, "--device", "tpu"}, "--device"},
		{[]string{"--bottom", sup, "--top", sup, "--device", "cuda"}, "cuda"},
		{[]string{"--bottom", sup, "--top", sup, "--init", "magic"}, "--init"},
		{[]string{"--bottom", sup, "--top", sup, "--data", "imagenet-21k", "--quiet"}, "imagenet-21k"},
		{[]string{"--bottom", sup, "--top", "embedded:nope"}, "nope"},
		{[]string{"leftover"}, "leftover"},
		{[]string{"eval", "--checkpoint", missing}, "missing.pt"},
		{[]string{"train", "--out", filepath.Join(t.TempDir(), "x.pt"), "--arch", "vgg16"}, "--arch"},
		{[]string{"train", "--out", filepath.Join(t.TempDir(), "x.pt"), "--labels", "odd-vs-even"}, "--labels"},
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
