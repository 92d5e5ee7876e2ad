package slurmtest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterRunsABatchJob starts the cluster, runs a batch job through
// sbatch, and checks that Stop leaves none of the daemons running.
func TestClusterRunsABatchJob(t *testing.T) {
	start := time.Now()
	c := Start(t, Options{})
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	out := filepath.Join(c.Dir, "hello.txt")
	id, err := c.Run("sbatch", "--parsable", "--output=/dev/null", "--wrap", "echo hello from $SLURM_JOB_ID > "+out)
	if err != nil {
		t.Fatal(err)
	}
	state, err := c.WaitJob(id, 30*time.Second)
	if err != nil || state != "COMPLETED" {
		c.DumpLogs()
		t.Fatalf("job %s: %s, %v", id, state, err)
	}
	if got, _ := os.ReadFile(out); strings.TrimSpace(string(got)) != "hello from "+id {
		t.Errorf("the job wrote %q", got)
	}
	pids := c.Pids()
	if len(pids) != 3 {
		t.Fatalf("%d daemons, want munged, slurmctld and slurmd", len(pids))
	}
	c.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("daemon pid %d still running after Stop", pid)
		}
	}
}
