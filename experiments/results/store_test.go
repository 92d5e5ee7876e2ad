package results

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// mountTmpfs mounts a small tmpfs (options e.g. "size=64k" or "ro") on a new
// directory, unmounted when the test ends; it skips the test where mounting
// is not permitted.
func mountTmpfs(t *testing.T, options string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", options, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root and mount permission): %v %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func numbered(n int) Row {
	r := rows()[0]
	r.Seed = int64(n)
	return r
}

func appendRows(t *testing.T, path string, rs ...Row) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func readAll(t *testing.T, path string) []Row {
	t.Helper()
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTornTailRepairedBeforeAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	appendRows(t, path, numbered(1), numbered(2))
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"bottom":"a","top"`)
	f.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Notes(); len(n) != 1 || !strings.Contains(n[0], "torn") || !strings.Contains(n[0], path) {
		t.Errorf("notes %q should say the torn line was removed", n)
	}
	if err := s.Append(numbered(3)); err != nil {
		t.Fatal(err)
	}
	// The next run reads the file: three rows, none glued to a torn one.
	if got := readAll(t, path); len(got) != 3 || got[2].Seed != 3 {
		t.Fatalf("read back %d rows: %+v", len(got), got)
	}
	appendRows(t, path, numbered(4))
	if got := readAll(t, path); len(got) != 4 {
		t.Fatalf("read back %d rows after another run", len(got))
	}
}

func TestWholeLastRowWithoutNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	appendRows(t, path, numbered(1))
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.TrimRight(b, "\n"), 0o644)
	s := appendRows(t, path, numbered(2))
	if n := s.Notes(); len(n) != 1 || !strings.Contains(n[0], "newline") {
		t.Errorf("notes %q", n)
	}
	if got := readAll(t, path); len(got) != 2 {
		t.Fatalf("read back %d rows", len(got))
	}
}

func TestForeignFilesRefused(t *testing.T) {
	for name, content := range map[string]string{
		"text line":          "hello world\n",
		"text, no newline":   "hello world",
		"other JSON":         `{"a": 1}` + "\n",
		"row then text":      `{"bottom":"a","top":"b","cut":"stem","top_acc":1}` + "\nnotes\n",
		"escape codes":       "\x1b]0;owned\x07\n",
		"other JSON, no end": `{"a": 1}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "notes.txt")
			os.WriteFile(path, []byte(content), 0o644)
			_, err := Open(path)
			if err == nil {
				t.Fatal("opened as a results file")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line ") || !strings.Contains(err.Error(), "not a results row") {
				t.Errorf("error %q should name the file and the line", err)
			}
			if strings.Contains(err.Error(), "\x1b") {
				t.Errorf("error carries the file's escape codes: %q", err)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Errorf("file changed to %q", b)
			}
		})
	}
}

func TestDiskFullLeavesFileUsable(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	path := filepath.Join(dir, "r.jsonl")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 32<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var werr error
	for n < 10000 {
		if werr = s.Append(numbered(n)); werr != nil {
			break
		}
		n++
	}
	if werr == nil || !errors.Is(werr, syscall.ENOSPC) || !strings.Contains(werr.Error(), path) {
		t.Fatalf("after %d rows: error %v, want no space left naming %s", n, werr, path)
	}
	b, _ := os.ReadFile(path)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Errorf("the failed write left a torn line: ends %q", b[max(0, len(b)-20):])
	}
	if got := readAll(t, path); len(got) != n {
		t.Errorf("%d rows written, %d read back", n, len(got))
	}
	// Space comes back: the next run appends after the rows, not glued to a torn one.
	os.Remove(filler)
	appendRows(t, path, numbered(n))
	if got := readAll(t, path); len(got) != n+1 {
		t.Errorf("%d rows read back after freeing space, want %d", len(got), n+1)
	}
	t.Logf("disk full after %d rows (%d bytes)", n, len(b))
}

func TestConcurrentRunsWriteEachRowOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	// Two runs open the file before either has written anything, then do the same cuts.
	a, b := openTwice(t, path)
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if err := s.Append(numbered(i)); err != nil {
					t.Error(err)
				}
			}
		}(s)
	}
	wg.Wait()
	got := readAll(t, path)
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Key()]++
	}
	if len(got) != 30 || len(seen) != 30 {
		t.Errorf("%d rows, %d distinct; want 30 of each", len(got), len(seen))
	}
	// A row another run wrote counts as done without reopening.
	c, _ := Open(path)
	appendRows(t, path, numbered(99))
	if _, ok := c.Done(numbered(99)); !ok {
		t.Error("a row appended by another store is not seen as done")
	}
}

func TestRowsKeyedByContent(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "x.pt")
	os.WriteFile(ck, []byte("weights one"), 0o644)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	t.Chdir(sub)
	rel, abs := "../x.pt", ck
	d1, err := Digest(rel)
	if err != nil || len(d1) != 64 {
		t.Fatalf("digest %q, %v", d1, err)
	}
	d2, _ := Digest(abs)
	if d1 != d2 {
		t.Errorf("two paths to one file: %s vs %s", d1, d2)
	}
	path := filepath.Join(dir, "r.jsonl")
	r := numbered(1)
	r.BottomPath, r.TopPath = rel, rel
	r.BottomSHA256, r.TopSHA256, _ = Digests(rel, rel)
	s := appendRows(t, path, r)
	same := r
	same.BottomPath, same.TopPath = abs, abs
	if _, ok := s.Done(same); !ok {
		t.Error("the same checkpoint under another path is not done")
	}
	// The checkpoint is replaced at the same path: its old rows do not count.
	os.WriteFile(ck, []byte("weights two"), 0o644)
	replaced := r
	replaced.BottomSHA256, replaced.TopSHA256, _ = Digests(rel, rel)
	if replaced.BottomSHA256 == r.BottomSHA256 {
		t.Fatal("digest did not change with the contents")
	}
	if _, ok := s.Done(replaced); ok {
		t.Error("a replaced checkpoint reuses the old row")
	}
	if got := readAll(t, path); got[0].BottomPath != rel || got[0].BottomSHA256 != r.BottomSHA256 {
		t.Errorf("row keeps %q %q", got[0].BottomPath, got[0].BottomSHA256)
	}
	if d, err := Digest("random"); d != "" || err != nil {
		t.Errorf("Digest(random) = %q, %v", d, err)
	}
	if d, err := Digest("embedded:fmnist-resnet18-w0.25-sup-seed1"); len(d) != 64 || err != nil {
		t.Errorf("digest of a shipped model: %q, %v", d, err)
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "new", "r.jsonl")
	if err := CheckWritable(ok); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the check left %v behind", left)
	}
	if err := CheckWritable(filepath.Join(dir, "new")); err != nil {
		t.Fatal(err)
	}
	appendRows(t, ok, numbered(1)) // the directories are made when the file is written
	if err := CheckWritable(filepath.Join(ok, "below-a-file")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("below a file: %v", err)
	}
	if err := CheckWritable(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("a directory: %v", err)
	}
	ro := mountTmpfs(t, "ro,size=16k")
	for _, p := range []string{filepath.Join(ro, "r.jsonl"), filepath.Join(ro, "sub", "r.jsonl")} {
		err := CheckWritable(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("read-only %s: %v", p, err)
		}
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%s) on a read-only file system succeeded", p)
		}
	}
}

func TestUpdateReplacesRowsInPlace(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.jsonl")
	without := func(n int) Row { r := numbered(n); r.BottomAcc = nil; return r }
	appendRows(t, real, without(0), without(1), without(2), without(3))
	if err := os.Chmod(real, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "link.jsonl") // the update follows a symbolic link
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	acc := 87.5
	up1, up3, added := without(1), without(3), without(7)
	up1.BottomAcc, up3.BottomAcc, added.BottomAcc = &acc, &acc, &acc
	if err := s.Update([]Row{up3, added, up1}); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, path)
	var seeds []int64
	for _, r := range got {
		seeds = append(seeds, r.Seed)
		want := r.Seed == 1 || r.Seed == 3 || r.Seed == 7
		if (r.BottomAcc != nil) != want || (want && *r.BottomAcc != acc) {
			t.Errorf("row %d: bottom_acc %v", r.Seed, r.BottomAcc)
		}
	}
	if fmt.Sprint(seeds) != "[0 1 2 3 7]" {
		t.Errorf("rows after the update: seeds %v, want [0 1 2 3 7] (order kept, new row last)", seeds)
	}
	if d, ok := s.Done(numbered(3)); !ok || d.BottomAcc == nil {
		t.Error("the store does not see its own update")
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symbolic link was replaced: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(real); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("permissions after the update: %v %v, want 0600", fi.Mode().Perm(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*update*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestUpdateWhileAnotherRunAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	appendRows(t, path, numbered(0))
	a, b := openTwice(t, path)
	const n = 120
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if err := a.Append(numbered(i)); err != nil {
				t.Error(err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 40 {
			r := numbered(0)
			acc := float64(i)
			r.BottomAcc = &acc
			if err := b.Update([]Row{r}); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	got := readAll(t, path)
	seen := map[int64]int{}
	for _, r := range got {
		seen[r.Seed]++
		if r.Seed == 0 && (r.BottomAcc == nil || *r.BottomAcc != 39) {
			t.Errorf("row 0 has bottom_acc %v, want the last update's 39", r.BottomAcc)
		}
	}
	if len(got) != n+1 || len(seen) != n+1 {
		t.Errorf("%d rows, %d distinct; want %d of each (an appended row was lost or doubled by an update)", len(got), len(seen), n+1)
	}
}

// openTwice opens path as two stores, as two runs would.
func openTwice(t *testing.T, path string) (*Store, *Store) {
	t.Helper()
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}
