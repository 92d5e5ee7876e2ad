package train

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/models"
	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
	"modelstitch/torch/vision"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// ProbeConfig is a linear probe: a linear classifier trained on the frozen
// pooled features of a backbone.
type ProbeConfig struct {
	// Epochs over the cached training features.
	Epochs    int
	BatchSize int
	// LR is Adam's initial learning rate (cosine decay to 0); WeightDecay its
	// L2 penalty.
	LR          float64
	WeightDecay float64
	Seed        int64
	Device      torch.Device
	// Progress receives progress events (nil: none).
	Progress progress.Func
}

// ProbeDefaults returns the default probe: 30 epochs of Adam, LR 1e-2 with
// cosine decay, batch 256, no weight decay.
func ProbeDefaults() ProbeConfig {
	return ProbeConfig{Epochs: 30, BatchSize: 256, LR: 1e-2, Device: torch.CPU}
}

// Probe fits a linear probe on backbone's frozen features and returns the
// resulting classifier with its test accuracy (percent).
//
// The pooled features of every training and test image are computed once,
// with backbone in eval mode and no augmentation, normalised with backbone's
// mean and std (the data set's own when backbone records none). The
// classifier sees them standardised (per-feature mean and std of the
// training features) and is trained with Adam on mini-batches drawn from the
// cached features. The standardisation is then folded into the classifier's
// weights, so the returned model is a plain torchvision-style ResNet:
// backbone's weights plus fc.weight and fc.bias, with Meta.Objective
// models.Probe, Meta.Backbone backbone.Path and Meta.TestAccuracy set. Its
// Path is empty until the caller saves it. backbone may have a classifier of
// its own; it is ignored. backbone is left in eval mode and otherwise
// unchanged.
func Probe(backbone *models.Model, train, test *datasets.Dataset, cfg ProbeConfig) (*models.Model, float64, error) {
	if backbone == nil || backbone.Net == nil {
		return nil, 0, errors.New("probe: no backbone")
	}
	if train == nil || test == nil {
		return nil, 0, errors.New("probe: need a training and a test split")
	}
	if cfg.Epochs < 1 {
		return nil, 0, fmt.Errorf("probe: %w", invalid.Errorf("probe epochs", "must be at least 1, got %d", cfg.Epochs))
	}
	if cfg.BatchSize < 1 {
		return nil, 0, fmt.Errorf("probe: %w", invalid.Errorf("batch size", "must be at least 1, got %d", cfg.BatchSize))
	}
	if !(cfg.LR > 0) {
		return nil, 0, fmt.Errorf("probe: %w", invalid.Errorf("learning rate", "must be positive, got %g", cfg.LR))
	}
	if cfg.WeightDecay < 0 {
		return nil, 0, fmt.Errorf("probe: %w", invalid.Errorf("weight decay", "must be ≥ 0, got %g", cfg.WeightDecay))
	}
	if train.Classes < 1 || test.Classes != train.Classes {
		return nil, 0, fmt.Errorf("probe: training split has %d classes, test split %d", train.Classes, test.Classes)
	}
	net := backbone.Net
	if train.C != net.Config.InChannels || test.C != net.Config.InChannels {
		return nil, 0, fmt.Errorf("probe: %s takes %d-channel images, the data has %d", backbone.Name, net.Config.InChannels, train.C)
	}
	if err := torch.CheckDevice(cfg.Device); err != nil {
		return nil, 0, err
	}
	mean, std := backbone.Meta.Mean, backbone.Meta.Std
	if len(mean) != train.C || len(std) != train.C {
		mean, std = train.Mean, train.Std
	}

	trainX, trainY, err := Features(net, train, mean, std, cfg.BatchSize, cfg.Device, cfg.Progress)
	if err != nil {
		return nil, 0, fmt.Errorf("probe: %w", err)
	}
	defer torch.FreeAll(trainX, trainY)
	testX, testY, err := Features(net, test, mean, std, cfg.BatchSize, cfg.Device, cfg.Progress)
	if err != nil {
		return nil, 0, fmt.Errorf("probe: %w", err)
	}
	defer torch.FreeAll(testX, testY)

	// Standardise with the training features' statistics.
	var mu, sigma, xs *torch.Tensor
	err = torch.NoGrad(func() error {
		mu = trainX.MeanDims([]int64{0}, true)
		sigma = trainX.Var([]int64{0}, false, true).AddScalar(1e-5).Sqrt()
		xs = trainX.Sub(mu).Div(sigma)
		return torch.FirstError(mu, sigma, xs)
	})
	defer torch.FreeAll(mu, sigma, xs)
	if err != nil {
		return nil, 0, fmt.Errorf("probe: standardising features: %w", err)
	}

	if err := torch.ManualSeed(uint64(cfg.Seed)); err != nil {
		return nil, 0, err
	}
	d := net.FeatureDim()
	fc := nn.NewLinear(d, int64(train.Classes), true)
	defer nn.Free(fc)
	if err := nn.ToDevice(fc, cfg.Device); err != nil {
		return nil, 0, fmt.Errorf("probe: %w", err)
	}
	if err := fitLinear(fc, xs, trainY, cfg); err != nil {
		return nil, 0, fmt.Errorf("probe: %w", err)
	}

	// Fold the standardisation in: W(x−μ)/σ + b = (W/σ)x + (b − (W/σ)μ).
	var w, b *torch.Tensor
	_ = torch.NoGrad(func() error { // w and b carry any error to linearAccuracy
		w = fc.Weight.Div(sigma)
		b = fc.Bias.Sub(w.Mm(mu.T()).Flatten(0, -1))
		return nil
	})
	defer torch.FreeAll(w, b)
	acc, err := linearAccuracy(testX, testY, w, b)
	if err != nil {
		return nil, 0, fmt.Errorf("probe: test accuracy: %w", err)
	}
	cfg.Progress.Notef("linear probe on %s: test accuracy %.2f%% (%d training, %d test images)", backbone.Name, acc, train.N, test.N)

	out, err := probeModel(backbone, w, b, cfg.Device)
	if err != nil {
		return nil, 0, fmt.Errorf("probe: %w", err)
	}
	recipe := &models.Recipe{Epochs: cfg.Epochs, BatchSize: cfg.BatchSize, Optimizer: "adam", LR: cfg.LR,
		WeightDecay: cfg.WeightDecay, Schedule: "cosine", Augment: "none", TrainSamples: train.N, Seed: cfg.Seed, EpochsDone: cfg.Epochs}
	note := "linear probe: fc trained on the frozen backbone's standardised pooled features (standardisation folded into fc)"
	return probeClassifier(backbone, out, train, mean, std, acc, recipe, note), acc, nil
}

// probeClassifier describes out, backbone with a probe's fc, as a classifier
// checkpoint: trained on train (inputs normalised with mean and std) by
// recipe, testing at acc percent.
func probeClassifier(backbone *models.Model, out *vision.ResNet, train *datasets.Dataset, mean, std []float64, acc float64, recipe *models.Recipe, note string) *models.Model {
	meta := backbone.Meta
	meta.Classes = train.Classes
	meta.Dataset, meta.Mean, meta.Std = train.Name, mean, std
	meta.Objective = models.Probe
	meta.Backbone = backbone.Path
	meta.TestAccuracy = &acc
	meta.Created, meta.Tool = "", ""
	meta.Recipe, meta.Note = recipe, note
	desc := strings.TrimSuffix(backbone.Description, ", no classifier")
	if desc == "" {
		desc = backbone.Net.Config.String()
	}
	return &models.Model{Name: backbone.Name + "+probe", Net: out, Meta: meta, Format: backbone.Format,
		Description: fmt.Sprintf("a linear probe (%d classes) on %s", train.Classes, desc), HasMeta: true}
}

// Features returns the pooled features [N, FeatureDim] and labels [N] of
// every image of ds, in order, computed by net in eval mode without
// gradients or augmentation, with inputs normalised by mean and std (the
// data set's own when nil). The tensors live on dev and belong to the caller.
func Features(net *vision.ResNet, ds *datasets.Dataset, mean, std []float64, batch int, dev torch.Device, report progress.Func) (x, y *torch.Tensor, err error) {
	if batch < 1 {
		batch = 256
	}
	loader, err := data.NewLoader(ds, data.Config{BatchSize: batch, Device: dev, Mean: mean, Std: std})
	if err != nil {
		return nil, nil, err
	}
	nn.Eval(net)
	bar := report.Start(fmt.Sprintf("features (%s)", ds.Split), "batches", loader.Len())
	var xs, ys []*torch.Tensor
	defer func() {
		torch.FreeAll(xs...)
		torch.FreeAll(ys...)
	}()
	err = torch.NoGrad(func() error {
		for b, err := range loader.Batches(0) {
			if err != nil {
				return err
			}
			f := net.ForwardTo(b.X, "pool")
			if err := f.Err(); err != nil {
				b.Close()
				return err
			}
			xs = append(xs, b.Scope.Keep(f))
			ys = append(ys, b.Scope.Keep(b.Y))
			b.Close()
			bar.Add(1)
		}
		x, y = torch.Cat(xs, 0), torch.Cat(ys, 0)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if err := torch.FirstError(x, y); err != nil {
		torch.FreeAll(x, y)
		return nil, nil, err
	}
	bar.End()
	return x, y, nil
}

// fitLinear trains fc on the cached features x [N, d] and labels y [N] with
// Adam and cosine decay, shuffling every epoch.
func fitLinear(fc *nn.Linear, x, y *torch.Tensor, cfg ProbeConfig) error {
	n64, err := x.Size(0)
	if err != nil {
		return err
	}
	n := int(n64)
	if n < 1 {
		return errors.New("no training images")
	}
	opt, err := optim.NewAdam(optim.Params(nn.Parameters(fc), cfg.LR, cfg.WeightDecay), optim.AdamConfig{})
	if err != nil {
		return err
	}
	defer opt.Close()
	steps := (n + cfg.BatchSize - 1) / cfg.BatchSize
	sched, err := optim.NewScheduler(opt, optim.CosineAnnealingLR{TMax: steps * cfg.Epochs})
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x50524f4245)) // "PROBE"
	order := make([]int64, n)
	for i := range order {
		order[i] = int64(i)
	}
	_, err = loop.Train(loop.Run{Epochs: cfg.Epochs, StepsPerEpoch: steps, Optimizer: opt, Schedule: sched,
		Stage: "linear probe", OneStage: true, Progress: cfg.Progress,
	}, func(epoch int, step func(loop.Batch) error) error {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for k := 0; k < steps; k++ {
			lo, hi := k*cfg.BatchSize, min((k+1)*cfg.BatchSize, n)
			s := torch.NewScope()
			idx := s.Track(torch.FromSlice(order[lo:hi])).ToDevice(cfg.Device)
			xb, yb := x.IndexSelect(0, idx), y.IndexSelect(0, idx)
			logits := fc.Forward(xb)
			err := step(loop.Batch{Loss: torch.CrossEntropy(logits, yb, 0, torch.ReduceMean), N: hi - lo, Logits: logits, Labels: yb})
			s.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// linearAccuracy returns the accuracy (percent) of logits x·wᵀ + b against y.
func linearAccuracy(x, y, w, b *torch.Tensor) (float64, error) {
	n, err := x.Size(0)
	if err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, errors.New("empty test set")
	}
	var c int64
	err = torch.NoGrad(func() (err error) {
		s := torch.NewScope()
		defer s.Close()
		c, err = evaluate.Correct(s.Track(torch.Linear(x, w, b)), y)
		return err
	})
	if err != nil {
		return 0, err
	}
	return evaluate.Percent(c, n), nil
}

// probeModel builds a new ResNet with backbone's weights (its fc, if any,
// left out) and a classifier with weight w and bias b, on dev.
func probeModel(backbone *models.Model, w, b *torch.Tensor, dev torch.Device) (*vision.ResNet, error) {
	cfg := backbone.Net.Config
	cfg.Classes = 0
	net, err := vision.NewResNet(cfg)
	if err != nil {
		return nil, err
	}
	sd := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(backbone.Net) {
		if len(n.Name) >= 3 && n.Name[:3] == "fc." {
			continue
		}
		sd[n.Name] = n.Tensor
	}
	if err := nn.LoadStateDict(net, sd, true); err != nil {
		nn.Free(net)
		return nil, err
	}
	ws, err := w.Shape()
	if err == nil && len(ws) != 2 {
		err = fmt.Errorf("probe weight has shape %v, want [classes, features]", ws)
	}
	if err != nil {
		nn.Free(net)
		return nil, err
	}
	fc := nn.NewLinear(ws[1], ws[0], true)
	cerr := torch.NoGrad(func() error {
		if err := fc.Weight.CopyFrom(w); err != nil {
			return err
		}
		return fc.Bias.CopyFrom(b)
	})
	if cerr == nil {
		cerr = net.SetClassifier(fc)
	}
	if cerr != nil {
		nn.Free(fc)
		nn.Free(net)
		return nil, cerr
	}
	if err := nn.ToDevice(net, dev); err != nil {
		nn.Free(net)
		return nil, err
	}
	nn.Eval(net)
	return net, nil
}
