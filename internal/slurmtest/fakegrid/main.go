// Command fakegrid stands in for `stitch grid` in the cluster tests while the
// real grid is not there: it takes the same command lines, shards units the
// same way (by a hash of the unit id), writes one row per unit to its shard
// file, resumes a re-run shard, and merges with the same code.
//
//	fakegrid grid run --phase train|stitch --shard I/N --out DIR SPEC
//	fakegrid grid merge --out DIR
//	fakegrid grid report --out DIR SPEC
//
// Like stitch's command line, it reads flags only before SPEC.
//
// SPEC lists one unit a line: "train NAME" or "stitch NAME BOTTOM TOP", where
// BOTTOM and TOP name train units whose checkpoints (DIR/models/NAME.ckpt)
// must exist, so a stitch that runs before its models fails. Each unit sleeps
// $FAKEGRID_UNIT_SLEEP (a Go duration) in the middle of writing its row, so
// that a kill lands inside a row and leaves it torn.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modelstitch/experiments/shardfile"
	"modelstitch/internal/atomicfile"
)

type unit struct {
	phase, id string
	needs     []string
}

type row struct {
	ID    string `json:"unit"`
	Phase string `json:"phase"`
	Value uint32 `json:"value"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fakegrid:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 || args[0] != "grid" {
		return fmt.Errorf("usage: fakegrid grid run|merge|report ...")
	}
	cmd, rest := args[1], args[2:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	phase := fs.String("phase", "", "train or stitch")
	shard := fs.String("shard", "0/1", "I/N")
	out := fs.String("out", "", "output directory")
	if err := fs.Parse(rest); err != nil {
		return err
	}
	spec := fs.Arg(0)
	if want := map[bool]int{true: 0, false: 1}[cmd == "merge"]; fs.NArg() != want {
		return fmt.Errorf("%s: want %d argument(s) after the flags, got %q", cmd, want, fs.Args())
	}
	if *out == "" {
		return fmt.Errorf("%s: no --out", cmd)
	}
	switch cmd {
	case "run":
		var i, n int
		if _, err := fmt.Sscanf(*shard, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n {
			return fmt.Errorf("--shard %q: want I/N with 0 <= I < N", *shard)
		}
		return runShard(spec, *phase, i, n, *out)
	case "merge":
		st, err := shardfile.Merge(*out)
		if err != nil {
			return err
		}
		fmt.Printf("merged %d rows from %d files: %d duplicates, %d torn\n", st.Unique, st.Files, st.Duplicates, st.Torn)
		return nil
	case "report":
		data, err := os.ReadFile(filepath.Join(*out, shardfile.MergedName))
		if err != nil {
			return err
		}
		n := strings.Count(string(data), "\n")
		return atomicfile.WriteFile(filepath.Join(*out, "report.txt"), []byte(fmt.Sprintf("%d rows\n", n)), 0o644)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func readSpec(path string) ([]unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var us []unit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) == 0 {
			continue
		}
		us = append(us, unit{phase: w[0], id: w[0] + "/" + w[1], needs: w[2:]})
	}
	return us, sc.Err()
}

func hash(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

func runShard(spec, phase string, shard, count int, out string) error {
	units, err := readSpec(spec)
	if err != nil {
		return err
	}
	sleep, _ := time.ParseDuration(os.Getenv("FAKEGRID_UNIT_SLEEP"))
	path := shardfile.Path(out, shard, count)
	w, err := shardfile.Open(path, time.Minute)
	if err != nil {
		return err
	}
	defer w.Close()
	if w.CutBytes() > 0 {
		fmt.Fprintf(os.Stderr, "fakegrid: cut a torn row of %d bytes from %s\n", w.CutBytes(), path)
	}
	done, err := shardfile.Done(path)
	if err != nil {
		return err
	}
	// A second descriptor for the slow, two-part writes; the Writer holds the lock.
	raw, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer raw.Close()
	models := filepath.Join(out, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		return err
	}
	for _, u := range units {
		if u.phase != phase || int(hash(u.id)%uint32(count)) != shard || done[u.id] {
			continue
		}
		for _, m := range u.needs {
			if _, err := os.Stat(filepath.Join(models, m+".ckpt")); err != nil {
				return fmt.Errorf("%s needs model %s: %w", u.id, m, err)
			}
		}
		if phase == "train" {
			name := strings.TrimPrefix(u.id, "train/")
			if err := atomicfile.WriteFile(filepath.Join(models, name+".ckpt"), []byte(u.id), 0o644); err != nil {
				return err
			}
		}
		line, _ := json.Marshal(row{ID: u.id, Phase: phase, Value: hash(u.id + "/value")})
		half := len(line) / 2
		if _, err := raw.Write(line[:half]); err != nil {
			return err
		}
		raw.Sync()
		time.Sleep(sleep)
		if _, err := raw.Write(append(line[half:], '\n')); err != nil {
			return err
		}
		if err := raw.Sync(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "fakegrid: %s done (shard %d/%d)\n", u.id, shard, count)
	}
	return nil
}
