package stitch

import (
	"errors"
	"fmt"
	"math"

	"modelstitch/experiments/loop"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
)

// Stop reasons of a validated fit (FitOutcome.Stop).
const (
	// StopConverged: the validation accuracy stopped improving (after the
	// learning-rate cuts the recipe allows) before the cap.
	StopConverged = "converged"
	// StopCap: the fit ran to its cap on epochs while still improving.
	StopCap = "cap"
)

// FitOutcome says what one fit did. Without validation (FitConfig.Validate
// nil) only Steps is set.
type FitOutcome struct {
	// Steps is the number of optimizer steps taken.
	Steps int
	// Validated says the fit was scored on held-out images and the best
	// state kept (the fields below are set).
	Validated bool
	// BestStep is the step after which the kept layer was scored best (0:
	// the starting layer itself).
	BestStep int
	// StartValAcc and ValAcc are the validation accuracies (percent) of the
	// starting layer and of the kept one; ValAcc ≥ StartValAcc always.
	StartValAcc, ValAcc float64
	// LRCuts is how many times the learning rate was cut on a plateau.
	LRCuts int
	// Stop is StopConverged or StopCap.
	Stop string
}

// errConverged ends a fit's loop early: the validation accuracy has stopped
// improving.
var errConverged = loop.ErrFinished

// plateau is the validation side of a fit: it scores the layer on held-out
// images every CheckEvery steps and keeps the most accurate state seen (the
// start included; between equally accurate states, the one with the lower
// loss). A check improves when the accuracy beats the best or the loss
// falls below the lowest seen by MinLossGain (the loss is the smoother signal: at
// a small rate a fit still improving may not move the accuracy of a few
// thousand images for a while). After Patience checks without improvement
// the layer goes back to its best state and the learning rate is cut by
// LRCutFactor; after LRCuts cuts the next plateau ends the fit. So a
// validated fit can never end less accurate, on the held-out images, than
// it started.
type plateau struct {
	cfg      FitConfig
	layer    nn.Module
	training func(bool) // puts the layer (and whatever fits with it) in or out of training mode
	scale    float64    // the learning rate's multiplier now
	best     []snapshot
	bestLoss float64 // the kept state's loss
	minLoss  float64 // the lowest loss seen
	stale    int     // checks since the last improvement
	out      FitOutcome
}

// MinLossGain is the relative fall of the validation loss below the lowest
// seen that counts as progress.
const MinLossGain = 0.005

// LRCutFactor is what a plateau divides the learning rate by.
const LRCutFactor = 10

// snapshot is a copy of one tensor of a module's state.
type snapshot struct{ dst, copy *torch.Tensor }

// newPlateau scores the starting layer and keeps it as the best so far.
func newPlateau(cfg FitConfig, layer nn.Module, training func(bool)) (*plateau, error) {
	p := &plateau{cfg: cfg, layer: layer, training: training, scale: 1}
	p.out.Validated = true
	acc, loss, err := p.score()
	if err != nil {
		return nil, err
	}
	p.out.StartValAcc, p.out.ValAcc, p.bestLoss, p.minLoss = acc, acc, loss, loss
	if err := p.keep(); err != nil {
		return nil, err
	}
	return p, nil
}

// schedule is the learning rate as the plateau sets it (constant between cuts).
func (p *plateau) schedule() optim.Schedule {
	return optim.ScheduleFunc(func(base float64, _ int) float64 { return base * p.scale })
}

// score scores the layer in evaluation mode and puts it back in training mode.
func (p *plateau) score() (acc, loss float64, err error) {
	p.training(false)
	defer p.training(true)
	if acc, loss, err = p.cfg.Validate(); err != nil {
		return 0, 0, fmt.Errorf("validation: %w", err)
	}
	if math.IsNaN(loss) {
		loss = math.Inf(1)
	}
	return acc, loss, nil
}

// onStep checks the layer every CheckEvery steps; errConverged ends the fit.
func (p *plateau) onStep(s loop.Step) error {
	step := s.Step + 1
	p.out.Steps = step
	if step%p.cfg.CheckEvery != 0 {
		return nil
	}
	return p.check(step)
}

// check scores the layer after step steps and acts on the result.
func (p *plateau) check(step int) error {
	acc, loss, err := p.score()
	if err != nil {
		return err
	}
	improved := loss < p.minLoss*(1-MinLossGain)
	p.minLoss = min(p.minLoss, loss)
	if acc > p.out.ValAcc || (acc == p.out.ValAcc && loss < p.bestLoss) {
		improved = improved || acc > p.out.ValAcc
		p.out.ValAcc, p.bestLoss, p.out.BestStep = acc, loss, step
		if err := p.keep(); err != nil {
			return err
		}
	}
	if improved {
		p.stale = 0
		return nil
	}
	p.stale++
	if p.stale < p.cfg.Patience {
		return nil
	}
	if p.out.LRCuts >= p.cfg.LRCuts {
		return errConverged
	}
	// A plateau: go back to the best state and go on with a smaller step.
	p.out.LRCuts++
	p.scale /= LRCutFactor
	p.stale = 0
	return p.restore()
}

// finish ends the fit: a last check when the loop ended between checks,
// then the best state goes back into the layer. stopped says the loop
// ended by errConverged.
func (p *plateau) finish(stopped bool) error {
	if stopped {
		p.out.Stop = StopConverged
	} else {
		p.out.Stop = StopCap
		if p.out.Steps%p.cfg.CheckEvery != 0 {
			if err := p.check(p.out.Steps); err != nil && !errors.Is(err, errConverged) {
				return err
			}
		}
	}
	return p.restore()
}

// keep replaces the best state with the layer's state now.
func (p *plateau) keep() error {
	p.free()
	for _, t := range nn.StateDict(p.layer) {
		c := t.Tensor.Clone()
		if err := c.Err(); err != nil {
			return err
		}
		p.best = append(p.best, snapshot{t.Tensor, c})
	}
	return nil
}

// restore writes the best state back into the layer.
func (p *plateau) restore() error {
	return torch.NoGrad(func() error {
		for _, s := range p.best {
			if err := s.dst.CopyFrom(s.copy); err != nil {
				return err
			}
		}
		return nil
	})
}

// free releases the kept state.
func (p *plateau) free() {
	for _, s := range p.best {
		s.copy.Free()
	}
	p.best = p.best[:0]
}

// fitRun is one fit's optimizer and schedule over the loader's steps: Adam
// with cosine decay over all the epochs' steps without validation, or a
// constant rate cut on plateaus with it (plateau).
type fitRun struct {
	opt     *optim.Adam
	sched   *optim.Scheduler
	plateau *plateau
}

// newFitRun makes the optimizer of params for steps steps in all, and the
// plateau when cfg validates (which scores the starting layer).
func newFitRun(params []*torch.Tensor, cfg FitConfig, steps int, layer nn.Module, training func(bool)) (*fitRun, error) {
	opt, err := optim.NewAdam(optim.Params(params, cfg.LR, 0), optim.AdamConfig{})
	if err != nil {
		return nil, err
	}
	r := &fitRun{opt: opt}
	var schedule optim.Schedule = optim.CosineAnnealingLR{TMax: steps}
	if cfg.Validate != nil {
		if r.plateau, err = newPlateau(cfg, layer, training); err != nil {
			opt.Close()
			return nil, err
		}
		schedule = r.plateau.schedule()
	}
	if r.sched, err = optim.NewScheduler(opt, schedule); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// onStep is the loop's step hook (nil without validation).
func (r *fitRun) onStep() func(loop.Step) error {
	if r.plateau == nil {
		return nil
	}
	return r.plateau.onStep
}

// finish turns the loop's end into the fit's outcome (the plateau's
// errConverged is a normal end); the best state goes back into the layer.
func (r *fitRun) finish(res loop.Result, loopErr error, steps int) (FitOutcome, error) {
	if r.plateau == nil {
		if loopErr != nil {
			return FitOutcome{}, loopErr
		}
		return FitOutcome{Steps: steps}, nil
	}
	if loopErr != nil {
		return r.plateau.out, loopErr
	}
	if err := r.plateau.finish(res.Finished); err != nil {
		return r.plateau.out, err
	}
	return r.plateau.out, nil
}

func (r *fitRun) close() {
	r.opt.Close()
	if r.plateau != nil {
		r.plateau.free()
	}
}

// KernelLR is the learning rate a k×k stitching layer is fit with when the
// recipe's rate is lr: lr/k². Adam's step is about the rate in every weight,
// whatever the gradient's size, so a k×k kernel, with k² times the fan-in,
// moves its outputs k² times as far per step; the rate scaled down keeps a
// 7×7 layer's steps the size of a 1×1 layer's (unscaled, a 7×7 layer at the
// stem ended 7 points below its own least-squares start).
func KernelLR(lr float64, k int64) float64 {
	if k <= 1 {
		return lr
	}
	return lr / math.Pow(float64(k), 2)
}
