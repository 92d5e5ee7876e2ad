package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"modelstitch/experiments/invalid"
	"modelstitch/internal/atomicfile"
)

// SlurmOptions describes the Slurm jobs of one grid.
type SlurmOptions struct {
	Grid Grid // the grid's command lines; Spec and Out should be absolute

	Dir        string // where the scripts are written
	LogDir     string // where the jobs' logs go (default Grid.Out/logs)
	JobName    string // job name prefix (default "stitch")
	Shards     int    // array tasks per phase, one shard each
	MaxRunning int    // at most this many tasks of an array at once (0: no limit)
	// MaxArraySize is the cluster's MaxArraySize (slurm.conf; `scontrol
	// show config` shows it): array task ids must be below it, so Shards
	// may be at most this. 0 means DefaultMaxArraySize.
	MaxArraySize int

	GPUs        int    // --gpus per task (0: none)
	CPUsPerTask int    // --cpus-per-task (0: Slurm's default)
	Mem         string // --mem per task, e.g. 32G ("": Slurm's default)
	Time        string // --time per task, e.g. 4:00:00 ("": the partition's)
	Partition   string // --partition ("": the default)
	Account     string // --account ("": the default)

	Setup string // shell commands each job runs first (module load, venv, ...)
}

// SlurmScripts are the files WriteSlurm wrote.
type SlurmScripts struct {
	Dir     string            // the folder holding them
	Phases  map[string]string // phase name → its array script
	Report  string            // the merge-and-report script
	Submit  string            // submit.sh: submits all three, chained
	Requeue string            // requeue.sh: re-runs array tasks
	Jobs    string            // jobs.env, written by submit.sh
}

// slurmValue matches what may follow an #SBATCH option.
var slurmValue = regexp.MustCompile(`^[A-Za-z0-9_.:,=+@/-]+$`)

const (
	// DefaultMaxArraySize is Slurm's default MaxArraySize: a job array's
	// task ids run from 0 to MaxArraySize-1, so a grid has at most this
	// many shards unless SlurmOptions.MaxArraySize says the cluster allows
	// more.
	DefaultMaxArraySize = 1001
	// MaxMaxArraySize is the largest MaxArraySize Slurm accepts.
	MaxMaxArraySize = 4_000_001
)

func (o *SlurmOptions) check() error {
	if err := o.Grid.check(); err != nil {
		return err
	}
	if o.Dir == "" {
		return invalid.Errorf("dir", "is empty: give the folder for the Slurm scripts")
	}
	arrayMax := o.MaxArraySize
	if arrayMax == 0 {
		arrayMax = DefaultMaxArraySize
	}
	if arrayMax < 1 || arrayMax > MaxMaxArraySize {
		return invalid.Errorf("max array size", "must be in 1..%d (Slurm's bound on MaxArraySize), got %d", MaxMaxArraySize, o.MaxArraySize)
	}
	if o.Shards < 1 || o.Shards > arrayMax {
		return invalid.Errorf("shards", "must be in 1..%d (array task ids must be below the cluster's MaxArraySize, %d), got %d", arrayMax, arrayMax, o.Shards)
	}
	if o.MaxRunning < 0 || o.MaxRunning > arrayMax {
		return invalid.Errorf("max running", "must be in 0..%d (the cluster's MaxArraySize; 0: no limit), got %d", arrayMax, o.MaxRunning)
	}
	if o.GPUs < 0 {
		return invalid.Errorf("gpus", "may not be negative, got %d", o.GPUs)
	}
	if o.CPUsPerTask < 0 {
		return invalid.Errorf("cpus per task", "may not be negative, got %d", o.CPUsPerTask)
	}
	for _, f := range []struct{ field, v string }{
		{"job name", o.JobName}, {"mem", o.Mem}, {"time", o.Time},
		{"partition", o.Partition}, {"account", o.Account}, {"log dir", o.LogDir},
	} {
		if f.v != "" && !slurmValue.MatchString(f.v) {
			return invalid.Errorf(f.field, "%q is not a value Slurm takes (letters, digits and _.:,=+@/- only)", f.v)
		}
	}
	return nil
}

// header is the #SBATCH block of one job.
func (o *SlurmOptions) header(b *strings.Builder, name, log string, array bool, gpus int, cpus int) {
	fmt.Fprintf(b, "#SBATCH --job-name=%s\n", name)
	if array {
		fmt.Fprintf(b, "#SBATCH --array=0-%d", o.Shards-1)
		if o.MaxRunning > 0 {
			fmt.Fprintf(b, "%%%d", o.MaxRunning)
		}
		b.WriteString("\n")
	}
	// A re-queued task starts again from the top and the grid resumes from
	// what the shard wrote; its log is appended to, not truncated.
	b.WriteString("#SBATCH --requeue\n#SBATCH --open-mode=append\n")
	fmt.Fprintf(b, "#SBATCH --output=%s\n", filepath.Join(o.LogDir, log))
	if cpus > 0 {
		fmt.Fprintf(b, "#SBATCH --cpus-per-task=%d\n", cpus)
	}
	if gpus > 0 {
		fmt.Fprintf(b, "#SBATCH --gpus=%d\n", gpus)
	}
	for _, kv := range [][2]string{{"mem", o.Mem}, {"time", o.Time}, {"partition", o.Partition}, {"account", o.Account}} {
		if kv[1] != "" {
			fmt.Fprintf(b, "#SBATCH --%s=%s\n", kv[0], kv[1])
		}
	}
}

// setup writes the user's setup commands.
func (o *SlurmOptions) setup(b *strings.Builder) {
	if s := strings.TrimSpace(o.Setup); s != "" {
		b.WriteString("# setup (--setup)\n" + s + "\n")
	}
}

// phaseScript is the array script of one phase.
func (o *SlurmOptions) phaseScript(phase string) string {
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	// The spec's path is written Go-quoted: a line break in it must not end the comment.
	fmt.Fprintf(&b, "# Phase %q of the grid %q: array task I runs shard I of %d.\n", phase, o.Grid.Spec, o.Shards)
	b.WriteString("# Written by `stitch grid slurm`; submit all phases with submit.sh beside it.\n")
	b.WriteString("# `sbatch --array=I " + phase + ".sbatch` re-runs shard I alone; the grid resumes it.\n")
	o.header(&b, o.JobName+"-"+phase, phase+"-%A_%a.out", true, o.GPUs, o.CPUsPerTask)
	b.WriteString("set -euo pipefail\n")
	b.WriteString(`SHARD="${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is a job array}"` + "\n")
	// The shard count is fixed when the scripts are written, not taken from
	// SLURM_ARRAY_TASK_COUNT, so that re-submitting a subset of the array
	// (sbatch --array=3) still runs shard 3 of the grid's N.
	fmt.Fprintf(&b, "COUNT=%d\n", o.Shards)
	b.WriteString(`if [ "$SHARD" -ge "$COUNT" ]; then echo "array task $SHARD: this grid has only $COUNT shards" >&2; exit 1; fi` + "\n")
	o.setup(&b)
	fmt.Fprintf(&b, `echo "$(date -u +%%FT%%TZ) %s shard $SHARD/$COUNT on $(hostname) (job ${SLURM_JOB_ID:-?}, restart ${SLURM_RESTART_COUNT:-0})" >&2`+"\n", phase)
	b.WriteString("exec " + shellLine(o.Grid.RunArgv(phase)) + "\n")
	return b.String()
}

// reportScript merges the shards' rows and draws the report.
func (o *SlurmOptions) reportScript() string {
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "# Merges the rows of every shard of the grid %q and draws its report.\n", o.Grid.Spec)
	b.WriteString("# Written by `stitch grid slurm`; submit.sh runs it after the last phase.\n")
	o.header(&b, o.JobName+"-report", "report-%j.out", false, 0, 1)
	b.WriteString("set -euo pipefail\n")
	o.setup(&b)
	b.WriteString(shellLine(o.Grid.MergeArgv()) + "\n")
	b.WriteString("exec " + shellLine(o.Grid.ReportArgv()) + "\n")
	return b.String()
}

// submitScript submits the phases as a chain of dependent jobs.
func (o *SlurmOptions) submitScript() string {
	var b strings.Builder
	b.WriteString(`#!/bin/bash
# Submits the grid's jobs: one array per phase, each waiting for the whole
# array before it to succeed (afterok), then the merge-and-report job.
# Job ids go to jobs.env beside this script (requeue.sh reads them).
# Written by ` + "`stitch grid slurm`" + `. Nothing here deletes outputs: running it
# again submits the grid again, and the grid skips what is done.
set -euo pipefail
cd "$(dirname "$0")"
`)
	fmt.Fprintf(&b, "mkdir -p %s\n", shellQuote(o.LogDir))
	b.WriteString("dep=()\n")
	b.WriteString(": > jobs.env.tmp\n")
	for _, p := range Phases {
		v := strings.ToUpper(p) + "_JOB"
		fmt.Fprintf(&b, "%s=$(sbatch --parsable \"${dep[@]}\" %s.sbatch)\n%s=${%s%%%%;*}\n", v, p, v, v)
		fmt.Fprintf(&b, "echo %s=$%s >> jobs.env.tmp\n", v, v)
		fmt.Fprintf(&b, "dep=(--dependency=afterok:$%s)\n", v)
	}
	b.WriteString(`REPORT_JOB=$(sbatch --parsable "${dep[@]}" report.sbatch)
REPORT_JOB=${REPORT_JOB%%;*}
echo REPORT_JOB=$REPORT_JOB >> jobs.env.tmp
`)
	fmt.Fprintf(&b, "echo SHARDS=%d >> jobs.env.tmp\n", o.Shards)
	b.WriteString("mv jobs.env.tmp jobs.env\n")
	b.WriteString(`echo "submitted: train array $TRAIN_JOB, stitch array $STITCH_JOB (after train), report $REPORT_JOB (after stitch)"` + "\n")
	return b.String()
}

// requeueScript re-runs array tasks and re-arms the jobs that wait for them.
func (o *SlurmOptions) requeueScript() string {
	var rearm strings.Builder
	prev := ""
	for _, p := range append(append([]string{}, Phases...), "report") {
		v := strings.ToUpper(p) + "_JOB"
		if prev != "" {
			fmt.Fprintf(&rearm, "rearm \"$%s\" \"$%s\"\n", v, prev)
		}
		prev = v
	}
	return `#!/bin/bash
# requeue.sh JOBID_TASK...: run array tasks of this grid again (cancelled,
# failed, or running on a bad node), e.g. ./requeue.sh 1234_5. The grid
# resumes each shard from what it already wrote.
#
# Slurm marks a dependency on a task that was cancelled or failed as never
# satisfied, and keeps it so after the task is re-queued and succeeds; so this
# script also points the jobs still waiting (the next phase, the report) at
# every task of the array they wait for, which Slurm then checks afresh.
# Written by ` + "`stitch grid slurm`" + `.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then echo "usage: $0 JOBID_TASK..." >&2; exit 2; fi
. ./jobs.env
for task in "$@"; do
	scontrol requeue "$task"
	# Slurm holds a re-queued job back for a while; let it start sooner, but
	# in a later second than the kill: slurmd refuses a launch credential
	# made in the second it revoked the job's credentials ("Job credential
	# revoked"), and the task would fail at once.
	scontrol update JobId="$task" StartTime=now+2
done
# rearm JOB ARRAY: make JOB, if still pending, wait for each task of ARRAY.
rearm() {
	local job=$1 array=$2 deps=afterok i
	[ -n "$(squeue -h -j "$job" -t PENDING -o %i 2>/dev/null)" ] || return 0
	for ((i = 0; i < SHARDS; i++)); do deps+=":${array}_$i"; done
	scontrol update JobId="$job" Dependency="$deps" ||
		echo "requeue.sh: could not re-arm job $job; it may need: scontrol update JobId=$job Dependency=$deps" >&2
}
` + rearm.String()
}

// WriteSlurm writes the Slurm scripts of a grid into o.Dir: one array
// script per phase, the report script, submit.sh and requeue.sh.
func WriteSlurm(o SlurmOptions) (SlurmScripts, error) {
	if o.JobName == "" {
		o.JobName = "stitch"
	}
	if o.LogDir == "" {
		o.LogDir = filepath.Join(o.Grid.Out, "logs")
	}
	if err := o.check(); err != nil {
		return SlurmScripts{}, fmt.Errorf("slurm: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return SlurmScripts{}, fmt.Errorf("slurm: %w", err)
	}
	s := SlurmScripts{
		Dir:     o.Dir,
		Phases:  map[string]string{},
		Report:  filepath.Join(o.Dir, "report.sbatch"),
		Submit:  filepath.Join(o.Dir, "submit.sh"),
		Requeue: filepath.Join(o.Dir, "requeue.sh"),
		Jobs:    filepath.Join(o.Dir, "jobs.env"),
	}
	files := map[string]string{s.Report: o.reportScript(), s.Submit: o.submitScript(), s.Requeue: o.requeueScript()}
	for _, p := range Phases {
		s.Phases[p] = filepath.Join(o.Dir, p+".sbatch")
		files[s.Phases[p]] = o.phaseScript(p)
	}
	for path, text := range files {
		if err := atomicfile.WriteFile(path, []byte(text), 0o755); err != nil {
			return SlurmScripts{}, fmt.Errorf("slurm: %w", err)
		}
	}
	return s, nil
}

// SlurmJobs are the ids of a submitted grid's jobs.
type SlurmJobs struct {
	Phases map[string]string // phase → array job id
	Report string            // the merge-and-report job
}

// SubmitSlurm runs submit.sh (sbatch must be on PATH) and returns the job
// ids it recorded in jobs.env.
func SubmitSlurm(ctx context.Context, s SlurmScripts) (SlurmJobs, error) {
	cmd := exec.CommandContext(ctx, "bash", s.Submit)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return SlurmJobs{}, fmt.Errorf("slurm: %s: %v\n%s", s.Submit, err, strings.TrimSpace(out.String()))
	}
	return ReadSlurmJobs(s.Jobs)
}

// ReadSlurmJobs reads the job ids that submit.sh wrote to path.
func ReadSlurmJobs(path string) (SlurmJobs, error) {
	f, err := os.Open(path)
	if err != nil {
		return SlurmJobs{}, fmt.Errorf("slurm: %w", err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return SlurmJobs{}, fmt.Errorf("slurm: %s: %w", path, err)
	}
	j := SlurmJobs{Phases: map[string]string{}, Report: vals["REPORT_JOB"]}
	for _, p := range Phases {
		j.Phases[p] = vals[strings.ToUpper(p)+"_JOB"]
		if j.Phases[p] == "" {
			return j, fmt.Errorf("slurm: %s has no %s_JOB", path, strings.ToUpper(p))
		}
	}
	if j.Report == "" {
		return j, fmt.Errorf("slurm: %s has no REPORT_JOB", path)
	}
	return j, nil
}
