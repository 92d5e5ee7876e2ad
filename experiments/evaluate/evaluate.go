// Package evaluate scores classifiers: the one place the experiments compute
// accuracy.
package evaluate

import (
	"errors"

	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// Accuracy returns the percentage (0–100) of the loader's samples that
// forward classifies correctly (argmax of its logits), with gradients off.
// Put the model in evaluation mode first. Progress goes to report as a stage
// named stage, counting images.
func Accuracy(forward func(x *torch.Tensor) *torch.Tensor, loader *data.Loader, report progress.Func, stage string) (float64, error) {
	var correct, total int64
	bar := report.Start(stage, "images", loader.Dataset().N)
	err := torch.NoGrad(func() error {
		for b, err := range loader.Batches(0) {
			if err != nil {
				return err
			}
			c, err := Correct(forward(b.X), b.Y)
			n, nerr := b.Y.Size(0)
			b.Close()
			if err == nil {
				err = nerr
			}
			if err != nil {
				return err
			}
			correct += c
			total += n
			bar.Add(int(n))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	bar.End()
	if total == 0 {
		return 0, errors.New("evaluate: no samples")
	}
	return Percent(correct, total), nil
}

// TestAccuracy returns the accuracy (percent) of net on ds, in eval mode,
// with inputs normalised by mean and std (the data set's own when nil), in
// batches of batch images (256 when < 1) on dev.
func TestAccuracy(net nn.Module, ds *datasets.Dataset, mean, std []float64, batch int, dev torch.Device, report progress.Func) (float64, error) {
	if batch < 1 {
		batch = 256
	}
	loader, err := data.NewLoader(ds, data.Config{BatchSize: batch, Device: dev, Mean: mean, Std: std})
	if err != nil {
		return 0, err
	}
	nn.Eval(net)
	return Accuracy(net.Forward, loader, report, "test accuracy")
}

// Correct counts the rows of logits whose argmax equals the label.
func Correct(logits, labels *torch.Tensor) (int64, error) {
	return logits.Argmax(1, false).Eq(labels).Sum().ItemInt()
}

// Percent is 100·correct/total (0 when total is 0).
func Percent(correct, total int64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(correct) / float64(total)
}
