// Package models loads ResNets from any checkpoint file the weights package
// reads (or builds a random one), and saves ours with their metadata.
package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modelstitch/experiments/invalid"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
	"modelstitch/weights"
	"modelstitch/weights/defaults"
	"modelstitch/weights/resnetkeys"
)

// Objectives recorded in Meta.Objective.
const (
	Supervised = "supervised"
	SimCLR     = "simclr"
	Probe      = "probe"
	Random     = "random"
)

// Recipe records how a model was trained.
type Recipe struct {
	Epochs       int     `json:"epochs,omitempty"`
	BatchSize    int     `json:"batch_size,omitempty"`
	Optimizer    string  `json:"optimizer,omitempty"`
	LR           float64 `json:"lr,omitempty"`
	Momentum     float64 `json:"momentum,omitempty"`
	WeightDecay  float64 `json:"weight_decay,omitempty"`
	Schedule     string  `json:"schedule,omitempty"`
	Augment      string  `json:"augment,omitempty"`
	TrainSamples int     `json:"train_samples,omitempty"`
	LabelNoise   float64 `json:"label_noise,omitempty"`
	Labels       string  `json:"labels,omitempty"` // e.g. "objects-vs-animals"
	Temperature  float64 `json:"temperature,omitempty"`
	// BNStats is "data" for an untrained model whose batch-norm running
	// statistics were recomputed on its training images (empty: as
	// initialised, mean 0 and variance 1, or set by training).
	BNStats string `json:"bn_stats,omitempty"`
	Seed    int64  `json:"seed"`
	// EpochsDone counts finished epochs (for resuming an interrupted run).
	EpochsDone int `json:"epochs_done,omitempty"`
}

// Meta is modelstitch's metadata, stored as JSON inside our checkpoints.
type Meta struct {
	Arch  string  `json:"arch"`
	Width float64 `json:"width"`
	Stem  string  `json:"stem"`
	// StemPadding is the stem convolution's padding when it is not the
	// default (k−1)/2 (solo-learn's CIFAR stem: 2); 0 otherwise.
	StemPadding int       `json:"stem_padding,omitempty"`
	InChannels  int       `json:"in_channels"`
	Classes     int       `json:"classes"`
	Dataset     string    `json:"dataset,omitempty"`
	Mean        []float64 `json:"mean,omitempty"`
	Std         []float64 `json:"std,omitempty"`
	Objective   string    `json:"objective,omitempty"`
	Recipe      *Recipe   `json:"recipe,omitempty"`
	// TestAccuracy is in percent (0–100), measured on Dataset's test split.
	TestAccuracy *float64 `json:"test_accuracy,omitempty"`
	// TrainAccuracy is the running accuracy (percent) over the last training
	// epoch, on the labels trained on (noisy ones included; augmented images
	// when the recipe augments): how well the model fit its own labels.
	TrainAccuracy *float64 `json:"train_accuracy,omitempty"`
	// Backbone names the checkpoint a probe was fit on.
	Backbone string `json:"backbone,omitempty"`
	// Note says in words what a reader may misread, e.g. that a SimCLR
	// backbone's TestAccuracy is a linear probe's.
	Note    string `json:"note,omitempty"`
	Created string `json:"created,omitempty"`
	Tool    string `json:"tool,omitempty"`
}

// Config returns the ResNet configuration the metadata describes.
func (m Meta) Config() (vision.ResNetConfig, error) {
	c, err := vision.ParseArchConfig(m.Arch)
	if err != nil {
		return vision.ResNetConfig{}, err
	}
	c.Width, c.Stem, c.InChannels, c.Classes, c.StemPadding = m.Width, m.Stem, m.InChannels, m.Classes, m.StemPadding
	return c, nil
}

// MetaFor fills the architecture fields of a Meta from a ResNet configuration.
func MetaFor(cfg vision.ResNetConfig) Meta {
	w := cfg.Width
	if w == 0 {
		w = 1
	}
	stem := cfg.Stem
	if stem == "" {
		stem = "imagenet"
	}
	in := cfg.InChannels
	if in == 0 {
		in = 3
	}
	return Meta{Arch: cfg.ArchName(), Width: w, Stem: stem, StemPadding: cfg.StemPadding, InChannels: in, Classes: cfg.Classes}
}

// Model is a loaded network with where it came from.
type Model struct {
	// Name is a short label for tables: the file's base name, or "random".
	Name   string
	Path   string
	Net    *vision.ResNet
	Meta   Meta
	Format string
	// Description says what the file looks like, e.g. "a ResNet-50 backbone, no classifier".
	Description string
	// Notes lists what loading did (prefixes stripped, heads ignored, config inferred).
	Notes []string
	// Warnings lists what makes results from this model suspect (NaN or
	// infinite weights); a front end shows them.
	Warnings []string
	// HasMeta reports whether the file carried modelstitch metadata.
	HasMeta bool
}

// LoadOptions override what is inferred from a file.
type LoadOptions struct {
	// Stem forces "imagenet" or "cifar" (a 3×3 stem may or may not have a maxpool).
	Stem string
	// StemPadding forces the stem convolution's padding (0: what the file
	// tells, else (k−1)/2; solo-learn's CIFAR stem pads by 2).
	StemPadding int
	// Key picks a sub-network or prefix of the file (see OpenResNet).
	Key string
	// Device to put the model on.
	Device torch.Device
}

// Load reads a checkpoint (torch.save zip or legacy, TorchScript, safetensors),
// builds the ResNet it holds and loads its weights. Our own files carry their
// configuration; others have it inferred from the weights' shapes
// (vision.ResNetFromStateDict, the one path from a state dict to a ResNet).
// The model comes back in evaluation mode.
func Load(path string, opt LoadOptions) (*Model, error) {
	if opt.Stem != "" && opt.Stem != vision.StemImageNet && opt.Stem != vision.StemCIFAR {
		return nil, fmt.Errorf("model %s: %w", path, invalid.Errorf("stem", "must be imagenet or cifar, got %q", opt.Stem))
	}
	if opt.StemPadding < 0 {
		return nil, fmt.Errorf("model %s: %w", path, invalid.Errorf("stem padding", "must be ≥ 0, got %d", opt.StemPadding))
	}
	ck, err := OpenResNet(path, opt.Key)
	if err != nil {
		return nil, err
	}
	m := &Model{Name: baseName(path), Path: path, Format: ck.Format, Notes: ck.Notes}
	if w := nonFiniteWarning(ck.State); w != "" {
		m.Warnings = append(m.Warnings, w)
	}
	var meta Meta
	var metaCfg vision.ResNetConfig
	if err := ck.ModelstitchMeta(&meta); err == nil {
		if metaCfg, err = meta.Config(); err != nil {
			return nil, fmt.Errorf("model %s: its modelstitch metadata: %w", path, err)
		}
		m.Meta, m.HasMeta = meta, true
	}
	filePadding := 0
	if p, ok := ck.Metadata[resnetkeys.MetaStemPadding]; ok {
		if filePadding, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("model %s: stem padding %q: %w", path, p, err)
		}
	}
	sd, err := ToTensors(ck.State)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	defer freeMap(sd)
	net, desc, err := vision.ResNetFromStateDict(sd, func(c *vision.ResNetConfig) {
		if m.HasMeta {
			*c = metaCfg
		}
		if c.StemPadding == 0 {
			c.StemPadding = filePadding
		}
		if opt.Stem != "" {
			c.Stem = opt.Stem
		}
		if opt.StemPadding > 0 {
			c.StemPadding = opt.StemPadding
		}
	})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	loaded := false
	defer func() {
		if !loaded {
			nn.Free(net)
		}
	}()
	m.Description = desc
	if m.HasMeta {
		m.Meta.Stem, m.Meta.StemPadding = net.Config.Stem, net.Config.StemPadding
	} else {
		m.Meta = MetaFor(net.Config)
		m.Notes = append(m.Notes, "architecture inferred from the weights: "+net.Config.String())
		if net.Config.Stem == vision.StemCIFAR && filePadding == 0 && opt.StemPadding == 0 && opt.Stem == "" {
			m.Notes = append(m.Notes, "a 3×3 stem: assumed stride 1, padding 1 and no max pool (the usual CIFAR stem), "+
				"which the weights cannot show; set the stem to imagenet for a max pool, or another stem padding")
		}
		if mean, std, ok := inputNormalisation(ck.Metadata); ok {
			m.Meta.Mean, m.Meta.Std = mean, std
		}
	}
	if err := nn.ToDevice(net, opt.Device); err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	nn.Eval(net)
	m.Net = net
	loaded = true
	return m, nil
}

// inputNormalisation reads the normalisation a network applied to its own
// input (resnetkeys.MetaInputMean/Std, e.g. robustness' normalizer).
func inputNormalisation(md map[string]string) (mean, std []float64, ok bool) {
	parse := func(s string) []float64 {
		var out []float64
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return nil
			}
			out = append(out, v)
		}
		return out
	}
	mean, std = parse(md[resnetkeys.MetaInputMean]), parse(md[resnetkeys.MetaInputStd])
	return mean, std, len(mean) > 0 && len(mean) == len(std)
}

// NewRandom builds an untrained (PyTorch-initialised) model like meta, seeded.
func NewRandom(meta Meta, seed int64, dev torch.Device) (*Model, error) {
	cfg, err := meta.Config()
	if err != nil {
		return nil, err
	}
	if err := torch.ManualSeed(uint64(seed)); err != nil {
		return nil, err
	}
	net, err := vision.NewResNet(cfg)
	if err != nil {
		return nil, err
	}
	if err := nn.ToDevice(net, dev); err != nil {
		nn.Free(net)
		return nil, err
	}
	nn.Eval(net)
	meta.Objective = Random
	meta.TestAccuracy = nil
	meta.Recipe = &Recipe{Seed: seed}
	return &Model{Name: "random", Path: "random", Net: net, Meta: meta, Description: "an untrained " + cfg.String() +
		" (batch-norm running statistics as initialised: mean 0, variance 1)"}, nil
}

// Save writes net and meta to path as a torch.save zip file that PyTorch opens
// with weights_only=True; the write is atomic (a temporary file renamed).
func Save(path string, net nn.Module, meta Meta) error {
	meta.Tool = "modelstitch"
	if meta.Created == "" {
		meta.Created = time.Now().UTC().Format(time.RFC3339)
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	sd, err := FromModule(net)
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	// WriteTorchFile is atomic itself (a temporary file renamed into place,
	// stale ones of killed writers removed); a second temporary name here
	// was left behind by a kill between its two renames.
	return weights.WriteTorchFile(path, sd, map[string]string{weights.MetadataKey: string(js)})
}

// Free releases the model's tensors.
func (m *Model) Free() {
	if m != nil && m.Net != nil {
		nn.Free(m.Net)
	}
}

// Open is OpenResNet choosing the network automatically.
func Open(path string) (*weights.Checkpoint, error) { return OpenResNet(path, "") }

// OpenResNet reads a checkpoint file, a shipped default ("embedded:NAME"), or
// a TorchScript archive (loaded in a child process), and brings its state
// dict to torchvision's ResNet names (resnetkeys.Resolve). key picks a
// sub-network or prefix of the file (see weights.ReadOptions.Key; "" chooses
// automatically by resnetkeys.RoleRule).
func OpenResNet(path, key string) (*weights.Checkpoint, error) {
	ck, err := openStored(path, key)
	if err != nil {
		return nil, err
	}
	if err := resnetkeys.Resolve(ck); err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	return ck, nil
}

// openStored reads a checkpoint's state dict as the file stores it.
func openStored(path, key string) (*weights.Checkpoint, error) {
	opt := weights.ReadOptions{Key: key}
	f, err := defaults.Open(path)
	if err != nil {
		if !defaults.IsEmbedded(path) {
			err = errors.Unwrap(err) // the os.PathError's cause: the path is named once, here
		}
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("weights: %s: is a directory, not a checkpoint file", path)
	}
	ck, err := weights.ReadFrom(f, st.Size(), path, opt)
	if errors.Is(err, weights.ErrTorchScript) {
		ck, err = loadTorchScriptIsolated(path, key)
	}
	return ck, err
}

func baseName(path string) string {
	path = strings.TrimPrefix(path, defaults.Prefix)
	b := filepath.Base(path)
	for _, ext := range []string{".pth.tar", ".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".tar"} {
		if strings.HasSuffix(strings.ToLower(b), ext) {
			return b[:len(b)-len(ext)]
		}
	}
	return b
}

func freeMap(m map[string]*torch.Tensor) {
	for _, t := range m {
		t.Free()
	}
}
