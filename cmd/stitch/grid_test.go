package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/grid/inprocess"
	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
)

const tinySpec = "../../experiments/grid/testdata/tiny.toml"

// TestGridBadInput checks that the grid commands name the file or flag at fault.
func TestGridBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"grid", "run", missing}, "nope.toml"},
		{[]string{"grid", "plan"}, "SPEC"},
		{[]string{"grid", "run", "--shard", "2/2", tinySpec}, "--shard"},
		{[]string{"grid", "plan", "--shard", "x", tinySpec}, "--shard"},
		{[]string{"grid", "run", "--phase", "stich", tinySpec}, "--phase"},
		{[]string{"grid", "run", "--device", "tpu", tinySpec}, "--device"},
		{[]string{"grid", "unit", "--device", "tpu", tinySpec, "train/a-0"}, "--device"},
	}
	if !torch.BuiltWithCUDA() || !torch.CUDAAvailable() {
		// Refused before any unit runs, naming the flag and the device.
		cases = append(cases, struct {
			args []string
			want string
		}{[]string{"grid", "run", "--device", "cuda:7", tinySpec}, "--device cuda:7"})
	}
	for _, c := range cases {
		err := run(append([]string{"stitch"}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("stitch %s: error %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestGridKillAndResume builds the stitch binary, starts `stitch grid run` on
// the tiny spec, kills the process (SIGKILL, no chance to clean up) once it
// has written its first stitching row, then finishes the grid with
// `--jobs 2` (units in child processes) and checks that every unit has
// exactly one row, the same units an uninterrupted run has.
func TestGridKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and stitches real models end to end; runs without -short")
	}
	if _, err := os.Stat(filepath.Join(datasets.DefaultFashionMNISTDir, "train-images-idx3-ubyte.gz")); err != nil {
		t.Skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "stitch")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	spec, err := grid.Load(tinySpec, inprocess.Vocabulary())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := grid.NewPlan(spec, dir, inprocess.CutPoints)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, u := range plan.Units {
		want = append(want, u.ID)
	}
	slices.Sort(want)

	var log bytes.Buffer
	cmd := exec.Command(bin, "grid", "run", "--no-report", "--out", dir, tinySpec)
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rows := filepath.Join(grid.RowsDir(dir), "all.jsonl")
	deadline := time.Now().Add(10 * time.Minute)
	for !strings.Contains(readString(rows), `"kind":"stitch"`) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no stitching row after 10 minutes; log:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	before := countLines(t, rows)
	killedRecs, err := grid.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if before == 0 || before >= len(want) {
		t.Fatalf("killed run left %d rows of %d units; log:\n%s", before, len(want), log.String())
	}

	// The plan sees what is done and what is missing.
	out, err := exec.Command(bin, "grid", "plan", "--json", "--out", dir, tinySpec).Output()
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var st grid.UnitState
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			t.Fatalf("plan --json line %q: %v", sc.Text(), err)
		}
		if st.State == grid.StateDone {
			done++
		}
	}
	if done != before {
		t.Errorf("plan says %d units done, the rows file has %d", done, before)
	}

	res, err := exec.Command(bin, "grid", "run", "--jobs", "2", "--cores", "2", "--out", dir, "--report", filepath.Join(dir, "report"), tinySpec).CombinedOutput()
	if err != nil {
		t.Fatalf("resumed run: %v\n%s", err, res)
	}
	if n := countLines(t, rows); n != len(want) {
		t.Errorf("after the resumed run the rows file has %d lines, want %d (one per unit)", n, len(want))
	}
	recs, err := grid.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs.All() {
		got = append(got, r.Unit)
		if _, early := killedRecs.Get(r.Unit); !early && r.Threads != 1 {
			t.Errorf("%s ran with %d threads, want 1 (2 cores / 2 jobs)", r.Unit, r.Threads)
		}
	}
	if !slices.Equal(got, want) || recs.Duplicates != 0 {
		t.Errorf("units %v (%d duplicates), want %v", got, recs.Duplicates, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "report", "figures", "connectivity.svg")); err != nil {
		t.Errorf("the run did not regenerate the report: %v\n%s", err, res)
	}
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestGridPlanRefusesSpecsThatCannotRun: issue 29's specs, which plan
// accepted and whose units then failed one by one at run time, are refused
// by plan naming the file, line and key.
func TestGridPlanRefusesSpecsThatCannotRun(t *testing.T) {
	dir := t.TempDir()
	base := "title = \"t\"\n[models.a]\nseed = 1\n[models.b]\nseed = 2\n[pairs.ab]\nbottom = \"a\"\ntop = \"b\"\ncuts = \"stem\"\n"
	for _, c := range []struct{ text, want string }{
		{strings.Replace(base, "seed = 1", "seed = 1\nwidth = 1e300", 1), "spec.toml:4: models.a.width"},
		{strings.Replace(base, "seed = 1", "seed = 1\nepochs = 99999999999", 1), "spec.toml:4: models.a.epochs"},
		{base + "[pairs.ab.stitch]\nkernel_size = 100001\n", "spec.toml:11: pairs.ab.stitch.kernel_size"},
		{"test_samples = 99999999999999\n" + base, "spec.toml:1: test_samples"},
	} {
		spec := filepath.Join(dir, "spec.toml")
		if err := os.WriteFile(spec, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := runGrid("plan", "--out", filepath.Join(dir, "out"), spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("grid plan: %v, want an error naming %s", err, c.want)
		}
	}
}
