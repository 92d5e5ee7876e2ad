// Package slurmtest starts a real one-node Slurm cluster (Debian's slurm-wlm
// and munge) in a temporary directory for a test, and stops it afterwards.
//
// It needs root (the daemons run as root, SlurmUser=root) and the packages
// slurm-wlm and munge; without them the test is skipped with the reason.
// The daemons run in the foreground as children of the test process, with
// their sockets, state, spool and logs in the temporary directory and ports
// picked free on 127.0.0.1; they are stopped by their process ids when the
// test ends (and killed by the kernel if the test process dies first).
package slurmtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NodeName is the cluster's only node.
const NodeName = "stitchnode"

// Options configures the cluster.
type Options struct {
	// CPUs the node offers (default: runtime.NumCPU()). More than the
	// machine has is allowed (SlurmdParameters=config_overrides), for tests
	// whose jobs mostly sleep.
	CPUs int
	// RealMemory of the node in MB (default 1024).
	RealMemory int
}

// Cluster is a running one-node cluster.
type Cluster struct {
	Dir  string // the temporary directory holding everything
	Conf string // its slurm.conf; clients find it through SLURM_CONF
	t    testing.TB
	ds   []*daemonProc
}

// daemonProc is a started daemon; done is closed once it has exited and
// been reaped.
type daemonProc struct {
	name string
	argv []string
	cmd  *exec.Cmd
	done chan struct{}
}

// programs are what the harness and its users run.
var programs = []string{"munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo"}

// Start starts munged, slurmctld and slurmd, waits until the node is idle,
// and registers their shutdown with t.Cleanup. It skips t when not root or
// when a program is missing.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a local Slurm cluster needs root (its daemons run as SlurmUser=root)")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s on PATH: apt-get install slurm-wlm munge", p)
		}
	}
	if o.CPUs <= 0 {
		o.CPUs = runtime.NumCPU()
	}
	if o.RealMemory <= 0 {
		o.RealMemory = 1024
	}
	dir, err := os.MkdirTemp("", "slurmtest-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir, Conf: filepath.Join(dir, "slurm.conf"), t: t}
	t.Cleanup(func() {
		c.Stop()
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("slurmtest: left %s for inspection (logs in log/)", dir)
		}
	})
	if err := c.start(o); err != nil {
		c.dumpLogs()
		t.Fatalf("slurmtest: %v", err)
	}
	return c
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) path(p ...string) string { return filepath.Join(append([]string{c.Dir}, p...)...) }

func (c *Cluster) start(o Options) error {
	// munged insists that its socket's folder be searchable by all and its
	// key readable by its owner only.
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o755}, {"run", 0o755}, {"munge", 0o700}, {"state", 0o755}, {"spool", 0o755}, {"log", 0o755}} {
		if err := os.MkdirAll(c.path(d.name), d.mode); err != nil {
			return err
		}
		if err := os.Chmod(c.path(d.name), d.mode); err != nil {
			return err
		}
	}
	key := make([]byte, 1024)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return err
	}
	_, err = f.Read(key)
	f.Close()
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.path("munge", "munge.key"), key, 0o400); err != nil {
		return err
	}
	sock := c.path("run", "munge.sock")
	if err := c.daemon("munged", "munged", "-F", "--socket="+sock,
		"--key-file="+c.path("munge", "munge.key"), "--pid-file="+c.path("run", "munged.pid"),
		"--seed-file="+c.path("munge", "munged.seed"), "--log-file="+c.path("log", "munged.log")); err != nil {
		return err
	}
	if err := waitFor(10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return fmt.Errorf("munged made no socket: %w", err)
	}

	host, err := os.Hostname()
	if err != nil {
		return err
	}
	host, _, _ = strings.Cut(host, ".")
	ctldPort, err := freePort()
	if err != nil {
		return err
	}
	dPort, err := freePort()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`# A one-node test cluster written by modelstitch/internal/slurmtest.
ClusterName=stitchtest
SlurmctldHost=%[1]s(127.0.0.1)
SlurmctldPort=%[2]d
SlurmdPort=%[3]d
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=%[4]s
StateSaveLocation=%[5]s/state
SlurmdSpoolDir=%[5]s/spool
SlurmctldPidFile=%[5]s/run/slurmctld.pid
SlurmdPidFile=%[5]s/run/slurmd.pid
SlurmctldLogFile=%[5]s/log/slurmctld.log
SlurmdLogFile=%[5]s/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=%[6]s NodeHostname=%[1]s NodeAddr=127.0.0.1 CPUs=%[7]d RealMemory=%[8]d State=UNKNOWN
PartitionName=debug Nodes=%[6]s Default=YES MaxTime=INFINITE State=UP
`, host, ctldPort, dPort, sock, c.Dir, NodeName, o.CPUs, o.RealMemory)
	if err := os.WriteFile(c.Conf, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := c.daemon("slurmctld", "slurmctld", "-D", "-f", c.Conf); err != nil {
		return err
	}
	if err := c.daemon("slurmd", "slurmd", "-D", "-f", c.Conf, "-N", NodeName); err != nil {
		return err
	}
	var state string
	err = waitFor(30*time.Second, func() bool {
		out, err := c.Command("sinfo", "-h", "-n", NodeName, "-o", "%t").Output()
		state = strings.TrimSpace(string(out))
		return err == nil && state == "idle"
	})
	if err != nil {
		return fmt.Errorf("node %s not idle (state %q): %w", NodeName, state, err)
	}
	return nil
}

// daemon starts a daemon in the foreground as a child of this process.
func (c *Cluster) daemon(name string, argv ...string) error {
	d, err := c.startDaemon(name, argv)
	if err != nil {
		return err
	}
	c.ds = append(c.ds, d)
	return nil
}

// startDaemon starts one daemon process and checks that it did not exit at
// once.
func (c *Cluster) startDaemon(name string, argv []string) (*daemonProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = c.Env()
	logf, err := os.OpenFile(c.path("log", name+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed with the test process if it dies before its cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	// A daemon that exits at once (bad config) is an error now, not a timeout later.
	select {
	case <-done:
		return nil, fmt.Errorf("%s exited at once: %v", name, cmd.ProcessState)
	case <-time.After(300 * time.Millisecond):
	}
	return &daemonProc{name: name, argv: argv, cmd: cmd, done: done}, nil
}

// find returns the started daemon of that name.
func (c *Cluster) find(name string) (*daemonProc, int, error) {
	for i, d := range c.ds {
		if d.name == name {
			return d, i, nil
		}
	}
	return nil, 0, fmt.Errorf("slurmtest: no daemon %q started", name)
}

// Kill kills the daemon of that name (munged, slurmctld or slurmd) with
// SIGKILL, as a crash would, and waits until it has exited. Only the daemon
// dies: slurmd's job steps (slurmstepd and the batch scripts it runs) are
// not its children once started, and keep running.
func (c *Cluster) Kill(name string) error {
	d, _, err := c.find(name)
	if err != nil {
		return err
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		select {
		case <-d.done:
			return nil
		default:
			return fmt.Errorf("slurmtest: kill %s: %w", name, err)
		}
	}
	<-d.done
	return nil
}

// Restart starts the daemon of that name again, as it was first started,
// once it has exited (after Kill).
func (c *Cluster) Restart(name string) error {
	d, i, err := c.find(name)
	if err != nil {
		return err
	}
	select {
	case <-d.done:
	default:
		return fmt.Errorf("slurmtest: %s (pid %d) is still running", name, d.cmd.Process.Pid)
	}
	nd, err := c.startDaemon(name, d.argv)
	if err != nil {
		return err
	}
	c.ds[i] = nd
	return nil
}

// NodeState is the node's state as sinfo shows it ("idle", "alloc", "mix",
// "down*", ...; a "*" means its slurmd does not respond).
func (c *Cluster) NodeState() (string, error) {
	return c.Run("sinfo", "-h", "-n", NodeName, "-o", "%t")
}

// Env is this process's environment with SLURM_CONF pointing at the cluster.
func (c *Cluster) Env() []string {
	return append(os.Environ(), "SLURM_CONF="+c.Conf)
}

// Command prepares a Slurm client command for this cluster.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = c.Env()
	return cmd
}

// Run runs a Slurm client command and returns its trimmed output; an error
// includes the output.
func (c *Cluster) Run(name string, args ...string) (string, error) {
	out, err := c.Command(name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, s)
	}
	return s, nil
}

// Job returns the fields of `scontrol show job -o ID` (for an array task,
// ID is JOB_TASK), e.g. JobState, Restarts, ExitCode.
func (c *Cluster) Job(id string) (map[string]string, error) {
	out, err := c.Run("scontrol", "show", "job", "-o", id)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(out, "\n")
	fields := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			if _, seen := fields[k]; !seen {
				fields[k] = v
			}
		}
	}
	return fields, nil
}

// WaitJob waits until the job (or array task) leaves the queue for good and
// returns its final JobState: COMPLETED, FAILED, CANCELLED, TIMEOUT, ... It
// gives up after timeout, and early when the job can never start
// (DependencyNeverSatisfied), returning the state and reason it saw.
func (c *Cluster) WaitJob(id string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var f map[string]string
	var err error
	for time.Now().Before(deadline) {
		f, err = c.Job(id)
		if err == nil {
			switch f["JobState"] {
			case "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED":
				return f["JobState"], nil
			}
			if f["Reason"] == "DependencyNeverSatisfied" {
				return f["JobState"], fmt.Errorf("job %s: its dependency %s can never be satisfied", id, f["Dependency"])
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return f["JobState"], fmt.Errorf("job %s still %s (%s) after %v (last error: %v)", id, f["JobState"], f["Reason"], timeout, err)
}

// Stop cancels every job, then stops the daemons it started, by their
// pids: SIGTERM, and SIGKILL after 10 seconds. It is called on cleanup and
// may be called before.
func (c *Cluster) Stop() {
	if len(c.ds) == 3 { // slurmctld is up: cancel what is left
		c.Run("scancel", "--user=root")
		waitFor(15*time.Second, func() bool {
			out, err := c.Run("squeue", "-h", "-o", "%i")
			return err != nil || out == ""
		})
	}
	for i := len(c.ds) - 1; i >= 0; i-- {
		d := c.ds[i]
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			c.t.Logf("slurmtest: %s (pid %d) ignored SIGTERM; killing it", d.name, d.cmd.Process.Pid)
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	c.ds = nil
}

// Pids are the process ids of the daemons started (munged, slurmctld, slurmd).
func (c *Cluster) Pids() []int {
	var ps []int
	for _, d := range c.ds {
		ps = append(ps, d.cmd.Process.Pid)
	}
	return ps
}

// dumpLogs logs the tails of the daemons' logs.
func (c *Cluster) dumpLogs() {
	logs, _ := filepath.Glob(c.path("log", "*"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		c.t.Logf("--- %s\n%s", l, bytes.TrimSpace(data))
	}
}

// DumpLogs logs the tails of the daemons' logs (for a failing test).
func (c *Cluster) DumpLogs() { c.dumpLogs() }

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
