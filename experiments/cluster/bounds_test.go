package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestJobSizesBounded: shard counts, parallelism and retries beyond what
// the schedulers take are bad settings naming their field, and nothing is
// written. Before the bounds, --shards 4294967297 wrote `completions: 1`
// (the int32 cast wrapped) while the pods computed shards out of
// 4294967297, 2147483648 wrote `completions: -2147483648`, and Slurm got
// `--array=0-4294967296%4294967297`.
func TestJobSizesBounded(t *testing.T) {
	const (
		wrapsToOne = 1<<32 + 1 // int32(4294967297) == 1
		wrapsNeg   = 1 << 31   // int32(2147483648) < 0
	)
	for _, c := range []struct {
		edit  func(*K8sOptions)
		field string
	}{
		{func(o *K8sOptions) { o.Shards = wrapsToOne }, "shards"},
		{func(o *K8sOptions) { o.Shards = wrapsNeg }, "shards"},
		{func(o *K8sOptions) { o.Shards = MaxIndexedCompletions + 1 }, "shards"},
		{func(o *K8sOptions) { o.Parallelism = wrapsNeg }, "parallelism"},
		{func(o *K8sOptions) { o.Parallelism = wrapsToOne }, "parallelism"},
		{func(o *K8sOptions) { o.Parallelism = -1 }, "parallelism"},
		{func(o *K8sOptions) { o.Retries = wrapsNeg }, "retries"},
		{func(o *K8sOptions) { o.Retries = wrapsToOne }, "retries"},
		{func(o *K8sOptions) { o.Retries = -1 }, "retries"},
	} {
		o := k8sTestOptions(t)
		c.edit(&o)
		_, err := WriteK8s(o)
		if settingField(err) != c.field || strings.Contains(err.Error(), "--") {
			t.Errorf("shards %d parallelism %d retries %d: error %v, want a bad setting of %s naming no flag",
				o.Shards, o.Parallelism, o.Retries, err, c.field)
		}
		if _, err := os.Stat(o.Dir); err == nil {
			t.Errorf("shards %d parallelism %d retries %d: wrote %s", o.Shards, o.Parallelism, o.Retries, o.Dir)
		}
	}
	// The largest sizes Kubernetes takes are written as they are.
	o := k8sTestOptions(t)
	o.Shards, o.Parallelism, o.Retries = MaxIndexedCompletions, MaxIndexedCompletions, MaxBackoffLimit
	objs, err := BuildK8s(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := objs.Phases["train"].Spec
	if *s.Completions != MaxIndexedCompletions || *s.Parallelism != MaxIndexedCompletions || *s.BackoffLimitPerIndex != MaxBackoffLimit || *objs.Report.Spec.BackoffLimit != MaxBackoffLimit {
		t.Errorf("largest sizes written as %d %d %d %d", *s.Completions, *s.Parallelism, *s.BackoffLimitPerIndex, *objs.Report.Spec.BackoffLimit)
	}

	dir := t.TempDir()
	for _, c := range []struct {
		o     SlurmOptions
		field string
	}{
		{SlurmOptions{Shards: wrapsToOne}, "shards"},
		{SlurmOptions{Shards: DefaultMaxArraySize + 1}, "shards"},
		{SlurmOptions{Shards: 5000, MaxArraySize: 4999}, "shards"},
		{SlurmOptions{Shards: 4, MaxRunning: wrapsToOne}, "max running"},
		{SlurmOptions{Shards: 4, MaxRunning: -1}, "max running"},
		{SlurmOptions{Shards: 4, MaxArraySize: MaxMaxArraySize + 1}, "max array size"},
		{SlurmOptions{Shards: 4, MaxArraySize: -1}, "max array size"},
	} {
		c.o.Grid, c.o.Dir = testGrid(dir), filepath.Join(dir, "slurm")
		_, err := WriteSlurm(c.o)
		if settingField(err) != c.field || strings.Contains(err.Error(), "--") {
			t.Errorf("shards %d max running %d max array size %d: error %v, want a bad setting of %s naming no flag",
				c.o.Shards, c.o.MaxRunning, c.o.MaxArraySize, err, c.field)
		}
		if _, err := os.Stat(c.o.Dir); err == nil {
			t.Fatalf("shards %d: wrote %s", c.o.Shards, c.o.Dir)
		}
	}
	// The largest array the cluster takes is written as it is.
	for _, c := range []SlurmOptions{{Shards: DefaultMaxArraySize, MaxRunning: DefaultMaxArraySize}, {Shards: 5000, MaxArraySize: 5000}} {
		c.Grid, c.Dir = testGrid(dir), filepath.Join(dir, "ok")
		s, err := WriteSlurm(c)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(s.Phases["train"])
		if want := "#SBATCH --array=0-" + strconv.Itoa(c.Shards-1); !strings.Contains(string(b), want) {
			t.Errorf("train.sbatch lacks %q", want)
		}
	}
}
