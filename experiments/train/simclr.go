package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/models"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/splits"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/data"
	"modelstitch/weights"
)

// SimCLRConfig is a self-supervised (SimCLR) training run of a ResNet
// backbone, followed by a linear probe that measures it.
type SimCLRConfig struct {
	Arch  string // resnet18, resnet34, resnet50, resnet101
	Width float64
	Stem  string // cifar or imagenet
	// Data's TrainSamples subsets the images SimCLR trains on (labels unused).
	Data splits.Config
	// Epochs 0 writes the untrained ("random") backbone, probed like a trained one.
	Epochs    int
	BatchSize int
	// Optimizer is "adam" (LR, WeightDecay as an L2 penalty) or "sgd"
	// (LR, Momentum, WeightDecay); either with cosine decay to 0.
	Optimizer   string
	LR          float64
	Momentum    float64
	WeightDecay float64
	// Temperature of the NT-Xent loss.
	Temperature float64
	// ProjectionDim is the output size of the projection head
	// Linear(d,d) → ReLU → Linear(d,ProjectionDim).
	ProjectionDim int
	// HeadBN puts a batch norm after the head's first layer:
	// Linear(d,d) → BatchNorm1d(d) → ReLU → Linear(d,ProjectionDim).
	HeadBN bool
	// Views, when set, replaces data.SimCLRAugment's views (one-channel data).
	Views  *SimCLRViews
	Seed   int64
	Device torch.Device
	// Out is the backbone checkpoint to write; the projection head goes to
	// HeadPath(Out).
	Out string
	// Probe configures the linear probe run at the end; ProbeSamples > 0 fits
	// it on a class-balanced subset of that many training images (0: the whole
	// training split, whatever Data.TrainSamples says).
	Probe        ProbeConfig
	ProbeSamples int
	// LinearProbe, when set, makes the final probe follow the L-BFGS protocol
	// (ProbeBackboneLBFGS; its Seed is the run's) instead of Probe's Adam epochs.
	LinearProbe *LinearProbeConfig
	// NoProbe skips the final probe: the checkpoint gets no TestAccuracy and
	// the result's is 0 (for callers that probe on their own terms).
	NoProbe bool
	// Progress receives progress events (nil: none).
	Progress progress.Func
	// OnStep, if set, is called after every optimizer step; an error stops
	// training (the epochs already written stay, as after an interruption).
	OnStep func(SimCLRStep) error
}

// SimCLRStep describes one finished optimizer step, for SimCLRConfig.OnStep.
type SimCLRStep struct {
	Epoch, Step int // Epoch counts from 0; Step counts all steps from 0, across epochs
	Loss        float64
	// Backbone is the network being trained; a callback may evaluate it
	// (training mode is restored before the next step) but not keep it.
	Backbone *vision.ResNet
}

// SimCLRDefaults returns the default SimCLR recipe for a small ResNet on a
// CPU: Adam, LR 1e-3 with cosine decay, weight decay 1e-6, batch 256,
// temperature 0.5, 128-d projections, and the default linear probe.
func SimCLRDefaults() SimCLRConfig {
	return SimCLRConfig{Arch: "resnet18", Width: 0.25, Stem: "cifar", Data: splits.Config{Name: "fashion-mnist"},
		Epochs: 5, BatchSize: 256, Optimizer: "adam", LR: 1e-3, Momentum: 0.9, WeightDecay: 1e-6,
		Temperature: 0.5, ProjectionDim: 128, Device: torch.CPU, Probe: ProbeDefaults()}
}

// HeadPath is where SimCLR keeps the projection head of the backbone written
// to out: out + ".head.pt", a torch.save file with the state dict of
// nn.Sequential(Linear(d,d), ReLU(), Linear(d,p)) ("0.weight", "0.bias",
// "2.weight", "2.bias") and a JSON attribute _modelstitch_simclr_head.
func HeadPath(out string) string { return out + ".head.pt" }

// headKey is the metadata key of the head file's description.
const headKey = "simclr_head"

// headMeta describes a projection head file.
type headMeta struct {
	Layers     string `json:"layers"`
	Backbone   string `json:"backbone"`
	EpochsDone int    `json:"epochs_done"`
}

// SimCLR trains a ResNet backbone (no classifier) with SimCLR: two views of
// every image are augmented on the training device (data.SimCLRAugment), both
// go through the backbone and a projection head in one batch, and the NT-Xent
// loss pulls the two views of an image together. After every epoch the
// backbone is written to cfg.Out (torchvision names, no fc; Objective
// models.SimCLR) and the head to HeadPath(cfg.Out), so an interrupted run
// resumes from its last finished epoch. At the end a linear probe is fit on
// the frozen backbone; its test accuracy is the result's and the checkpoint's
// TestAccuracy (Meta.Note says so).
func SimCLR(cfg SimCLRConfig) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r, err := newRun(cfg.Arch, cfg.Width, cfg.Stem, cfg.Data, cfg.Device, cfg.Epochs, models.SimCLR, false)
	if err != nil {
		return nil, err
	}
	slots := 2 // Adam's moments
	if cfg.Optimizer == "sgd" {
		slots = 1
	}
	if err := r.fits(min(cfg.BatchSize, r.train.N), 2, slots, cfg.Epochs > 0); err != nil { // both views in one batch
		return nil, err
	}
	trainSet, netCfg, meta := r.train, r.net, r.meta
	if trainSet.N < 2 {
		return nil, fmt.Errorf("SimCLR needs at least 2 training images, got %d", trainSet.N)
	}
	aug := data.SimCLRAugment(trainSet)
	if cfg.Views != nil {
		if aug, err = cfg.Views.Transform(); err != nil {
			return nil, fmt.Errorf("SimCLR views: %w", err)
		}
	}
	meta.Recipe = cfg.recipe(aug)

	if err := torch.ManualSeed(uint64(cfg.Seed)); err != nil {
		return nil, err
	}
	net, err := vision.NewResNet(netCfg)
	if err != nil {
		return nil, err
	}
	defer nn.Free(net)
	head, err := cfg.newHead(net.FeatureDim())
	if err != nil {
		return nil, err
	}
	defer nn.Free(head)
	if err := nn.ToDevice(net, cfg.Device); err != nil {
		return nil, err
	}
	if err := nn.ToDevice(head, cfg.Device); err != nil {
		return nil, err
	}

	loader, err := data.NewLoader(trainSet, data.Config{BatchSize: min(cfg.BatchSize, trainSet.N), Shuffle: true, Seed: cfg.Seed,
		DropLast: true, Device: cfg.Device, Augment: aug, Views: 2})
	if err != nil {
		return nil, err
	}
	opt, err := cfg.newOptimizer(append(nn.Parameters(net), nn.Parameters(head)...))
	if err != nil {
		return nil, err
	}
	defer opt.Close()
	sched, err := optim.NewScheduler(opt, optim.CosineAnnealingLR{TMax: max(1, loader.Len()*cfg.Epochs)})
	if err != nil {
		return nil, err
	}

	run := loop.Run{
		Epochs: cfg.Epochs, StepsPerEpoch: loader.Len(), Optimizer: opt, Schedule: sched,
		Resume: func() (int, error) {
			done, err := simclrResumePoint(cfg, meta, net, head)
			meta.Recipe.EpochsDone = done
			return done, err
		},
		Save: func(done int) error {
			meta.Recipe.EpochsDone = done
			return saveSimCLR(cfg.Out, net, head, meta)
		},
		StateFile: loop.StatePath(cfg.Out), What: cfg.Out, LossName: "NT-Xent", Progress: cfg.Progress,
	}
	if cfg.OnStep != nil {
		run.OnStep = func(s loop.Step) error {
			return cfg.OnStep(SimCLRStep{Epoch: s.Epoch, Step: s.Step, Loss: s.Loss, Backbone: net})
		}
	}
	lr, err := loop.Train(run, func(epoch int, step func(loop.Batch) error) error {
		nn.Train(head)
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				return err
			}
			nn.Train(net) // OnStep may have evaluated it
			n := int64(b.Len())
			// Both views in one batch: batch norm sees all 2N images, as in SimCLR.
			z := head.Forward(net.Forward(torch.Cat(b.Views, 0)))
			err = step(loop.Batch{Loss: NTXent(z.Narrow(0, 0, n), z.Narrow(0, n, n), cfg.Temperature), N: int(n)})
			b.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	res := &Result{Path: cfg.Out, Resumed: lr.Resumed, Seconds: lr.Seconds}
	if err != nil {
		return nil, fmt.Errorf("SimCLR: %w", err)
	}
	if cfg.Epochs == 0 { // the untrained backbone, probed like a trained one
		if err := saveSimCLR(cfg.Out, net, head, meta); err != nil {
			return nil, err
		}
	}
	if res.Seconds > 0 {
		res.ImagesPerSec = float64(lr.Samples) / res.Seconds
	}

	if cfg.NoProbe {
		return res, nil
	}
	if res.TestAccuracy, err = cfg.probe(net, meta); err != nil {
		return nil, err
	}
	return res, nil
}

// check fills in the projection size if unset and refuses a configuration
// no run can follow.
func (cfg *SimCLRConfig) check() error {
	if err := checkRun(cfg.Out, cfg.BatchSize, cfg.Epochs, " (NT-Xent needs negatives)"); err != nil {
		return err
	}
	if !(cfg.Temperature > 0) || math.IsInf(cfg.Temperature, 0) {
		return invalid.Errorf("temperature", "must be positive, got %g", cfg.Temperature)
	}
	if !(cfg.LR > 0) {
		return invalid.Errorf("learning rate", "must be positive, got %g", cfg.LR)
	}
	if cfg.Optimizer != "adam" && cfg.Optimizer != "sgd" {
		return invalid.Errorf("optimizer", "must be adam or sgd, got %q", cfg.Optimizer)
	}
	if cfg.ProjectionDim == 0 {
		cfg.ProjectionDim = 128
	}
	if cfg.ProjectionDim < 1 {
		return invalid.Errorf("projection size", "must be positive, got %d", cfg.ProjectionDim)
	}
	if cfg.Data.LabelNoise != 0 || cfg.Data.ObjectsVsAnimals || cfg.Data.Task != "" {
		return errors.New("SimCLR uses no labels: label noise and relabelling apply to supervised training only")
	}
	if !cfg.NoProbe && cfg.Probe.Epochs < 1 {
		return invalid.Errorf("probe epochs", "must be at least 1, got %d", cfg.Probe.Epochs)
	}
	return nil
}

// recipe is the run's recipe as its checkpoint records it (aug: the views).
func (cfg SimCLRConfig) recipe(aug data.Transform) *models.Recipe {
	rec := &models.Recipe{Epochs: cfg.Epochs, BatchSize: cfg.BatchSize, Optimizer: cfg.Optimizer, LR: cfg.LR,
		WeightDecay: cfg.WeightDecay, Schedule: "cosine", Augment: "simclr: " + fmt.Sprint(aug),
		TrainSamples: cfg.Data.TrainSamples, Temperature: cfg.Temperature, Seed: cfg.Seed}
	if cfg.Optimizer == "sgd" {
		rec.Momentum = cfg.Momentum
	}
	return rec
}

// newHead builds the projection head on d-dimensional features:
// Linear(d,d) → [BatchNorm1d(d) →] ReLU → Linear(d,ProjectionDim).
func (cfg SimCLRConfig) newHead(d int64) (*nn.Sequential, error) {
	head := nn.NewSequential(nn.NewLinear(d, d, true), nn.NewReLU(), nn.NewLinear(d, int64(cfg.ProjectionDim), true))
	if cfg.HeadBN {
		head = nn.NewSequential(nn.NewLinear(d, d, true), nn.NewBatchNorm1d(d), nn.NewReLU(), nn.NewLinear(d, int64(cfg.ProjectionDim), true))
	}
	for _, n := range nn.StateDict(head) {
		if err := n.Tensor.Err(); err != nil {
			nn.Free(head)
			return nil, fmt.Errorf("projection head %s: %w", n.Name, err)
		}
	}
	return head, nil
}

// newOptimizer is the run's optimizer (Adam or SGD) over params.
func (cfg SimCLRConfig) newOptimizer(params []*torch.Tensor) (optim.Optimizer, error) {
	if cfg.Optimizer == "sgd" {
		return optim.NewSGD(optim.Params(params, cfg.LR, cfg.WeightDecay), optim.SGDConfig{Momentum: cfg.Momentum})
	}
	return optim.NewAdam(optim.Params(params, cfg.LR, cfg.WeightDecay), optim.AdamConfig{})
}

// probe measures the trained backbone with a linear probe on labelled data
// (Probe's Adam epochs, or the L-BFGS protocol when cfg.LinearProbe is set)
// and writes the checkpoint with its test accuracy and a note saying how it
// was measured.
func (cfg SimCLRConfig) probe(net *vision.ResNet, meta models.Meta) (float64, error) {
	probeTrain, probeTest, err := splits.Load(splits.Config{Name: cfg.Data.Name, Dir: cfg.Data.Dir, ImageSize: cfg.Data.ImageSize,
		Channels: cfg.Data.Channels, Mean: cfg.Data.Mean, Std: cfg.Data.Std, TrainSamples: cfg.ProbeSamples, Seed: cfg.Seed})
	if err != nil {
		return 0, fmt.Errorf("linear probe: %w", err)
	}
	pc := cfg.Probe
	pc.Device = cfg.Device
	if pc.Progress == nil {
		pc.Progress = cfg.Progress
	}
	bb := &models.Model{Name: filepath.Base(cfg.Out), Path: cfg.Out, Net: net, Meta: meta, Description: net.Config.String()}
	var acc float64
	if cfg.LinearProbe != nil {
		lc := *cfg.LinearProbe
		lc.Seed = cfg.Seed
		if lc.Progress == nil {
			lc.Progress = cfg.Progress
		}
		probe, r, err := ProbeBackboneLBFGS(bb, probeTrain, probeTest, lc, pc.BatchSize, cfg.Device)
		if err != nil {
			return 0, err
		}
		probe.Free()
		acc = r.Accuracy
		meta.Note = "test_accuracy is a " + ProtocolNote(r.Probe, probeTrain.N, probeTest.N)
	} else {
		probe, a, err := Probe(bb, probeTrain, probeTest, pc)
		if err != nil {
			return 0, err
		}
		probe.Free()
		acc = a
		meta.Note = fmt.Sprintf("test_accuracy is a linear probe's: %d epochs of Adam (LR %g, batch %d) on the frozen backbone's "+
			"standardised pooled features of %d training images, tested on %d", pc.Epochs, pc.LR, pc.BatchSize, probeTrain.N, probeTest.N)
	}
	meta.TestAccuracy = &acc
	if err := models.Save(cfg.Out, net, meta); err != nil {
		return 0, fmt.Errorf("writing %s: %w", cfg.Out, err)
	}
	return acc, nil
}

// saveSimCLR writes the head, then the backbone (whose EpochsDone marks the
// epoch finished).
func saveSimCLR(out string, net *vision.ResNet, head *nn.Sequential, meta models.Meta) error {
	if err := saveHead(HeadPath(out), head, headMeta{Backbone: filepath.Base(out), EpochsDone: meta.Recipe.EpochsDone}); err != nil {
		return fmt.Errorf("writing %s: %w", HeadPath(out), err)
	}
	if err := models.Save(out, net, meta); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}

func saveHead(path string, head *nn.Sequential, hm headMeta) error {
	l0, l2 := head.Layers[0].(*nn.Linear), head.Layers[len(head.Layers)-1].(*nn.Linear)
	bn := ""
	if len(head.Layers) == 4 {
		bn = " BatchNorm1d"
	}
	hm.Layers = fmt.Sprintf("Linear(%d,%d)%s ReLU Linear(%d,%d)", l0.In, l0.Out, bn, l2.In, l2.Out)
	js, err := json.Marshal(hm)
	if err != nil {
		return err
	}
	sd, err := models.FromModule(head)
	if err != nil {
		return err
	}
	return weights.WriteTorchFile(path, sd, map[string]string{headKey: string(js)})
}

// simclrResumePoint loads an interrupted run's backbone and head into net and
// head when they were made by the same recipe, returning the number of
// finished epochs (0: start afresh). A finished run whose probe did not
// complete returns Epochs, so only the probe runs again.
func simclrResumePoint(cfg SimCLRConfig, want models.Meta, net *vision.ResNet, head *nn.Sequential) (int, error) {
	path := cfg.Out
	if _, err := os.Stat(path); err != nil {
		return 0, nil
	}
	prev, err := models.Load(path, models.LoadOptions{})
	if err != nil {
		return 0, invalid.Errorf("out", "%s exists but cannot be resumed (%v); remove it or choose another file", path, err)
	}
	defer prev.Free()
	r, w := prev.Meta.Recipe, want.Recipe
	if r == nil || prev.Meta.Objective != want.Objective || prev.Meta.Arch != want.Arch || prev.Meta.Width != want.Width ||
		prev.Meta.Stem != want.Stem || prev.Meta.Dataset != want.Dataset || r.Seed != w.Seed || r.Epochs != w.Epochs ||
		r.LR != w.LR || r.BatchSize != w.BatchSize || r.Optimizer != w.Optimizer || r.TrainSamples != w.TrainSamples ||
		r.Temperature != w.Temperature {
		return 0, invalid.Errorf("out", "%s exists and was made by a different recipe; remove it or choose another file", path)
	}
	if r.EpochsDone >= w.Epochs && prev.Meta.TestAccuracy != nil {
		return r.EpochsDone, fmt.Errorf("%s is already finished (linear probe accuracy %.2f%%); remove it to train again", path, *prev.Meta.TestAccuracy)
	}
	if r.EpochsDone >= w.Epochs && cfg.NoProbe {
		return r.EpochsDone, fmt.Errorf("%s is already finished; remove it to train again", path)
	}
	sd := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(prev.Net) {
		sd[n.Name] = n.Tensor
	}
	if err := nn.LoadStateDict(net, sd, true); err != nil {
		return 0, err
	}
	hp := HeadPath(path)
	ck, err := weights.Open(hp)
	if err != nil {
		return 0, fmt.Errorf("%s exists but its projection head cannot be read (%v); remove both to start afresh", path, err)
	}
	var hm headMeta
	if s, ok := ck.Metadata[headKey]; !ok || json.Unmarshal([]byte(s), &hm) != nil || hm.EpochsDone != r.EpochsDone {
		return 0, fmt.Errorf("%s is not the projection head of %s after epoch %d; remove both to start afresh", hp, path, r.EpochsDone)
	}
	hsd, err := models.ToTensors(ck.State)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", hp, err)
	}
	defer func() {
		for _, t := range hsd {
			t.Free()
		}
	}()
	if err := nn.LoadStateDict(head, hsd, true); err != nil {
		return 0, fmt.Errorf("%s: %w", hp, err)
	}
	return r.EpochsDone, nil
}
