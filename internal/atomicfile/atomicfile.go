// Package atomicfile replaces files so that a reader, or a process that
// starts after a crash, sees either the whole old content or the whole new
// content and never a mix: the new content goes to a temporary file in the
// same directory, is flushed to disk, and is renamed over the old name.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// WriteFile writes data to path atomically with the given permissions.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write creates a temporary file beside path, lets fill write it, flushes it
// to disk, renames it to path and flushes the directory, so that the rename
// itself survives a crash. If fill or any step fails, path is left as it was
// and the temporary file is removed.
func Write(path string, perm fs.FileMode, fill func(f *os.File) error) error {
	return WriteVia(path, perm, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		if err := fill(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

// WriteVia is Write for writers that want a file name rather than an open
// file (a checkpoint saved by libtorch, an external tool): fill writes the
// new content to the temporary path tmp, which exists and is empty when fill
// is called. The content is then flushed, renamed to path and the directory
// flushed.
func WriteVia(path string, perm fs.FileMode, fill func(tmp string) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStale(dir, base)
	f, err := os.CreateTemp(dir, fmt.Sprintf(".%s.tmp-%d-*", base, os.Getpid()))
	if err != nil {
		return fmt.Errorf("atomic write of %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomic write of %s: %w", path, err)
	}
	if err := fill(tmp); err != nil {
		return fmt.Errorf("atomic write of %s: %w", path, err)
	}
	if err := syncFile(tmp, perm); err != nil {
		return fmt.Errorf("atomic write of %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomic write of %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("atomic write of %s: %w", path, err)
	}
	return nil
}

// syncFile sets the final permissions of the file at name and flushes its
// content to disk.
func syncFile(name string, perm fs.FileMode) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncDir flushes a directory's entries (creations, renames) to disk. File
// systems that cannot sync a directory (EINVAL) are taken as done.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stale temporary files: a process killed while writing path leaves its
// temporary file behind (".x.pt.tmp-PID-RANDOM"). The next write of the same
// path removes those whose process is gone from this machine and that have not
// changed for StaleAfter (a writer on another machine sharing the directory
// keeps its file changing while it writes), and any of the same naming not
// changed for an hour, whatever their process (older versions named them
// ".x.pt.tmpRANDOM", without a PID).
var StaleAfter = time.Minute

// removeStale removes the stale temporary files of path dir/base (see
// StaleAfter). Failures are ignored: a file left behind is only clutter.
func removeStale(dir, base string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := "." + base + ".tmp"
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		age := time.Since(info.ModTime())
		stale := age > time.Hour
		if rest, ok := strings.CutPrefix(name, prefix+"-"); ok && !stale {
			pidText, _, _ := strings.Cut(rest, "-")
			if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 && pid != os.Getpid() && age > StaleAfter {
				stale = errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
			}
		}
		if stale {
			os.Remove(filepath.Join(dir, name))
		}
	}
}
