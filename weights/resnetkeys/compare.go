package resnetkeys

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"modelstitch/weights"
)

// ShapeMismatch is a key present in both the model and the checkpoint with
// different shapes.
type ShapeMismatch struct {
	Key        string
	Want, Have []int64
}

// Mismatch lists how a checkpoint's state dict differs from a model's:
// keys the model needs but the checkpoint lacks, keys the checkpoint has but
// the model does not, and keys whose shapes differ. Each list is sorted.
type Mismatch struct {
	Missing    []string
	Unexpected []string
	WrongShape []ShapeMismatch
}

// CompareKeys compares the shapes a model wants (name → shape) with a state
// dict. It returns nil when every key matches. Note that a nil *Mismatch
// stored in an error variable is not a nil error: use m.Err().
func CompareKeys(want map[string][]int64, have *weights.StateDict) *Mismatch {
	m := &Mismatch{}
	for k, ws := range want {
		t := have.Get(k)
		if t == nil {
			m.Missing = append(m.Missing, k)
			continue
		}
		if !slices.Equal(ws, t.Shape) {
			m.WrongShape = append(m.WrongShape, ShapeMismatch{Key: k, Want: ws, Have: t.Shape})
		}
	}
	if have != nil {
		for _, k := range have.Keys {
			if _, ok := want[k]; !ok {
				m.Unexpected = append(m.Unexpected, k)
			}
		}
	}
	if len(m.Missing)+len(m.Unexpected)+len(m.WrongShape) == 0 {
		return nil
	}
	sort.Strings(m.Missing)
	sort.Strings(m.Unexpected)
	sort.Slice(m.WrongShape, func(i, j int) bool { return m.WrongShape[i].Key < m.WrongShape[j].Key })
	return m
}

// Err returns m as an error, or nil when m is nil.
func (m *Mismatch) Err() error {
	if m == nil {
		return nil
	}
	return m
}

// Error shows the counts and the first few keys of each kind.
func (m *Mismatch) Error() string {
	if m == nil {
		return "weights: state dict matches"
	}
	var parts []string
	if n := len(m.Missing); n > 0 {
		parts = append(parts, fmt.Sprintf("%d missing (%s)", n, listSome(m.Missing, 5)))
	}
	if n := len(m.Unexpected); n > 0 {
		parts = append(parts, fmt.Sprintf("%d unexpected (%s)", n, listSome(m.Unexpected, 5)))
	}
	if n := len(m.WrongShape); n > 0 {
		var s []string
		for _, w := range m.WrongShape {
			s = append(s, fmt.Sprintf("%s: want %v, have %v", w.Key, w.Want, w.Have))
		}
		parts = append(parts, fmt.Sprintf("%d of the wrong shape (%s)", n, listSome(s, 5)))
	}
	return "weights: state dict does not match the model: " + strings.Join(parts, "; ")
}

// Is lets errors.Is(err, ErrMismatch) match any *Mismatch.
func (m *Mismatch) Is(target error) bool { return target == ErrMismatch }

// ErrMismatch matches every *Mismatch under errors.Is.
var ErrMismatch = errors.New("weights: state dict does not match the model")

// listSome joins up to n items, saying how many more there are.
func listSome(items []string, n int) string {
	s := strings.Join(items[:min(n, len(items))], ", ")
	if more := len(items) - n; more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}
