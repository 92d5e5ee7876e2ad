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

// AccuracyAndLoss is Accuracy with the mean cross-entropy of the logits
// beside it (a smoother signal than the accuracy, for deciding whether a fit
// still improves).
func AccuracyAndLoss(forward func(x *torch.Tensor) *torch.Tensor, loader *data.Loader) (acc, loss float64, err error) {
	var correct, total int64
	var sum float64
	err = torch.NoGrad(func() error {
		for b, err := range loader.Batches(0) {
			if err != nil {
				return err
			}
			c, l, n, err := CorrectAndLoss(forward(b.X), b.Y)
			b.Close()
			if err != nil {
				return err
			}
			correct, sum, total = correct+c, sum+l, total+n
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if total == 0 {
		return 0, 0, errors.New("evaluate: no samples")
	}
	return Percent(correct, total), sum / float64(total), nil
}

// CorrectAndLoss returns how many of the logits' rows predict their label,
// the summed cross-entropy, and the number of rows. As Correct, it leaves
// the tensors it makes to the scope of its operands.
func CorrectAndLoss(logits, labels *torch.Tensor) (correct int64, lossSum float64, n int64, err error) {
	if n, err = labels.Size(0); err != nil {
		return 0, 0, 0, err
	}
	if lossSum, err = torch.CrossEntropy(logits, labels, 0, torch.ReduceSum).Item(); err != nil {
		return 0, 0, 0, err
	}
	correct, err = Correct(logits, labels)
	return correct, lossSum, n, err
}
