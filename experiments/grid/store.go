package grid

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// Record is one finished unit, one line of a rows file.
type Record struct {
	Unit string `json:"unit"`
	Kind string `json:"kind"`
	// Seconds is the unit's wall time; Threads the libtorch threads it had.
	Seconds float64 `json:"seconds"`
	// CPUSeconds is the processor time (user + system) the unit's process
	// spent on it: on a shared machine it predicts an idle machine's cost
	// better than the wall time.
	CPUSeconds float64       `json:"cpu_seconds,omitempty"`
	Threads    int           `json:"threads"`
	Time       string        `json:"time"`
	Model      *ModelResult  `json:"model,omitempty"`
	Stitch     *StitchResult `json:"stitch,omitempty"`
}

// ModelResult is what a train unit made.
type ModelResult struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// TestAcc is in percent (a linear probe's for a SimCLR backbone).
	TestAcc   float64  `json:"test_acc"`
	Recipe    *Recipe  `json:"recipe,omitempty"`
	Snapshots []string `json:"snapshots,omitempty"`
	// Steps is the number of optimizer steps taken.
	Steps int `json:"steps,omitempty"`
}

// StitchResult is one stitching measurement. Accuracies are percentages; the
// penalty is top accuracy − stitched accuracy in percentage points.
type StitchResult struct {
	Bottom      string       `json:"bottom"`
	Top         string       `json:"top"`
	BottomPath  string       `json:"bottom_path"`
	TopPath     string       `json:"top_path"`
	Cut         string       `json:"cut"`
	CutIndex    int          `json:"cut_index"`
	Recipe      StitchRecipe `json:"recipe"`
	TopAcc      float64      `json:"top_acc"`
	BottomAcc   *float64     `json:"bottom_acc"`
	StitchedAcc float64      `json:"stitched_acc"`
	Penalty     float64      `json:"penalty"`
	DirectAcc   *float64     `json:"direct_acc,omitempty"`
	CKA         *float64     `json:"cka"`
	FitSamples  int          `json:"fit_samples"`
	TestSamples int          `json:"test_samples"`
	Data        string       `json:"data"`
	Device      string       `json:"device"`
}

// Records are the finished units found in a directory's rows files.
type Records struct {
	byID map[string]Record
	// Duplicates counts unit ids found more than once (kept: the first).
	Duplicates int
	// Torn counts incomplete last lines skipped (an interrupted write).
	Torn int
}

// Get returns a unit's record.
func (r *Records) Get(id string) (Record, bool) {
	rec, ok := r.byID[id]
	return rec, ok
}

// Len is the number of records.
func (r *Records) Len() int { return len(r.byID) }

// All returns every record, sorted by unit id.
func (r *Records) All() []Record {
	out := make([]Record, 0, len(r.byID))
	for _, rec := range r.byID {
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Unit < out[j].Unit })
	return out
}

func (r *Records) add(rec Record) {
	if _, ok := r.byID[rec.Unit]; ok {
		r.Duplicates++
		return
	}
	r.byID[rec.Unit] = rec
}

// RowsDir is where the rows files of a run directory are: one JSON Lines file
// per writer (a whole run, or one shard), so writers never share a file.
func RowsDir(dir string) string { return filepath.Join(dir, "rows") }

// ReadRecords reads every rows file under dir. A line cut short by an
// interruption (the last line, without its newline) is skipped.
func ReadRecords(dir string) (*Records, error) {
	recs := &Records{byID: map[string]Record{}}
	files, err := filepath.Glob(filepath.Join(RowsDir(dir), "*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		if err := readRows(f, recs); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

func readRows(path string, recs *Records) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	complete := b
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		complete = b[:i+1]
		if len(bytes.TrimSpace(b[i+1:])) > 0 {
			recs.Torn++
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(complete))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(text, &rec); err != nil {
			return fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if rec.Unit == "" {
			return fmt.Errorf("%s line %d: no unit id", path, line)
		}
		recs.add(rec)
	}
	return sc.Err()
}

// Writer appends records to one rows file, holding an exclusive lock on it
// so that two runs of the same shard cannot write at once.
type Writer struct {
	f *os.File
}

// OpenWriter opens (creating) dir/rows/NAME.jsonl for appending. A line left
// incomplete by an interrupted write is cut off first, so the next record
// starts on a line of its own.
func OpenWriter(dir, name string) (*Writer, error) {
	if err := os.MkdirAll(RowsDir(dir), 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(RowsDir(dir), name+".jsonl")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: another run is writing it (%w); run one process per shard", path, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if keep := int64(bytes.LastIndexByte(b, '\n') + 1); keep < int64(len(b)) {
		if err := f.Truncate(keep); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: cutting off an incomplete last line: %w", path, err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	return &Writer{f: f}, nil
}

// Append writes one record as one line in one write and syncs it to disk.
func (w *Writer) Append(rec Record) error {
	if rec.Unit == "" {
		return errors.New("record without a unit id")
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return w.f.Sync()
}

// Close releases the file and its lock.
func (w *Writer) Close() error { return w.f.Close() }
