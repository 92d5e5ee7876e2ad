// Package defaults ships small trained checkpoints inside the binary, so that
// `stitch` with no arguments has models to stitch. They are ResNet-18s (width
// 0.25, CIFAR stem) trained on Fashion-MNIST by this project's own `stitch
// train`; README.md beside this file gives the exact commands. Each is a normal
// torch.save file that PyTorch opens too.
package defaults

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.pt
var files embed.FS

// Prefix marks a checkpoint path as one of the shipped defaults, e.g.
// "embedded:fmnist-resnet18-w0.25-sup-seed1".
const Prefix = "embedded:"

// Names lists the shipped checkpoints (file names without ".pt").
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".pt"))
	}
	sort.Strings(out)
	return out
}

// Bytes returns a shipped checkpoint's file contents by name (with or without
// the "embedded:" prefix and ".pt" suffix).
func Bytes(name string) ([]byte, error) {
	name = strings.TrimSuffix(strings.TrimPrefix(name, Prefix), ".pt")
	b, err := files.ReadFile(name + ".pt")
	if err != nil {
		return nil, fmt.Errorf("no shipped checkpoint %q (have: %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}
