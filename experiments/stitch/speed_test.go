package stitch

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "1000000": 1000000, "2GiB": 2 << 30, "512M": 512 << 20,
		"1.5g": 3 << 29, "64MiB": 64 << 20, "10kb": 10 << 10} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"xyz", "-1G", "1.5.2M", "G"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q): no error", bad)
		}
	}
	if err := (Speed{EvalBatchSize: -1}).Validate(); err == nil {
		t.Error("negative eval batch size: no error")
	}
	if err := (Speed{MemoryBudget: -1}).Validate(); err == nil {
		t.Error("negative memory budget: no error")
	}
}
