package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"modelstitch/experiments/invalid"
)

// settingField is the field of the bad setting err names ("" if none).
func settingField(err error) string {
	var s *invalid.Setting
	if errors.As(err, &s) {
		return s.Field
	}
	return ""
}

func testGrid(dir string) Grid {
	return Grid{
		Bin:     "/shared/bin/stitch",
		Spec:    filepath.Join(dir, "paper grid.toml"), // a space, to check quoting
		Out:     "/shared/runs/paper",
		RunArgs: []string{"--device", "cuda"},
	}
}

func TestCommandLines(t *testing.T) {
	g := Grid{Bin: "stitch", Spec: "s.toml", Out: "o"}
	if got, want := strings.Join(g.RunArgv("train"), " "), "stitch grid run --phase train --shard "+ShardWord+" --out o --no-report s.toml"; got != want {
		t.Errorf("run: %s, want %s", got, want)
	}
	if got := strings.Join(g.MergeArgv(), " "); got != "stitch grid merge --out o" {
		t.Errorf("merge: %s", got)
	}
	if got := strings.Join(g.ReportArgv(), " "); got != "stitch grid report --out o s.toml" {
		t.Errorf("report: %s", got)
	}
	if got := shellLine([]string{"a b", "it's", "$HOME", ShardWord, "x=1"}); got != `'a b' 'it'\''s' '$HOME' "${SHARD}/${COUNT}" 'x=1'` {
		t.Errorf("shellLine: %s", got)
	}
}

func TestWriteSlurm(t *testing.T) {
	dir := t.TempDir()
	s, err := WriteSlurm(SlurmOptions{
		Grid: testGrid(dir), Dir: filepath.Join(dir, "slurm"), Shards: 8, MaxRunning: 4,
		GPUs: 1, CPUsPerTask: 8, Mem: "32G", Time: "4:00:00", Partition: "gpu", Account: "proj42",
		Setup: "module load cuda/12.4",
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	train := read(s.Phases["train"])
	for _, want := range []string{
		"#SBATCH --job-name=stitch-train\n", "#SBATCH --array=0-7%4\n", "#SBATCH --requeue\n",
		"#SBATCH --open-mode=append\n", "#SBATCH --output=/shared/runs/paper/logs/train-%A_%a.out\n",
		"#SBATCH --cpus-per-task=8\n", "#SBATCH --gpus=1\n", "#SBATCH --mem=32G\n", "#SBATCH --time=4:00:00\n",
		"#SBATCH --partition=gpu\n", "#SBATCH --account=proj42\n", "module load cuda/12.4\n",
		`SHARD="${SLURM_ARRAY_TASK_ID:?`, "COUNT=8\n",
		`exec /shared/bin/stitch grid run --phase train --shard "${SHARD}/${COUNT}" --out /shared/runs/paper --no-report --device cuda '` + filepath.Join(dir, "paper grid.toml") + "'\n",
	} {
		if !strings.Contains(train, want) {
			t.Errorf("train.sbatch lacks %q:\n%s", want, train)
		}
	}
	if strings.Contains(train, "rm ") {
		t.Error("train.sbatch deletes something")
	}
	if stitch := read(s.Phases["stitch"]); !strings.Contains(stitch, "--phase stitch") || !strings.Contains(stitch, "#SBATCH --gpus=1\n") {
		t.Errorf("stitch.sbatch:\n%s", stitch)
	}
	report := read(s.Report)
	if !strings.Contains(report, "/shared/bin/stitch grid merge --out /shared/runs/paper\nexec /shared/bin/stitch grid report") || strings.Contains(report, "--array") || strings.Contains(report, "--gpus") {
		t.Errorf("report.sbatch:\n%s", report)
	}
	submit := read(s.Submit)
	for _, want := range []string{"STITCH_JOB=$(sbatch --parsable \"${dep[@]}\" stitch.sbatch)", "dep=(--dependency=afterok:$TRAIN_JOB)", "dep=(--dependency=afterok:$STITCH_JOB)", "mkdir -p /shared/runs/paper/logs", "mv jobs.env.tmp jobs.env"} {
		if !strings.Contains(submit, want) {
			t.Errorf("submit.sh lacks %q:\n%s", want, submit)
		}
	}
	if rq := read(s.Requeue); !strings.Contains(rq, `rearm "$STITCH_JOB" "$TRAIN_JOB"`) || !strings.Contains(rq, `rearm "$REPORT_JOB" "$STITCH_JOB"`) {
		t.Errorf("requeue.sh:\n%s", rq)
	}
	// Every script is valid bash.
	for _, p := range []string{s.Phases["train"], s.Phases["stitch"], s.Report, s.Submit, s.Requeue} {
		if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", p, err, out)
		}
	}
}

// TestSlurmScriptRunsTheShard runs train.sbatch outside Slurm as an array
// task would, with a stand-in stitch that prints its arguments.
func TestSlurmScriptRunsTheShard(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "stitch")
	os.WriteFile(bin, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"), 0o755)
	g := testGrid(dir)
	g.Bin = bin
	s, err := WriteSlurm(SlurmOptions{Grid: g, Dir: dir, Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", s.Phases["train"])
	cmd.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID=2")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "[grid][run][--phase][train][--shard][2/3][--out][/shared/runs/paper][--no-report][--device][cuda][" + g.Spec + "]"
	if string(out) != want {
		t.Errorf("ran %s, want %s", out, want)
	}
	cmd = exec.Command("bash", s.Phases["train"])
	cmd.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID=3")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "only 3 shards") {
		t.Errorf("task 3 of 3 shards: %v %s", err, out)
	}
	if out, err := exec.Command("bash", s.Phases["train"]).CombinedOutput(); err == nil || !strings.Contains(string(out), "job array") {
		t.Errorf("outside Slurm: %v %s", err, out)
	}
}

func TestSlurmBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		o    SlurmOptions
		want string
	}{
		{SlurmOptions{Grid: testGrid(dir), Dir: dir, Shards: 0}, "shards"},
		{SlurmOptions{Grid: testGrid(dir), Dir: dir, Shards: 2, Partition: "gpu\n#SBATCH --x"}, "partition"},
		{SlurmOptions{Grid: testGrid(dir), Dir: dir, Shards: 2, Time: "1 day"}, "time"},
		{SlurmOptions{Grid: Grid{Spec: "s", Out: "o"}, Dir: dir, Shards: 2}, "stitch bin"},
	} {
		if _, err := WriteSlurm(c.o); settingField(err) != c.want {
			t.Errorf("%+v: error %v, want a bad setting of %s", c.o, err, c.want)
		}
	}
}

// k8sTestOptions writes a spec and returns options for it.
func k8sTestOptions(t *testing.T) K8sOptions {
	dir := t.TempDir()
	spec := filepath.Join(dir, "grid.toml")
	if err := os.WriteFile(spec, []byte("[[model]]\nname = \"a\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return K8sOptions{
		Grid: Grid{Bin: "stitch", Spec: spec, Out: "/data/paper", RunArgs: []string{"--device", "cuda"}},
		Dir:  filepath.Join(dir, "k8s"), Name: "paper", Namespace: "ml", Image: "registry.example/stitch:cuda",
		Shards: 6, Parallelism: 3, Retries: 2, GPUs: 1, CPU: "4", Memory: "16Gi",
		Storage: "50Gi", StorageClass: "nfs", MountPath: "/data",
		NodeSelector: map[string]string{"gpu": "h100"},
	}
}

// strictRead decodes a manifest into obj, failing on any field the official
// type does not have.
func strictRead(t *testing.T, path string, obj any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
}

func TestWriteK8s(t *testing.T) {
	o := k8sTestOptions(t)
	m, err := WriteK8s(o)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	strictRead(t, m.ConfigMap, &cm)
	if cm.Kind != "ConfigMap" || cm.APIVersion != "v1" || cm.Name != "paper-spec" || cm.Namespace != "ml" || cm.Data["grid.toml"] != "[[model]]\nname = \"a\"\n" {
		t.Errorf("configmap: %+v", cm)
	}
	var pvc corev1.PersistentVolumeClaim
	strictRead(t, m.Claim, &pvc)
	if pvc.Kind != "PersistentVolumeClaim" || pvc.Name != "paper-data" || pvc.Spec.AccessModes[0] != corev1.ReadWriteMany ||
		*pvc.Spec.StorageClassName != "nfs" || pvc.Spec.Resources.Requests.Storage().String() != "50Gi" {
		t.Errorf("pvc: %+v", pvc)
	}
	for _, phase := range Phases {
		var job batchv1.Job
		strictRead(t, m.Phases[phase], &job)
		s := job.Spec
		if job.Kind != "Job" || job.APIVersion != "batch/v1" || job.Name != "paper-"+phase || job.Namespace != "ml" {
			t.Errorf("%s: type or name %s %s %s", phase, job.APIVersion, job.Kind, job.Name)
		}
		if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion || *s.Completions != 6 || *s.Parallelism != 3 ||
			*s.BackoffLimitPerIndex != 2 || *s.PodReplacementPolicy != batchv1.Failed {
			t.Errorf("%s: job spec %+v", phase, s)
		}
		pod := s.Template.Spec
		if pod.RestartPolicy != corev1.RestartPolicyNever || len(pod.Containers) != 1 || pod.NodeSelector["gpu"] != "h100" {
			t.Fatalf("%s: pod %+v", phase, pod)
		}
		c := pod.Containers[0]
		if c.Image != o.Image || strings.Join(c.Command, " ") != "stitch" {
			t.Errorf("%s: image %s command %v", phase, c.Image, c.Command)
		}
		wantArgs := "grid run --phase " + phase + " --shard $(JOB_COMPLETION_INDEX)/6 --out /data/paper --no-report --device cuda /etc/stitch-grid/grid.toml"
		if got := strings.Join(c.Args, " "); got != wantArgs {
			t.Errorf("%s: args %s, want %s", phase, got, wantArgs)
		}
		if len(c.Env) != 1 || c.Env[0].Name != "JOB_COMPLETION_INDEX" || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
			t.Errorf("%s: env %+v", phase, c.Env)
		}
		gpu := c.Resources.Limits[GPUResource]
		if gpu.Value() != 1 || c.Resources.Requests.Cpu().String() != "4" || c.Resources.Limits.Memory().Cmp(resource.MustParse("16Gi")) != 0 {
			t.Errorf("%s: resources %+v", phase, c.Resources)
		}
		if len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "nvidia.com/gpu" {
			t.Errorf("%s: tolerations %+v", phase, pod.Tolerations)
		}
		mounts := map[string]string{}
		for _, vm := range c.VolumeMounts {
			mounts[vm.Name] = vm.MountPath
		}
		vols := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			vols[v.Name] = v
		}
		if mounts["data"] != "/data" || vols["data"].PersistentVolumeClaim == nil || vols["data"].PersistentVolumeClaim.ClaimName != "paper-data" ||
			mounts["spec"] != "/etc/stitch-grid" || vols["spec"].ConfigMap == nil || vols["spec"].ConfigMap.Name != "paper-spec" {
			t.Errorf("%s: mounts %v volumes %+v", phase, mounts, vols)
		}
	}
	var rep batchv1.Job
	strictRead(t, m.Report, &rep)
	if rep.Spec.CompletionMode != nil || *rep.Spec.Completions != 1 || len(rep.Spec.Template.Spec.InitContainers) != 1 ||
		strings.Join(rep.Spec.Template.Spec.InitContainers[0].Args, " ") != "grid merge --out /data/paper" ||
		strings.Join(rep.Spec.Template.Spec.Containers[0].Args, " ") != "grid report --out /data/paper /etc/stitch-grid/grid.toml" {
		t.Errorf("report job: %+v", rep.Spec)
	}
	if _, ok := rep.Spec.Template.Spec.Containers[0].Resources.Limits[GPUResource]; ok || len(rep.Spec.Template.Spec.Tolerations) > 0 {
		t.Error("the report job asks for a GPU or tolerates GPU nodes' taint")
	}
	run, err := os.ReadFile(m.Run)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"apply -f spec-configmap.yaml -f pvc.yaml\n",
		"apply -f job-train.yaml\nwait_job paper-train\n",
		"apply -f job-stitch.yaml\nwait_job paper-stitch\n",
		"apply -f job-report.yaml\nwait_job paper-report\n",
		"wait --for=condition=complete", "KUBECTL=(kubectl -n ml)",
	} {
		if !strings.Contains(string(run), want) {
			t.Errorf("run.sh lacks %q:\n%s", want, run)
		}
	}
	if strings.Index(string(run), "job-train.yaml") > strings.Index(string(run), "job-stitch.yaml") {
		t.Error("run.sh applies the stitch job before the train job")
	}
	if out, err := exec.Command("bash", "-n", m.Run).CombinedOutput(); err != nil {
		t.Errorf("bash -n run.sh: %v\n%s", err, out)
	}
}

// TestK8sExistingClaimNoGPU uses a named claim and no GPU: no claim object,
// no GPU request or toleration, and a literal "$(" kept from expansion.
func TestK8sExistingClaimNoGPU(t *testing.T) {
	o := k8sTestOptions(t)
	o.Claim, o.GPUs, o.Parallelism = "shared-results", 0, 0
	o.Grid.RunArgs = []string{"--note", "$(not a var)"}
	m, err := WriteK8s(o)
	if err != nil {
		t.Fatal(err)
	}
	if m.Claim != "" {
		t.Errorf("wrote a claim %s", m.Claim)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, "pvc.yaml")); err == nil {
		t.Error("pvc.yaml written for an existing claim")
	}
	var job batchv1.Job
	strictRead(t, m.Phases["train"], &job)
	pod := job.Spec.Template.Spec
	if pod.Volumes[0].PersistentVolumeClaim.ClaimName != "shared-results" || *job.Spec.Parallelism != 6 || len(pod.Tolerations) != 0 {
		t.Errorf("job %+v", job.Spec)
	}
	if _, ok := pod.Containers[0].Resources.Limits[GPUResource]; ok {
		t.Error("GPU limit without --gpus")
	}
	if args := pod.Containers[0].Args; args[len(args)-2] != "$$(not a var)" {
		t.Errorf("args %q", args)
	}
}

func TestK8sBadOptions(t *testing.T) {
	for _, c := range []struct {
		edit func(*K8sOptions)
		want string
	}{
		{func(o *K8sOptions) { o.Name = "Paper_Grid" }, "name"},
		{func(o *K8sOptions) { o.Image = "" }, "image"},
		{func(o *K8sOptions) { o.Memory = "lots" }, "memory"},
		{func(o *K8sOptions) { o.Storage = "big" }, "storage"},
		{func(o *K8sOptions) { o.Grid.Out = "/tmp/out" }, "out"},
		{func(o *K8sOptions) { o.Grid.Out = "/database/out" }, "out"},
		{func(o *K8sOptions) { o.Shards = 0 }, "shards"},
		{func(o *K8sOptions) { o.PullPolicy = "Sometimes" }, "pull policy"},
	} {
		o := k8sTestOptions(t)
		c.edit(&o)
		if _, err := WriteK8s(o); settingField(err) != c.want {
			t.Errorf("error %v, want a bad setting of %s", err, c.want)
		}
	}
	o := k8sTestOptions(t)
	o.Grid.Spec = "/no/such/grid.toml"
	if _, err := WriteK8s(o); err == nil || !strings.Contains(err.Error(), "grid.toml") {
		t.Errorf("a missing spec: error %v, want one naming it", err)
	}
}

// TestK8sRunScriptOrder runs run.sh against a stand-in kubectl that records
// its calls (no Kubernetes cluster here): every Job is applied only after
// the one before has completed, and a failed Job stops the run.
func TestK8sRunScriptOrder(t *testing.T) {
	o := k8sTestOptions(t)
	m, err := WriteK8s(o)
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	// `wait --for=condition=X job/NAME` returns at once when NAME's outcome
	// (from $OUTCOME_<name>, default complete) is X, and otherwise blocks.
	stub := `#!/bin/bash
echo "$*" >> ` + calls + `
if [ "$3" = wait ]; then
	job=${6#job/}; var=OUTCOME_${job//-/_}; outcome=${!var:-complete}
	if [ "$4" = "--for=condition=$outcome" ]; then sleep 0.2; echo "$6 condition met"; exit 0; fi
	exec sleep 30
fi
`
	if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(env ...string) (string, error) {
		os.Remove(calls)
		cmd := exec.Command("bash", m.Run)
		cmd.Env = append(append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH")), env...)
		out, err := cmd.CombinedOutput()
		log, _ := os.ReadFile(calls)
		return string(out) + "\n--- kubectl calls:\n" + string(log), err
	}
	out, err := run()
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	var order []string
	for _, l := range strings.Split(out[strings.Index(out, "--- kubectl calls:"):], "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[2] == "apply" {
			order = append(order, "apply "+strings.Join(f[4:], " "))
		} else if len(f) >= 6 && f[2] == "wait" && f[3] == "--for=condition=complete" {
			order = append(order, "wait "+f[5])
		}
	}
	want := "apply spec-configmap.yaml -f pvc.yaml|apply job-train.yaml|wait job/paper-train|apply job-stitch.yaml|wait job/paper-stitch|apply job-report.yaml|wait job/paper-report"
	if got := strings.Join(order, "|"); got != want {
		t.Errorf("kubectl calls in order:\n%s\nwant\n%s\n%s", got, want, out)
	}
	out, err = run("OUTCOME_paper_train=failed")
	if err == nil || !strings.Contains(out, "job paper-train failed") || strings.Contains(out, "job-stitch.yaml") {
		t.Errorf("run.sh with a failed train Job: %v\n%s", err, out)
	}
}

// TestStrictDecodingCatchesUnknownFields shows that the manifest checks
// above can fail: a misspelt field is an error, not silently dropped.
func TestStrictDecodingCatchesUnknownFields(t *testing.T) {
	o := k8sTestOptions(t)
	m, err := WriteK8s(o)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(m.Phases["train"])
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "completionMode: Indexed", "completionsMode: Indexed", 1)
	if bad == string(data) {
		t.Fatal("no completionMode in the train job")
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict([]byte(bad), &job); err == nil || !strings.Contains(err.Error(), "completionsMode") {
		t.Errorf("strict decoding of a misspelt field: %v", err)
	}
}
