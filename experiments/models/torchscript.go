package models

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"modelstitch/torch"
	"modelstitch/weights"
)

// TorchScript archives are loaded by libtorch, which runs the code they carry
// (a module's __setstate__ runs while loading), unlike the checkpoints our own
// pickle reader handles, which never run anything. So a TorchScript archive is
// first checked in Go (weights.CheckTorchScriptFile: every tensor's record
// holds its bytes), then loaded in a child process of this same binary, under
// a time limit: a module that loops forever, or crashes libtorch, costs the
// child, not this process.

// TorchScriptTimeout bounds the time one TorchScript archive may take to load.
// The environment variable MODELSTITCH_TORCHSCRIPT_TIMEOUT (a Go duration,
// e.g. "10m") overrides it.
var TorchScriptTimeout = 2 * time.Minute

// Environment variables that make this binary a TorchScript-loading child.
const (
	childLoadEnv = "MODELSTITCH_TORCHSCRIPT_LOAD"
	childOutEnv  = "MODELSTITCH_TORCHSCRIPT_OUT"
	timeoutEnv   = "MODELSTITCH_TORCHSCRIPT_TIMEOUT"
)

// childFailed is the exit status of a child that could not load its archive
// (its stderr says why).
const childFailed = 2

// TorchScriptChild is the entry of the TorchScript-loading child. When
// OpenResNet started this process as one, it loads the archive the parent
// named and writes its tensors where the parent reads them, and returns
// child true with the status the process must exit with at once, after
// printing err (if not nil) on stderr for the parent. In any other process
// it does nothing and returns child false. A program that may load
// TorchScript (the stitch command) calls it first thing in main; so does
// the TestMain of a test binary whose tests load TorchScript, since the
// child is that same binary.
func TorchScriptChild() (child bool, status int, err error) {
	path := os.Getenv(childLoadEnv)
	if path == "" {
		return false, 0, nil
	}
	if err := torchScriptChild(path, os.Getenv(childOutEnv)); err != nil {
		return true, childFailed, err
	}
	return true, 0, nil
}

// torchScriptChild loads path through libtorch and writes its parameters and
// buffers, under their own names, to out.
func torchScriptChild(path, out string) error {
	if out == "" {
		return errors.New("no output file")
	}
	names, ts, err := torch.LoadTorchScript(path)
	if err != nil {
		return err
	}
	defer torch.FreeAll(ts...)
	sd := weights.NewStateDict()
	for i, n := range names {
		r, err := ToRaw(ts[i])
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		sd.Set(n, r)
	}
	return weights.WriteSafetensors(out, sd, nil)
}

// loadTorchScriptIsolated checks a TorchScript archive and loads it in a
// child process under TorchScriptTimeout, returning its state dict with
// normalised keys.
func loadTorchScriptIsolated(path, key string) (*weights.Checkpoint, error) {
	if err := weights.CheckTorchScriptFile(path); err != nil {
		return nil, err // names the file
	}
	timeout := TorchScriptTimeout
	if s := os.Getenv(timeoutEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("model %s: %s=%q is not a positive duration", path, timeoutEnv, s)
		}
		timeout = d
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("model %s: finding this program to load TorchScript in a child process: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	dir, err := os.MkdirTemp("", "modelstitch-torchscript-")
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "tensors.safetensors")

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), childLoadEnv+"="+abs, childOutEnv+"="+out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("model %s: loading TorchScript did not finish within %s and was stopped: "+
			"a TorchScript archive runs the code it carries while loading (e.g. a module's __setstate__), "+
			"unlike a torch.save file, which is read without running anything; if the file is trusted and "+
			"only slow, set %s (e.g. 10m)", path, timeout, timeoutEnv)
	case runErr != nil:
		var ee *exec.ExitError
		if errors.As(runErr, &ee) && ee.ExitCode() == childFailed {
			return nil, fmt.Errorf("model %s: reading TorchScript: %s%s", path, torchScriptError(stderr.String()), fullMessage(stderr.String()))
		}
		msg := torchScriptError(stderr.String())
		if msg != "" {
			msg = ": " + msg
		}
		return nil, fmt.Errorf("model %s: loading TorchScript in a child process failed (%v)%s%s", path, runErr, msg, fullMessage(stderr.String()))
	}
	ck, err := weights.ReadSafetensorsWith(out, weights.ReadOptions{Key: key})
	if err != nil {
		return nil, fmt.Errorf("model %s: reading the tensors the TorchScript loader wrote: %w", path, err)
	}
	ck.Path, ck.Format = path, weights.FormatTorchScript
	return ck, nil
}

// pythonError matches the line that states an exception ("RuntimeError: ...",
// "builtins.ValueError: ...") at the end of a TorchScript traceback.
var pythonError = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception): \S`)

// VerboseEnv, when set to anything but "" or "0", makes errors carry the
// full text of libtorch's message (a TorchScript traceback of 20 lines or
// more) after the one meaningful line they otherwise keep.
const VerboseEnv = "MODELSTITCH_VERBOSE"

// fullMessage is what an error about a TorchScript file adds after its
// meaningful line: libtorch's full message when VerboseEnv is set, else a
// hint that it exists.
func fullMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	if strings.Count(msg, "\n") == 0 {
		return ""
	}
	if v := os.Getenv(VerboseEnv); v != "" && v != "0" {
		return "\nlibtorch's full message:\n" + weights.SanitizeMessage(msg, 1<<16)
	}
	return " (" + VerboseEnv + "=1 shows libtorch's full message)"
}

// torchScriptError keeps the meaningful line of libtorch's many-line error
// about a TorchScript archive: the exception line of an interpreter traceback,
// else the first line that is neither a traceback, source context nor a C++
// frame; made safe to print.
func torchScriptError(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); pythonError.MatchString(l) {
			return weights.SanitizeMessage(l, 300)
		}
	}
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case t == "", l != t && !strings.HasPrefix(l, "jit_load"),
			strings.HasPrefix(t, "Traceback"), strings.HasPrefix(t, "The following operation failed"),
			strings.HasPrefix(t, "Exception raised from"), strings.HasPrefix(t, "frame #"):
			continue
		}
		return weights.SanitizeMessage(t, 300)
	}
	return ""
}
