// Package defaults ships small trained checkpoints inside the binary, so that
// `stitch` with no arguments has models to stitch. They are ResNet-18s (width
// 0.25, CIFAR stem) trained on Fashion-MNIST by this project's own `stitch
// train`; README.md beside this file gives the exact commands. Each is a normal
// torch.save file that PyTorch opens too.
package defaults

import (
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
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

// IsEmbedded reports whether path names a shipped checkpoint
// ("embedded:NAME") rather than a file.
func IsEmbedded(path string) bool { return strings.HasPrefix(path, Prefix) }

// File is an open checkpoint: read in order or at any offset.
type File interface {
	fs.File
	io.ReaderAt
}

// Open opens a checkpoint by its name, the one place where a name may be a
// shipped checkpoint: "embedded:NAME" (IsEmbedded) opens it in the binary,
// any other name the file of that path. An unknown shipped name is an error
// listing the shipped ones (wrapping fs.ErrNotExist).
func Open(path string) (File, error) {
	if !IsEmbedded(path) {
		return os.Open(path)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(path, Prefix), ".pt")
	f, err := files.Open(name + ".pt")
	if err != nil {
		return nil, fmt.Errorf("no shipped checkpoint %q (have: %s): %w", name, strings.Join(Names(), ", "), fs.ErrNotExist)
	}
	return f.(File), nil
}
