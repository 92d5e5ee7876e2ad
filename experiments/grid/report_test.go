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
		if r.Model != nil && p.Files[r.Model.Name] != nil { // a done train unit has its checkpoint
			path := p.Files[r.Model.Name].Path
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("weights"), 0o644); err != nil {
				t.Fatal(err)
			}
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

// TestReportTrainingCost checks the compute line: units that adopted a
// finished checkpoint (recorded as such, or, in older rows, taking under a
// second) are left out of the training time and named as unknown, a resumed
// one is named for its earlier epochs, existing checkpoints are named, and
// the others' times are summed.
func TestReportTrainingCost(t *testing.T) {
	text := minimalSpec + "[models.c]\nseed = 3\n[models.d]\nseed = 4\n[models.ck]\ncheckpoint = \"embedded:fmnist-resnet18-w0.25-sup-seed1\"\n"
	n := func(v int) *int { return &v }
	out, _ := writeReport(t, text, t.TempDir(), func(p *Plan) []Record {
		rec := func(model string, before *int, sec float64) Record {
			return Record{Unit: p.Files[model].Unit, Kind: UnitTrain, Seconds: sec, CPUSeconds: sec,
				Model: &ModelResult{Name: model, TestAcc: 80, EpochsBefore: before}}
		}
		return []Record{rec("a", n(4), 0.5), rec("b", nil, 0.02), rec("c", n(0), 100), rec("d", n(2), 50)}
	})
	for _, want := range []string{
		"Processor time: training 2m30s over 2 units",
		"the training of 2 model(s) whose checkpoints were finished when their units ran (`a`, `b`:",
		"the epochs `d` had before their units resumed them",
		"the existing checkpoint(s) `ck`, which this grid did not train",
		"| `a` | supervised |", "unknown (adopted finished)", "50s (resumed: more before)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out[strings.Index(out, "## Models"):])
		}
	}
	// Everything trained here: nothing unknown.
	out, _ = writeReport(t, minimalSpec, t.TempDir(), func(p *Plan) []Record {
		var rs []Record
		for _, m := range []string{"a", "b"} {
			rs = append(rs, Record{Unit: p.Files[m].Unit, Kind: UnitTrain, Seconds: 60, CPUSeconds: 60,
				Model: &ModelResult{Name: m, TestAcc: 80, EpochsBefore: n(0)}})
		}
		return rs
	})
	if !strings.Contains(out, "Every model's training is in these times.") || strings.Contains(out, "unknown") {
		t.Errorf("a grid that trained everything:\n%s", out[strings.Index(out, "## Models"):])
	}
}
