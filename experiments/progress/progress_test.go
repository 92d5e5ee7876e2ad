package progress

import "testing"

func TestStageReportsAndEndsOnce(t *testing.T) {
	var got []Event
	f := Func(func(e Event) { got = append(got, e) })
	s := f.Start("epoch 1/2", "batches", 3)
	s.Add(1)
	s.SetDetail("loss %.1f", 0.5)
	s.Add(2)
	s.End()
	s.End()
	s.Add(1)
	f.Notef("resuming %s", "x.pt")
	if len(got) != 4 {
		t.Fatalf("%d events, want 4: %+v", len(got), got)
	}
	if e := got[0]; e.Stage != "epoch 1/2" || e.Done != 1 || e.Total != 3 || e.Unit != "batches" || e.End || e.Detail != "" {
		t.Errorf("first event %+v", e)
	}
	if e := got[2]; !e.End || e.Done != 3 || e.Detail != "loss 0.5" || e.Elapsed < got[1].Elapsed {
		t.Errorf("end event %+v", e)
	}
	if e := got[3]; e.Note != "resuming x.pt" || e.Stage != "" {
		t.Errorf("note %+v", e)
	}
	// A nil Func discards everything.
	var none Func
	n := none.Start("x", "images", 1)
	n.Add(1)
	n.SetDetail("y")
	n.End()
	none.Notef("z")
}
