package grid

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"modelstitch/experiments/shardfile"
)

// Rows as the grid writes them, and copies of them.
const (
	trainRow  = `{"unit":"train/a-1","kind":"train","seconds":2,"threads":1,"time":"t0","model":{"name":"a","path":"a.pt","test_acc":80}}`
	trainRow2 = `{"unit":"train/a-1","kind":"train","seconds":3,"threads":1,"time":"t1","model":{"name":"a","path":"a.pt","test_acc":81}}`
	stitchRow = `{"unit":"stitch/a~b/stem/s0-1","kind":"stitch","seconds":1,"threads":1,"time":"t0","stitch":{"bottom":"a","top":"b","cut":"stem","recipe":{"seed":0}}}`
	otherRow  = `{"unit":"train/b-2","kind":"train","seconds":2,"threads":1,"time":"t0","model":{"name":"b","path":"b.pt","test_acc":70}}`
)

// rowsCase is a grid output folder's shard files (shard i of len(files)).
type rowsCase struct {
	name  string
	files []string
	// bad is "FILE:LINE" of the line both readers must refuse ("" when the
	// folder is good).
	bad string
	// ids are the units both keep; conflicts the ones with differing copies.
	ids, conflicts []string
}

// hostileRows are folders that the report (ReadRecords) and the merge
// (MergeRows) must treat alike: refuse the same line, or keep the same rows.
var hostileRows = []rowsCase{
	{name: "corrupt line", files: []string{trainRow + "\nnot json\n" + stitchRow + "\n"}, bad: "shard-0-of-1.jsonl:2"},
	{name: "row without a kind", files: []string{trainRow + "\n", `{"unit":"x"}` + "\n"}, bad: "shard-1-of-2.jsonl:1"},
	{name: "unknown kind", files: []string{`{"unit":"x","kind":"eval","model":{"name":"a"}}` + "\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "train row without its model", files: []string{`{"unit":"train/a-1","kind":"train"}` + "\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "stitch row with a model", files: []string{`{"unit":"s","kind":"stitch","stitch":{},"model":{}}` + "\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "empty unit id", files: []string{`{"unit":"","kind":"train","model":{}}` + "\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "unit id not a string", files: []string{`{"unit":7,"kind":"train","model":{}}` + "\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "byte-order mark", files: []string{"\xef\xbb\xbf" + trainRow + "\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "trailing garbage", files: []string{trainRow + " x\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "blank line", files: []string{trainRow + "\n\n" + otherRow + "\n"}, bad: "shard-0-of-1.jsonl:2"},
	{name: "array", files: []string{"[" + trainRow + "]\n"}, bad: "shard-0-of-1.jsonl:1"},
	{name: "bad line after a torn one in another file", files: []string{trainRow + "\n" + `{"unit":"tr`, otherRow + "\nnull\n"}, bad: "shard-1-of-2.jsonl:2"},
	{
		name:  "torn last line and conflicting duplicates",
		files: []string{trainRow + "\n" + stitchRow + "\n" + `{"unit":"train/b-2","kind":"tr`, trainRow2 + "\n" + stitchRow + "\n" + otherRow + "\n"},
		ids:   []string{"stitch/a~b/stem/s0-1", "train/a-1", "train/b-2"}, conflicts: []string{"train/a-1"},
	},
}

// writeRows writes a case's shard files into a new folder.
func writeRows(t *testing.T, c rowsCase) string {
	t.Helper()
	dir := t.TempDir()
	for i, text := range c.files {
		p := shardfile.Path(dir, i, len(c.files))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestMergeAndReportAgree: the merge refuses every line the report refuses,
// naming the file and line and writing nothing, and otherwise keeps exactly
// the records the report counts (the first copy of each unit) and names the
// same conflicting units. Before, merge skipped corrupt lines and copied a
// row without a kind into merged.jsonl, exiting 0, where the report refused.
func TestMergeAndReportAgree(t *testing.T) {
	for _, c := range hostileRows {
		dir := writeRows(t, c)
		recs, rerr := ReadRecords(dir)
		st, merr := MergeRows(dir)
		merged, err := os.ReadFile(filepath.Join(dir, shardfile.MergedName))
		if c.bad != "" {
			for what, err := range map[string]error{"report": rerr, "merge": merr} {
				var le *shardfile.LineError
				if !errors.As(err, &le) || !strings.HasSuffix(le.Path+":"+strconv.Itoa(le.Line), c.bad) {
					t.Errorf("%s: %s: error %v, want one naming %s", c.name, what, err, c.bad)
				}
			}
			if err == nil {
				t.Errorf("%s: the refused merge wrote %s:\n%s", c.name, shardfile.MergedName, merged)
			}
			continue
		}
		if rerr != nil || merr != nil {
			t.Errorf("%s: report %v, merge %v", c.name, rerr, merr)
			continue
		}
		var reportIDs, mergedIDs []string
		for _, r := range recs.All() {
			reportIDs = append(reportIDs, r.Unit)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(merged), "\n"), "\n") {
			rec, err := DecodeRecord([]byte(l))
			if err != nil {
				t.Errorf("%s: merged line %q: %v", c.name, l, err)
			}
			mergedIDs = append(mergedIDs, rec.Unit)
			if kept, _ := recs.Get(rec.Unit); kept.Time != rec.Time || kept.Seconds != rec.Seconds {
				t.Errorf("%s: unit %s: merge kept %+v, report %+v", c.name, rec.Unit, rec, kept)
			}
		}
		if !slices.Equal(reportIDs, c.ids) || !slices.Equal(mergedIDs, c.ids) {
			t.Errorf("%s: report kept %v, merge %v, want %v", c.name, reportIDs, mergedIDs, c.ids)
		}
		if !slices.Equal(recs.Conflicts, c.conflicts) || !slices.Equal(st.ConflictIDs, c.conflicts) {
			t.Errorf("%s: conflicts: report %v, merge %v, want %v", c.name, recs.Conflicts, st.ConflictIDs, c.conflicts)
		}
		if rec, _ := recs.Get("train/a-1"); rec.Time != "t0" {
			t.Errorf("%s: the copy of train/a-1 kept is %+v, want the first (shard 0's)", c.name, rec)
		}
	}
}

// TestWriterRefusesBadRecords: a record the readers would refuse is not
// written, since once in the file it would stop every reader.
func TestWriterRefusesBadRecords(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, Shard{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, rec := range []Record{{Unit: "x"}, {Kind: UnitTrain, Model: &ModelResult{}}, {Unit: "t", Kind: UnitTrain}, {Unit: "s", Kind: UnitStitch, Model: &ModelResult{}}} {
		if err := w.Append(rec); err == nil {
			t.Errorf("%+v written", rec)
		}
	}
	if err := w.Append(Record{Unit: "t", Kind: UnitTrain, Model: &ModelResult{Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadRecords(dir)
	if err != nil || recs.Len() != 1 {
		t.Fatalf("%v, %d records", err, recs.Len())
	}
}
