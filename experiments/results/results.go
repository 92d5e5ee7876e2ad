// Package results stores stitching results as JSON Lines (one object per
// bottom/top/cut, appended as each finishes so an interrupted run loses
// nothing), and prints them as tables and plots.
package results

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
)

// Row is one stitching result. Accuracies are percentages (0–100); the
// penalty is in percentage points: top accuracy − stitched accuracy
// (negative: the bottom is better than the top's own).
type Row struct {
	Bottom string `json:"bottom"`
	Top    string `json:"top"`
	Cut    string `json:"cut"`
	// CutIndex is the cut's position in the network (0 = stem).
	CutIndex    int      `json:"cut_index"`
	TopAcc      float64  `json:"top_acc"`
	BottomAcc   *float64 `json:"bottom_acc"`
	StitchedAcc float64  `json:"stitched_acc"`
	Penalty     float64  `json:"penalty"`
	// DirectAcc is the accuracy of the least-squares (direct matching) layer
	// before any training, when Init is "least-squares".
	DirectAcc *float64 `json:"direct_acc,omitempty"`
	// CKA is the linear CKA between the bottom's and the top's own activations
	// at the cut (null when not computed).
	CKA       *float64 `json:"cka"`
	Init      string   `json:"init"`
	Epochs    int      `json:"epochs"`
	Seed      int64    `json:"seed"`
	LR        float64  `json:"lr"`
	BatchSize int      `json:"batch_size"`
	// FitSamples is the number of training images the layer was fit on (0: all).
	FitSamples int `json:"fit_samples"`
	// LSSamples is the number of training images the least-squares start was
	// solved on (0 when Init is not least-squares).
	LSSamples  int    `json:"ls_samples,omitempty"`
	KernelSize int64  `json:"kernel_size"`
	FrozenBN   string `json:"frozen_bn"`
	Data       string `json:"data"`
	Device     string `json:"device"`
	BottomPath string `json:"bottom_path"`
	TopPath    string `json:"top_path"`
	// Seconds is the wall time spent on this cut (fit + evaluation).
	Seconds float64 `json:"seconds"`
	Time    string  `json:"time"`
}

// Key identifies what a row measured, so a re-run can skip it.
func (r Row) Key() string {
	return fmt.Sprintf("%s|%s|%s|%s|%d|%d|%g|%d|%d|%d|%d|%s|%s", r.BottomPath, r.TopPath, r.Cut, r.Init,
		r.Epochs, r.Seed, r.LR, r.BatchSize, r.FitSamples, r.LSSamples, r.KernelSize, r.FrozenBN, r.Data)
}

// Read loads every row of a JSON Lines file; a missing file has no rows. A
// torn last line (from an interrupted write) is ignored.
func Read(path string) ([]Row, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []Row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	line := 0
	var pending error
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if pending != nil {
			return nil, pending
		}
		var r Row
		if err := json.Unmarshal([]byte(text), &r); err != nil {
			pending = fmt.Errorf("results: %s line %d: %w", path, line, err)
			continue
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

// Store appends rows to a JSON Lines file and remembers which were done.
type Store struct {
	path string
	done map[string]Row
}

// Open reads an existing results file (if any) so that Done can tell which
// results exist. An empty path gives a store that keeps nothing on disk.
func Open(path string) (*Store, error) {
	s := &Store{path: path, done: map[string]Row{}}
	if path == "" {
		return s, nil
	}
	rows, err := Read(path)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		s.done[r.Key()] = r
	}
	return s, nil
}

// Done returns the stored row with the same key as r, if there is one.
func (s *Store) Done(r Row) (Row, bool) {
	d, ok := s.done[r.Key()]
	return d, ok
}

// Append writes r as one line and syncs it to disk.
func (s *Store) Append(r Row) error {
	s.done[r.Key()] = r
	if s.path == "" {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cut\ttop acc %\tbottom acc %\tstitched acc %\tpenalty pp\tdirect acc %\tCKA\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%.2f\t%+.2f\t%s\t%s\t\n", r.Cut, r.TopAcc, opt(r.BottomAcc), r.StitchedAcc, r.Penalty, opt(r.DirectAcc), optCKA(r.CKA))
	}
	return tw.Flush()
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
