// Package evaluate scores classifiers on a data loader's batches.
package evaluate

import (
	"errors"

	"modelstitch/torch"
	"modelstitch/torch/vision/data"
)

// Progress receives the number of samples just finished; nil means no display.
type Progress func(done int)

// Accuracy returns the percentage (0–100) of the loader's samples that
// forward classifies correctly (argmax of its logits), with gradients off.
// Put the model in evaluation mode first.
func Accuracy(forward func(x *torch.Tensor) *torch.Tensor, loader *data.Loader, progress Progress) (float64, error) {
	var correct, total int64
	var ferr error
	torch.NoGrad(func() {
		for b, err := range loader.Batches(0) {
			if err != nil {
				ferr = err
				return
			}
			c, err := Correct(forward(b.X), b.Y)
			n, nerr := b.Y.Size(0)
			b.Close()
			if err == nil {
				err = nerr
			}
			if err != nil {
				ferr = err
				return
			}
			correct += c
			total += n
			if progress != nil {
				progress(int(n))
			}
		}
	})
	if ferr != nil {
		return 0, ferr
	}
	if total == 0 {
		return 0, errors.New("evaluate: no samples")
	}
	return 100 * float64(correct) / float64(total), nil
}

// Correct counts the rows of logits whose argmax equals the label.
func Correct(logits, labels *torch.Tensor) (int64, error) {
	return logits.Argmax(1, false).Eq(labels).Sum().ItemInt()
}
