// Package results stores stitching results as JSON Lines (one object per
// bottom/top/cut, appended as each finishes so an interrupted run loses
// nothing), and prints them as tables and plots.
package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"modelstitch/experiments/invalid"
)

// Scores are one stitch's measurements, shared by result rows and the grid's
// records. Accuracies are percentages; the penalty is top accuracy − stitched
// accuracy in percentage points (negative: the bottom is better than the top's own).
type Scores struct {
	TopAcc      float64  `json:"top_acc"`
	BottomAcc   *float64 `json:"bottom_acc"`
	StitchedAcc float64  `json:"stitched_acc"`
	Penalty     float64  `json:"penalty"`
	// DirectAcc is the accuracy of the least-squares (direct matching) layer
	// before any training, when Init is "least-squares".
	DirectAcc *float64 `json:"direct_acc,omitempty"`
	// CKA is the linear CKA between the bottom's and the top's own activations
	// at the cut (null when not computed).
	CKA *float64 `json:"cka"`
	// CKAUnbiased is the debiased linear CKA (unbiased HSIC; Song et al. 2012,
	// Nguyen et al. 2021) on the same activations (null when not computed).
	CKAUnbiased *float64 `json:"cka_unbiased,omitempty"`
	// FitSteps is the number of optimizer steps the layer was fit for.
	FitSteps int `json:"fit_steps,omitempty"`
	// With a validated fit (ValSamples > 0): ValAcc is the kept layer's
	// accuracy on the held-out training images, StartValAcc the starting
	// layer's, BestStep the step it was kept after (0: the start), and Stop
	// "converged" (stopped at a plateau) or "cap" (ran to its cap on epochs).
	ValAcc      *float64 `json:"val_acc,omitempty"`
	StartValAcc *float64 `json:"start_val_acc,omitempty"`
	BestStep    *int     `json:"best_step,omitempty"`
	Stop        string   `json:"stop,omitempty"`
	// SelfPenalty is the penalty of the top stitched onto itself at the same
	// cut by the same recipe (the control), and ExcessPenalty Penalty minus
	// it (null without the control).
	SelfPenalty   *float64 `json:"self_penalty,omitempty"`
	ExcessPenalty *float64 `json:"excess_penalty,omitempty"`
	// Warnings say why the row's numbers may not mean what they seem (a top
	// near chance, a self-stitch gain, …); Warn* name them.
	Warnings []string `json:"warnings,omitempty"`
}

// Norm is an input normalisation, x' = (x − Mean[c]) / Std[c] for pixels in
// [0, 1], and where it came from ("checkpoint", "given", "data set", …).
type Norm struct {
	Mean   []float64 `json:"mean"`
	Std    []float64 `json:"std"`
	Source string    `json:"source"`
}

// Warnings a row can carry (Scores.Warnings).
const (
	// WarnTopNearChance: the top scores within 1.5× of chance here, so no
	// penalty can be large and +0 does not mean compatible.
	WarnTopNearChance = "top-near-chance"
	// WarnTopBelowRecorded: the top scores far below the test accuracy its
	// checkpoint records (other inputs, other normalisation, other data).
	WarnTopBelowRecorded = "top-below-recorded"
	// WarnSelfGain: the top stitched onto itself gains over 1 point: an
	// under-trained top, or inputs not normalised as in its training.
	WarnSelfGain = "self-gain"
	// WarnBottomNormGuessed and WarnTopNormGuessed: a half's input
	// normalisation is a guess (image folders have no known statistics and
	// the checkpoint records none).
	WarnBottomNormGuessed = "bottom-norm-guessed"
	WarnTopNormGuessed    = "top-norm-guessed"
)

// ScoreStep is the step accuracies and penalties are rounded to when they are
// written (Scores.Rounded): finer than any measured difference (one test image
// in N moves an accuracy by 100/N points, 1e-4 for a million images) and
// coarser than float noise, so that a penalty of 90 − 55.9 is written as
// 34.1, not 34.10000000000001.
const ScoreStep = 1e-6

// roundScore rounds x to a multiple of ScoreStep. It divides by the exact
// 1/ScoreStep, so the result is the float nearest to a number of six
// decimals, which JSON then writes with at most six.
func roundScore(x float64) float64 { return math.Round(x*(1/ScoreStep)) / (1 / ScoreStep) }

// Rounded returns s with its accuracies and penalty rounded to ScoreStep
// (with fresh pointers: s's are not changed). CKA is left as computed.
func (s Scores) Rounded() Scores {
	round := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		v := roundScore(*p)
		return &v
	}
	s.TopAcc, s.StitchedAcc, s.Penalty = roundScore(s.TopAcc), roundScore(s.StitchedAcc), roundScore(s.Penalty)
	s.BottomAcc, s.DirectAcc = round(s.BottomAcc), round(s.DirectAcc)
	s.ValAcc, s.StartValAcc = round(s.ValAcc), round(s.StartValAcc)
	s.SelfPenalty, s.ExcessPenalty = round(s.SelfPenalty), round(s.ExcessPenalty)
	return s
}

// Row is one stitching result. Accuracies are percentages (0–100); the
// penalty is in percentage points: top accuracy − stitched accuracy
// (negative: the bottom is better than the top's own).
type Row struct {
	Bottom string `json:"bottom"`
	Top    string `json:"top"`
	Cut    string `json:"cut"`
	// BottomCut is the bottom's cut when it is not Cut (networks of
	// different depths; "": Cut).
	BottomCut string `json:"bottom_cut,omitempty"`
	// CutIndex is the cut's position in the network (0 = stem).
	CutIndex int `json:"cut_index"`
	Scores
	Init      string  `json:"init"`
	Epochs    int     `json:"epochs"`
	Seed      int64   `json:"seed"`
	LR        float64 `json:"lr"`
	BatchSize int     `json:"batch_size"`
	// FitSamples is the number of training images the layer was fit on (0: all).
	FitSamples int `json:"fit_samples"`
	// FitAugment says the fitting images were cropped and flipped afresh
	// every epoch (the paper's setting).
	FitAugment bool `json:"fit_augment,omitempty"`
	// LSSamples is the number of training images the least-squares start was
	// solved on (0 when Init is not least-squares).
	LSSamples int `json:"ls_samples,omitempty"`
	// ValSamples, CheckEvery, Patience and LRCuts are the validated fit's
	// settings (stitch.Config; 0: no validation).
	ValSamples int   `json:"val_samples,omitempty"`
	CheckEvery int   `json:"check_every,omitempty"`
	Patience   int   `json:"patience,omitempty"`
	LRCuts     int   `json:"lr_cuts,omitempty"`
	KernelSize int64 `json:"kernel_size"`
	// TestSamples is the number of test images the accuracies were measured
	// on; CKASamples the number of test images CKA was computed on (0: none).
	TestSamples int    `json:"test_samples,omitempty"`
	CKASamples  int    `json:"cka_samples,omitempty"`
	FrozenBN    string `json:"frozen_bn"`
	Data        string `json:"data"`
	Device      string `json:"device"`
	// BottomNorm and TopNorm are the input normalisations each half was fed,
	// and where they came from (rows from before they were recorded lack them).
	BottomNorm *Norm  `json:"bottom_norm,omitempty"`
	TopNorm    *Norm  `json:"top_norm,omitempty"`
	BottomPath string `json:"bottom_path"`
	TopPath    string `json:"top_path"`
	// BottomSHA256 and TopSHA256 are the SHA-256 of the checkpoint files'
	// bytes (see Digest; empty for the random bottom): the key a re-run
	// matches on, while the paths are for people.
	BottomSHA256 string `json:"bottom_sha256,omitempty"`
	TopSHA256    string `json:"top_sha256,omitempty"`
	// Seconds is the wall time spent on this cut (fit + evaluation).
	Seconds float64 `json:"seconds"`
	Time    string  `json:"time"`
	// PeakRSSMiB is the process's peak resident memory (getrusage
	// maxrss) when the row was written, in MiB (0: not measured).
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
}

// MarshalJSON writes the row with its scores Rounded, wherever it goes (a
// results file, --json on stdout). Rows written before keep their digits
// when read.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row // without this method
	r.Scores = r.Scores.Rounded()
	return json.Marshal(plain(r))
}

// Key identifies what a row measured, so a re-run can skip it. The models
// are identified by their files' contents (BottomSHA256, TopSHA256) when the
// row has them, so that a checkpoint replaced at the same path is measured
// again and one file named by two paths (../x.pt, /abs/x.pt) is measured once;
// by their paths otherwise (the random bottom, rows from older versions).
func (r Row) Key() string {
	bottom, top := r.BottomPath, r.TopPath
	if r.BottomSHA256 != "" {
		bottom = "sha256:" + r.BottomSHA256
	}
	if r.TopSHA256 != "" {
		top = "sha256:" + r.TopSHA256
	}
	k := fmt.Sprintf("%s|%s|%s|%s|%d|%d|%g|%d|%d|%d|%d|%s|%s", bottom, top, r.Cut, r.Init,
		r.Epochs, r.Seed, r.LR, r.BatchSize, r.FitSamples, r.LSSamples, r.KernelSize, r.FrozenBN, r.Data)
	if r.TestSamples != 0 || r.CKASamples != 0 {
		// Settings recorded since rows carried them; rows without them keep
		// their old keys.
		k += fmt.Sprintf("|test=%d|cka=%d", r.TestSamples, r.CKASamples)
	}
	if r.FitAugment {
		// Added with the setting: rows without it keep their old keys.
		k += "|fit-augment"
	}
	if r.BottomCut != "" && r.BottomCut != r.Cut {
		k += "|bottom-cut=" + r.BottomCut
	}
	if r.ValSamples != 0 {
		// The validated fit: unvalidated rows keep their old keys.
		k += fmt.Sprintf("|val=%d/%d/%d/%d", r.ValSamples, r.CheckEvery, r.Patience, r.LRCuts)
	}
	return k
}

// Read loads every row of a results file; a missing file has no rows. A torn
// last line (an interrupted write) is ignored; a line that is not a results
// row is an error naming the file and the line.
func Read(path string) ([]Row, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	rows, _, err := parseRows(path, data)
	return rows, err
}

// rowPrefix is how every row this package writes starts (Row's first field).
const rowPrefix = `{"bottom":`

// parseRows parses a results file's contents. Every complete line must be a
// row (blank lines are skipped). The bytes after the last newline are a row
// whose write was cut short (torn: returned as tornAt, the offset where they
// start, or -1 when there are none or they form a whole row, which is then
// returned with the others); anything else there is an error.
func parseRows(path string, data []byte) (rows []Row, tornAt int, err error) {
	tornAt = -1
	line := 0
	for start := 0; start < len(data); {
		line++
		end := bytes.IndexByte(data[start:], '\n')
		complete := end >= 0
		if complete {
			end += start
		} else {
			end = len(data)
		}
		text := bytes.TrimSpace(data[start:end])
		if len(text) > 0 {
			r, err := parseRow(text)
			switch {
			case err == nil:
				rows = append(rows, r)
			case !complete && (bytes.HasPrefix(text, []byte(rowPrefix)) || bytes.HasPrefix([]byte(rowPrefix), text)):
				tornAt = start
			default:
				return nil, -1, fmt.Errorf("results: %w", invalid.Errorf("out", "%s: line %d is not a results row (%v): "+
					"refusing to use a file that is not a modelstitch results file; pass another", path, line, err))
			}
		}
		start = end + 1
	}
	return rows, tornAt, nil
}

// parseRow decodes one line, requiring the fields every row has.
func parseRow(text []byte) (Row, error) {
	var probe struct {
		Cut    *string  `json:"cut"`
		Top    *string  `json:"top"`
		TopAcc *float64 `json:"top_acc"`
	}
	if err := json.Unmarshal(text, &probe); err != nil {
		return Row{}, err
	}
	if probe.Cut == nil || probe.Top == nil || probe.TopAcc == nil {
		return Row{}, errors.New("a JSON object without cut, top and top_acc")
	}
	var r Row
	if err := json.Unmarshal(text, &r); err != nil {
		return Row{}, err
	}
	return r, nil
}

// Store appends rows to a results file (JSON Lines) and tells which were
// done. Every check and append happens under an exclusive lock on the file
// (flock) after re-reading it, so that runs sharing a file never write one
// measurement twice, and a torn last line is repaired before anything is
// appended after it.
type Store struct {
	path  string
	done  map[string]Row
	notes []string
}

// Open reads an existing results file (if any) so that Done can tell which
// results exist, repairing a torn last line (see Notes). It refuses a file
// that is not a results file, and checks that the file can be written (see
// CheckWritable), so that a run fails before its work rather than after. An
// empty path gives a store that keeps nothing on disk.
func Open(path string) (*Store, error) {
	s := &Store{path: path, done: map[string]Row{}}
	if path == "" {
		return s, nil
	}
	if err := CheckWritable(path); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err := s.locked(func(f *os.File) error { _, err := s.sync(f); return err }); err != nil {
		return nil, err
	}
	return s, nil
}

// Notes says what Open or Append repaired in the file, one line each.
func (s *Store) Notes() []string { return s.notes }

// Done returns the stored row with the same key as r, if there is one. It
// re-reads the file, so rows another run appended meanwhile count.
func (s *Store) Done(r Row) (Row, bool) {
	if s.path != "" {
		if _, err := os.Stat(s.path); err == nil {
			// An unreadable file keeps what was read before; Append reports the error.
			_ = s.locked(func(f *os.File) error { _, err := s.sync(f); return err })
		}
	}
	d, ok := s.done[r.Key()]
	return d, ok
}

// Append writes r as one line and syncs it to disk, unless a row with the
// same key is there already (another run sharing the file wrote it). A failed
// write (a full disk) leaves the file as it was.
func (s *Store) Append(r Row) error {
	if s.path == "" {
		s.done[r.Key()] = r
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.locked(func(f *os.File) error {
		size, err := s.sync(f)
		if err != nil {
			return err
		}
		if _, ok := s.done[r.Key()]; ok {
			return nil
		}
		if _, err := f.WriteAt(append(b, '\n'), size); err != nil {
			if terr := f.Truncate(size); terr != nil {
				return fmt.Errorf("results: %s: writing a row: %w (and removing the partial row: %v)", s.path, err, terr)
			}
			return fmt.Errorf("results: %s: writing a row: %w (the file is left as it was)", s.path, err)
		}
		if err := f.Sync(); err != nil {
			if terr := f.Truncate(size); terr == nil {
				return fmt.Errorf("results: %s: syncing a row: %w (the row was removed)", s.path, err)
			}
			return fmt.Errorf("results: %s: syncing a row: %w", s.path, err)
		}
		s.done[r.Key()] = r
		return nil
	})
}

// Update writes rows in place of the stored rows with the same keys, keeping
// the file's order, and appends those not stored yet. The new contents go to
// a temporary file beside the results file, synced, which then replaces it
// (rename), so an interrupted update leaves the old file whole. Runs sharing
// the file wait on its lock and, when it was replaced meanwhile, lock the new
// file instead (locked), so a row appended by another run is never lost.
func (s *Store) Update(rows []Row) error {
	if s.path == "" || len(rows) == 0 {
		for _, r := range rows {
			s.done[r.Key()] = r
		}
		return nil
	}
	byKey := make(map[string]Row, len(rows))
	var order []string
	for _, r := range rows {
		k := r.Key()
		if _, dup := byKey[k]; !dup {
			order = append(order, k)
		}
		byKey[k] = r
	}
	return s.locked(func(f *os.File) error {
		size, err := s.sync(f)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.NewSectionReader(f, 0, size))
		if err != nil {
			return fmt.Errorf("results: reading %s: %w", s.path, err)
		}
		var out bytes.Buffer
		written := map[string]bool{}
		for _, line := range bytes.SplitAfter(data, []byte{'\n'}) {
			text := bytes.TrimSpace(line)
			if len(text) == 0 {
				continue
			}
			old, err := parseRow(text) // sync has checked every line
			if err != nil {
				return fmt.Errorf("results: %s: %w", s.path, err)
			}
			k := old.Key()
			if r, ok := byKey[k]; ok && !written[k] {
				b, err := json.Marshal(r)
				if err != nil {
					return err
				}
				out.Write(append(b, '\n'))
				written[k] = true
				continue
			}
			out.Write(text)
			out.WriteByte('\n')
		}
		for _, k := range order {
			if !written[k] {
				b, err := json.Marshal(byKey[k])
				if err != nil {
					return err
				}
				out.Write(append(b, '\n'))
			}
		}
		if err := replaceFile(s.path, f, out.Bytes()); err != nil {
			return fmt.Errorf("results: %s: updating rows: %w (the file is left as it was)", s.path, err)
		}
		for k, r := range byKey {
			s.done[k] = r
		}
		return nil
	})
}

// replaceFile writes data to a synced temporary file in path's directory
// (path's symbolic links followed) with old's permissions, and renames it over
// path.
func replaceFile(path string, old *os.File, data []byte) error {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	st, err := old.Stat()
	if err != nil {
		return err
	}
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".update-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(st.Mode().Perm())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself reaches the disk
		d.Close()
	}
	return nil
}

// locked runs fn with the results file open for reading and writing (created
// if missing) and exclusively locked. A file replaced (Update) while this
// waited for the lock is let go and the new one locked instead.
func (s *Store) locked(fn func(f *os.File) error) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	for {
		f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("results: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return fmt.Errorf("results: locking %s: %w", s.path, err)
		}
		held, herr := f.Stat()
		now, nerr := os.Stat(s.path)
		if herr == nil && nerr == nil && !os.SameFile(held, now) {
			f.Close() // closing releases the lock
			continue
		}
		err = fn(f)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		return err
	}
}

// sync re-reads the locked file into s.done, repairs a torn last line (cut
// off, or ended with the newline it lacks when it is a whole row) and returns
// the file's size after the repair.
func (s *Store) sync(f *os.File) (int64, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return 0, fmt.Errorf("results: reading %s: %w", s.path, err)
	}
	rows, tornAt, err := parseRows(s.path, data)
	if err != nil {
		return 0, err
	}
	size := int64(len(data))
	switch {
	case tornAt >= 0:
		if err := f.Truncate(int64(tornAt)); err != nil {
			return 0, fmt.Errorf("results: %s: removing a torn last line: %w", s.path, err)
		}
		s.notes = append(s.notes, fmt.Sprintf("%s: removed a torn last line (%d bytes, an interrupted write)", s.path, size-int64(tornAt)))
		size = int64(tornAt)
	case size > 0 && data[size-1] != '\n':
		if _, err := f.WriteAt([]byte{'\n'}, size); err != nil {
			return 0, fmt.Errorf("results: %s: ending the last line: %w", s.path, err)
		}
		s.notes = append(s.notes, fmt.Sprintf("%s: the last row lacked its newline; added it", s.path))
		size++
	}
	for _, r := range rows {
		s.done[r.Key()] = r
	}
	return size, nil
}

// CheckWritable checks, before any work, that a file can be written at path
// later: the file, if it exists, is not a directory and opens for writing;
// otherwise its nearest existing ancestor directory takes new files (the
// directories in between are made when the file is written). It leaves
// nothing behind.
func CheckWritable(path string) error {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("%s: cannot write it: %w", path, err)
		}
		return f.Close()
	}
	dir := filepath.Dir(path)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s: %s is not a directory", path, dir)
			}
			break
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, os.ErrNotExist) || parent == dir {
			return fmt.Errorf("%s: %w", path, err)
		}
		dir = parent
	}
	f, err := os.CreateTemp(dir, ".modelstitch-write-check-*")
	if err != nil {
		return fmt.Errorf("%s: cannot write in %s: %w", path, dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	control, validated, warned := false, false, false
	for _, r := range rows {
		control = control || r.SelfPenalty != nil
		validated = validated || r.ValAcc != nil
		warned = warned || len(r.Warnings) > 0
	}
	head := "cut\ttop acc %\tbottom acc %\tstitched acc %\tpenalty pp\t"
	if control {
		head += "self pp\texcess pp\t"
	}
	head += "direct acc %\tCKA\t"
	if validated {
		head += "steps\tbest\tstop\t"
	}
	if warned {
		head += "warnings\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%.2f\t%s\t%.2f\t%+.2f\t", r.Cut, r.TopAcc, opt(r.BottomAcc), r.StitchedAcc, r.Penalty)
		if control {
			line += fmt.Sprintf("%s\t%s\t", optSigned(r.SelfPenalty), optSigned(r.ExcessPenalty))
		}
		line += fmt.Sprintf("%s\t%s\t", opt(r.DirectAcc), optCKA(r.CKA))
		if validated {
			best := "-"
			if r.BestStep != nil {
				best = fmt.Sprint(*r.BestStep)
			}
			line += fmt.Sprintf("%d\t%s\t%s\t", r.FitSteps, best, orDash(r.Stop))
		}
		if warned {
			line += orDash(strings.Join(r.Warnings, ",")) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func optSigned(v *float64) string {
	if v == nil || math.IsNaN(*v) {
		return "-"
	}
	return fmt.Sprintf("%+.2f", *v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func opt(v *float64) string {
	if v == nil || math.IsNaN(*v) {
		return "-"
	}
	return fmt.Sprintf("%.2f", *v)
}

func optCKA(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *v)
}
