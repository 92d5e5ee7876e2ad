package cluster

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
)

// marker is the file a value below tries to create when a shell runs it as
// code instead of passing it on as data.
const marker = "PWNED9"

// hostile is a value full of shell metacharacters: command substitution of
// both kinds, quotes of both kinds, a separator, line breaks, spaces, a
// variable, a glob, a tilde, a job spec, a backslash, braces and the shape
// of an assignment. Each part that a shell could run tries to create marker
// (relative: in whatever folder the script runs). tag tells values apart;
// breaks separates the parts by line breaks as well as by ";".
func hostile(tag string, breaks bool) string {
	nl := " "
	if breaks {
		nl = "\n"
	}
	return "A=b " + tag + " $(touch " + marker + ") `touch " + marker + "` ' \" ; touch " + marker + " ;" + nl + "touch " + marker +
		nl + "$HOME * ~ %1 \\ {a,b} & | > x"
}

// writeStub writes an executable shell script.
func writeStub(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

// stubLog is what the stubs below append for each call: the argument count
// and then each argument, every one ended by a NUL (the one byte no
// argument can hold).
const stubLog = `printf '%s\0' "$#" "$@" >> "$STUB_LOG"` + "\n"

// readCalls reads a stub's log back into one argument list per call.
func readCalls(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(string(data), "\x00")
	fields = fields[:len(fields)-1] // after the last NUL
	var calls [][]string
	for len(fields) > 0 {
		n, err := strconv.Atoi(fields[0])
		if err != nil || n > len(fields)-1 {
			t.Fatalf("%s: bad log at %q", path, fields)
		}
		calls = append(calls, fields[1:1+n])
		fields = fields[1+n:]
	}
	return calls
}

// noMarkers fails the test if a marker file exists anywhere under root.
func noMarkers(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == marker {
			t.Errorf("a value ran as shell code: %s exists", p)
		}
		return nil
	})
}

// TestScriptsQuoteHostileValues writes both back-ends' scripts from paths
// and arguments full of shell metacharacters and runs them against stand-in
// sbatch, kubectl and stitch executables on PATH: no value may run as code
// (no marker file appears), every script stays valid, and each stand-in
// receives the values byte for byte.
func TestScriptsQuoteHostileValues(t *testing.T) {
	for _, breaks := range []bool{false, true} {
		t.Run(map[bool]string{false: "one line", true: "line breaks"}[breaks], func(t *testing.T) { testHostileValues(t, breaks) })
	}
}

func testHostileValues(t *testing.T, breaks bool) {
	hostile := func(tag string) string { return hostile(tag, breaks) }
	root := t.TempDir()
	stubs := filepath.Join(root, "stubs")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	// The stitch the jobs run lives in a folder with a hostile name, and
	// so does the spec.
	binDir := filepath.Join(root, "bin "+hostile("bin"))
	specDir := filepath.Join(root, "spec "+hostile("spec"))
	for _, d := range []string{binDir, specDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stitchLog := filepath.Join(root, "stitch.log")
	bin := filepath.Join(binDir, "stitch")
	writeStub(t, bin, "#!/bin/bash\nSTUB_LOG="+shellQuote(stitchLog)+"\n"+stubLog)
	spec := filepath.Join(specDir, "grid.toml")
	if err := os.WriteFile(spec, []byte("[[model]]\nname = \"a\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runArgs := []string{hostile("arg"), "--note=$(touch " + marker + ")", "", "'", `"`, "-", "--", "pay $$5 or $(HOME)"}
	if breaks {
		runArgs = append(runArgs, "\n", "a\r\nb")
	}
	env := append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"))

	t.Run("slurm", func(t *testing.T) {
		os.Remove(stitchLog)
		sbatchLog := filepath.Join(root, "sbatch.log")
		// sbatch runs the script it is given at once, as task 0 of its array.
		writeStub(t, filepath.Join(stubs, "sbatch"), "#!/bin/bash\nSTUB_LOG="+shellQuote(sbatchLog)+"\n"+stubLog+
			`SLURM_ARRAY_TASK_ID=0 SLURM_JOB_ID=7 bash "${@: -1}" || { echo "sbatch stub: ${@: -1} failed" >&2; exit 1; }
echo 7
`)
		out := filepath.Join(root, "out "+hostile("out"))
		o := SlurmOptions{
			Grid: Grid{Bin: bin, Spec: spec, Out: out, RunArgs: runArgs},
			Dir:  filepath.Join(root, "slurm"), LogDir: filepath.Join(root, "logs"), Shards: 2,
		}
		s, err := WriteSlurm(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{s.Phases["train"], s.Phases["stitch"], s.Report, s.Submit, s.Requeue} {
			if msg, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
				t.Errorf("bash -n %s: %v\n%s", p, err, msg)
			}
		}
		cmd := exec.Command("bash", s.Submit)
		cmd.Dir, cmd.Env = root, env
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("submit.sh: %v\n%s", err, msg)
		}
		noMarkers(t, root)
		run := func(phase string) []string {
			return append(append([]string{"grid", "run", "--phase", phase, "--shard", "0/2", "--out", out, "--no-report"}, runArgs...), spec)
		}
		want := [][]string{run("train"), run("stitch"), {"grid", "merge", "--out", out}, {"grid", "report", "--out", out, spec}}
		got := readCalls(t, stitchLog)
		if len(got) != len(want) {
			t.Fatalf("stitch ran %d times, want %d: %q", len(got), len(want), got)
		}
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("stitch call %d got\n%q\nwant\n%q", i, got[i], want[i])
			}
		}
		for _, c := range readCalls(t, sbatchLog) {
			if f := c[len(c)-1]; !strings.HasSuffix(f, ".sbatch") {
				t.Errorf("sbatch got %q", c)
			}
		}
	})

	t.Run("k8s", func(t *testing.T) {
		kubectlLog := filepath.Join(root, "kubectl.log")
		// kubectl wait: a Job is complete at once and never fails (the wait
		// for failure blocks until run.sh kills it, which may be before it
		// could log anything, so it logs nothing).
		writeStub(t, filepath.Join(stubs, "kubectl"), "#!/bin/bash\n"+
			`case "$*" in *--for=condition=failed*) exec sleep 600 ;; esac`+"\nSTUB_LOG="+shellQuote(kubectlLog)+"\n"+stubLog)
		mount := "/data " + hostile("mount")
		out := mount + "/" + hostile("out")
		o := K8sOptions{
			Grid: Grid{Bin: "stitch", Spec: spec, Out: out, RunArgs: runArgs},
			Dir:  filepath.Join(root, "k8s"), Name: "paper", Namespace: "ml", Image: "registry.example/stitch:1",
			Shards: 3, Retries: 1, Storage: "1Gi", MountPath: mount,
		}
		m, err := WriteK8s(o)
		if err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command("bash", "-n", m.Run).CombinedOutput(); err != nil {
			t.Errorf("bash -n run.sh: %v\n%s", err, msg)
		}
		cmd := exec.Command("bash", m.Run)
		cmd.Dir, cmd.Env = root, env
		msg, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run.sh: %v\n%s", err, msg)
		}
		noMarkers(t, root)
		if want := "grid done: results and report in " + out + " on the claim\n"; !bytes.Contains(msg, []byte(want)) {
			t.Errorf("run.sh printed\n%q\nwant it to hold\n%q", msg, want)
		}
		for _, c := range readCalls(t, kubectlLog) {
			if len(c) < 3 || c[0] != "-n" || c[1] != "ml" || (c[2] != "apply" && c[2] != "wait") {
				t.Errorf("kubectl got %q", c)
			}
		}
		// The pods get the values intact once Kubernetes has expanded
		// $(VAR) references in them.
		var job batchv1.Job
		strictRead(t, m.Phases["stitch"], &job)
		c := job.Spec.Template.Spec.Containers[0]
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			args[i] = k8sExpand(a, map[string]string{CompletionIndexEnv: "2"})
		}
		want := append(append([]string{"grid", "run", "--phase", "stitch", "--shard", "2/3", "--out", out, "--no-report"}, runArgs...), "/etc/stitch-grid/grid.toml")
		if !slices.Equal(args, want) {
			t.Errorf("the stitch pod's arguments are\n%q\nwant\n%q", args, want)
		}
		if c.VolumeMounts[0].MountPath != mount {
			t.Errorf("mounted at %q, want %q", c.VolumeMounts[0].MountPath, mount)
		}
	})
}

// k8sExpand expands a container argument as Kubernetes does: "$$" is "$",
// "$(NAME)" is NAME's value when vars has it, anything else stays.
func k8sExpand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i:], ')'); end > 0 {
				if v, ok := vars[s[i+2:i+end]]; ok {
					b.WriteString(v)
					i += end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TestK8sRunScriptOutIsData is issue 29's case: an --out holding "$(...)"
// was written unquoted into run.sh, and running it created the file.
func TestK8sRunScriptOutIsData(t *testing.T) {
	o := k8sTestOptions(t)
	o.Grid.Out = "/data/o$(touch " + marker + ") x"
	m, err := WriteK8s(o)
	if err != nil {
		t.Fatal(err)
	}
	stubs := t.TempDir()
	writeStub(t, filepath.Join(stubs, "kubectl"), "#!/bin/bash\n"+
		`case "$*" in *--for=condition=complete*) exit 0 ;; *--for=condition=failed*) exec sleep 600 ;; esac`+"\n")
	cmd := exec.Command("bash", m.Run)
	cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"))
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, msg)
	}
	noMarkers(t, o.Dir)
	if want := "in " + o.Grid.Out + " on the claim"; !strings.Contains(string(msg), want) {
		t.Errorf("run.sh printed %q, want %q in it", msg, want)
	}
}
