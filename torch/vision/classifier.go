package vision

import (
	"errors"
	"fmt"

	"modelstitch/torch/nn"
)

// SetClassifier turns a backbone (a ResNet built with Classes 0) into a
// classifier by registering fc as its "fc" layer, so that Forward returns
// logits and the state dict gains fc.weight and fc.bias, as in torchvision.
// fc must map FeatureDim features to at least one class and have a bias;
// Config.Classes becomes its output size. The network takes ownership of fc
// (nn.Free(r) frees it). A network that already has a classifier is an error.
func (r *ResNet) SetClassifier(fc *nn.Linear) error {
	if fc == nil {
		return errors.New("vision: SetClassifier: nil classifier")
	}
	if r.FC != nil {
		return fmt.Errorf("vision: SetClassifier: %v already has a classifier (fc)", r.Config)
	}
	if err := fc.Weight.Err(); err != nil {
		return fmt.Errorf("vision: SetClassifier: fc.weight: %w", err)
	}
	if fc.Bias == nil {
		return errors.New("vision: SetClassifier: fc has no bias (torchvision's fc has one)")
	}
	if err := fc.Bias.Err(); err != nil {
		return fmt.Errorf("vision: SetClassifier: fc.bias: %w", err)
	}
	w, err := fc.Weight.Shape()
	if err != nil {
		return fmt.Errorf("vision: SetClassifier: fc.weight: %w", err)
	}
	b, err := fc.Bias.Shape()
	if err != nil {
		return fmt.Errorf("vision: SetClassifier: fc.bias: %w", err)
	}
	if len(w) != 2 || w[1] != r.FeatureDim() || w[0] < 1 || len(b) != 1 || b[0] != w[0] {
		return fmt.Errorf("vision: SetClassifier: fc.weight %v and fc.bias %v do not map %d features to classes",
			w, b, r.FeatureDim())
	}
	r.FC = fc
	r.RegisterModule("fc", fc)
	r.Config.Classes = int(w[0])
	return nil
}
