package grid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeReport plans text in dir, appends the records and returns the report.
func writeReport(t *testing.T, text, dir string, recs func(p *Plan) []Record) (string, *ReportResult) {
	t.Helper()
	s, err := Parse("s.toml", []byte(text), testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(s, dir, func(*ModelFile, *Plan) ([]string, error) { return resnet18Cuts, nil })
	if err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(dir, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs(p) {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	res, err := Report(p, filepath.Join(dir, "report"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), res
}

// stitchRecord is a record of a stitch unit with the given penalty.
func stitchRecord(id string, u *Unit, penalty float64) Record {
	st := &StitchResult{Bottom: u.Bottom, Top: u.Top, Cut: u.Cut, Recipe: *u.Recipe}
	st.TopAcc, st.StitchedAcc, st.Penalty = 90, 90-penalty, penalty
	return Record{Unit: id, Kind: UnitStitch, Seconds: 10, CPUSeconds: 10, Stitch: st}
}

// TestReportOrphanRows checks that rows whose unit is not in the plan are
// counted in their own section, by pair or train unit, and read nowhere
// else: not in the tables, the verdicts or the times.
func TestReportOrphanRows(t *testing.T) {
	text := minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\nverdict = \"max(penalty, ab) < 5\"\n"
	out, res := writeReport(t, text, t.TempDir(), func(p *Plan) []Record {
		u := p.PairUnits["ab"][0]
		return []Record{stitchRecord(u.ID, u, 1),
			// An earlier version's rows of the same pair and cut (another recipe) and of another pair.
			stitchRecord("stitch/a~b/stem/s0-00000000", u, 50), stitchRecord("stitch/a~b/stem/s1-00000001", u, 50),
			stitchRecord("stitch/old~b/stem/s0-00000002", u, 50),
			{Unit: "train/old-12345678", Kind: UnitTrain, Seconds: 1000, CPUSeconds: 1000, Model: &ModelResult{Name: "old", TestAcc: 10}}}
	})
	sec := strings.Index(out, "## Rows not in this spec")
	if sec < 0 {
		t.Fatalf("no orphan section:\n%s", out)
	}
	for _, want := range []string{"4 row(s)", "| `stitch/a~b` | 2 |", "| `stitch/old~b` | 1 |", "| `train/old-12345678` | 1 |"} {
		if !strings.Contains(out[sec:], want) {
			t.Errorf("orphan section lacks %q:\n%s", want, out[sec:])
		}
	}
	if strings.Contains(out, "+50.00") || strings.Contains(out, "16m40s") || res.Verdicts["e"] != Holds {
		t.Errorf("an orphan row is used (verdict %s):\n%s", res.Verdicts["e"], out)
	}
	if !strings.Contains(out, "1 of 3 units done") {
		t.Errorf("unit count includes orphans:\n%s", out)
	}
}

// TestReportWithoutPaper checks that a spec whose experiments give no paper
// reading gets a report with no "Paper:" line and no paper column, and no
// text about pairs the spec does not name; one with a reading keeps both.
func TestReportWithoutPaper(t *testing.T) {
	text := minimalSpec + "[[experiments]]\nid = \"e\"\npairs = [\"ab\"]\ncka = true\n"
	rows := func(p *Plan) []Record {
		u := p.PairUnits["ab"][0]
		return []Record{stitchRecord(u.ID, u, 1)}
	}
	out, _ := writeReport(t, text, t.TempDir(), rows)
	for _, bad := range []string{"Paper:", "| paper |", "shipped", "paper"} {
		if strings.Contains(out, bad) {
			t.Errorf("a report without paper readings says %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "the same 500 test images") {
		t.Errorf("the CKA note does not give the spec's CKA images")
	}
	out, _ = writeReport(t, strings.Replace(text, "cka = true", "paper = \"≤ 3 pp\"", 1), t.TempDir(), rows)
	if !strings.Contains(out, "**Paper:** ≤ 3 pp") || !strings.Contains(out, "| # | experiment | paper |") {
		t.Errorf("a report with a paper reading lacks it:\n%s", out)
	}
}
