package shardfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// row is what the tests write: the value is a function of the id, so that
// every writer of a unit writes the same row.
type row struct {
	ID    string  `json:"unit"`
	Value float64 `json:"value"`
}

func unitRow(i int) row { return row{ID: fmt.Sprintf("unit-%03d", i), Value: float64(i) * 0.5} }

// TestMain lets the test binary act as a shard writer in another process.
//
//	SHARDFILE_TEST_WRITE=path,from,to[,tear]
//
// appends the rows of units from..to-1 that the file does not hold yet; with
// tear it then writes half a row, says "torn" on stdout and waits to be killed.
func TestMain(m *testing.M) {
	if spec := os.Getenv("SHARDFILE_TEST_WRITE"); spec != "" {
		if err := helperWrite(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helperWrite(spec string) error {
	parts := strings.Split(spec, ",")
	from, _ := strconv.Atoi(parts[1])
	to, _ := strconv.Atoi(parts[2])
	w, err := Open(parts[0], time.Minute)
	if err != nil {
		return err
	}
	defer w.Close()
	done, err := Done(parts[0])
	if err != nil {
		return err
	}
	for i := from; i < to; i++ {
		r := unitRow(i)
		if done[r.ID] {
			continue
		}
		if err := w.Append(r); err != nil {
			return err
		}
	}
	if len(parts) > 3 {
		line, _ := json.Marshal(unitRow(to))
		w.f.Write(line[:len(line)/2]) // a row cut short, as by a kill in the middle of a write
		w.f.Sync()
		os.Stdout.WriteString("torn\n")
		time.Sleep(time.Minute)
	}
	return nil
}

// startWriter starts a writer process.
func startWriter(t *testing.T, spec string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHARDFILE_TEST_WRITE="+spec)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(out)
}

// checkMerged merges dir and checks that the merged file holds exactly one
// complete, correct row for each unit 0..n-1, sorted, and nothing else.
func checkMerged(t *testing.T, dir string, n int) MergeStats {
	t.Helper()
	st, err := Merge(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, MergedName))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("merged file ends in a torn row")
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != n || st.Unique != n {
		t.Fatalf("merged %d rows (stats %+v), want %d", len(lines), st, n)
	}
	for i, l := range lines {
		var r row
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("merged line %d %q: %v", i+1, l, err)
		}
		if r != unitRow(i) {
			t.Fatalf("merged line %d is %+v, want %+v", i+1, r, unitRow(i))
		}
	}
	return st
}

func TestPathRoundTrip(t *testing.T) {
	p := Path("out", 3, 12)
	if p != filepath.Join("out", "rows", "shard-3-of-12.jsonl") {
		t.Errorf("Path: %s", p)
	}
	if s, c, ok := parsePath(p); !ok || s != 3 || c != 12 {
		t.Errorf("parsePath(%s) = %d, %d, %v", p, s, c, ok)
	}
	for _, bad := range []string{"shard-3-of-3.jsonl", "shard-01-of-4.jsonl", "shard-1-of-0.jsonl", "shard-1-of-4.jsonl.tmp", "shard-x-of-4.jsonl"} {
		if _, _, ok := parsePath(bad); ok {
			t.Errorf("parsePath(%s) accepted", bad)
		}
	}
}

func TestAppendRejectsBadRows(t *testing.T) {
	w, err := Open(Path(t.TempDir(), 0, 1), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, line := range []string{`{"unit":"a"}` + "\n" + `{"unit":"b"}`, `{"name":"no id"}`, `{"unit":""}`, `{"unit":7}`, `[1,2]`, `{"unit":"a"`} {
		if err := w.AppendLine([]byte(line)); err == nil || !strings.Contains(err.Error(), "shard-0-of-1.jsonl") {
			t.Errorf("AppendLine(%q): %v, want an error naming the file", line, err)
		}
	}
	if err := w.Append(map[string]any{"unit": "ok", "x": 1}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.Append(unitRow(1)); err == nil {
		t.Error("Append after Close succeeded")
	}
}

// TestConcurrentGoroutines has 6 shards written at once, each by 3
// goroutines sharing a writer, with every unit written by two shards.
func TestConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	const shards, units = 6, 120
	var wg sync.WaitGroup
	errs := make(chan error, shards*3)
	for s := 0; s < shards; s++ {
		w, err := Open(Path(dir, s, shards), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < units; i++ {
					// unit i belongs to shards i%6 and (i+1)%6; goroutine g writes every third.
					if (i%shards == s || (i+1)%shards == s) && i%3 == g {
						if err := w.Append(unitRow(i)); err != nil {
							errs <- err
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := checkMerged(t, dir, units)
	if st.Files != shards || st.Rows != 2*units || st.Duplicates != units || st.Conflicts != 0 || st.Torn != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestConcurrentProcesses has 4 processes write 4 shard files at once and
// two more processes fight over one shard file: the lock makes the second
// wait, so no row is interleaved with another.
func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const units = 200
	var cmds []*exec.Cmd
	for s := 0; s < 4; s++ {
		c, _ := startWriter(t, fmt.Sprintf("%s,%d,%d", Path(dir, s, 4), s*units/4, (s+1)*units/4))
		cmds = append(cmds, c)
	}
	// Two duplicates of one shard of another run (count 2), each writing all units.
	for i := 0; i < 2; i++ {
		c, _ := startWriter(t, fmt.Sprintf("%s,%d,%d", Path(dir, 1, 2), 0, units))
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("writer %v: %v", c.Env[len(c.Env)-1], err)
		}
	}
	rows, torn, corrupt, err := Read(Path(dir, 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	// The second duplicate found the first's rows done and wrote nothing more.
	if len(rows) != units || torn != 0 || corrupt != 0 {
		t.Errorf("contended shard file: %d rows, %d torn, %d corrupt; want %d, 0, 0", len(rows), torn, corrupt, units)
	}
	st := checkMerged(t, dir, units)
	if st.Files != 5 || st.Duplicates != units {
		t.Errorf("stats %+v", st)
	}
}

// TestKilledWriterAndRetry kills a writer in the middle of a row, merges (the
// torn row is dropped), retries the shard (it cuts the torn row and resumes)
// and merges again: every unit exactly once.
func TestKilledWriterAndRetry(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir, 2, 3)
	const units = 50
	c, out := startWriter(t, fmt.Sprintf("%s,0,20,tear", path))
	if line, err := out.ReadString('\n'); err != nil || line != "torn\n" {
		t.Fatalf("writer said %q, %v", line, err)
	}
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()

	rows, torn, corrupt, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 20 || torn != 1 || corrupt != 0 {
		t.Fatalf("after the kill: %d rows, %d torn, %d corrupt; want 20, 1, 0", len(rows), torn, corrupt)
	}
	if st := checkMerged(t, dir, 20); st.Torn != 1 {
		t.Errorf("merge before the retry: stats %+v, want 1 torn row dropped", st)
	}

	// The retry (a re-queued task) resumes: it cuts the torn row and writes the rest.
	w, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w.CutBytes() == 0 {
		t.Error("Open cut no torn bytes")
	}
	done, err := Done(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < units; i++ {
		if r := unitRow(i); !done[r.ID] {
			if err := w.Append(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.Close()
	rows, torn, corrupt, _ = Read(path)
	if len(rows) != units || torn != 0 || corrupt != 0 {
		t.Fatalf("after the retry: %d rows, %d torn, %d corrupt; want %d, 0, 0", len(rows), torn, corrupt, units)
	}
	if st := checkMerged(t, dir, units); st.Duplicates != 0 || st.Torn != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestMergeIsDeterministic writes duplicates with differing content in shard
// files of two runs (4 and 2 shards) and checks that the first complete row
// in merge order wins, whatever order the files were written in, and that
// merging twice gives the same bytes.
func TestMergeIsDeterministic(t *testing.T) {
	write := func(dir string, order []int) {
		files := map[int][2]int{0: {0, 4}, 1: {1, 4}, 2: {1, 2}, 3: {0, 2}}
		for _, k := range order {
			s := files[k]
			w, err := Open(Path(dir, s[0], s[1]), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 10; i++ {
				r := unitRow(i)
				r.Value += float64(10 * k) // a different value in each file
				w.Append(r)
			}
			w.Close()
		}
		// Noise that is not a rows file.
		os.WriteFile(filepath.Join(dir, RowsDir, "notes.txt"), []byte("x"), 0o644)
		os.WriteFile(filepath.Join(dir, RowsDir, ".shard-0-of-4.jsonl.tmp-1"), []byte(`{"unit":"zzz"}`+"\n"), 0o644)
	}
	a, b := t.TempDir(), t.TempDir()
	write(a, []int{0, 1, 2, 3})
	write(b, []int{3, 2, 1, 0})
	for _, dir := range []string{a, b} {
		st, err := Merge(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != 4 || st.Unique != 10 || st.Duplicates != 30 || st.Conflicts != 30 {
			t.Errorf("stats %+v", st)
		}
	}
	ma, _ := os.ReadFile(filepath.Join(a, MergedName))
	mb, _ := os.ReadFile(filepath.Join(b, MergedName))
	if !bytes.Equal(ma, mb) {
		t.Fatalf("merges differ:\n%s\n%s", ma, mb)
	}
	// Merge order: count 2 before count 4, shard 0 before 1: file k=3 (shard 0 of 2) wins.
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(string(ma)), "\n") {
		var r row
		json.Unmarshal([]byte(l), &r)
		ids = append(ids, r.ID)
		var i int
		fmt.Sscanf(r.ID, "unit-%d", &i)
		if want := unitRow(i).Value + 30; r.Value != want {
			t.Errorf("%s kept value %v, want %v (the row of shard 0 of 2)", r.ID, r.Value, want)
		}
	}
	if !sort.StringsAreSorted(ids) || len(ids) != 10 {
		t.Errorf("merged ids %v, want 10 sorted", ids)
	}
	again, err := Merge(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ma2, _ := os.ReadFile(filepath.Join(a, MergedName)); !bytes.Equal(ma, ma2) || again.Unique != 10 {
		t.Error("a second merge changed the merged file")
	}
}

func TestMergeWithoutShards(t *testing.T) {
	dir := t.TempDir()
	if _, err := Merge(dir, nil); err == nil || !strings.Contains(err.Error(), "no shard files") {
		t.Errorf("merge of an empty directory: %v", err)
	}
}

// TestLockWaitTimesOut: a second writer of a held shard file gives up with
// an error that says why.
func TestLockWaitTimesOut(t *testing.T) {
	path := Path(t.TempDir(), 0, 1)
	w, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	_, err = Open(path, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "another writer") {
		t.Fatalf("second Open: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("gave up after %v", d)
	}
	w.Close()
	w2, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open after the first writer closed: %v", err)
	}
	w2.Close()
}

// TestShardFilesOrder: all.jsonl (an unsharded run) first, then shard files
// by count and index, other rows files last; other files are not rows.
func TestShardFilesOrder(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, RowsDir), 0o755)
	for _, n := range []string{"zz.jsonl", "shard-3-of-4.jsonl", "shard-1-of-2.jsonl", "notes.txt", "all.jsonl", "shard-0-of-2.jsonl", "shard-10-of-12.jsonl", "shard-2-of-12.jsonl"} {
		os.WriteFile(filepath.Join(dir, RowsDir, n), nil, 0o644)
	}
	files, err := ShardFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	want := "all.jsonl shard-0-of-2.jsonl shard-1-of-2.jsonl shard-3-of-4.jsonl shard-2-of-12.jsonl shard-10-of-12.jsonl zz.jsonl"
	if strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}
