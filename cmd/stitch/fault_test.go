package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelstitch/experiments/models"
	"modelstitch/experiments/results"
	"modelstitch/weights/defaults"
)

const fmnist = "/usr/share/datasets/fashion-mnist"

func needData(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(fmnist); err != nil {
		t.Skip("no Fashion-MNIST (apt-get install dataset-fashion-mnist)")
	}
}

// trainArgs trains a tiny ResNet-18 for epochs epochs into out.
func trainArgs(out string, epochs int) []string {
	return []string{"train", "--train-samples", "256", "--batch-size", "32", "--epochs", fmt.Sprint(epochs),
		"--out", out, "--threads", "1", "--json"}
}

// digest is the SHA-256 of a file (fatal if unreadable).
func digest(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// epochsDone loads a checkpoint and returns its finished epochs.
func epochsDone(t *testing.T, path string) int {
	t.Helper()
	m, err := models.Load(path, models.LoadOptions{})
	if err != nil {
		t.Fatalf("the checkpoint written before does not load: %v", err)
	}
	defer m.Free()
	if m.Meta.Recipe == nil {
		t.Fatalf("%s has no recipe", path)
	}
	return m.Meta.Recipe.EpochsDone
}

// interruptAfterFirstEpoch starts a training run, waits for its first
// checkpoint and interrupts it (SIGINT); it checks the run says so and
// exits with 130.
func interruptAfterFirstEpoch(t *testing.T, out string, epochs int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startChild(t, ctx, 0, trainArgs(out, epochs)...)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { code, err := c.status(); done <- result{code, err} }()
	for {
		if _, err := os.Stat(out + ".state"); err == nil {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("the run ended (exit %d, %v) before its first checkpoint: %s", r.code, r.err, c.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.cmd.Process.Signal(os.Interrupt)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	code := r.code
	if code != 130 || !strings.Contains(c.stderr.String(), "interrupted (interrupt)") || !strings.Contains(c.stderr.String(), "resumes") {
		t.Fatalf("interrupted run: exit %d, stderr %q; want 130 and a word about what stays", code, c.stderr.String())
	}
}

// TestInterruptSaysWhatStays: SIGINT ended a run without a word; now it
// says it was interrupted and what is kept, exits with 130, and the
// checkpoint of the finished epoch loads and resumes.
func TestInterruptSaysWhatStays(t *testing.T) {
	needData(t)
	out := filepath.Join(t.TempDir(), "x.pt")
	interruptAfterFirstEpoch(t, out, 20)
	if n := epochsDone(t, out); n < 1 {
		t.Errorf("the interrupted run's checkpoint has %d epochs done", n)
	}
}

// tmpfs mounts a tmpfs of the given size for the test, or skips it.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestTrainingOnAFullDisk: a training run whose disk fills up fails with
// the error and file named and exit status 1, and the checkpoint of the last
// finished epoch stays whole, with no temporary files left behind.
func TestTrainingOnAFullDisk(t *testing.T) {
	needData(t)
	// A checkpoint of this ResNet-18 w0.25 is 2.8 MB, its optimizer state as
	// much: room for one epoch's pair and not for the next checkpoint.
	dir := tmpfs(t, "7m")
	out := filepath.Join(dir, "x.pt")
	code, stderr := runChild(t, 5*time.Minute, 0, trainArgs(out, 3)...)
	t.Logf("exit %d: %s", code, stderr)
	if code != 1 || !strings.Contains(stderr, "no space left on device") || !strings.Contains(stderr, out) {
		t.Fatalf("exit %d, stderr %q; want 1 and the full disk named with the file", code, stderr)
	}
	if n := epochsDone(t, out); n != 1 {
		t.Errorf("the checkpoint left has %d epochs done, want 1", n)
	}
	if left := tempFiles(t, dir); len(left) > 0 {
		t.Errorf("temporary files left on the full disk: %q", left)
	}
}

// tempFiles lists the hidden temporary files in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

// stitchArgs stitches the shipped pair at the given cuts on tiny subsets.
func stitchArgs(out, cuts string) []string {
	sup1, sup2 := defaults.Prefix+"fmnist-resnet18-w0.25-sup-seed1", defaults.Prefix+"fmnist-resnet18-w0.25-sup-seed2"
	return []string{"--bottom", sup2, "--top", sup1, "--layer", cuts, "--recipe", "quick", "--control=false", "--epochs", "1", "--fit-samples", "64", "--ls-samples", "64",
		"--test-samples", "64", "--cka-samples", "0", "--out", out, "--plot", "", "--quiet", "--threads", "1"}
}

// TestStitchingOnAFullDisk: a stitch run whose results file cannot grow
// fails with the error named and exit status 1, and the rows written before
// stay whole (no torn line) and are not recomputed by the next run.
func TestStitchingOnAFullDisk(t *testing.T) {
	needData(t)
	dir := tmpfs(t, "64k")
	out := filepath.Join(dir, "rows.jsonl")
	// Fill the disk but one page: the first rows fit in it, a later one does not.
	if err := os.WriteFile(filepath.Join(dir, "filler"), bytes.Repeat([]byte{1}, 60<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stderr := runChild(t, 5*time.Minute, 0, stitchArgs(out, "all")...)
	t.Logf("exit %d: %s", code, stderr)
	if code != 1 || !strings.Contains(stderr, "no space left on device") || !strings.Contains(stderr, out) {
		t.Fatalf("exit %d, stderr %q; want 1 and the full disk named with the file", code, stderr)
	}
	rows, err := results.Read(out)
	if err != nil {
		t.Fatalf("the rows written before the disk filled up are unreadable: %v", err)
	}
	if len(rows) == 0 {
		t.Fatal("no row was written before the disk filled up (the test's page is too small)")
	}
	if b, _ := os.ReadFile(out); len(b) == 0 || b[len(b)-1] != '\n' {
		t.Errorf("the results file ends in a torn line: %q", b[max(0, len(b)-80):])
	}
	// With room again, the next run keeps those rows and adds the rest.
	os.Remove(filepath.Join(dir, "filler"))
	if code, stderr := runChild(t, 5*time.Minute, 0, stitchArgs(out, "all")...); code != 0 {
		t.Fatalf("the run after the disk was freed: exit %d: %s", code, stderr)
	}
	after, err := results.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) <= len(rows) {
		t.Errorf("%d rows after the second run, %d before", len(after), len(rows))
	}
	for i := range rows {
		if rows[i].Key() != after[i].Key() || rows[i].StitchedAcc != after[i].StitchedAcc {
			t.Errorf("row %d changed: %+v became %+v", i, rows[i], after[i])
		}
	}
}

// TestRunsUnderAMemoryLimit: a training run and a stitch run in a child
// whose address space is limited (ulimit -v: 1 GiB above what it maps at
// start) fail with exit status 1 and an error about memory, not a
// crash, and the checkpoint, its optimizer state and the rows written before
// stay as they were. The training run (a wider net resuming the checkpoint)
// is refused by its estimate before it allocates; the stitch run (all
// 60,000 training images' activations cached: 0.5 GB at layer4.1, 3 GB at
// layer1.1) fails when libtorch cannot allocate a cache.
func TestRunsUnderAMemoryLimit(t *testing.T) {
	needData(t)
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "x.pt")
	interruptAfterFirstEpoch(t, ckpt, 3)
	ckptBefore, stateBefore := digest(t, ckpt), digest(t, ckpt+".state")
	rowsFile := filepath.Join(dir, "rows.jsonl")
	if code, stderr := runChild(t, 5*time.Minute, 0, stitchArgs(rowsFile, "layer4.1")...); code != 0 {
		t.Fatalf("stitch: exit %d: %s", code, stderr)
	}
	rowsBefore, err := os.ReadFile(rowsFile)
	if err != nil {
		t.Fatal(err)
	}

	const limit = 1 << 30
	code, stderr := runChild(t, 5*time.Minute, limit, append(trainArgs(ckpt, 3), "--width", "4")...)
	t.Logf("training: exit %d: %s", code, stderr)
	if code != 1 || !strings.Contains(stderr, "of memory") || !strings.Contains(stderr, "ulimit -v") {
		t.Errorf("training under a memory limit: exit %d, stderr %q; want 1 and the estimate against the limit", code, stderr)
	}
	args := stitchArgs(rowsFile, "layer4.1,layer1.1")
	for i, a := range args {
		if a == "--fit-samples" {
			args[i+1] = "0" // all 60,000
		}
	}
	code, stderr = runChild(t, 5*time.Minute, limit, args...)
	t.Logf("stitching: exit %d: %s", code, stderr)
	if code != 1 || !strings.Contains(stderr, "out of memory: the rows of finished cuts are kept; --memory-budget") {
		t.Errorf("stitching under a memory limit: exit %d, stderr %.2000q; want 1 and an error about memory with what to do", code, stderr)
	}
	if digest(t, ckpt) != ckptBefore || digest(t, ckpt+".state") != stateBefore {
		t.Error("the checkpoint or its optimizer state changed")
	}
	// The layer4.1 cut on all 60,000 images is a new row that may fit
	// under the limit and be appended; what was there before must stay
	// byte for byte at the head of the file, and the file stays readable.
	rowsAfter, err := os.ReadFile(rowsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(rowsAfter, rowsBefore) {
		t.Errorf("the rows written before changed:\nbefore %q\nafter  %q", rowsBefore, rowsAfter)
	}
	if _, err := results.Read(rowsFile); err != nil {
		t.Errorf("the results file is unreadable after the failed run: %v", err)
	}
}
