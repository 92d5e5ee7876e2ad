package results

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRowsRoundedWhenWritten: rows carried float noise ("penalty":-34.010000000000005),
// digits no measurement has. Accuracies and the penalty are written rounded to
// ScoreStep, by Append, Update and any other JSON encoding of a row; the row in
// memory is not changed; rows written before with all their digits still read.
func TestRowsRoundedWhenWritten(t *testing.T) {
	top, stitched := 100*float64(5600)/10000, 100*float64(9001)/10000 // 56 and 90.01, as measured
	third := 100 * float64(1) / 3
	r := rows()[0]
	r.TopAcc, r.StitchedAcc, r.Penalty = top, stitched, top-stitched
	r.BottomAcc, r.DirectAcc = &third, &stitched
	if s := r.Penalty; s == -34.01 {
		t.Fatalf("the test wants a penalty with float noise, got %v", s)
	}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(r); err != nil {
		t.Fatal(err)
	}
	noise := regexp.MustCompile(`"(top_acc|bottom_acc|stitched_acc|penalty|direct_acc)":-?\d+\.\d{7,}`)
	for _, want := range []string{`"penalty":-34.01,`, `"top_acc":56,`, `"stitched_acc":90.01,`, `"bottom_acc":33.333333,`, `"direct_acc":90.01`} {
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), want) || noise.Match(b) {
			t.Errorf("the file holds %s, want %s and no score with more than six decimals", b, want)
		}
	}
	if r.Penalty != top-stitched || *r.BottomAcc != third {
		t.Error("writing the row changed it in memory")
	}
	// Update rewrites rows rounded too.
	b2 := 100 * float64(2) / 3
	r.BottomAcc = &b2
	if err := s.Update([]Row{r}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"bottom_acc":66.666667,`) || noise.Match(b) {
		t.Errorf("after Update the file holds %s", b)
	}
	js, _ := json.Marshal(r)
	if noise.Match(js) {
		t.Errorf("json.Marshal of a row: %s", js)
	}
	// A row written with all its digits reads as it was.
	old := strings.Replace(string(b), `"penalty":-34.01,`, `"penalty":-34.010000000000005,`, 1)
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil || len(got) != 1 || got[0].Penalty != top-stitched {
		t.Errorf("reading an old row: %v %v", got, err)
	}
}
