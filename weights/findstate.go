package weights

// This file finds the state dict in an unpickled torch.save object graph:
// wrapper dicts ({'state_dict': …}, Lightning's, DINO's teacher and student),
// whole pickled modules, the entries beside it that are metadata (epoch,
// hyper-parameters), and the wrapper path ReadOptions.Key names. The keys of
// the state dict found stay as stored (weights/resnetkeys maps them).

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/nlpodyssey/gopickle/types"
)

// preferredKeys are the wrapper entries that hold a state dict, best first.
var preferredKeys = []string{
	"state_dict", "model", "model_state_dict", "net", "network", "backbone", "encoder",
	"teacher", "student", "module", "weights", "params",
}

// sideKeys are wrapper entries that hold tensors but never the model's weights.
var sideKeys = map[string]bool{
	"optimizer": true, "optimizer_state_dict": true, "optimizer_states": true, "optim": true,
	"scheduler": true, "lr_scheduler": true, "lr_schedulers": true, "scaler": true, "amp": true,
	"callbacks": true, "loops": true,
}

// kv is one entry of a pickled dict.
type kv struct{ key, val any }

// dictEntries lists the entries of a pickled dict-like value, in order.
func dictEntries(v any) ([]kv, bool) {
	switch d := v.(type) {
	case *types.OrderedDict:
		out := make([]kv, 0, d.Len())
		for el := d.List.Front(); el != nil; el = el.Next() {
			if e, ok := el.Value.(*types.OrderedDictEntry); ok {
				out = append(out, kv{e.Key, e.Value})
			}
		}
		return out, true
	case *types.Dict:
		out := make([]kv, 0, len(*d))
		for _, e := range *d {
			out = append(out, kv{e.Key, e.Value})
		}
		return out, true
	case *pyObject:
		if d.Items != nil {
			return dictEntries(d.Items)
		}
	}
	return nil, false
}

// isDictLike reports whether dictEntries would accept v, without listing it.
func isDictLike(v any) bool {
	switch d := v.(type) {
	case *types.OrderedDict, *types.Dict:
		return true
	case *pyObject:
		return d.Items != nil
	}
	return false
}

// lookup finds a string key in a pickled dict-like value.
func lookup(v any, key string) (any, bool) {
	entries, _ := dictEntries(v)
	for _, e := range entries {
		if k, ok := e.key.(string); ok && k == key {
			return e.val, true
		}
	}
	return nil, false
}

// found is a state dict located in an unpickled object.
type found struct {
	keys    []string
	tensors []*tensorRef
	dict    any      // the dict the tensors came from (for its attributes)
	path    []string // wrapper entries leading to it
	notes   []string
}

// tensorEntries returns the tensors of v if v is a state dict: a dict with
// string keys whose values are all tensors (a module's *_extra_state entries
// and None values are skipped). With lenient set, non-tensor values are
// skipped too, as long as some tensors remain.
func tensorEntries(v any, lenient bool) (*found, bool) {
	entries, ok := dictEntries(v)
	if !ok || len(entries) == 0 {
		return nil, false
	}
	f := &found{dict: v}
	var skipped []string
	for _, e := range entries {
		k, ok := e.key.(string)
		if !ok {
			return nil, false
		}
		switch t := e.val.(type) {
		case *tensorRef:
			f.keys = append(f.keys, k)
			f.tensors = append(f.tensors, t)
		case nil:
			skipped = append(skipped, k)
		default:
			if !lenient && !strings.HasSuffix(k, "_extra_state") {
				return nil, false
			}
			if lenient && isDictLike(e.val) && !strings.HasSuffix(k, "_extra_state") {
				return nil, false
			}
			skipped = append(skipped, k)
		}
	}
	if len(f.keys) == 0 {
		return nil, false
	}
	if len(skipped) > 0 {
		f.notes = append(f.notes, fmt.Sprintf("ignored %d non-tensor entries beside the tensors (%s)", len(skipped), listSome(skipped, 5)))
	}
	return f, true
}

// search looks for a state dict in v: v itself, a pickled nn.Module, or an
// entry of a wrapper dict (preferred names first, then the entry with the
// most tensors, never optimizer state).
func search(v any, depth int, seen map[any]bool) (*found, bool) {
	switch v.(type) {
	case *types.Dict, *types.OrderedDict, *pyObject:
		if seen[v] { // shared or cyclic containers are searched once
			return nil, false
		}
		seen[v] = true
	}
	if f, ok := tensorEntries(v, false); ok {
		return f, true
	}
	if f, ok := moduleTensors(v); ok {
		return f, true
	}
	entries, ok := dictEntries(v)
	if !ok || depth >= 4 {
		return nil, false
	}
	for _, name := range preferredKeys {
		for _, e := range entries {
			if k, _ := e.key.(string); k == name {
				if f, ok := search(e.val, depth+1, seen); ok {
					f.path = append([]string{name}, f.path...)
					return f, true
				}
			}
		}
	}
	var best *found
	var bestKey string
	var candidates []string
	for _, e := range entries {
		k, ok := e.key.(string)
		if !ok || sideKeys[k] {
			continue
		}
		if f, ok := search(e.val, depth+1, seen); ok {
			candidates = append(candidates, k)
			if best == nil || RoleRank(k) < RoleRank(bestKey) || RoleRank(k) == RoleRank(bestKey) && len(f.keys) > len(best.keys) {
				best, bestKey = f, k
			}
		}
	}
	if best != nil {
		best.path = append([]string{bestKey}, best.path...)
		if len(candidates) > 1 {
			best.notes = append(best.notes, fmt.Sprintf("several entries hold tensors (%s); chose %q (online/query/base/teacher entries before "+
				"momentum/target/EMA/student ones, then the one with most tensors); the key setting picks another by its entry",
				strings.Join(candidates, ", "), bestKey))
		}
		return best, true
	}
	return tensorEntries(v, true)
}

// RoleRank orders copies of one network by the role their name says: 0 for
// an online, query, base or teacher network, 2 for a momentum, target, key,
// EMA, student or attacker copy, 1 for others. Each dotted component of name
// counts. The search for the state dict uses it to choose among wrapper
// entries, and resnetkeys among the networks in one state dict (RoleRule).
func RoleRank(name string) int {
	rank := 1
	for _, c := range strings.Split(strings.TrimSuffix(strings.ToLower(name), "."), ".") {
		switch {
		case c == "encoder_k" || c == "key_encoder" || strings.Contains(c, "momentum") || strings.Contains(c, "target") ||
			c == "ema" || strings.HasPrefix(c, "ema_") || strings.HasSuffix(c, "_ema") || c == "student" || c == "attacker":
			return 2
		case c == "encoder_q" || c == "query_encoder" || c == "base_encoder" || strings.Contains(c, "online") || c == "teacher":
			rank = 0
		}
	}
	return rank
}

// moduleTensors rebuilds the state dict of a pickled nn.Module (torch.save(model)):
// its _parameters and persistent _buffers, then its _modules, recursively.
func moduleTensors(v any) (*found, bool) {
	obj, ok := v.(*pyObject)
	if !ok || obj.State == nil {
		return nil, false
	}
	if _, ok := lookup(moduleState(obj), "_modules"); !ok {
		return nil, false
	}
	f := &found{}
	visited := map[*pyObject]bool{}
	var walk func(o any, prefix string, depth int)
	walk = func(o any, prefix string, depth int) {
		m, ok := o.(*pyObject)
		if !ok || depth > 100 || visited[m] {
			return
		}
		visited[m] = true
		st := moduleState(m)
		if params, ok := lookup(st, "_parameters"); ok {
			entries, _ := dictEntries(params)
			for _, e := range entries {
				if k, ok := e.key.(string); ok {
					if t, ok := e.val.(*tensorRef); ok {
						f.keys = append(f.keys, prefix+k)
						f.tensors = append(f.tensors, t)
					}
				}
			}
		}
		nonPersistent := map[any]bool{}
		if s, ok := lookup(st, "_non_persistent_buffers_set"); ok {
			if set, ok := s.(*types.Set); ok {
				for k := range *set {
					nonPersistent[k] = true
				}
			}
		}
		if bufs, ok := lookup(st, "_buffers"); ok {
			entries, _ := dictEntries(bufs)
			for _, e := range entries {
				if k, ok := e.key.(string); ok && !nonPersistent[k] {
					if t, ok := e.val.(*tensorRef); ok {
						f.keys = append(f.keys, prefix+k)
						f.tensors = append(f.tensors, t)
					}
				}
			}
		}
		if mods, ok := lookup(st, "_modules"); ok {
			entries, _ := dictEntries(mods)
			for _, e := range entries {
				if k, ok := e.key.(string); ok {
					walk(e.val, prefix+k+".", depth+1)
				}
			}
		}
	}
	walk(obj, "", 0)
	if len(f.keys) == 0 {
		return nil, false
	}
	f.notes = append(f.notes, fmt.Sprintf("rebuilt the state dict of a pickled %s (torch.save of a whole model)", obj.Class))
	return f, true
}

// moduleState is the __dict__ a pickled object was built with.
func moduleState(o *pyObject) any {
	if t, ok := o.State.(*types.Tuple); ok && t.Len() == 2 {
		return t.Get(0)
	}
	return o.State
}

// checkpointFrom finds the state dict in an unpickled torch.save object,
// materialises its tensors and collects metadata; the keys stay as stored.
// The tensors of one file may take at most budgetFactor times the file's size
// plus budgetSlack bytes once materialised: tied weights repeat a storage, but
// a hostile file could name one big storage a million times.
const (
	budgetFactor = 4
	budgetSlack  = 1 << 28
)

func checkpointFrom(root any, format string, fileSize int64, opt ReadOptions) (*Checkpoint, error) {
	top, keyPrefix, walked := root, opt.Key, []string(nil)
	if opt.Key != "" {
		top, walked, keyPrefix = walkKey(root, opt.Key)
	}
	f, ok := search(top, 0, map[any]bool{})
	if !ok {
		if len(walked) > 0 {
			return nil, &OptionError{Option: "key", Problem: fmt.Sprintf("%s: no state dict found under %s: %s", opt.Key, strings.Join(walked, "."), describeTop(top))}
		}
		return nil, fmt.Errorf("no state dict found: %s", describeTop(root))
	}
	f.path = append(walked, f.path...)
	ck := &Checkpoint{Format: format, State: NewStateDict(), Metadata: map[string]string{}}
	if len(f.path) > 0 {
		var ignored []string
		entries, _ := dictEntries(root)
		for _, e := range entries {
			k, ok := e.key.(string)
			if !ok {
				continue
			}
			if k != f.path[0] {
				ignored = append(ignored, k)
			}
			if s, ok := scalarString(e.val); ok {
				ck.Metadata[k] = s
			}
			if k == "hyper_parameters" || k == "hparams" || k == "args" || k == "config" || k == "cfg" {
				hyperScalars(e.val, k, 0, ck.Metadata)
			}
		}
		note := fmt.Sprintf("state dict found under %s", strings.Join(f.path, "."))
		if len(ignored) > 0 {
			note += fmt.Sprintf("; ignored entries %s", listSome(ignored, 8))
		}
		ck.Notes = append(ck.Notes, note)
	}
	ck.Notes = append(ck.Notes, f.notes...)
	for _, d := range []any{root, f.dict} {
		if od, ok := d.(*types.OrderedDict); ok {
			for k, v := range od.PyDict {
				if s, ok := v.(string); ok && (k == "_"+MetadataKey || strings.HasPrefix(k, "_"+MetadataKey+"_")) {
					ck.Metadata[metaKeyFromAttr(k)] = s
				}
			}
		}
	}
	budget := budgetFactor*fileSize + budgetSlack
	for i, k := range f.keys {
		nb, ok := byteSize(f.tensors[i].size, f.tensors[i].st.st.dtype)
		if !ok {
			return nil, fmt.Errorf("tensor %q: bad size %v", k, f.tensors[i].size)
		}
		if budget -= nb; budget < 0 {
			return nil, fmt.Errorf("tensor %q: the tensors would take more than %d times the file's size", k, budgetFactor)
		}
	}
	for i, k := range f.keys {
		t, err := f.tensors[i].materialize()
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", k, err)
		}
		if _, dup := ck.State.Tensors[k]; dup {
			return nil, fmt.Errorf("tensor %q appears twice", k)
		}
		ck.State.Set(k, t)
	}
	if len(walked) > 0 {
		ck.Notes = append(ck.Notes, fmt.Sprintf("key %s: took the wrapper entry %s", opt.Key, strings.Join(walked, ".")))
	}
	ck.KeyPrefix = keyPrefix
	return ck, nil
}

// walkKey follows key's dotted components through wrapper dicts from root
// for as long as they name entries that are not tensors, and returns the
// value reached, the entries followed and what is left of key (a key prefix).
func walkKey(root any, key string) (any, []string, string) {
	parts := strings.Split(strings.TrimSuffix(key, "."), ".")
	cur := root
	var walked []string
	for len(parts) > 0 {
		v, ok := lookup(cur, parts[0])
		if !ok || v == nil {
			break
		}
		if _, isTensor := v.(*tensorRef); isTensor {
			break
		}
		if !isDictLike(v) {
			if _, isObj := v.(*pyObject); !isObj {
				break
			}
		}
		cur = v
		walked = append(walked, parts[0])
		parts = parts[1:]
	}
	return cur, walked, strings.Join(parts, ".")
}

// hyperScalars copies the plain scalars of a training run's hyper-parameters
// (a dict, or an object such as argparse.Namespace, nested up to three
// levels) into md as "prefix.name.sub" entries.
func hyperScalars(v any, prefix string, depth int, md map[string]string) {
	if depth > 3 {
		return
	}
	if o, ok := v.(*pyObject); ok && o.Items == nil {
		v = moduleState(o)
	}
	entries, ok := dictEntries(v)
	if !ok {
		return
	}
	for _, e := range entries {
		k, ok := e.key.(string)
		if !ok {
			continue
		}
		if s, ok := scalarString(e.val); ok {
			if len(md) < 4096 {
				md[prefix+"."+k] = s
			}
			continue
		}
		hyperScalars(e.val, prefix+"."+k, depth+1, md)
	}
}

// scalarString renders a plain pickled scalar (string, number, bool).
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	case *big.Int:
		return x.String(), true
	}
	return "", false
}

// describeTop says what an unpickled object is, for "no state dict" errors.
func describeTop(v any) string {
	if entries, ok := dictEntries(v); ok {
		var keys []string
		for _, e := range entries {
			keys = append(keys, describe(e.key))
		}
		if len(keys) == 0 {
			return "the file holds an empty dict"
		}
		return "the file holds a dict with entries " + listSome(keys, 10) + ", none of them a dict of tensors"
	}
	return "the file holds " + describe(v)
}

// listSome joins up to n items, saying how many more there are.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}

// metaKeyFromAttr maps a state-dict attribute name to a Metadata key:
// _modelstitch → modelstitch, _modelstitch_<k> → <k>.
func metaKeyFromAttr(attr string) string {
	if attr == "_"+MetadataKey {
		return MetadataKey
	}
	return strings.TrimPrefix(attr, "_"+MetadataKey+"_")
}

// attrFromMetaKey is the inverse of metaKeyFromAttr.
func attrFromMetaKey(key string) string {
	if key == MetadataKey {
		return "_" + MetadataKey
	}
	return "_" + MetadataKey + "_" + key
}
