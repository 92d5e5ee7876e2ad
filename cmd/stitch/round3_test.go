package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"modelstitch/experiments/grid"
	"modelstitch/experiments/results"
)

// bombPNG writes a file that starts like a PNG declaring w×h RGBA pixels and holds
// only the start of its pixel data: its header is all a loader needs to read to refuse it.
func bombPNG(t *testing.T, path string, w, h uint32) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32([]byte("IHDR"), w), h)
	chunk = append(chunk, 8, 6, 0, 0, 0)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	// The start of the pixel data: a zlib header, on which Go's decoder allocates the
	// whole image before reading a row.
	idat := []byte("IDAT\x78\x9c")
	binary.Write(&b, binary.BigEndian, uint32(2))
	b.Write(idat)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(idat))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// smallPNG writes a w×h black PNG.
func smallPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTrainRefusesImageBomb: `stitch train --data folder:DIR` with a PNG that declares
// 60000×60000 pixels died out of memory decoding it; it is refused naming the file,
// and nothing is written.
func TestTrainRefusesImageBomb(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []string{"cat", "dog"} {
		for _, n := range []string{"a", "b", "c"} {
			smallPNG(t, filepath.Join(dir, "train", c, n+".png"), 12, 12)
		}
		smallPNG(t, filepath.Join(dir, "val", c, "v.png"), 12, 12)
	}
	bomb := filepath.Join(dir, "train", "dog", "huge.png")
	bombPNG(t, bomb, 60000, 60000)
	out := filepath.Join(t.TempDir(), "m.pt")
	err := run([]string{"stitch", "train", "--data", "folder:" + dir, "--image-size", "8", "--epochs", "1", "--threads", "1", "--out", out})
	for _, want := range []string{bomb, "60000×60000"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one saying %q", err, want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written", out)
	}
}

// TestPlotCheckedBeforeWork: `--plot q.jpg` computed every cut and then printed
// "use a .png or .svg file name" and exited 0 (with --quiet and q.svgz, silently);
// the plot's name and folder are checked before any model is loaded.
func TestPlotCheckedBeforeWork(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pt")
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for plot, want := range map[string]string{
		filepath.Join(dir, "q.jpg"):              ".png or .svg",
		filepath.Join(dir, "q.svgz"):             ".png or .svg",
		filepath.Join(notes, "q.png"):            "not a directory",
		filepath.Join(dir, "new", "sub", "q.PS"): ".png or .svg",
	} {
		args := []string{"stitch", "--bottom", missing, "--top", missing, "--layer", "stem", "--quiet", "--out", filepath.Join(dir, "p.jsonl"), "--plot", plot}
		err := run(args)
		if err == nil || !strings.Contains(err.Error(), "--plot") || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "missing.pt") {
			t.Errorf("--plot %s: error %v, want one naming --plot and saying %q before the models are read", plot, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "p.jsonl")); err == nil {
		t.Error("the results file was made")
	}
}

// TestPlotWrittenIntoNewFolder: a --plot in folders that do not exist yet passed
// the check (their nearest existing folder takes files) and then failed to be
// created after the work, with exit status 0; the folders are made.
func TestPlotWrittenIntoNewFolder(t *testing.T) {
	needData(t)
	dir := t.TempDir()
	plot := filepath.Join(dir, "new", "sub", "p.svg")
	args := append([]string{"stitch"}, stitchArgs(filepath.Join(dir, "p.jsonl"), "stem")...)
	args = append(args, "--plot", plot)
	if err := run(args); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(plot); err != nil || st.Size() == 0 {
		t.Errorf("the plot was not written: %v", err)
	}
}

// TestSplitWords: --run-args was split on blanks, so "--x 'a b'" arrived as 'a
// and b'. It is split as /bin/sh splits a command's arguments (checked against
// sh itself where sh would expand nothing), and an unterminated quote is an error.
func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		"":                          nil,
		"  \t\n ":                   nil,
		"--device cuda":             {"--device", "cuda"},
		"--x 'a b'":                 {"--x", "a b"},
		`--x "a b" c`:               {"--x", "a b", "c"},
		`a\ b c\\d`:                 {"a b", `c\d`},
		`'it'\''s' ""`:              {"it's", ""},
		`"q\"x\\y\z"`:               {`q"x\y\z`},
		`'a\b "c"'`:                 {`a\b "c"`},
		"a'b c'd  e":                {"ab cd", "e"},
		"x\\\ny":                    {"xy"},
		`--note "$(not run) $HOME"`: {"--note", "$(not run) $HOME"},
		"--dir 'été/ünï code'":      {"--dir", "été/ünï code"},
	} {
		got, err := splitWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
		if strings.ContainsAny(in, "$`*?[~") {
			continue
		}
		out, err := exec.Command("sh", "-c", "set -- "+in+"\n"+`for a; do printf '%s\0' "$a"; done`).Output()
		if err != nil {
			t.Fatalf("sh on %q: %v", in, err)
		}
		var sh []string
		if len(out) > 0 {
			sh = strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		}
		if !slices.Equal(got, sh) {
			t.Errorf("splitWords(%q) = %q; sh says %q", in, got, sh)
		}
	}
	for in, want := range map[string]string{
		`--x 'a b`: "single quote at character 5",
		`--x "a b`: "double quote at character 5",
		`--x a\`:   "backslash at the end",
		`"a\"`:     "double quote at character 1",
	} {
		if _, err := splitWords(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("splitWords(%q): error %v, want one saying %q", in, err, want)
		}
	}
}

// TestGridRunArgsQuoted: `stitch grid slurm|k8s --run-args "--note 'a b'"` passes
// one argument "a b" to the jobs, and a bad --run-args is an error naming the flag.
func TestGridRunArgsQuoted(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "grid.toml")
	os.WriteFile(spec, []byte("# spec\n"), 0o644)
	if err := runGrid("slurm", spec, "--out", filepath.Join(dir, "o"), "--stitch-bin", "/bin/stitch", "--run-args", `--device cuda --note 'a b'`); err != nil {
		t.Fatal(err)
	}
	train := readFile(t, filepath.Join(dir, "o", "slurm", "train.sbatch"))
	if !strings.Contains(train, " --no-report --device cuda --note 'a b' ") {
		t.Errorf("train.sbatch does not pass 'a b' as one argument:\n%s", train)
	}
	k8s := filepath.Join(dir, "k8s")
	if err := runGrid("k8s", spec, "--image", "x", "--dir", k8s, "--run-args", `--note "a b"`); err != nil {
		t.Fatal(err)
	}
	if job := readFile(t, filepath.Join(k8s, "job-stitch.yaml")); !strings.Contains(job, "- a b\n") {
		t.Errorf("the stitch job does not pass 'a b' as one argument:\n%s", job)
	}
	for _, backend := range [][]string{{"slurm", spec, "--out", filepath.Join(dir, "p"), "--stitch-bin", "/bin/stitch"}, {"k8s", spec, "--image", "x", "--dir", k8s}} {
		args := append(backend, "--run-args", "--note 'a b")
		if err := runGrid(args...); err == nil || !strings.Contains(err.Error(), "--run-args") || !strings.Contains(err.Error(), "not closed") {
			t.Errorf("stitch grid %s: %v, want an error naming --run-args and the open quote", strings.Join(args, " "), err)
		}
	}
}

// TestGridRunOnLockedFolderClaimsNoReport: a second `grid run` on a folder whose
// rows another run holds printed "report written to …" and then failed; it fails
// without drawing a report or saying it did.
func TestGridRunOnLockedFolderClaimsNoReport(t *testing.T) {
	dir := t.TempDir()
	held, err := grid.OpenWriter(dir, grid.Shard{I: 0, N: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	report := filepath.Join(t.TempDir(), "report")
	code, stderr := runChild(t, 2*time.Minute, 0, "grid", "run", "--in-process", "--out", dir, "--report", report, tinySpec)
	if code == 0 || !strings.Contains(stderr, "another writer still holds it") {
		t.Errorf("exit %d, stderr %q; want a failure saying the rows are held", code, stderr)
	}
	if strings.Contains(stderr, "report") {
		t.Errorf("a run that never started speaks of a report: %q", stderr)
	}
	if _, err := os.Stat(report); err == nil {
		t.Errorf("a report was drawn in %s", report)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "rows" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the folder holds %v, want only the held rows", names)
	}
}

// TestJSONRowsComplete: `stitch --json` printed "bottom_acc":null in the rows of the
// cuts before the last, which the results file later held; every printed row now
// has it, equal to the file's.
func TestJSONRowsComplete(t *testing.T) {
	needData(t)
	out := filepath.Join(t.TempDir(), "r.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startChild(t, ctx, 0, append(stitchArgs(out, "stem,layer1.0"), "--json")...)
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, c.stderr.String())
	}
	stored, err := results.Read(out)
	if err != nil || len(stored) != 2 {
		t.Fatalf("results file: %d rows, %v", len(stored), err)
	}
	lines := strings.Split(strings.TrimSpace(c.stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout has %d lines, want 2 rows: %s", len(lines), c.stdout.String())
	}
	for i, l := range lines {
		var row results.Row
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if row.BottomAcc == nil || stored[i].BottomAcc == nil || *row.BottomAcc != *stored[i].BottomAcc {
			t.Errorf("printed row %d (%s) has bottom_acc %v, the file's %v", i+1, row.Cut, row.BottomAcc, stored[i].BottomAcc)
		}
	}
}
