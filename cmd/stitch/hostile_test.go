package main

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/weights"
	"modelstitch/weights/defaults"
)

// TestOutputsCheckedBeforeWork: an --out that cannot be used is an error
// before any model is loaded (a missing --bottom would otherwise be reported
// first, and a valid one would be stitched and its rows lost).
func TestOutputsCheckedBeforeWork(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pt")
	sup := defaults.Prefix + "fmnist-resnet18-w0.25-sup-seed1"
	notes := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notes, []byte("my notes\n"), 0o644)
	stitchArgs := func(out string) []string {
		return []string{"stitch", "--bottom", missing, "--top", sup, "--quiet", "--plot", "", "--out", out}
	}
	type tc struct {
		args []string
		want []string
	}
	cases := []tc{
		{stitchArgs(notes), []string{"--out", notes, "line 1"}},
	}
	ro := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", ro).CombinedOutput(); err != nil {
		t.Logf("read-only cases skipped: cannot mount a tmpfs here: %v %s", err, out)
	} else {
		t.Cleanup(func() { exec.Command("umount", ro).Run() })
		cases = append(cases,
			tc{stitchArgs(filepath.Join(ro, "r.jsonl")), []string{"--out", ro}},
			tc{[]string{"stitch", "--bottom", sup, "--top", sup, "--quiet", "--out", "", "--plot", filepath.Join(ro, "p.png"), "--data", "nope"}, []string{"--plot", ro}},
			tc{[]string{"stitch", "train", "--out", filepath.Join(ro, "x.pt"), "--arch", "vgg16"}, []string{"--out", ro}},
			tc{[]string{"stitch", "probe", "--backbone", missing, "--out", filepath.Join(ro, "x.pt")}, []string{"--out", ro}},
		)
	}
	for _, c := range cases {
		err := run(c.args)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one naming %q", strings.Join(c.args, " "), err, w)
			}
		}
	}
	if b, _ := os.ReadFile(notes); string(b) != "my notes\n" {
		t.Errorf("the text file became %q", b)
	}
}

// TestDamagedTorchScriptIsAnError: a TorchScript file with its largest data
// record emptied crashed inspect, eval and stitch (SIGSEGV in libtorch).
func TestDamagedTorchScriptIsAnError(t *testing.T) {
	reftest.Require(t)
	dir := t.TempDir()
	reftest.Run(t, fmt.Sprintf(`
import torchvision
torch.jit.save(torch.jit.script(torchvision.models.resnet18(num_classes=10)), %q)
save("done", torch.ones(1))
`, filepath.Join(dir, "ts.pt")))
	zr, err := zip.OpenReader(filepath.Join(dir, "ts.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	largest := zr.File[0]
	for _, f := range zr.File {
		if path.Base(path.Dir(f.Name)) == "data" && f.UncompressedSize64 > largest.UncompressedSize64 {
			largest = f
		}
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if f == largest {
			b = nil
		}
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: f.Method})
		w.Write(b)
	}
	zw.Close()
	bad := filepath.Join(dir, "empty-record.pt")
	os.WriteFile(bad, buf.Bytes(), 0o644)
	sup := defaults.Prefix + "fmnist-resnet18-w0.25-sup-seed1"
	for _, args := range [][]string{
		{"inspect", bad},
		{"eval", "--checkpoint", bad, "--quiet"},
		{"--bottom", bad, "--top", sup, "--quiet", "--out", "", "--plot", ""},
	} {
		err := run(append([]string{"stitch"}, args...))
		if err == nil || !strings.Contains(err.Error(), largest.Name) || !strings.Contains(err.Error(), "holds 0 bytes") {
			t.Errorf("stitch %s: error %v, want one naming record %s", strings.Join(args, " "), err, largest.Name)
		}
	}
}

// TestInspectPrintsNoRawEscapes: key names from a file reach the terminal
// through inspect's listing; their control characters are escaped.
func TestInspectPrintsNoRawEscapes(t *testing.T) {
	sd := weights.NewStateDict()
	w, _ := weights.NewFloat32([]int64{2}, []float32{1, 2})
	sd.Set("\x1b]0;owned\x07\x1b[2Jhead."+strings.Repeat("x", 5000)+".weight", w)
	path := filepath.Join(t.TempDir(), "evil.pt")
	if err := weights.WriteTorchFile(path, sd, nil); err != nil {
		t.Fatal(err)
	}
	r, wr, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = wr
	err := run([]string{"stitch", "inspect", path})
	os.Stdout = stdout
	wr.Close()
	out, _ := io.ReadAll(r)
	// Not a model, so inspect lists what it found and then fails; neither
	// the listing nor the error may carry the raw codes.
	if err == nil {
		t.Fatal("inspect of a file holding no model succeeded")
	}
	if strings.ContainsAny(err.Error(), "\x1b\x07") {
		t.Errorf("inspect's error carries raw escape codes: %q", err)
	}
	if strings.ContainsAny(string(out), "\x1b\x07") {
		t.Errorf("inspect printed raw escape codes: %q", out)
	}
	if !strings.Contains(string(out), `\x1b[2Jhead`) {
		t.Errorf("inspect output lacks the escaped key: %q", out)
	}
	if len(out) > 4000 {
		t.Errorf("inspect printed %d bytes", len(out))
	}
}
