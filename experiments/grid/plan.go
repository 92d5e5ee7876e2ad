package grid

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/results"
	"modelstitch/weights/defaults"
)

// Unit kinds.
const (
	UnitTrain  = "train"  // train a model (or fit a probe) and write its checkpoint
	UnitStitch = "stitch" // stitch one pair at one cut with one stitching seed
)

// Unit is one piece of work. Its ID is derived from everything that
// determines its result (recipes, references, cut, seed, data), so a changed
// recipe is a new unit and a finished one is recognised on any later run.
type Unit struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Model is the model a train unit makes.
	Model string `json:"model,omitempty"`
	// Pairs lists the pairs a stitch unit belongs to (several when their
	// recipes coincide).
	Pairs  []string `json:"pairs,omitempty"`
	Bottom string   `json:"bottom,omitempty"`
	Top    string   `json:"top,omitempty"`
	Cut    string   `json:"cut,omitempty"`
	// CutIndex is the cut's position among the top's cut points (0 = stem).
	CutIndex int           `json:"cut_index,omitempty"`
	Recipe   *StitchRecipe `json:"recipe,omitempty"`
	// Control marks a self-stitch control added by the spec's control key:
	// the top stitched onto itself, a unit of no pair.
	Control bool `json:"control,omitempty"`
	// Deps are the train units whose checkpoints this unit reads.
	Deps []string `json:"deps,omitempty"`
}

// ModelFile is where a model reference's checkpoint is, and which unit makes it.
type ModelFile struct {
	Ref   string
	Model *Model
	// Path is the checkpoint (a file, or "embedded:NAME").
	Path string
	// Unit is the train unit that writes Path ("" for an existing checkpoint).
	Unit string
	// Digest is the SHA-256 of an existing checkpoint's bytes (hex), when the
	// spec keys by content ("" otherwise).
	Digest string
	// identity hashes everything that determines the checkpoint.
	identity string
}

// Plan is every unit of a spec, in a fixed order (train units first), with
// where each model's checkpoint lives under Dir.
type Plan struct {
	Spec  *Spec
	Dir   string
	Units []*Unit
	// Files maps every model reference the pairs use to its checkpoint.
	Files map[string]*ModelFile
	// PairUnits lists each pair's stitch units in (seed, cut) order.
	PairUnits map[string][]*Unit
	// PairCuts is each pair's expanded cut list.
	PairCuts map[string][]string
	// ArchCuts is the cut list of each pair's top architecture (the x axis).
	ArchCuts map[string][]string
	byID     map[string]*Unit
	// controls maps a stitch unit's id to its self-stitch control, where the
	// plan has one (see Control).
	controls map[string]*Unit
}

// Control returns the self-stitch control of a stitch unit: the plan's unit
// that stitches the unit's top onto itself at the same cut with the same
// recipe and seed (the unit itself when its bottom is its top). Specs with
// control = true have one for every stitch unit.
func (p *Plan) Control(u *Unit) (*Unit, bool) {
	c, ok := p.controls[u.ID]
	return c, ok
}

// Unit returns the unit with the given id.
func (p *Plan) Unit(id string) (*Unit, bool) {
	u, ok := p.byID[id]
	return u, ok
}

// Cutter lists a model's cut points (every cut, in order), loading what it must.
type Cutter func(f *ModelFile, p *Plan) ([]string, error)

// NewPlan expands the spec into units under dir. cuts lists the cut points of
// a model (inprocess.CutPoints does it with the real networks).
func NewPlan(s *Spec, dir string, cuts Cutter) (*Plan, error) {
	if dir == "" {
		dir = s.Out
	}
	p := &Plan{Spec: s, Dir: dir, Files: map[string]*ModelFile{}, PairUnits: map[string][]*Unit{},
		PairCuts: map[string][]string{}, ArchCuts: map[string][]string{}, byID: map[string]*Unit{}, controls: map[string]*Unit{}}
	// Models first: every model, then the snapshots the pairs use.
	for _, name := range sortedKeys(s.Models) {
		if _, err := p.file(name); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(s.Pairs) {
		pr := s.Pairs[name]
		for _, ref := range []string{pr.Bottom, pr.Top} {
			if _, err := p.file(ref); err != nil {
				return nil, fmt.Errorf("pair %s: %w", name, err)
			}
		}
	}
	for _, name := range sortedKeys(s.Models) {
		m := s.Models[name]
		if m.Kind != KindTrain && m.Kind != KindProbe {
			continue
		}
		f := p.Files[name]
		u := &Unit{ID: f.Unit, Kind: UnitTrain, Model: name}
		if m.Kind == KindProbe {
			if b := p.Files[m.Base]; b.Unit != "" {
				u.Deps = []string{b.Unit}
			}
		}
		p.add(u)
	}
	for _, name := range sortedKeys(s.Pairs) {
		pr := s.Pairs[name]
		bf, tf := p.Files[pr.Bottom], p.Files[pr.Top]
		all, err := cuts(tf, p)
		if err != nil {
			return nil, fmt.Errorf("pair %s: top %s: %w", name, pr.Top, err)
		}
		ball, err := cuts(bf, p)
		if err != nil {
			return nil, fmt.Errorf("pair %s: bottom %s: %w", name, pr.Bottom, err)
		}
		want := pr.Cuts
		if len(want) == 1 && want[0] == "all" {
			want = all
		}
		for _, c := range want {
			if !slices.Contains(all, c) {
				return nil, s.errAt([]string{"pairs", name, "cuts"}, "the top %s has no cut %q (cuts: %s)", pr.Top, c, strings.Join(all, ", "))
			}
			if !slices.Contains(ball, c) {
				return nil, s.errAt([]string{"pairs", name, "cuts"}, "the bottom %s has no cut %q", pr.Bottom, c)
			}
		}
		p.PairCuts[name], p.ArchCuts[name] = want, all
		var deps []string
		for _, f := range []*ModelFile{bf, tf} {
			if f.Unit != "" && !slices.Contains(deps, f.Unit) {
				deps = append(deps, f.Unit)
			}
		}
		for _, seed := range pr.Seeds {
			for _, c := range want {
				r := pr.Recipe
				r.Seed = seed
				id := stitchID(bf, tf, c, r, s)
				if u, ok := p.byID[id]; ok {
					u.Pairs = append(u.Pairs, name)
					p.PairUnits[name] = append(p.PairUnits[name], u)
					continue
				}
				u := &Unit{ID: id, Kind: UnitStitch, Pairs: []string{name}, Bottom: pr.Bottom, Top: pr.Top, Cut: c,
					CutIndex: slices.Index(all, c), Recipe: &r, Deps: deps}
				p.add(u)
				p.PairUnits[name] = append(p.PairUnits[name], u)
			}
		}
	}
	p.addControls()
	return p, nil
}

// addControls adds the self-stitch controls the spec asks for (control =
// true) and records every stitch unit's control that the plan has.
func (p *Plan) addControls() {
	stitches := slices.Clone(p.Units)
	for _, u := range stitches {
		if u.Kind != UnitStitch {
			continue
		}
		tf := p.Files[u.Top]
		id := stitchID(tf, tf, u.Cut, *u.Recipe, p.Spec)
		c, ok := p.byID[id]
		if !ok && p.Spec.Control {
			r := *u.Recipe
			c = &Unit{ID: id, Kind: UnitStitch, Bottom: u.Top, Top: u.Top, Cut: u.Cut, CutIndex: u.CutIndex, Recipe: &r, Control: true}
			if tf.Unit != "" {
				c.Deps = []string{tf.Unit}
			}
			p.add(c)
			ok = true
		}
		if ok {
			p.controls[u.ID] = c
			p.controls[c.ID] = c
		}
	}
}

func (p *Plan) add(u *Unit) {
	p.Units = append(p.Units, u)
	p.byID[u.ID] = u
}

// file resolves a model reference to its checkpoint, creating the entry once.
func (p *Plan) file(ref string) (*ModelFile, error) {
	if f, ok := p.Files[ref]; ok {
		return f, nil
	}
	m, err := p.Spec.modelRef(ref)
	if err != nil {
		return nil, err
	}
	f := &ModelFile{Ref: ref, Model: m}
	switch m.Kind {
	case KindCheckpoint:
		f.Path = m.Checkpoint
		if !defaults.IsEmbedded(f.Path) && !filepath.IsAbs(f.Path) && p.Spec.Path != "" {
			f.Path = filepath.Join(filepath.Dir(p.Spec.Path), f.Path)
		}
		if !p.Spec.KeyByContent {
			f.identity = "checkpoint:" + m.Checkpoint + normIdentity(m.Mean, m.Std)
			break
		}
		d, err := results.Digest(f.Path)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.Name, err)
		}
		if d == "" {
			return nil, fmt.Errorf("model %s: checkpoint %s: no such file (a spec keyed by content reads every checkpoint it names when it plans)", m.Name, f.Path)
		}
		f.Digest, f.identity = d, "sha256:"+d+normIdentity(m.Mean, m.Std)
	case KindTrain:
		js, _ := json.Marshal(m.Recipe)
		f.identity = "train:" + string(js)
		h := shortHash(f.identity)
		f.Path = filepath.Join(p.Dir, "models", m.Name+"-"+h+".pt")
		f.Unit = "train/" + m.Name + "-" + h
	case KindProbe:
		base, err := p.file(m.Base)
		if err != nil {
			return nil, err
		}
		f.identity = fmt.Sprintf("probe:%s|%d|%d|%s", base.identity, m.ProbeSamples, m.ProbeEpochs, p.Spec.Data) + inputIdentity(p.Spec)
		if base.Model.Kind == KindCheckpoint {
			// The probe is fit on the checkpoint's content, so a replaced
			// file (e.g. a retrained shipped backbone) must not reuse a
			// probe fit on the old one, even where the checkpoint's own
			// identity is its name (key_by_content = false).
			d, err := results.Digest(base.Path)
			if err != nil {
				return nil, err
			}
			if d != "" {
				f.identity += "|sha256:" + d
			}
		}
		h := shortHash(f.identity)
		f.Path = filepath.Join(p.Dir, "models", m.Name+"-"+h+".pt")
		f.Unit = "train/" + m.Name + "-" + h
	case KindSnapshot:
		base, err := p.file(m.Base)
		if err != nil {
			return nil, err
		}
		f.identity = fmt.Sprintf("%s@%d", base.identity, m.SnapshotAt)
		f.Path = SnapshotPath(base.Path, m.SnapshotAt)
		f.Unit = base.Unit
	}
	p.Files[ref] = f
	return f, nil
}

// SnapshotPath is where a run writing path keeps its checkpoint after epoch.
func SnapshotPath(path string, epoch int) string {
	return strings.TrimSuffix(path, ".pt") + fmt.Sprintf(".e%d.pt", epoch)
}

// normIdentity is a given input normalisation's part of a model's identity
// ("" without one, so that models without it keep their identities).
func normIdentity(mean, std []float64) string {
	if mean == nil && std == nil {
		return ""
	}
	return fmt.Sprintf("|norm:%v/%v", mean, std)
}

// inputIdentity is the spec's image size and channels' part of an identity
// ("" when not set, so that specs without them keep their unit ids).
func inputIdentity(s *Spec) string {
	if s.ImageSize == 0 && s.Channels == 0 {
		return ""
	}
	return fmt.Sprintf("|image_size:%d|channels:%d", s.ImageSize, s.Channels)
}

// Norm returns the input normalisation a spec gives a model reference (nil:
// none given; the model is fed as its checkpoint's metadata says): a
// checkpoint's own, a recipe's, a probe's or a snapshot's base's.
func (p *Plan) Norm(ref string) (mean, std []float64) {
	f, ok := p.Files[ref]
	if !ok {
		return nil, nil
	}
	m := f.Model
	for m != nil && (m.Kind == KindProbe || m.Kind == KindSnapshot) {
		m = p.Spec.Models[m.Base]
	}
	switch {
	case m == nil:
		return nil, nil
	case m.Kind == KindCheckpoint:
		return m.Mean, m.Std
	}
	return m.Recipe.Mean, m.Recipe.Std
}

func stitchID(bottom, top *ModelFile, cut string, r StitchRecipe, s *Spec) string {
	js, _ := json.Marshal(r)
	h := shortHash(fmt.Sprintf("stitch|%s|%s|%s|%s|%s|%d", bottom.identity, top.identity, cut, js, s.Data, s.TestSamples) + inputIdentity(s))
	return fmt.Sprintf("stitch/%s~%s/%s/s%d-%s", bottom.Ref, top.Ref, cut, r.Seed, h)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// ShardOf is the shard (0..n-1) a unit id belongs to: a hash of the id, so the
// assignment is the same on every machine and every run.
func ShardOf(id string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// Shard selects part of a plan: the units u with ShardOf(GroupKey(u), N) ==
// I (OwnsUnit), so that a group of stitch units stays in one shard.
type Shard struct{ I, N int }

// ParseShard reads "i/n" (0 ≤ i < n); a bad one is an *invalid.Setting of
// the field "shard".
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{0, 1}, nil
	}
	var sh Shard
	if _, err := fmt.Sscanf(s, "%d/%d", &sh.I, &sh.N); err != nil || fmt.Sprintf("%d/%d", sh.I, sh.N) != s {
		return sh, invalid.Errorf("shard", "must be i/n (e.g. 0/4), got %q", s)
	}
	if sh.N < 1 || sh.I < 0 || sh.I >= sh.N {
		return sh, invalid.Errorf("shard", "%s: need 0 ≤ i < n", s)
	}
	return sh, nil
}

// Owns reports whether ShardOf(key, N) is I for a key (a unit's GroupKey:
// see OwnsUnit, which Run and the plan use).
func (s Shard) Owns(id string) bool { return s.N <= 1 || ShardOf(id, s.N) == s.I }

// String is "i/n".
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.I, s.N) }

// Unit states in a plan.
const (
	StateDone    = "done"
	StateMissing = "missing" // can run now
	StateWaiting = "waiting" // needs a model that is not made yet
)

// UnitState is a unit with its state and, if waiting, what for.
type UnitState struct {
	*Unit
	State string `json:"state"`
	// WaitingFor lists the train units it needs that are not done.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Shard is the shard that runs the unit (ShardOf(GroupKey, n)) for the
	// shard count asked about.
	Shard int `json:"shard"`
	// Seconds is the recorded wall time of a done unit.
	Seconds float64 `json:"seconds,omitempty"`
}

// States gives every unit's state given the records (see Done).
func (p *Plan) States(recs *Records, shards int) []UnitState {
	out := make([]UnitState, len(p.Units))
	for i, u := range p.Units {
		st := UnitState{Unit: u, Shard: ShardOf(GroupKey(u), shards)}
		if r, ok := p.Done(recs, u); ok {
			st.State, st.Seconds = StateDone, r.Seconds
		} else {
			st.State = StateMissing
			for _, d := range u.Deps {
				if _, ok := p.Done(recs, p.byID[d]); !ok {
					st.WaitingFor = append(st.WaitingFor, d)
				}
			}
			if len(st.WaitingFor) > 0 {
				st.State = StateWaiting
			}
		}
		out[i] = st
	}
	return out
}

// Orphans lists the records whose unit is not in the plan (rows of units a
// spec had before it changed), sorted by unit id. No table, figure, rule or
// time of the report reads them.
func (p *Plan) Orphans(recs *Records) []Record {
	var out []Record
	for _, r := range recs.All() {
		if _, ok := p.byID[r.Unit]; !ok {
			out = append(out, r)
		}
	}
	return out
}

// Done reports whether a unit has its record (and, for a train unit, its
// checkpoints on disk).
func (p *Plan) Done(recs *Records, u *Unit) (Record, bool) {
	r, ok := recs.Get(u.ID)
	if !ok || u.Kind != UnitTrain {
		return r, ok
	}
	f := p.Files[u.Model]
	if _, err := os.Stat(f.Path); err != nil {
		return r, false
	}
	if f.Model.Kind == KindTrain {
		for _, e := range f.Model.Recipe.SaveAt {
			if e == f.Model.Recipe.Epochs {
				continue
			}
			if _, err := os.Stat(SnapshotPath(f.Path, e)); err != nil {
				return r, false
			}
		}
	}
	return r, true
}
