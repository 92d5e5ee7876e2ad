package results

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rows() []Row {
	c := 0.8
	b := 91.0
	return []Row{
		{Bottom: "a", Top: "b", Cut: "stem", Scores: Scores{TopAcc: 90, BottomAcc: &b, StitchedAcc: 89.5, Penalty: 0.5, CKA: &c}, Init: "default", Epochs: 2, BottomPath: "a.pt", TopPath: "b.pt"},
		{Bottom: "a", Top: "b", Cut: "pool", CutIndex: 9, Scores: Scores{TopAcc: 90, StitchedAcc: 92, Penalty: -2}, Init: "default", Epochs: 2, BottomPath: "a.pt", TopPath: "b.pt"},
	}
}

func TestStoreAppendsAndResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows() {
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	// A torn last line, as an interrupted write leaves, is ignored.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"bottom":"a","top"`)
	f.Close()
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows() {
		if _, ok := again.Done(r); !ok {
			t.Errorf("%s not found after reopening", r.Cut)
		}
	}
	other := rows()[0]
	other.Seed = 5
	if _, ok := again.Done(other); ok {
		t.Error("a row with another seed counted as done")
	}
	got, err := Read(path)
	if err != nil || len(got) != 2 || got[1].CKA != nil || *got[0].CKA != 0.8 {
		t.Errorf("read back %+v, %v", got, err)
	}
}

func TestTableAndPlot(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, rows()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"penalty pp", "+0.50", "-2.00", "0.800", "91.00"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{"p.png", "p.svg"} {
		path := filepath.Join(t.TempDir(), name)
		if err := PlotPenalty(path, "test", []Series{{Label: "a → b", Rows: rows()}}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 1000 {
			t.Fatalf("%s: %d bytes, %v", name, len(b), err)
		}
		if name == "p.png" && !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
	if err := PlotPenalty(filepath.Join(t.TempDir(), "p.jpg"), "x", []Series{{Rows: rows()}}); err == nil {
		t.Error("an unsupported extension should be an error")
	}
}
