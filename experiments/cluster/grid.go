// Package cluster runs a grid (package experiments/grid, command `stitch grid`)
// on a cluster: it writes Slurm batch scripts and Kubernetes manifests that
// run the grid's shards in parallel, phase after phase, on nodes that share
// a file system, and merge and report at the end.
//
// The jobs only call `stitch grid`; every command line they run is built by
// the methods of Grid in this file, so that a change in the grid's flags is
// one edit here.
//
// A bad option is an invalid.Setting naming its field in words ("shards",
// "max running"), as experiments/invalid describes; the command line names
// the flag. Job sizes are checked against the schedulers' own limits before
// anything is written: see MaxIndexedCompletions and DefaultMaxArraySize.
package cluster

import (
	"regexp"
	"strings"

	"modelstitch/experiments/invalid"
)

// Phases are the grid's phases in the order they must run: every model is
// trained before any stitch starts.
var Phases = []string{"train", "stitch"}

// ShardWord stands for the value of --shard ("I/N", I counted from 0) in
// the argument lists of Grid.RunArgv; each writer replaces it by how its
// scheduler names the shard (a shell variable, a Kubernetes env reference).
const ShardWord = "{SHARD}/{COUNT}"

// Grid says how to call the grid from a job.
type Grid struct {
	Bin     string   // the stitch executable, as the job sees it
	Spec    string   // the grid's spec file, as the job sees it
	Out     string   // the grid's output directory on the shared file system
	RunArgs []string // more arguments for `grid run` (e.g. --device cuda)
}

// The command lines put every flag before SPEC: urfave/cli, which parses
// stitch's command line, stops reading flags at the first argument.

// RunArgv is the command line that runs one shard of one phase:
//
//	stitch grid run --phase PHASE --shard I/N --out DIR --no-report [RunArgs...] SPEC
//
// with ShardWord in place of I/N. The tasks draw no report: the last job
// does, once, from every shard's rows.
func (g Grid) RunArgv(phase string) []string {
	argv := []string{g.Bin, "grid", "run", "--phase", phase, "--shard", ShardWord, "--out", g.Out, "--no-report"}
	argv = append(argv, g.RunArgs...)
	return append(argv, g.Spec)
}

// MergeArgv is the command line that merges the shards' rows:
//
//	stitch grid merge --out DIR
func (g Grid) MergeArgv() []string {
	return []string{g.Bin, "grid", "merge", "--out", g.Out}
}

// ReportArgv is the command line that draws the report from the rows:
//
//	stitch grid report --out DIR SPEC
func (g Grid) ReportArgv() []string {
	return []string{g.Bin, "grid", "report", "--out", g.Out, g.Spec}
}

// check says which of the grid's fields is missing or bad, as an
// invalid.Setting naming the field ("stitch bin", "spec", "out", "run args").
func (g Grid) check() error {
	for _, f := range []struct{ field, v string }{{"stitch bin", g.Bin}, {"spec", g.Spec}, {"out", g.Out}} {
		if f.v == "" {
			return invalid.Errorf(f.field, "is empty")
		}
		// Every other byte is quoted where it is written (shellQuote, Go
		// quoting in comments, YAML); a NUL cannot be in an argument at all.
		if strings.ContainsRune(f.v, 0) {
			return invalid.Errorf(f.field, "%q holds a NUL byte, which no path or argument may hold", f.v)
		}
	}
	for _, a := range g.RunArgs {
		if strings.ContainsRune(a, 0) {
			return invalid.Errorf("run args", "%q holds a NUL byte, which no argument may hold", a)
		}
	}
	return nil
}

// safeWord matches words that need no quoting in a POSIX shell, wherever
// they stand: no '=' (a first word "A=b" would be an assignment), no '%'
// (a first word "%1" names a job), no '~' (tilde expansion), no glob or
// brace characters.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9_@+:,./-]+$`)

// shellQuote quotes s as one word for a POSIX shell. It is the one way this
// package writes a value into a script: every value that does not come from
// this package's own text goes through it.
func shellQuote(s string) string {
	if safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellLine renders argv as a shell command line; ShardWord becomes
// "${SHARD}/${COUNT}".
func shellLine(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		if a == ShardWord {
			words[i] = `"${SHARD}/${COUNT}"`
		} else {
			words[i] = shellQuote(a)
		}
	}
	return strings.Join(words, " ")
}
