package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"

	"modelstitch/experiments/cluster"
	"modelstitch/experiments/grid"
	"modelstitch/experiments/shardfile"
	"modelstitch/internal/slurmtest"
)

// runGrid runs `stitch grid ARGS...`.
func runGrid(args ...string) error {
	return run(append([]string{"stitch", "grid"}, args...))
}

// gridUnderTest is the grid program the cluster jobs run and a spec for it.
type gridUnderTest struct {
	Bin  string // run as `Bin grid run|merge|report ...`
	Spec string // a small spec
}

// realGrid builds the stitch command and writes the tests' tiny spec
// (experiments/grid/testdata/tiny.toml: four 256-image models, one of them
// trained for two epochs, and five stitches at two cuts) with its report
// directory inside the test's temporary directory.
func realGrid(t *testing.T) gridUnderTest {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "stitch")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, "modelstitch/cmd/stitch").CombinedOutput(); err != nil {
		t.Fatalf("build stitch: %v\n%s", err, out)
	}
	tiny, err := os.ReadFile(filepath.Join("..", "..", "experiments", "grid", "testdata", "tiny.toml"))
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "tiny.toml")
	report := fmt.Sprintf("report = %q\n", filepath.Join(dir, "report"))
	if err := os.WriteFile(spec, append([]byte(report), tiny...), 0o644); err != nil {
		t.Fatal(err)
	}
	return gridUnderTest{Bin: bin, Spec: spec}
}

// mergedIDs reads a merged file and checks it: complete lines only, each a
// row with an id, no id twice. It returns the ids.
func mergedIDs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("%s: empty or ends in a torn row", path)
	}
	var ids []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var r struct {
			ID string `json:"unit"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ID == "" {
			t.Fatalf("%s: bad row %q: %v", path, sc.Text(), err)
		}
		if seen[r.ID] {
			t.Fatalf("%s: unit %s twice", path, r.ID)
		}
		seen[r.ID] = true
		ids = append(ids, r.ID)
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("%s: rows not sorted by id", path)
	}
	return ids
}

// TestGridSlurmOnLocalCluster runs the tiny grid on a real one-node Slurm
// cluster through `stitch grid slurm --submit`, in two shards: it cancels a
// train array task in the middle of a unit, re-queues it with requeue.sh,
// waits for the stitch array and the report job, and checks that the merged
// rows hold exactly the units of the same grid run on one machine.
func TestGridSlurmOnLocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and stitches real models end to end; runs without -short")
	}
	start := time.Now()
	c := slurmtest.Start(t, slurmtest.Options{CPUs: 4})
	t.Logf("Slurm up in %v", time.Since(start).Round(time.Millisecond))
	g := realGrid(t)
	t.Setenv("SLURM_CONF", c.Conf)
	work := t.TempDir()
	t.Chdir(work) // the jobs' working directory
	out := filepath.Join(work, "out")
	scripts := filepath.Join(work, "slurm")
	const shards = 2
	submitted := time.Now()
	err := runGrid("slurm", g.Spec, "--out", out, "--dir", scripts, "--shards", fmt.Sprint(shards), "--cpus-per-task", "1",
		"--time", "10:00", "--stitch-bin", g.Bin, "--submit")
	if err != nil {
		c.DumpLogs()
		t.Fatal(err)
	}
	jobs, err := cluster.ReadSlurmJobs(filepath.Join(scripts, "jobs.env"))
	if err != nil {
		t.Fatal(err)
	}
	train := jobs.Phases["train"]

	// Cancel the first train task seen running with a row written, in the
	// middle of its next unit.
	var victim string
	var victimShard int
	deadline := time.Now().Add(60 * time.Second)
	for victim == "" && time.Now().Before(deadline) {
		for i := 0; i < shards && victim == ""; i++ {
			rows, _, _, _ := shardfile.Read(shardfile.Path(out, i, shards))
			if len(rows) == 0 {
				continue
			}
			task := train + "_" + string(rune('0'+i))
			if f, err := c.Job(task); err == nil && f["JobState"] == "RUNNING" {
				if _, err := c.Run("scancel", task); err != nil {
					t.Fatal(err)
				}
				victim, victimShard = task, i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if victim == "" {
		c.DumpLogs()
		t.Fatal("no train task was seen running with a row written")
	}
	if state, err := c.WaitJob(victim, 20*time.Second); state != "CANCELLED" {
		t.Fatalf("cancelled task %s: %s, %v", victim, state, err)
	}
	rows, torn, _, err := shardfile.Read(shardfile.Path(out, victimShard, shards))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cancelled %s after %d rows (%d torn)", victim, len(rows), torn)
	if torn != 0 {
		t.Errorf("the cancelled task left %d torn rows: a unit's row is written in one write", torn)
	}

	// Re-queue it with the written script, and let the grid finish.
	if out, err := exec.Command("bash", filepath.Join(scripts, "requeue.sh"), victim).CombinedOutput(); err != nil {
		t.Fatalf("requeue.sh %s: %v\n%s", victim, err, out)
	}
	// Each stitch task, then the report; a dependency that can never be
	// satisfied any more ends the wait at once.
	var waitFor []string
	for i := 0; i < shards; i++ {
		waitFor = append(waitFor, jobs.Phases["stitch"]+"_"+string(rune('0'+i)))
	}
	state := ""
	for _, id := range append(waitFor, jobs.Report) {
		if state, err = c.WaitJob(id, 120*time.Second); err != nil || state != "COMPLETED" {
			err = fmt.Errorf("job %s: %s, %v", id, state, err)
			break
		}
	}
	if err != nil {
		c.DumpLogs()
		logs, _ := filepath.Glob(filepath.Join(out, "logs", "*"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("--- %s\n%s", l, b)
		}
		t.Fatal(err)
	}
	onSlurm := time.Since(submitted)
	f, err := c.Job(victim)
	if err != nil {
		t.Fatal(err)
	}
	if f["JobState"] != "COMPLETED" || f["Restarts"] != "1" {
		t.Errorf("re-queued task %s: state %s, restarts %s; want COMPLETED after 1 restart", victim, f["JobState"], f["Restarts"])
	}
	for _, p := range cluster.Phases {
		for i := 0; i < shards; i++ {
			task := jobs.Phases[p] + "_" + string(rune('0'+i))
			if f, err := c.Job(task); err != nil || f["JobState"] != "COMPLETED" {
				t.Errorf("%s task %s: %v %v", p, task, f["JobState"], err)
			}
		}
	}
	// The re-queued task's log holds both runs (--open-mode=append).
	logData, err := os.ReadFile(filepath.Join(out, "logs", "train-"+victim+".out"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logData), " train shard "); n != 2 {
		t.Errorf("log of %s shows %d starts, want 2:\n%s", victim, n, logData)
	}

	if _, err := os.Stat(filepath.Join(filepath.Dir(g.Spec), "report", "README.md")); err != nil {
		t.Errorf("the report job drew no report: %v", err)
	}

	// The same grid on one machine: one process, every phase, then merged.
	local := filepath.Join(work, "local")
	alone := time.Now()
	for _, argv := range [][]string{
		{"grid", "run", "--no-report", "--out", local, g.Spec},
		{"grid", "merge", "--out", local},
	} {
		if b, err := exec.Command(g.Bin, argv...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", g.Bin, strings.Join(argv, " "), err, b)
		}
	}
	onOne := time.Since(alone)
	want := mergedIDs(t, filepath.Join(local, shardfile.MergedName))
	got := mergedIDs(t, filepath.Join(out, shardfile.MergedName))
	if strings.Join(got, " ") != strings.Join(want, " ") || len(want) == 0 {
		t.Fatalf("cluster run merged %d units, one machine %d:\n%v\n%v", len(got), len(want), got, want)
	}
	t.Logf("%d units merged exactly once; the grid took %v on Slurm (%d array tasks, one cancelled and re-queued), %v in one process; whole test %v",
		len(got), onSlurm.Round(time.Second), shards, onOne.Round(time.Second), time.Since(start).Round(time.Second))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGridSlurmCommandWritesScripts: flags after SPEC, relative paths made
// absolute, and clear errors.
func TestGridSlurmCommandWritesScripts(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("grid.toml", []byte("# spec\n"), 0o644)
	if err := runGrid("slurm", "grid.toml", "--out", "runs/a", "--shards", "5", "--gpus", "1", "--stitch-bin", "bin/stitch", "--run-args", "--device cuda"); err != nil {
		t.Fatal(err)
	}
	train := readFile(t, filepath.Join(dir, "runs/a/slurm/train.sbatch"))
	want := "exec " + filepath.Join(dir, "bin/stitch") + ` grid run --phase train --shard "${SHARD}/${COUNT}" --out ` +
		filepath.Join(dir, "runs/a") + " --no-report --device cuda " + filepath.Join(dir, "grid.toml") + "\n"
	if !strings.Contains(train, want) || !strings.Contains(train, "#SBATCH --array=0-4\n") || !strings.Contains(train, "#SBATCH --gpus=1\n") {
		t.Errorf("train.sbatch:\n%s\nwant the line %s", train, want)
	}
	if err := runGrid("slurm", "grid.toml", "--help"); err != nil {
		t.Errorf("--help: %v", err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"slurm", "grid.toml"}, "--out"},
		{[]string{"slurm", "missing.toml", "--out", "o"}, "missing.toml"},
		{[]string{"slurm", "grid.toml", "--out", "o", "--shards", "0"}, "--shards"},
		{[]string{"slurm", "grid.toml", "--out", "o", "--shards", "many"}, "--shards"},
		{[]string{"slurm", "grid.toml", "--out", "o", "--gpu", "1"}, "--gpu"},
		{[]string{"slurm", "grid.toml", "--out", "o", "--time", "1 day"}, `--time "1 day" is not a value Slurm takes`},
		{[]string{"slurm", "grid.toml", "other.toml", "--out", "o"}, "usage"},
		{[]string{"k8s", "grid.toml"}, "--image"},
		{[]string{"k8s", "grid.toml", "--image", "x", "--node-selector", "gpu"}, "--node-selector"},
		{[]string{"k8s", "grid.toml", "--image", "x", "--pull-policy", "Sometimes"}, `--pull-policy "Sometimes": want Always`},
		{[]string{"merge", "--out", filepath.Join(dir, "empty")}, "no shard files"},
	} {
		if err := runGrid(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("stitch grid %s: %v, want an error naming %s", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestGridK8sCommand writes manifests through the command and decodes a Job
// back strictly.
func TestGridK8sCommand(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "grid.toml")
	os.WriteFile(spec, []byte("# spec\n"), 0o644)
	k8s := filepath.Join(dir, "k8s")
	if err := runGrid("k8s", spec, "--image", "ghcr.example/stitch:cuda", "--dir", k8s, "--shards", "8", "--gpus", "1",
		"--claim", "results", "--node-selector", "nvidia.com/gpu.present=true", "--run-args", "--device cuda"); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, filepath.Join(k8s, "job-stitch.yaml"))
	var job batchv1.Job
	if err := yaml.UnmarshalStrict([]byte(data), &job); err != nil {
		t.Fatal(err)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if *job.Spec.Completions != 8 || *job.Spec.Parallelism != 8 || c.Args[5] != "$(JOB_COMPLETION_INDEX)/8" ||
		c.Args[7] != "/data/stitch-grid" || job.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "results" ||
		job.Spec.Template.Spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("job-stitch.yaml:\n%s", data)
	}
	if _, err := os.Stat(filepath.Join(k8s, "pvc.yaml")); err == nil {
		t.Error("pvc.yaml written for --claim")
	}
}

// TestGridMergeCommand merges two shard files with a duplicate and a torn
// row; the differing copy is named.
func TestGridMergeCommand(t *testing.T) {
	dir := t.TempDir()
	a1 := `{"unit":"a","kind":"train","time":"1","model":{"name":"a"}}`
	a2 := `{"unit":"a","kind":"train","time":"2","model":{"name":"a"}}`
	b1 := `{"unit":"b","kind":"train","time":"1","model":{"name":"b"}}`
	for i, rows := range []string{b1 + "\n" + a1 + "\n" + `{"unit":"c",`, a2 + "\n"} {
		p := shardfile.Path(dir, i, 2)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(rows), 0o644)
	}
	out, err := captureStdout(func() error { return runGrid("merge", "--out", dir) })
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, shardfile.MergedName)); got != a1+"\n"+b1+"\n" {
		t.Errorf("merged:\n%s", got)
	}
	if !strings.Contains(out, `units whose copies differ (the first copy kept): "a"`) {
		t.Errorf("merge printed %q, want the conflicting unit named", out)
	}
}

// TestGridMergeRefusesWhatReportRefuses runs `grid merge` and `grid report`
// on the same hostile folders: a corrupt line, a row without a kind, a
// byte-order mark, a train row without its model. Both refuse, naming the
// file and line, and merge writes nothing (before, merge exited 0 and
// copied {"unit":"x"} into merged.jsonl).
func TestGridMergeRefusesWhatReportRefuses(t *testing.T) {
	spec := filepath.Join("..", "..", "experiments", "grid", "testdata", "tiny.toml")
	good := `{"unit":"train/a-1","kind":"train","time":"1","model":{"name":"a"}}`
	for name, c := range map[string]struct {
		files []string
		bad   string
	}{
		"corrupt line":     {[]string{good + "\nnot json\n" + `{"unit":"b","kind":"tr`}, "shard-0-of-1.jsonl:2"},
		"row without kind": {[]string{good + "\n", `{"unit":"x"}` + "\n"}, "shard-1-of-2.jsonl:1"},
		"byte-order mark":  {[]string{"\xef\xbb\xbf" + good + "\n"}, "shard-0-of-1.jsonl:1"},
		"no model":         {[]string{`{"unit":"train/a-1","kind":"train"}` + "\n"}, "shard-0-of-1.jsonl:1"},
	} {
		dir := t.TempDir()
		for i, text := range c.files {
			p := shardfile.Path(dir, i, len(c.files))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(text), 0o644)
		}
		merr := runGrid("merge", "--out", dir)
		rerr := runGrid("report", "--out", dir, "--report", filepath.Join(dir, "report"), spec)
		for what, err := range map[string]error{"merge": merr, "report": rerr} {
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("%s: grid %s: %v, want an error naming %s", name, what, err, c.bad)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, shardfile.MergedName)); err == nil {
			t.Errorf("%s: merge wrote %s", name, shardfile.MergedName)
		}
	}
}

// TestGridJobSizesNameTheFlag: job sizes beyond the schedulers' limits are
// refused naming the flag, and nothing is written (issue 29: --shards
// 4294967297 wrote `completions: 1`, 2147483648 `completions:
// -2147483648`, and Slurm got --array=0-4294967296%4294967297).
func TestGridJobSizesNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "grid.toml")
	os.WriteFile(spec, []byte("# spec\n"), 0o644)
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"k8s", spec, "--image", "img", "--shards", "4294967297"}, "--shards must be in 1..100000"},
		{[]string{"k8s", spec, "--image", "img", "--shards", "2147483648"}, "--shards"},
		{[]string{"k8s", spec, "--image", "img", "--shards", "100001"}, "--shards"},
		{[]string{"k8s", spec, "--image", "img", "--parallelism", "2147483648"}, "--parallelism"},
		{[]string{"k8s", spec, "--image", "img", "--retries", "2147483648"}, "--retries"},
		{[]string{"k8s", spec, "--image", "img", "--mount", "data"}, "--mount"},
		{[]string{"slurm", spec, "--out", out, "--shards", "4294967297", "--max-running", "4294967297"}, "--shards"},
		{[]string{"slurm", spec, "--out", out, "--shards", "1002"}, "--shards must be in 1..1001"},
		{[]string{"slurm", spec, "--out", out, "--shards", "4", "--max-running", "4294967297"}, "--max-running"},
		{[]string{"slurm", spec, "--out", out, "--shards", "4", "--max-array-size", "-1"}, "--max-array-size"},
		{[]string{"slurm", spec, "--out", out + " x"}, "--out (its logs folder)"},
	} {
		k8sDir := filepath.Join(dir, "k8s")
		args := c.args
		if args[0] == "k8s" {
			args = append(args, "--dir", k8sDir)
		}
		err := runGrid(args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("stitch grid %s: %v, want an error naming %s", strings.Join(c.args, " "), err, c.want)
		}
		for _, p := range []string{k8sDir, out} {
			if _, err := os.Stat(p); err == nil {
				t.Fatalf("stitch grid %s wrote %s", strings.Join(c.args, " "), p)
			}
		}
	}
	// A cluster that allows larger arrays takes them.
	if err := runGrid("slurm", spec, "--out", out, "--shards", "5000", "--max-array-size", "5001"); err != nil {
		t.Fatal(err)
	}
	if train := readFile(t, filepath.Join(out, "slurm", "train.sbatch")); !strings.Contains(train, "#SBATCH --array=0-4999\n") {
		t.Errorf("train.sbatch:\n%s", train)
	}
}

// captureStdout runs f with os.Stdout going to a pipe and returns what f
// printed.
func captureStdout(f func() error) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	stdout := os.Stdout
	os.Stdout = w
	err = f()
	os.Stdout = stdout
	w.Close()
	return string(<-got), err
}

// TestGridSlurmSurvivesSlurmdKill runs the tiny grid on a real one-node
// Slurm cluster in two shards and kills slurmd (SIGKILL, as a crash) while
// a task of the stitch array is running and has written a stitching row,
// then starts slurmd again at once. In the first case only slurmd dies: the
// running task keeps running under its slurmstepd, which the new slurmd
// adopts. In the second the task's own processes (the batch script and
// stitch, from scontrol listpids) are killed with it, as in a crash of the
// node, so the task cannot complete by itself. Either way the grid must end
// with every unit merged exactly once: tasks that did not complete are
// re-queued with the written requeue.sh, as a user would.
func TestGridSlurmSurvivesSlurmdKill(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and stitches real models end to end; runs without -short")
	}
	g := realGrid(t)
	t.Run("slurmd", func(t *testing.T) { testSlurmdKill(t, g, false) })
	t.Run("slurmd and the task", func(t *testing.T) { testSlurmdKill(t, g, true) })
}

func testSlurmdKill(t *testing.T, g gridUnderTest, withTask bool) {
	start := time.Now()
	c := slurmtest.Start(t, slurmtest.Options{CPUs: 4})
	t.Setenv("SLURM_CONF", c.Conf)
	work := t.TempDir()
	t.Chdir(work)
	out := filepath.Join(work, "out")
	scripts := filepath.Join(work, "slurm")
	const shards = 2
	if err := runGrid("slurm", g.Spec, "--out", out, "--dir", scripts, "--shards", fmt.Sprint(shards), "--cpus-per-task", "1",
		"--time", "30:00", "--stitch-bin", g.Bin, "--submit"); err != nil {
		c.DumpLogs()
		t.Fatal(err)
	}
	jobs, err := cluster.ReadSlurmJobs(filepath.Join(scripts, "jobs.env"))
	if err != nil {
		t.Fatal(err)
	}
	stitchTask := func(i int) string { return jobs.Phases["stitch"] + "_" + fmt.Sprint(i) }
	fail := func(format string, args ...any) {
		t.Helper()
		c.DumpLogs()
		logs, _ := filepath.Glob(filepath.Join(out, "logs", "*"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("--- %s\n%s", l, b)
		}
		t.Fatalf(format, args...)
	}

	// Wait for a stitch task that is running and has written a stitching
	// row (the train array is done by then: the stitch array waits for it).
	running := -1
	for deadline := time.Now().Add(20 * time.Minute); running < 0; {
		if time.Now().After(deadline) {
			fail("no stitch task seen running with a stitching row written after 20 minutes")
		}
		for i := 0; i < shards && running < 0; i++ {
			rows, _, _, _ := shardfile.Read(shardfile.Path(out, i, shards))
			stitched := false
			for _, r := range rows {
				stitched = stitched || strings.Contains(string(r.Line), `"kind":"stitch"`)
			}
			if f, err := c.Job(stitchTask(i)); stitched && err == nil && f["JobState"] == "RUNNING" {
				running = i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var pids []int
	if withTask {
		// The task's processes, listed by slurmd before it dies.
		f, err := c.Job(stitchTask(running))
		if err != nil {
			t.Fatal(err)
		}
		list, err := c.Run("scontrol", "listpids", f["JobId"])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(list, "\n")[1:] { // after the header
			if fs := strings.Fields(l); len(fs) > 0 {
				if pid, err := strconv.Atoi(fs[0]); err == nil && pid > 1 {
					pids = append(pids, pid)
				}
			}
		}
		if len(pids) == 0 {
			t.Fatalf("scontrol listpids %s listed no process:\n%s", f["JobId"], list)
		}
	}
	if err := c.Kill("slurmd"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL) // one may have exited already
	}
	state, _ := c.NodeState()
	f, _ := c.Job(stitchTask(running))
	t.Logf("killed slurmd and %d of the task's processes %v while %s was running (node: %s; task: %s)", len(pids), pids, stitchTask(running), state, f["JobState"])
	if err := c.Restart("slurmd"); err != nil {
		fail("restart slurmd: %v", err)
	}

	// Wait for every stitch task; re-queue those that did not complete
	// (requeue.sh also re-arms the report's dependency), until all have.
	for round := 0; ; round++ {
		var again []string
		for i := 0; i < shards; i++ {
			st, err := c.WaitJob(stitchTask(i), 20*time.Minute)
			if err != nil {
				fail("stitch task %s: %s, %v", stitchTask(i), st, err)
			}
			t.Logf("round %d: stitch task %s ended %s", round, stitchTask(i), st)
			if st != "COMPLETED" {
				again = append(again, stitchTask(i))
			}
		}
		if len(again) == 0 {
			break
		}
		if round == 2 {
			fail("stitch tasks %v did not complete after %d re-queues", again, round)
		}
		if b, err := exec.Command("bash", append([]string{filepath.Join(scripts, "requeue.sh")}, again...)...).CombinedOutput(); err != nil {
			fail("requeue.sh %v: %v\n%s", again, err, b)
		}
	}
	if st, err := c.WaitJob(jobs.Report, 20*time.Minute); err != nil || st != "COMPLETED" {
		fail("report job %s: %s, %v", jobs.Report, st, err)
	}

	// Every unit of the plan is merged exactly once.
	b, err := exec.Command(g.Bin, "grid", "plan", "--json", "--out", out, g.Spec).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	dec := json.NewDecoder(strings.NewReader(string(b)))
	for dec.More() {
		var u struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if err := dec.Decode(&u); err != nil {
			t.Fatal(err)
		}
		if u.State != "done" {
			t.Errorf("unit %s is %s after the grid finished", u.ID, u.State)
		}
		want = append(want, u.ID)
	}
	sort.Strings(want)
	got := mergedIDs(t, filepath.Join(out, shardfile.MergedName))
	if strings.Join(got, " ") != strings.Join(want, " ") || len(want) == 0 {
		t.Fatalf("merged %d units, the plan has %d:\n%v\n%v", len(got), len(want), got, want)
	}
	recs, err := grid.ReadRecords(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d units merged exactly once (%d duplicate rows in the shard files, %d of them differing: %v; %d torn); whole test %v",
		len(got), recs.Duplicates, len(recs.Conflicts), recs.Conflicts, recs.Torn, time.Since(start).Round(time.Second))
}
