package resnetkeys

import (
	"fmt"
	"sort"
	"strings"

	"modelstitch/weights"
)

// headPrefixes are projection/prediction heads of self-supervised and other
// training set-ups; their keys are dropped by NormalizeKeys.
var headPrefixes = []string{"projector", "projection_head", "head", "heads", "prototypes", "predictor"}

// wrapperPrefixes are the prefixes NormalizeKeys strips when every key has one.
var wrapperPrefixes = []string{"module.", "_orig_mod.", "model.", "backbone.", "encoder."}

// NormalizeKeys returns sd with wrapper prefixes and heads removed, and notes
// saying what was done. It repeatedly (1) drops projection and prediction
// heads (keys whose first component is projector, projection_head, head,
// heads, prototypes or predictor) and (2) strips one of the prefixes module.,
// _orig_mod., model., backbone., encoder. when every remaining key has it. A
// prefix that only some keys have is left alone (with a note when most have it). The tensors are
// shared with sd, which is not modified.
func NormalizeKeys(sd *weights.StateDict) (*weights.StateDict, []string) {
	keys := append([]string(nil), sd.Keys...)
	orig := make(map[string]string, len(keys)) // current name → original name
	for _, k := range keys {
		orig[k] = k
	}
	var notes []string
	for round := 0; round < 16; round++ {
		changed := false
		// Drop heads.
		dropped := map[string]int{}
		var kept []string
		for _, k := range keys {
			first, _, _ := strings.Cut(k, ".")
			if isHead(first) && len(keys) > 1 {
				dropped[first]++
				continue
			}
			kept = append(kept, k)
		}
		if len(kept) > 0 && len(dropped) > 0 {
			var names []string
			for h := range dropped {
				names = append(names, h)
			}
			sort.Strings(names)
			for _, h := range names {
				notes = append(notes, fmt.Sprintf("ignored %d %s.* keys (a head)", dropped[h], h))
			}
			keys, changed = kept, true
		}
		// Strip a prefix all keys share.
		for _, p := range wrapperPrefixes {
			n := 0
			for _, k := range keys {
				if strings.HasPrefix(k, p) && len(k) > len(p) {
					n++
				}
			}
			if n == 0 {
				continue
			}
			if n < len(keys) {
				if 2*n > len(keys) {
					notes = append(notes, fmt.Sprintf("kept prefix %s: only %d of %d keys have it", p, n, len(keys)))
				}
				continue
			}
			next := make([]string, len(keys))
			for i, k := range keys {
				next[i] = k[len(p):]
			}
			if hasDuplicates(next) {
				continue
			}
			renamed := make(map[string]string, len(next))
			for i, k := range keys {
				renamed[next[i]] = orig[k]
			}
			orig = renamed
			notes = append(notes, fmt.Sprintf("stripped prefix %s from %d keys", p, len(keys)))
			keys, changed = next, true
			break
		}
		if !changed {
			break
		}
	}
	out := &weights.StateDict{Keys: keys, Tensors: make(map[string]*weights.RawTensor, len(keys))}
	for _, k := range keys {
		out.Tensors[k] = sd.Tensors[orig[k]]
	}
	return out, dedupe(notes)
}

func isHead(first string) bool {
	for _, h := range headPrefixes {
		if first == h {
			return true
		}
	}
	return false
}

func hasDuplicates(keys []string) bool {
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
