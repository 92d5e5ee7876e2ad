package train

import (
	"errors"
	"fmt"
	"io"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/vision/datasets"
)

// LinearProbeResult is what the linear-probe protocol measured.
type LinearProbeResult struct {
	// Accuracy is the test accuracy (percent); TestSamples the test images.
	Accuracy    float64
	TestSamples int
	// Probe is the fitted classifier (chosen weight decay, held-out scores).
	Probe *LinearProbe
}

// ProbeBackboneLBFGS measures backbone by the LinearProbeConfig protocol: the
// pooled features of every training and test image are computed once (eval
// mode, no augmentation, inputs normalised with backbone's mean and std, the
// data set's when it records none), the probe is fit on the training
// features only (FitLinearProbe) and scored on the test features. It returns
// a classifier like Probe's (backbone plus fc, the standardisation folded in)
// and the result. batch is the feature-extraction batch size.
func ProbeBackboneLBFGS(backbone *models.Model, train, test *datasets.Dataset, cfg LinearProbeConfig, batch int, dev torch.Device) (*models.Model, *LinearProbeResult, error) {
	if backbone == nil || backbone.Net == nil {
		return nil, nil, errors.New("probe: no backbone")
	}
	if train == nil || test == nil {
		return nil, nil, errors.New("probe: need a training and a test split")
	}
	if train.Classes < 2 || test.Classes != train.Classes {
		return nil, nil, fmt.Errorf("probe: training split has %d classes, test split %d", train.Classes, test.Classes)
	}
	net := backbone.Net
	if train.C != net.Config.InChannels || test.C != net.Config.InChannels {
		return nil, nil, fmt.Errorf("probe: %s takes %d-channel images, the data has %d", backbone.Name, net.Config.InChannels, train.C)
	}
	if err := torch.CheckDevice(dev); err != nil {
		return nil, nil, err
	}
	mean, std := backbone.Meta.Mean, backbone.Meta.Std
	if len(mean) != train.C || len(std) != train.C {
		mean, std = train.Mean, train.Std
	}
	trainX, trainY, err := Features(net, train, mean, std, batch, dev, cfg.Progress)
	if err != nil {
		return nil, nil, fmt.Errorf("probe: %w", err)
	}
	defer torch.FreeAll(trainX, trainY)
	testX, testY, err := Features(net, test, mean, std, batch, dev, cfg.Progress)
	if err != nil {
		return nil, nil, fmt.Errorf("probe: %w", err)
	}
	defer torch.FreeAll(testX, testY)
	res, err := probeFeatures(trainX, trainY, testX, testY, train.Classes, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("probe: %w", err)
	}
	cfg.Progress.Notef("linear probe on %s: test accuracy %.2f%% (%d training, %d test images)", backbone.Name, res.Accuracy, train.N, test.N)

	w, b := res.Probe.Folded()
	defer torch.FreeAll(w, b)
	out, err := probeModel(backbone, w, b, dev)
	if err != nil {
		return nil, nil, fmt.Errorf("probe: %w", err)
	}
	recipe := &models.Recipe{Optimizer: "lbfgs", WeightDecay: res.Probe.WeightDecay, Schedule: "none", Augment: "none",
		TrainSamples: train.N, Seed: cfg.Seed}
	return probeClassifier(backbone, out, train, mean, std, res.Accuracy, recipe, ProtocolNote(res.Probe, train.N, test.N)), res, nil
}

// ProtocolNote describes a probe fit by the LinearProbeConfig protocol, for
// checkpoint notes and reports.
func ProtocolNote(p *LinearProbe, trainN, testN int) string {
	return fmt.Sprintf("linear probe: multinomial logistic regression on standardised frozen features, full-batch L-BFGS; "+
		"weight decay %.3g chosen on %d held-out training images among %d candidates, then refit on all %d training images; "+
		"tested on %d", p.WeightDecay, len(p.HeldOut), max(1, len(p.Scores)), trainN, testN)
}

// ProbePixels runs the LinearProbeConfig protocol on raw pixels: each image
// flattened to C·H·W values normalised with the training split's mean and std.
func ProbePixels(train, test *datasets.Dataset, cfg LinearProbeConfig) (*LinearProbeResult, error) {
	if train == nil || test == nil {
		return nil, errors.New("probe: need a training and a test split")
	}
	if train.Classes < 2 || test.Classes != train.Classes || train.ImageLen() != test.ImageLen() {
		return nil, fmt.Errorf("probe: training split has %d classes and %d values per image, test split %d and %d",
			train.Classes, train.ImageLen(), test.Classes, test.ImageLen())
	}
	trainX, trainY, err := PixelFeatures(train, train.Mean, train.Std)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	defer torch.FreeAll(trainX, trainY)
	testX, testY, err := PixelFeatures(test, train.Mean, train.Std)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	defer torch.FreeAll(testX, testY)
	res, err := probeFeatures(trainX, trainY, testX, testY, train.Classes, cfg)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	cfg.Progress.Notef("linear probe on raw pixels: test accuracy %.2f%% (%d training, %d test images)", res.Accuracy, train.N, test.N)
	return res, nil
}

// PixelFeatures returns ds's images as float32 CPU rows [N, C·H·W] (pixel/255
// normalised per channel with mean and std) and its labels [N] (int64).
func PixelFeatures(ds *datasets.Dataset, mean, std []float64) (x, y *torch.Tensor, err error) {
	if len(mean) != ds.C || len(std) != ds.C {
		return nil, nil, fmt.Errorf("%s: want %d channel means and stds, got %d and %d", ds.Name, ds.C, len(mean), len(std))
	}
	n, per := ds.N, ds.ImageLen()
	if len(ds.Pixels) != n*per || len(ds.Labels) != n {
		return nil, nil, fmt.Errorf("%s %s: %d pixels and %d labels for %d images of %d values", ds.Name, ds.Split, len(ds.Pixels), len(ds.Labels), n, per)
	}
	hw := ds.H * ds.W
	xs := make([]float32, n*per)
	for i, p := range ds.Pixels {
		c := (i % per) / hw
		xs[i] = float32((float64(p)/255 - mean[c]) / std[c])
	}
	ys := make([]int64, n)
	for i, l := range ds.Labels {
		ys[i] = int64(l)
	}
	x, y = torch.FromSlice(xs, int64(n), int64(per)), torch.FromSlice(ys)
	if err := torch.FirstError(x, y); err != nil {
		torch.FreeAll(x, y)
		return nil, nil, err
	}
	return x, y, nil
}

// probeFeatures fits on the training features and scores the test features.
func probeFeatures(trainX, trainY, testX, testY *torch.Tensor, classes int, cfg LinearProbeConfig) (*LinearProbeResult, error) {
	p, err := FitLinearProbe(trainX, trainY, classes, cfg)
	if err != nil {
		return nil, err
	}
	acc, err := p.Accuracy(testX, testY)
	if err != nil {
		return nil, fmt.Errorf("test accuracy: %w", err)
	}
	n, err := testX.Size(0)
	if err != nil {
		return nil, fmt.Errorf("test features: %w", err)
	}
	return &LinearProbeResult{Accuracy: acc, TestSamples: int(n), Probe: p}, nil
}

// WriteDecayScores prints the held-out accuracy of every candidate weight decay.
func WriteDecayScores(w io.Writer, p *LinearProbe) {
	for _, s := range p.Scores {
		mark := ""
		if s.WeightDecay == p.WeightDecay {
			mark = "  ← chosen"
		}
		fmt.Fprintf(w, "  weight decay %-8.3g held-out accuracy %6.2f%%  (%d L-BFGS iterations)%s\n", s.WeightDecay, s.Accuracy, s.Iters, mark)
	}
}
