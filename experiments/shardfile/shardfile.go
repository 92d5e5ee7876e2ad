// Package shardfile records results from many shards of a grid on a shared
// file system so that they can be merged exactly once.
//
// Each shard appends only to its own file, DIR/rows/shard-I-of-N.jsonl (an
// unsharded run: DIR/rows/all.jsonl), one JSON object per line with the unit
// id under "unit" (the grid's records), and flushes each row to disk before it goes on. A
// writer that is killed may leave a torn last line; the next writer of that
// shard cuts it off before it appends, and Merge drops it.
//
// Merge reads every rows file through Collect, the one reader that decides
// which rows count: every complete line must pass the caller's Check (the
// grid passes the test its report applies, so the two cannot disagree) or
// the merge is refused, naming the file and line; of the rows of one unit id
// the first wins (files in order of N then I, all.jsonl as 0 of 1, other
// names last; rows in file order), and later copies whose bytes differ are
// named as conflicts. Merge sorts the rows by id and replaces
// DIR/merged.jsonl atomically. A re-run or re-queued shard, or a grid re-run
// with another shard count, therefore adds no duplicates to the merged file.
package shardfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"modelstitch/internal/atomicfile"
)

const (
	// RowsDir is the folder under a grid's output directory that holds the
	// shard files.
	RowsDir = "rows"
	// MergedName is the merged file's name in a grid's output directory.
	MergedName = "merged.jsonl"
	// IDField is the key of a row's unit id (as in experiments/grid's records).
	IDField = "unit"
	// UnshardedName is the rows file of a run that is not sharded.
	UnshardedName = "all.jsonl"
)

// Path is the file that shard (0-based) of count appends to under dir.
func Path(dir string, shard, count int) string {
	return filepath.Join(dir, RowsDir, fmt.Sprintf("shard-%d-of-%d.jsonl", shard, count))
}

// shardName matches a shard file's name.
var shardName = regexp.MustCompile(`^shard-(0|[1-9][0-9]*)-of-([1-9][0-9]*)\.jsonl$`)

// parsePath reads the shard and count back from a shard file's name.
func parsePath(name string) (shard, count int, ok bool) {
	m := shardName.FindStringSubmatch(filepath.Base(name))
	if m == nil {
		return 0, 0, false
	}
	shard, err1 := strconv.Atoi(m[1])
	count, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil || shard >= count {
		return 0, 0, false
	}
	return shard, count, true
}

// Writer appends rows to one shard file. It holds an exclusive lock on the
// file while open, so a second writer of the same shard (a duplicate task)
// waits rather than interleaving. Its methods may be called from several
// goroutines.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	path string
	cut  int64
}

// Open opens the shard file at path for appending, creating it and its
// folder if needed. It waits up to lockWait for another writer of the same
// file to finish, then cuts off a torn last line that a killed writer left.
func Open(path string, lockWait time.Duration) (*Writer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("shard file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("shard file %s: %w", path, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOLCK) {
			// A shared file system without locks (Lustre mounted noflock,
			// NFS without lockd): the scheduler's one task per shard is
			// then the only guard against a second writer.
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("shard file %s: another writer still holds it after %v (is a duplicate of this shard running?)", path, lockWait)
			}
			return nil, fmt.Errorf("shard file %s: lock: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := &Writer{f: f, path: path}
	if err := w.cutTornTail(); err != nil {
		f.Close()
		return nil, fmt.Errorf("shard file %s: %w", path, err)
	}
	// Make the new file's name durable too, not only its rows.
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("shard file %s: %w", path, err)
	}
	return w, nil
}

// cutTornTail truncates the file after its last newline.
func (w *Writer) cutTornTail() error {
	st, err := w.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	end := size
	buf := make([]byte, 4096)
	for end > 0 {
		n := int64(len(buf))
		if end < n {
			n = end
		}
		if _, err := w.f.ReadAt(buf[:n], end-n); err != nil && err != io.EOF {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return nil
	}
	if err := w.f.Truncate(end); err != nil {
		return err
	}
	w.cut = size - end
	return w.f.Sync()
}

// CutBytes is how many bytes of a torn last line Open cut off.
func (w *Writer) CutBytes() int64 { return w.cut }

// Path is the shard file's path.
func (w *Writer) Path() string { return w.path }

// Append writes row, which must marshal to a JSON object with a non-empty
// string "unit", as one line, and flushes it to disk.
func (w *Writer) Append(row any) error {
	line, err := json.Marshal(row)
	if err != nil {
		return fmt.Errorf("shard file %s: row: %w", w.path, err)
	}
	return w.AppendLine(line)
}

// AppendLine writes line, one JSON object with a non-empty string "unit" and
// no newline, followed by a newline in a single write, and flushes it to disk.
func (w *Writer) AppendLine(line []byte) error {
	if bytes.ContainsAny(line, "\n\r") {
		return fmt.Errorf("shard file %s: a row must be one line: %.60q", w.path, line)
	}
	if _, err := rowID(line); err != nil {
		return fmt.Errorf("shard file %s: %w", w.path, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("shard file %s: append after close", w.path)
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	if _, err := w.f.Write(buf); err != nil {
		return fmt.Errorf("shard file %s: %w", w.path, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("shard file %s: %w", w.path, err)
	}
	return nil
}

// Close releases the file and its lock.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// bom is the UTF-8 byte-order mark, which JSON does not allow.
var bom = []byte("\xef\xbb\xbf")

// RowID returns the unit id of one row: the line must be one JSON object
// with a non-empty string under IDField. It is the least every row passes
// (Check nil means RowID).
func RowID(line []byte) (string, error) { return rowID(line) }

// rowID returns the id of one row.
func rowID(line []byte) (string, error) {
	if bytes.HasPrefix(line, bom) {
		return "", fmt.Errorf("row %.60q starts with a UTF-8 byte-order mark, which JSON does not allow", line)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return "", fmt.Errorf("row %.60q is not a JSON object: %v", line, err)
	}
	raw, ok := obj[IDField]
	if !ok {
		return "", fmt.Errorf("row %.60q has no %q", line, IDField)
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil || id == "" {
		return "", fmt.Errorf("row %.60q: %q must be a non-empty string", line, IDField)
	}
	return id, nil
}

// Row is one complete row of a shard file.
type Row struct {
	ID   string // the unit id
	Line []byte // the row as written, without its newline
}

// Read returns the complete rows of one shard file in file order, the number
// of torn last lines (0 or 1: a last line without its newline) and the number
// of corrupt lines (ended but not a JSON object with an id), which are
// skipped. A missing file has no rows.
func Read(path string) (rows []Row, torn, corrupt int, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("shard file %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				torn++
			}
			return rows, torn, corrupt, nil
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("shard file %s: %w", path, err)
		}
		line = line[:len(line)-1]
		id, err := rowID(line)
		if err != nil {
			corrupt++
			continue
		}
		rows = append(rows, Row{ID: id, Line: line})
	}
}

// Done returns the ids of the units that have a complete row in the shard
// file at path: what a re-started shard may skip.
func Done(path string) (map[string]bool, error) {
	rows, _, _, err := Read(path)
	if err != nil {
		return nil, err
	}
	done := make(map[string]bool, len(rows))
	for _, r := range rows {
		done[r.ID] = true
	}
	return done, nil
}

// MergeStats says what Merge read and kept.
type MergeStats struct {
	Files      int // rows files read
	Rows       int // complete rows read
	Unique     int // rows written: one per unit id
	Duplicates int // complete rows dropped because their id came earlier
	Conflicts  int // of those, rows whose content differed from the kept one
	Torn       int // torn last lines dropped
	// ConflictIDs are the unit ids with copies that differ from the kept
	// one, sorted, each once.
	ConflictIDs []string
}

// Check tests one complete line of a rows file and returns its unit id, or
// says why the line is not a row. Readers that must agree on which rows
// count pass the same Check to Collect.
type Check func(line []byte) (id string, err error)

// LineError is a complete line of a rows file that the Check refused.
type LineError struct {
	Path string // the rows file
	Line int    // 1-based
	Err  error  // the Check's reason
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %v (move the line out of the file, or the file out of %s, to go on without it)", e.Path, e.Line, e.Err, RowsDir)
}

// Unwrap returns the Check's reason.
func (e *LineError) Unwrap() error { return e.Err }

// Collect reads the rows files in the given order and keeps the first row
// of each unit id (files in the given order, rows in file order). A torn
// last line (no newline: an interrupted write) is counted and skipped; any
// other line that check refuses (nil: RowID) is an error, a *LineError
// naming the file and the line, so that a row that a reader would refuse is
// never counted. The kept rows are returned sorted by id.
func Collect(files []string, check Check) ([]Row, MergeStats, error) {
	if check == nil {
		check = RowID
	}
	st := MergeStats{Files: len(files)}
	kept := map[string][]byte{}
	conflicts := map[string]bool{}
	for _, path := range files {
		if err := scan(path, check, &st, func(id string, line []byte) {
			prev, ok := kept[id]
			if !ok {
				kept[id] = line
				return
			}
			st.Duplicates++
			if !bytes.Equal(prev, line) {
				st.Conflicts++
				conflicts[id] = true
			}
		}); err != nil {
			return nil, st, err
		}
	}
	rows := make([]Row, 0, len(kept))
	for id, line := range kept {
		rows = append(rows, Row{ID: id, Line: line})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	for id := range conflicts {
		st.ConflictIDs = append(st.ConflictIDs, id)
	}
	sort.Strings(st.ConflictIDs)
	st.Unique = len(rows)
	return rows, st, nil
}

// scan reads one rows file, counting its rows and torn line into st and
// handing each row that check accepts to keep; a missing file has no rows.
func scan(path string, check Check, st *MergeStats, keep func(id string, line []byte)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shard file %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				st.Torn++
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("shard file %s: %w", path, err)
		}
		line = line[:len(line)-1]
		id, err := check(line)
		if err != nil {
			return &LineError{Path: path, Line: n, Err: err}
		}
		st.Rows++
		keep(id, line)
	}
}

// ShardFiles lists the rows files (*.jsonl) under dir/rows in merge order:
// by shard count, then by shard index; all.jsonl counts as shard 0 of 1;
// files with other names come last, by name.
func ShardFiles(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, RowsDir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	type entry struct {
		path         string
		shard, count int
	}
	var es []entry
	for _, m := range matches {
		if s, c, ok := parsePath(m); ok {
			es = append(es, entry{m, s, c})
		} else if filepath.Base(m) == UnshardedName {
			es = append(es, entry{m, 0, 1})
		} else {
			es = append(es, entry{m, 0, math.MaxInt})
		}
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].count != es[j].count {
			return es[i].count < es[j].count
		}
		if es[i].shard != es[j].shard {
			return es[i].shard < es[j].shard
		}
		return es[i].path < es[j].path
	})
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.path
	}
	return out, nil
}

// Merge merges the shard files under dir into dir/merged.jsonl (see
// MergeFiles); check is the test every row must pass (nil: RowID).
func Merge(dir string, check Check) (MergeStats, error) {
	files, err := ShardFiles(dir)
	if err != nil {
		return MergeStats{}, err
	}
	if len(files) == 0 {
		return MergeStats{}, fmt.Errorf("merge %s: no shard files in %s", dir, filepath.Join(dir, RowsDir))
	}
	return MergeFiles(files, filepath.Join(dir, MergedName), check)
}

// MergeFiles merges the given shard files, in the given order, into dst:
// the rows Collect keeps (the first of each id; a line check refuses stops
// the merge before dst is touched), sorted by id, replacing dst atomically.
func MergeFiles(files []string, dst string, check Check) (MergeStats, error) {
	rows, st, err := Collect(files, check)
	if err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	var buf bytes.Buffer
	for _, r := range rows {
		buf.Write(r.Line)
		buf.WriteByte('\n')
	}
	if err := atomicfile.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return st, fmt.Errorf("merge: %w", err)
	}
	return st, nil
}
