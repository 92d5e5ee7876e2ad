package train

import (
	"fmt"
	"math"

	"modelstitch/torch"
	"modelstitch/torch/optim"
)

// optimize back-propagates loss and takes one training step: the optimizer's
// update, clearing the gradients and advancing the schedule. It returns the
// loss's value, and refuses a NaN or infinite loss before it reaches the
// weights.
func optimize(loss *torch.Tensor, opt optim.Optimizer, sched *optim.Scheduler) (float64, error) {
	if err := loss.Backward(); err != nil {
		return 0, err
	}
	l, err := loss.Item()
	if err != nil {
		return 0, err
	}
	if math.IsNaN(l) || math.IsInf(l, 0) {
		return l, fmt.Errorf("loss is %v (try a smaller --lr)", l)
	}
	if err := opt.Step(); err != nil {
		return l, err
	}
	if err := opt.ZeroGrad(); err != nil {
		return l, err
	}
	return l, sched.Step()
}
