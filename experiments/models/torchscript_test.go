package models

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelstitch/internal/reftest"
)

// TestMain makes this test binary the TorchScript-loading child when a test
// starts it as one (OpenResNet runs os.Executable, this binary).
func TestMain(m *testing.M) {
	if child, status, err := TorchScriptChild(); child {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(status)
	}
	os.Exit(m.Run())
}

// hostileTorchScript has PyTorch write a scripted ResNet-18 and two scripted
// modules whose __setstate__ (run by libtorch while loading) loops forever or raises.
const hostileTorchScript = `
import torchvision
from typing import Tuple
D = %q
torch.manual_seed(0)
torch.jit.save(torch.jit.script(torchvision.models.resnet18(num_classes=10)), D + "/resnet.pt")
class Hang(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.w, self.training)
    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]):
        self.w = state[0]
        self.training = state[1]
        i = 0
        while i >= 0:
            i += 1
    def forward(self, x):
        return x * self.w
class Boom(Hang):
    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]):
        self.w = state[0]
        self.training = state[1]
        raise RuntimeError("boom from setstate")
torch.jit.save(torch.jit.script(Hang()), D + "/hang.pt")
torch.jit.save(torch.jit.script(Boom()), D + "/boom.pt")
save("done", torch.ones(1))
`

// rewriteLargestData copies a TorchScript archive with its largest data/
// record cut to keep bytes (the other records as they were).
func rewriteLargestData(t *testing.T, src, dst string, keep int) string {
	t.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	largest := ""
	var size uint64
	for _, f := range zr.File {
		if path.Base(path.Dir(f.Name)) == "data" && f.UncompressedSize64 > size {
			largest, size = f.Name, f.UncompressedSize64
		}
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == largest {
			b = b[:keep]
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: f.Method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return largest
}

func TestTorchScriptHostileFiles(t *testing.T) {
	reftest.Require(t)
	dir := t.TempDir()
	reftest.Run(t, fmt.Sprintf(hostileTorchScript, dir))
	good := filepath.Join(dir, "resnet.pt")

	// A record emptied (libtorch crashed copying it) or cut short (libtorch
	// loaded heap memory as the tensor's tail): refused before libtorch sees it.
	for _, keep := range []int{0, 6} {
		t.Run(fmt.Sprintf("record cut to %d bytes", keep), func(t *testing.T) {
			bad := filepath.Join(dir, fmt.Sprintf("cut%d.pt", keep))
			rec := rewriteLargestData(t, good, bad, keep)
			_, err := Open(bad)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, want := range []string{bad, rec, fmt.Sprintf("holds %d bytes", keep)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if _, err := Load(bad, LoadOptions{}); err == nil {
				t.Error("Load loaded it")
			}
		})
	}

	t.Run("setstate loops forever", func(t *testing.T) {
		old := TorchScriptTimeout
		TorchScriptTimeout = 3 * time.Second
		defer func() { TorchScriptTimeout = old }()
		start := time.Now()
		_, err := Open(filepath.Join(dir, "hang.pt"))
		if err == nil {
			t.Fatal("loaded")
		}
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("took %s with a 3 s limit", took)
		}
		for _, want := range []string{"hang.pt", "did not finish within 3s", "runs the code"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})

	t.Run("setstate raises", func(t *testing.T) {
		_, err := Open(filepath.Join(dir, "boom.pt"))
		if err == nil {
			t.Fatal("loaded")
		}
		msg := err.Error()
		if !strings.Contains(msg, "boom from setstate") || !strings.Contains(msg, "boom.pt") {
			t.Errorf("error %q lacks the exception or the file", msg)
		}
		if strings.Count(msg, "\n") > 0 || strings.Contains(msg, "Traceback") || len(msg) > 400 {
			t.Errorf("error is not one short line: %q", msg)
		}
		if !strings.Contains(msg, VerboseEnv+"=1") {
			t.Errorf("error %q does not say how to see libtorch's full message", msg)
		}
	})

	t.Run("setstate raises, verbose", func(t *testing.T) {
		t.Setenv(VerboseEnv, "1")
		_, err := Open(filepath.Join(dir, "boom.pt"))
		if err == nil {
			t.Fatal("loaded")
		}
		first, full, _ := strings.Cut(err.Error(), "\n")
		if !strings.Contains(first, "boom from setstate") || !strings.Contains(first, "boom.pt") {
			t.Errorf("first line %q lacks the exception or the file", first)
		}
		if !strings.Contains(full, "Traceback") || strings.Count(full, "\n") < 3 {
			t.Errorf("%s=1: the error does not carry libtorch's full message: %q", VerboseEnv, err)
		}
	})
}

func TestTorchScriptError(t *testing.T) {
	cases := []struct{ in, want string }{
		{"jit_load: PytorchStreamReader failed reading zip archive: failed finding central directory\nException raised from valid at x.cpp:1 (most recent call first):\nframe #0: c10::Error::Error()",
			"jit_load: PytorchStreamReader failed reading zip archive: failed finding central directory"},
		{"jit_load: The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript (most recent call last):\n  File \"code/__torch__.py\", line 3\n    x = 1\nbuiltins.RuntimeError: bad \x1b[2J thing\n",
			`builtins.RuntimeError: bad \x1b[2J thing`},
	}
	for _, c := range cases {
		if got := torchScriptError(c.in); got != c.want {
			t.Errorf("torchScriptError(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
