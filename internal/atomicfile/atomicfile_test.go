package atomicfile

import (
	"bufio"
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
	"time"
)

// TestMain lets the test binary act as a writer that is killed in the middle
// of an atomic write (see TestKilledWriterLeavesOldContent).
func TestMain(m *testing.M) {
	if path := os.Getenv("ATOMICFILE_TEST_SLOW_WRITER"); path != "" {
		err := Write(path, 0o644, func(f *os.File) error {
			f.Write(bytes.Repeat([]byte("new "), 1<<16))
			f.Sync()
			os.Stdout.WriteString("half written\n")
			time.Sleep(time.Minute) // killed here
			return nil
		})
		if err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// leftovers lists the files in dir other than keep.
func leftovers(t *testing.T, dir string, keep ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		found := false
		for _, k := range keep {
			found = found || e.Name() == k
		}
		if !found {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.pt")
	if err := WriteFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("second, longer"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "second, longer" {
		t.Fatalf("content %q, %v", got, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	if l := leftovers(t, dir, "ckpt.pt"); len(l) != 0 {
		t.Errorf("temporary files left behind: %v", l)
	}
}

func TestFailedFillKeepsOldContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.pt")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	err := Write(path, 0o644, func(f *os.File) error {
		f.WriteString("partial new")
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "ckpt.pt") {
		t.Fatalf("error %v, want one wrapping %v and naming the file", err, boom)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("content after a failed write %q, want the old one", got)
	}
	if l := leftovers(t, dir, "ckpt.pt"); len(l) != 0 {
		t.Errorf("temporary files left behind: %v", l)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("write into a missing directory: %v, want an error naming it", err)
	}
}

// TestWriteViaPath writes through a file name, as libtorch's save does.
func TestWriteViaPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.pt")
	err := WriteVia(path, 0o644, func(tmp string) error {
		if filepath.Dir(tmp) != filepath.Dir(path) {
			t.Errorf("temporary %s not beside %s", tmp, path)
		}
		return os.WriteFile(tmp, []byte("weights"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "weights" {
		t.Errorf("content %q", got)
	}
}

// TestReadersNeverSeeAMix replaces a file over and over with two contents of
// different lengths while readers read it: every read must be one of the two.
func TestReadersNeverSeeAMix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	a := bytes.Repeat([]byte("a"), 200_000)
	b := bytes.Repeat([]byte("b"), 50_000)
	if err := WriteFile(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad []string
	var mu sync.Mutex
	reads := 0
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := os.ReadFile(path)
				mu.Lock()
				reads++
				if err != nil {
					bad = append(bad, err.Error())
				} else if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					bad = append(bad, fmt.Sprintf("a mixed content of %d bytes", len(got)))
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 60; i++ {
		data := a
		if i%2 == 0 {
			data = b
		}
		if err := WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d of %d reads saw neither the old nor the new content: %v", len(bad), reads, bad[0])
	}
	if reads == 0 {
		t.Fatal("the readers read nothing")
	}
}

// TestKilledWriterLeavesOldContent kills a process in the middle of an atomic
// write: the file keeps its old content.
func TestKilledWriterLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.pt")
	if err := WriteFile(path, []byte("old checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_TEST_SLOW_WRITER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "half written\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer said %q, %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got, _ := os.ReadFile(path); string(got) != "old checkpoint" {
		t.Errorf("after the writer was killed the file holds %d bytes %.20q..., want the old content", len(got), got)
	}
	// The killed writer's temporary file stays (hidden) until the next
	// write of the same path, which removes it once it is StaleAfter old.
	if left := leftovers(t, dir, "ckpt.pt"); len(left) != 1 || !strings.HasPrefix(left[0], fmt.Sprintf(".ckpt.pt.tmp-%d-", cmd.Process.Pid)) {
		t.Fatalf("after the kill: %q, want the writer's temporary file", left)
	}
	old := StaleAfter
	StaleAfter = 0
	defer func() { StaleAfter = old }()
	if err := WriteFile(path, []byte("new checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new checkpoint" {
		t.Errorf("content %q", got)
	}
	if left := leftovers(t, dir, "ckpt.pt"); len(left) != 0 {
		t.Errorf("the killed writer's temporary file outlived the next write: %q", left)
	}
}

// TestStaleTempFilesRemoved: a write removes the temporary files of its own
// path that are stale (an hour old, or of a dead process), and no others.
func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pt")
	hourAgo := time.Now().Add(-2 * time.Hour)
	files := map[string]bool{ // name → removed by the write
		".x.pt.tmp123456":                          true,  // older naming, two hours old
		".x.pt.tmp-999999999-1":                    true,  // no such process, two hours old
		".x.pt.tmp-999999998-2":                    false, // no such process, but just written (another machine's writer?)
		".x.pt.tmp-1-3":                            false, // pid 1 is alive
		".y.pt.tmp-999999999-4":                    false, // another file's
		fmt.Sprintf(".x.pt.tmp-%d-5", os.Getpid()): false, // this process's
	}
	for name := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if name != ".x.pt.tmp-999999998-2" && name != ".x.pt.tmp-1-3" && !strings.Contains(name, fmt.Sprint(os.Getpid())) {
			if err := os.Chtimes(p, hourAgo, hourAgo); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := WriteFile(path, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone := os.IsNotExist(err); gone != removed {
			t.Errorf("%s: removed %v, want %v", name, gone, removed)
		}
	}
}
