// Package resnetkeys brings a state dict as a checkpoint file stores it
// (weights.Open) to torchvision's ResNet names: it strips wrapper prefixes
// and heads (NormalizeKeys), chooses one network among several (RoleRule),
// maps the layouts of the projects researchers hand over (ResolveKeys) and
// compares a state dict with a model's keys (CompareKeys). It works from the
// keys alone:
//
//   - a network is found wherever a key ends in layer1.0.conv1.weight
//     (torchvision, timm, VISSL's _feature_blocks, kuangliu's pytorch-cifar,
//     MadryLab's robustness) or wherever torchvision's children sit in an
//     nn.Sequential (N.0.conv1.weight with a 4-D R0.weight beside it: lightly,
//     sthalles' BYOL);
//   - when there are several networks (MoCo's query and key encoders, BYOL's
//     online and target networks, robustness' model and attacker.model), one
//     is chosen by RoleRule; the others are left out with a note naming them
//     and the key setting (weights.ReadOptions.Key) that picks one;
//   - keys beside the chosen network (heads, a loss's weight, MoCo's queue)
//     are left out with a note; a few are understood: solo-learn's online
//     classifier becomes fc, robustness' input normaliser becomes metadata.
package resnetkeys

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"modelstitch/weights"
)

// RoleRule documents how one of several networks in a file is chosen.
const RoleRule = "the online/query/base/teacher network first (names with encoder_q, base_encoder, online, query, teacher), " +
	"momentum/target/key/EMA/student/attacker copies last (encoder_k, momentum, target, key_encoder, ema, student, attacker), " +
	"then the shortest prefix, then alphabetical order"

// Metadata keys set by the family mapping.
const (
	// MetaStemPadding is the stem convolution's padding when the family tells
	// it and the weights cannot (solo-learn's CIFAR stem pads by 2).
	MetaStemPadding = "stem_padding"
	// MetaInputMean and MetaInputStd are the per-channel normalisation a
	// network applied to its input itself (robustness' normalizer), comma-separated.
	MetaInputMean = "input_mean"
	MetaInputStd  = "input_std"
	// MetaFamily names the layout the keys were recognised as.
	MetaFamily = "family"
)

// resnetRoot is one network found among the keys.
type resnetRoot struct {
	prefix string // "" or ending in "."
	seq    bool   // torchvision's children numbered in an nn.Sequential
	first  int    // for seq: the index of layer1
}

// findResNetRoots lists the networks among keys, in RoleRule order.
func findResNetRoots(sd *weights.StateDict) []resnetRoot {
	var roots []resnetRoot
	seen := map[string]bool{}
	for _, k := range sd.Keys {
		pre, ok := strings.CutSuffix(k, ".0.conv1.weight")
		if !ok {
			continue
		}
		dot := strings.LastIndex(pre, ".") + 1
		last, root := pre[dot:], pre[:dot]
		if last == "layer1" {
			if sd.Get(root+"conv1.weight") != nil || sd.Get(root+"conv1.0.weight") != nil {
				if !seen[root] {
					seen[root] = true
					roots = append(roots, resnetRoot{prefix: root})
				}
			}
			continue
		}
		i, err := strconv.Atoi(last)
		if err != nil || i < 2 {
			continue
		}
		if w := sd.Get(root + "0.weight"); w == nil || len(w.Shape) != 4 {
			continue
		}
		if sd.Get(root+strconv.Itoa(i-1)+".0.conv1.weight") != nil {
			continue // not the first stage
		}
		if sd.Get(root+strconv.Itoa(i+3)+".0.conv1.weight") == nil {
			continue
		}
		if !seen[root] {
			seen[root] = true
			roots = append(roots, resnetRoot{prefix: root, seq: true, first: i})
		}
	}
	sort.SliceStable(roots, func(a, b int) bool {
		ra, rb := weights.RoleRank(roots[a].prefix), weights.RoleRank(roots[b].prefix)
		if ra != rb {
			return ra < rb
		}
		na, nb := strings.Count(roots[a].prefix, "."), strings.Count(roots[b].prefix, ".")
		if na != nb {
			return na < nb
		}
		return roots[a].prefix < roots[b].prefix
	})
	return roots
}

// ErrDeepStem is wrapped by the error for a timm deep stem (resnet50d and
// the other resnet*c/d/s/t variants: conv1.0/1/3/4/6), which the ResNets
// here do not have.
var ErrDeepStem = fmt.Errorf("a timm deep stem (conv1.0, conv1.1, conv1.3, ...: resnet*c, resnet*d, resnet*s, resnet*t), " +
	"which modelstitch's ResNets do not build; use a plain timm ResNet (resnet18, resnet50, ...) or torchvision's")

// SelectKey keeps the keys of sd under prefix key (a key prefix such as
// module.encoder_k, with or without the final dot) and strips it. Its error
// lists the file's key groups.
func SelectKey(sd *weights.StateDict, key string) (*weights.StateDict, error) {
	p := strings.TrimSuffix(key, ".") + "."
	out := weights.NewStateDict()
	for _, k := range sd.Keys {
		if rest, ok := strings.CutPrefix(k, p); ok && rest != "" {
			out.Set(rest, sd.Tensors[k])
		}
	}
	if out.Len() == 0 {
		return nil, &weights.OptionError{Option: "key", Problem: fmt.Sprintf("%s: no key starts with %q; the keys start with %s", key, p, strings.Join(keyGroups(sd.Keys, 2), ", "))}
	}
	return out, nil
}

// outsideGroups lists the groups of keys outside the chosen network: each
// other network as one group, the rest by their first n components.
func outsideGroups(keys []string, others []resnetRoot, n int) []string {
	var groups, rest []string
	seen := map[string]bool{}
next:
	for _, k := range keys {
		for _, o := range others {
			if o.prefix != "" && strings.HasPrefix(k, o.prefix) {
				seen[o.prefix] = true
				continue next
			}
		}
		rest = append(rest, k)
	}
	for _, o := range others { // in RoleRule order, whatever the keys' order
		if seen[o.prefix] {
			groups = append(groups, o.prefix+"* (another network)")
		}
	}
	if len(rest) > 0 {
		groups = append(groups, keyGroups(rest, n)...)
	}
	return groups
}

// keyGroups lists the distinct first n components of keys, sorted.
func keyGroups(keys []string, n int) []string {
	set := map[string]bool{}
	for _, k := range keys {
		parts := strings.SplitN(k, ".", n+1)
		if len(parts) > n {
			parts = parts[:n]
		} else if len(parts) > 1 {
			parts = parts[:len(parts)-1]
		}
		set[strings.Join(parts, ".")+"."] = true
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	if len(out) > 12 {
		out = append(out[:12], fmt.Sprintf("… %d more", len(out)-12))
	}
	return out
}

// Resolved is what ResolveKeys makes of a state dict.
type Resolved struct {
	// State has torchvision's names; its tensors are shared with the input.
	State *weights.StateDict
	// Meta is what the keys told: MetaFamily, MetaStemPadding,
	// MetaInputMean, MetaInputStd.
	Meta map[string]string
	// Notes say what was done: prefixes stripped, networks and keys left out.
	Notes []string
}

// ResolveKeys brings sd to torchvision's ResNet names. With key set, only the
// keys under that prefix are considered. When one or more ResNets are found
// among the keys (see the package comment) the chosen one is mapped;
// otherwise NormalizeKeys does the generic work.
func ResolveKeys(sd *weights.StateDict, key string) (Resolved, error) {
	res := Resolved{Meta: map[string]string{}}
	if key != "" {
		sel, err := SelectKey(sd, key)
		if err != nil {
			return Resolved{}, err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("key %s: kept the %d keys under it", key, sel.Len()))
		sd = sel
	}
	roots := findResNetRoots(sd)
	if len(roots) == 0 {
		out, n := NormalizeKeys(sd)
		res.State, res.Notes = out, append(res.Notes, n...)
		return res, nil
	}
	r := roots[0]
	if len(roots) > 1 {
		var names []string
		for _, o := range roots {
			names = append(names, strings.TrimSuffix(o.prefix, "."))
		}
		res.Notes = append(res.Notes, fmt.Sprintf("%d networks in the file (%s); chose %s (online/query/base/teacher networks before "+
			"momentum/target/EMA/student copies, then the shortest prefix, then alphabetical); the key setting picks another by its prefix (e.g. key %s)",
			len(roots), strings.Join(names, ", "), rootName(r.prefix), names[1]))
	}
	m := &mapping{sd: sd, root: r, others: roots[1:], res: &res}
	if err := m.network(); err != nil {
		return Resolved{}, err
	}
	m.beside()
	res.Meta[MetaFamily] = m.family
	return res, nil
}

// mapping is the work of ResolveKeys on one chosen network.
type mapping struct {
	sd     *weights.StateDict
	root   resnetRoot
	others []resnetRoot // the networks not chosen
	res    *Resolved
	family string
	// outside are sd's keys outside the chosen network.
	outside []string
}

// network renames the chosen network's keys to torchvision's and tells its
// family from them.
func (m *mapping) network() error {
	r, notes := m.root, &m.res.Notes
	out := weights.NewStateDict()
	var ignoredInside []string
	for _, k := range m.sd.Keys {
		rest, ok := strings.CutPrefix(k, r.prefix)
		if !ok {
			m.outside = append(m.outside, k)
			continue
		}
		name, keep := mapResNetKey(rest, r)
		if !keep {
			ignoredInside = append(ignoredInside, rest)
			continue
		}
		out.Set(name, m.sd.Tensors[k])
	}
	m.family = "torchvision"
	if out.Get("conv1.0.weight") != nil {
		return fmt.Errorf("%s: %w", rootName(r.prefix), ErrDeepStem)
	}
	if r.seq {
		m.family = "torchvision children in an nn.Sequential (lightly, sthalles BYOL)"
		*notes = append(*notes, fmt.Sprintf("renamed nn.Sequential children %s0, %s1, %s%d..%d to conv1, bn1, layer1..layer4",
			r.prefix, r.prefix, r.prefix, r.first, r.first+3))
	}
	if m.sd.Get(r.prefix+"linear.weight") != nil || hasPrefixKey(m.sd, r.prefix, "shortcut.") {
		m.family = "kuangliu pytorch-cifar"
		*notes = append(*notes, "renamed kuangliu/pytorch-cifar names shortcut.* → downsample.*, linear → fc")
	}
	if strings.HasSuffix(r.prefix, "_feature_blocks.") {
		m.family = "VISSL trunk"
	}
	// An fc that is a projection MLP (MoCo, torchvision's fc replaced by nn.Sequential).
	if out.Get("fc.weight") == nil {
		var mlp []string
		for _, k := range out.Keys {
			if strings.HasPrefix(k, "fc.") {
				mlp = append(mlp, k)
			}
		}
		if len(mlp) > 0 {
			out = without(out, mlp)
			*notes = append(*notes, fmt.Sprintf("ignored %d fc.* keys: fc is a projection MLP (%s), not a classifier", len(mlp), listSome(mlp, 3)))
		}
	}
	if len(ignoredInside) > 0 {
		*notes = append(*notes, fmt.Sprintf("ignored %d keys under %s outside the ResNet (%s)", len(ignoredInside), rootName(r.prefix),
			strings.Join(keyGroups(ignoredInside, 1), ", ")))
	}
	m.res.State = out
	return nil
}

// beside reads what sits beside the chosen network (solo-learn's online
// classifier, robustness' input normaliser) and notes what is left out.
func (m *mapping) beside() {
	r, sd, out, meta, notes := m.root, m.sd, m.res.State, m.res.Meta, &m.res.Notes
	parent := parentPrefix(r.prefix)
	var used []string
	if w, b := sd.Get(parent+"classifier.weight"), sd.Get(parent+"classifier.bias"); r.prefix == parent+"backbone." && w != nil &&
		out.Get("fc.weight") == nil && len(w.Shape) == 2 {
		m.family = "solo-learn"
		out.Set("fc.weight", w)
		used = append(used, parent+"classifier.weight")
		if b != nil {
			out.Set("fc.bias", b)
			used = append(used, parent+"classifier.bias")
		}
		*notes = append(*notes, "solo-learn layout (backbone.* beside classifier.*): its online linear classifier is loaded as fc")
		if c := out.Get("conv1.weight"); c != nil && len(c.Shape) == 4 && c.Shape[2] == 3 {
			meta[MetaStemPadding] = "2"
			*notes = append(*notes, "solo-learn's CIFAR stem is a 3×3 conv with stride 1 and padding 2 (another stem padding overrides it)")
		}
	}
	if mean, std := sd.Get(parent+"normalizer.new_mean"), sd.Get(parent+"normalizer.new_std"); mean != nil && std != nil && strings.HasSuffix(r.prefix, "model.") {
		ms, err1 := mean.Float32s()
		ss, err2 := std.Float32s()
		if err1 == nil && err2 == nil {
			m.family = "MadryLab robustness"
			meta[MetaInputMean], meta[MetaInputStd] = joinFloats(ms), joinFloats(ss)
			used = append(used, parent+"normalizer.new_mean", parent+"normalizer.new_std")
			*notes = append(*notes, fmt.Sprintf("robustness' input normaliser (mean %s, std %s) becomes the model's normalisation", meta[MetaInputMean], meta[MetaInputStd]))
		}
	}
	if len(m.outside) == 0 {
		if r.prefix != "" {
			*notes = append(*notes, fmt.Sprintf("stripped prefix %s from %d keys", r.prefix, out.Len()))
		}
		return
	}
	var rest []string
	for _, k := range m.outside {
		if !contains(used, k) {
			rest = append(rest, k)
		}
	}
	if len(rest) > 0 {
		*notes = append(*notes, fmt.Sprintf("used the ResNet under %s; ignored %d other keys (%s)", rootName(r.prefix), len(rest),
			strings.Join(outsideGroups(rest, m.others, strings.Count(r.prefix, ".")+1), ", ")))
	}
}

// mapResNetKey renames one key under a network's root to torchvision's name;
// keep is false for keys outside the ResNet's modules.
func mapResNetKey(k string, r resnetRoot) (string, bool) {
	if r.seq {
		first, rest, ok := strings.Cut(k, ".")
		i, err := strconv.Atoi(first)
		if !ok || err != nil {
			return k, false
		}
		switch {
		case i == 0:
			first = "conv1"
		case i == 1:
			first = "bn1"
		case i >= r.first && i < r.first+4:
			first = fmt.Sprintf("layer%d", i-r.first+1)
		case i == r.first+5:
			first = "fc" // all of children(): the fc after avgpool
		default:
			return k, false
		}
		k = first + "." + rest
	}
	first, rest, _ := strings.Cut(k, ".")
	switch first {
	case "linear":
		return "fc." + rest, true
	case "conv1", "bn1", "fc":
		return k, true
	case "layer1", "layer2", "layer3", "layer4":
		return strings.Replace(k, ".shortcut.", ".downsample.", 1), true
	}
	return k, false
}

func hasPrefixKey(sd *weights.StateDict, root, part string) bool {
	for _, k := range sd.Keys {
		if strings.HasPrefix(k, root+"layer") && strings.Contains(k, "."+part) {
			return true
		}
	}
	return false
}

// parentPrefix drops the last component of a prefix: "module.model." → "module.".
func parentPrefix(p string) string {
	t := strings.TrimSuffix(p, ".")
	i := strings.LastIndex(t, ".")
	if i < 0 {
		return ""
	}
	return t[:i+1]
}

func rootName(p string) string {
	if p == "" {
		return "the top level"
	}
	return strings.TrimSuffix(p, ".")
}

func without(sd *weights.StateDict, drop []string) *weights.StateDict {
	out := weights.NewStateDict()
	for _, k := range sd.Keys {
		if !contains(drop, k) {
			out.Set(k, sd.Tensors[k])
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func joinFloats(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(s, ",")
}
