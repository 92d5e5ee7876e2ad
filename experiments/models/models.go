// Package models loads ResNets from any checkpoint file the weights package
// reads (or builds a random one), and saves ours with their metadata.
package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision"
	"modelstitch/weights"
	"modelstitch/weights/defaults"
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
	Seed         int64   `json:"seed"`
	// EpochsDone counts finished epochs (for resuming an interrupted run).
	EpochsDone int `json:"epochs_done,omitempty"`
}

// Meta is modelstitch's metadata, stored as JSON inside our checkpoints.
type Meta struct {
	Arch       string    `json:"arch"`
	Width      float64   `json:"width"`
	Stem       string    `json:"stem"`
	InChannels int       `json:"in_channels"`
	Classes    int       `json:"classes"`
	Dataset    string    `json:"dataset,omitempty"`
	Mean       []float64 `json:"mean,omitempty"`
	Std        []float64 `json:"std,omitempty"`
	Objective  string    `json:"objective,omitempty"`
	Recipe     *Recipe   `json:"recipe,omitempty"`
	// TestAccuracy is in percent (0–100), measured on Dataset's test split.
	TestAccuracy *float64 `json:"test_accuracy,omitempty"`
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
	depth, err := vision.ParseArch(m.Arch)
	if err != nil {
		return vision.ResNetConfig{}, err
	}
	return vision.ResNetConfig{Depth: depth, Width: m.Width, Stem: m.Stem, InChannels: m.InChannels, Classes: m.Classes}, nil
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
	return Meta{Arch: fmt.Sprintf("resnet%d", cfg.Depth), Width: w, Stem: stem, InChannels: in, Classes: cfg.Classes}
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
	// HasMeta reports whether the file carried modelstitch metadata.
	HasMeta bool
}

// LoadOptions override what is inferred from a file.
type LoadOptions struct {
	// Stem forces "imagenet" or "cifar" (a 3×3 stem may or may not have a maxpool).
	Stem string
	// Device to put the model on.
	Device torch.Device
}

// Load reads a checkpoint (torch.save zip or legacy, TorchScript, safetensors),
// builds the ResNet it holds and loads its weights. Our own files carry their
// configuration; others have it inferred from the weights' shapes. The model
// comes back in evaluation mode.
func Load(path string, opt LoadOptions) (*Model, error) {
	ck, err := Open(path)
	if err != nil {
		return nil, err
	}
	m := &Model{Name: baseName(path), Path: path, Format: ck.Format, Notes: ck.Notes}
	shapes := ck.State.Shapes()
	inferred, desc, ierr := vision.InferResNetConfig(shapes)
	m.Description = desc
	var meta Meta
	if err := ck.ModelstitchMeta(&meta); err == nil {
		m.Meta, m.HasMeta = meta, true
	} else if ierr != nil {
		return nil, fmt.Errorf("model %s: %w", path, ierr)
	} else {
		m.Meta = MetaFor(inferred)
		m.Notes = append(m.Notes, "architecture inferred from the weights: "+inferred.String())
	}
	if opt.Stem != "" {
		if opt.Stem != "imagenet" && opt.Stem != "cifar" {
			return nil, fmt.Errorf("model %s: --stem must be imagenet or cifar, not %q", path, opt.Stem)
		}
		m.Meta.Stem = opt.Stem
	}
	cfg, err := m.Meta.Config()
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	net, err := vision.NewResNet(cfg)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if mm := weights.CompareKeys(nn.Shapes(net), ck.State); mm.Err() != nil {
		nn.Free(net)
		what := desc
		if what == "" {
			what = "not a recognisable ResNet"
		}
		return nil, fmt.Errorf("model %s (%s) does not fit %s: %v", path, what, cfg, mm)
	}
	sd, err := ToTensors(ck.State)
	if err != nil {
		nn.Free(net)
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	defer freeMap(sd)
	if err := nn.LoadStateDict(net, sd, true); err != nil {
		nn.Free(net)
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if err := nn.ToDevice(net, opt.Device); err != nil {
		nn.Free(net)
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	nn.Eval(net)
	m.Net = net
	return m, nil
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
		return nil, err
	}
	nn.Eval(net)
	meta.Objective = Random
	meta.TestAccuracy = nil
	meta.Recipe = &Recipe{Seed: seed}
	return &Model{Name: "random", Path: "random", Net: net, Meta: meta, Description: "an untrained " + cfg.String()}, nil
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
	tmp := path + ".tmp"
	if err := weights.WriteTorchFile(tmp, sd, map[string]string{weights.MetadataKey: string(js)}); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// Free releases the model's tensors.
func (m *Model) Free() {
	if m != nil && m.Net != nil {
		nn.Free(m.Net)
	}
}

// Open reads a checkpoint file, a shipped default ("embedded:NAME"), or a
// TorchScript archive.
func Open(path string) (*weights.Checkpoint, error) {
	if strings.HasPrefix(path, defaults.Prefix) {
		b, err := defaults.Bytes(path)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
		ck, err := weights.ReadTorchBytes(b)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
		ck.Path = path
		return ck, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("model %s: %w", path, errors.Unwrap(err))
	}
	ck, err := weights.Open(path)
	if errors.Is(err, weights.ErrTorchScript) {
		ck, err = loadTorchScriptIsolated(path)
	}
	return ck, err
}

func baseName(path string) string {
	path = strings.TrimPrefix(path, defaults.Prefix)
	b := filepath.Base(path)
	for _, ext := range []string{".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".tar", ".pth.tar"} {
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
