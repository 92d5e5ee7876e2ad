package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"modelstitch/experiments/budget"
	"modelstitch/experiments/models"
)

// Child processes: a test that must watch the program from outside (its exit
// status, a signal, a memory limit) runs this test binary again with
// childArgsEnv set; TestMain then runs the program's main on those arguments
// instead of the tests.
const (
	childArgsEnv = "STITCH_TEST_CHILD_ARGS"        // JSON list of the program's arguments
	childASEnv   = "STITCH_TEST_CHILD_AS_HEADROOM" // bytes of address space the child may add to what it maps at start, if set
)

func TestMain(m *testing.M) {
	// The tests load TorchScript archives: the loading child is this binary.
	if child, status, err := models.TorchScriptChild(); child {
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
		}
		os.Exit(status)
	}
	if js := os.Getenv(childArgsEnv); js != "" {
		var args []string
		if err := json.Unmarshal([]byte(js), &args); err != nil {
			os.Stderr.WriteString("bad " + childArgsEnv + ": " + err.Error() + "\n")
			os.Exit(3)
		}
		if s := os.Getenv(childASEnv); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err == nil {
				n += uint64(budget.VirtualBytes()) // libtorch maps gigabytes at start, more on some machines than others
				err = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: n, Max: n})
			}
			if err != nil {
				os.Stderr.WriteString("setting the address-space limit: " + err.Error() + "\n")
				os.Exit(3)
			}
		}
		os.Exit(mainExit(append([]string{"stitch"}, args...)))
	}
	os.Exit(m.Run())
}

// child is a run of the program in a child process.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

// startChild starts the program on args; headroom > 0 limits its address
// space (ulimit -v) to what it maps at start plus headroom bytes.
func startChild(t *testing.T, ctx context.Context, headroom uint64, args ...string) *child {
	t.Helper()
	js, _ := json.Marshal(args)
	c := &child{cmd: exec.CommandContext(ctx, os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), childArgsEnv+"="+string(js))
	if headroom > 0 {
		c.cmd.Env = append(c.cmd.Env, childASEnv+"="+strconv.FormatUint(headroom, 10))
	}
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// wait waits for the child and returns its exit status (-1: killed by a signal).
func (c *child) wait(t *testing.T) int {
	t.Helper()
	code, err := c.status()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return code
}

// status waits for the child and returns its exit status (-1: killed by a
// signal), or the error of waiting.
func (c *child) status() (int, error) {
	err := c.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitCode(), nil
	}
	return 0, err
}

// runChild runs the program on args to its end within limit (headroom as
// for startChild) and returns its exit status and stderr.
func runChild(t *testing.T, limit time.Duration, headroom uint64, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c := startChild(t, ctx, headroom, args...)
	code := c.wait(t)
	if ctx.Err() != nil {
		t.Fatalf("stitch %v did not finish within %s (stderr %q)", args, limit, c.stderr.String())
	}
	return code, c.stderr.String()
}
