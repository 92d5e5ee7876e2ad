package grid

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"modelstitch/experiments/results"
	"modelstitch/experiments/shardfile"
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
	TestAcc float64 `json:"test_acc"`
	// TrainAcc is the running accuracy of the last training epoch on the
	// labels trained on (noisy ones included), when the checkpoint records it.
	TrainAcc  *float64 `json:"train_acc,omitempty"`
	Recipe    *Recipe  `json:"recipe,omitempty"`
	Snapshots []string `json:"snapshots,omitempty"`
	// Steps is the number of optimizer steps taken.
	Steps int `json:"steps,omitempty"`
	// Device is the device of the run that recorded the unit ("cpu", "cuda",
	// "cuda:N"; empty in rows written before it was recorded).
	Device string `json:"device,omitempty"`
	// EpochsBefore is how many of the recipe's epochs the checkpoint had
	// when the unit started: 0 when the unit trained it in full, all of them
	// when it adopted a finished checkpoint (trained by an earlier run that
	// did not record it), some when it resumed one. The record's times
	// cover only what the unit did. Nil in rows written before it was
	// recorded (see TrainCost).
	EpochsBefore *int `json:"epochs_before,omitempty"`
}

// Training costs of a train unit's record (TrainCost).
const (
	CostKnown   = "known"   // the unit trained the model in full: its times are the training's
	CostPartial = "partial" // resumed: the epochs before it are not in its times
	CostAdopted = "adopted" // the checkpoint was finished before: its times are not the training's
)

// adoptedCPUSeconds is the processor time under which a record of a model
// with epochs to train, written before EpochsBefore was recorded, is taken
// as an adoption: no epoch of any grid model trains in under a second of
// processor time (the committed paper-fmnist rows of adopted checkpoints
// took 0.003-0.04 s, the shortest training unit 25 s).
const adoptedCPUSeconds = 1.0

// TrainCost says whether a done train unit's record gives its model's
// training cost, and why not.
func TrainCost(m *Model, r Record) string {
	if r.Model == nil {
		return CostKnown
	}
	if b := r.Model.EpochsBefore; b != nil {
		switch {
		case *b == 0:
			return CostKnown
		case m.Kind == KindTrain && *b < m.Recipe.Epochs:
			return CostPartial
		}
		return CostAdopted
	}
	// Rows from before EpochsBefore: a model with something to train whose
	// record took under a second was adopted.
	work := m.Kind == KindProbe || (m.Kind == KindTrain && (m.Recipe.Epochs > 0 || m.Recipe.BNStats != ""))
	if work && r.CPUSeconds < adoptedCPUSeconds && r.Seconds < adoptedCPUSeconds {
		return CostAdopted
	}
	return CostKnown
}

// StitchResult is one stitching measurement. Accuracies are percentages; the
// penalty is top accuracy − stitched accuracy in percentage points.
type StitchResult struct {
	Bottom     string `json:"bottom"`
	Top        string `json:"top"`
	BottomPath string `json:"bottom_path"`
	TopPath    string `json:"top_path"`
	// BottomSHA256 and TopSHA256 are the SHA-256 of the checkpoints' bytes
	// the row was made from (rows from before they were recorded lack them).
	BottomSHA256 string       `json:"bottom_sha256,omitempty"`
	TopSHA256    string       `json:"top_sha256,omitempty"`
	Cut          string       `json:"cut"`
	CutIndex     int          `json:"cut_index"`
	Recipe       StitchRecipe `json:"recipe"`
	results.Scores
	FitSamples  int    `json:"fit_samples"`
	TestSamples int    `json:"test_samples"`
	Data        string `json:"data"`
	Device      string `json:"device"`
}

// Records are the finished units found in a directory's rows files.
type Records struct {
	byID map[string]Record
	// Duplicates counts rows dropped because their unit id came earlier
	// (kept: the first, see ReadRecords).
	Duplicates int
	// Conflicts are the unit ids with a dropped copy that differs from the
	// kept one, sorted.
	Conflicts []string
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
// per writer (a whole run: all.jsonl, or one shard: shard-I-of-N.jsonl), so
// writers never share a file. The files are experiments/shardfile's, which
// also merges them into one for a cluster run.
func RowsDir(dir string) string { return filepath.Join(dir, shardfile.RowsDir) }

// rowsFile is the rows file a run of the shard writes under dir.
func rowsFile(dir string, sh Shard) string {
	if sh.N <= 1 {
		return filepath.Join(RowsDir(dir), shardfile.UnshardedName)
	}
	return shardfile.Path(dir, sh.I, sh.N)
}

// ReadRecords reads every rows file under dir through shardfile.Collect
// with CheckRow, as MergeRows does, so that the rows the run, the plan and
// the report count are the rows a merge keeps. Of the rows of one unit the
// first wins: files in shardfile.ShardFiles' order (fewer shards first,
// then by shard), rows in file order. A line cut short by an interruption
// (the last line, without its newline) is skipped; a complete line that is
// not a record is an error naming its file and line.
func ReadRecords(dir string) (*Records, error) {
	files, err := shardfile.ShardFiles(dir)
	if err != nil {
		return nil, err
	}
	rows, st, err := shardfile.Collect(files, CheckRow)
	if err != nil {
		return nil, err
	}
	recs := &Records{byID: make(map[string]Record, len(rows)), Duplicates: st.Duplicates, Conflicts: st.ConflictIDs, Torn: st.Torn}
	for _, r := range rows {
		rec, err := DecodeRecord(r.Line)
		if err != nil { // CheckRow passed it; kept for safety
			return nil, err
		}
		recs.byID[rec.Unit] = rec
	}
	return recs, nil
}

// DecodeRecord reads one line of a rows file: a JSON object (no byte-order
// mark, nothing after it) with a non-empty unit id, a kind of train or
// stitch, and the result of that kind (model or stitch) and not the other.
func DecodeRecord(line []byte) (Record, error) {
	if _, err := shardfile.RowID(line); err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return Record{}, fmt.Errorf("row %.60q is not a record: %v", line, err)
	}
	switch {
	case rec.Kind != UnitTrain && rec.Kind != UnitStitch:
		return Record{}, fmt.Errorf("row of unit %q: kind %q is not %q or %q", rec.Unit, rec.Kind, UnitTrain, UnitStitch)
	case rec.Kind == UnitTrain && (rec.Model == nil || rec.Stitch != nil):
		return Record{}, fmt.Errorf("row of unit %q: a train row holds a model and no stitch", rec.Unit)
	case rec.Kind == UnitStitch && (rec.Stitch == nil || rec.Model != nil):
		return Record{}, fmt.Errorf("row of unit %q: a stitch row holds a stitch and no model", rec.Unit)
	}
	return rec, nil
}

// CheckRow is the test every line of a rows file must pass (DecodeRecord),
// as a shardfile.Check: ReadRecords and MergeRows both use it.
func CheckRow(line []byte) (string, error) {
	rec, err := DecodeRecord(line)
	return rec.Unit, err
}

// MergeRows merges the rows files under dir into dir/merged.jsonl
// (shardfile.Merge) with CheckRow: it keeps exactly the records ReadRecords
// counts, and refuses, naming the file and line, every line the report
// would refuse. Units whose copies differ are in the stats' ConflictIDs.
func MergeRows(dir string) (shardfile.MergeStats, error) {
	return shardfile.Merge(dir, CheckRow)
}

// lockWait is how long OpenWriter waits for another writer of the same rows
// file (a re-queued task whose killed predecessor is still exiting).
var lockWait = 10 * time.Second

// Writer appends records to one rows file, holding an exclusive lock on it
// so that two runs of the same shard cannot write at once.
type Writer struct {
	w *shardfile.Writer
}

// OpenWriter opens (creating) the rows file of shard sh under dir for
// appending. A line left incomplete by an interrupted write is cut off first,
// so the next record starts on a line of its own.
func OpenWriter(dir string, sh Shard) (*Writer, error) {
	w, err := shardfile.Open(rowsFile(dir, sh), lockWait)
	if err != nil {
		return nil, fmt.Errorf("%w; run one process per shard", err)
	}
	return &Writer{w: w}, nil
}

// Append writes one record as one line in one write and syncs it to disk.
// A record that CheckRow would refuse is an error, not written: once in the
// file it would stop every reader of the directory.
func (w *Writer) Append(rec Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record of unit %q: %w", rec.Unit, err)
	}
	if _, err := CheckRow(line); err != nil {
		return fmt.Errorf("record not written: %w", err)
	}
	return w.w.AppendLine(line)
}

// Close releases the file and its lock.
func (w *Writer) Close() error { return w.w.Close() }
