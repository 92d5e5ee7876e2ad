package optim

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate for a step from a group's base learning
// rate (the group's LR when the Scheduler was made). Steps count from 0, the
// first optimizer step. Every group follows the same schedule from its own
// base, as PyTorch's schedulers do.
type Schedule interface {
	// LR returns the learning rate for step given the group's base rate.
	LR(base float64, step int) float64
}

// MomentumSchedule is a Schedule that also sets the optimizer's momentum
// (SGD's momentum, Adam's β1) each step; ok is false when it does not.
type MomentumSchedule interface {
	Schedule
	// Momentum returns the momentum for step, or ok false to leave it alone.
	Momentum(step int) (m float64, ok bool)
}

// ScheduleFunc adapts a function to a Schedule (like PyTorch's LambdaLR, but
// returning the learning rate rather than a factor).
type ScheduleFunc func(base float64, step int) float64

// LR calls f.
func (f ScheduleFunc) LR(base float64, step int) float64 { return f(base, step) }

// Constant keeps the base learning rate.
type Constant struct{}

// LR returns base.
func (Constant) LR(base float64, _ int) float64 { return base }

// StepLR multiplies the learning rate by Gamma every StepSize steps:
// base·Gamma^⌊step/StepSize⌋ (torch.optim.lr_scheduler.StepLR).
type StepLR struct {
	// StepSize is the number of steps between drops (> 0).
	StepSize int
	// Gamma is the factor per drop; 0 means 0.1, PyTorch's default.
	Gamma float64
}

// Validate reports a bad configuration.
func (s StepLR) Validate() error {
	if s.StepSize <= 0 {
		return fmt.Errorf("optim: StepLR: StepSize %d must be > 0", s.StepSize)
	}
	return nil
}

// LR returns base·Gamma^⌊step/StepSize⌋.
func (s StepLR) LR(base float64, step int) float64 {
	if s.StepSize <= 0 {
		return base
	}
	return base * math.Pow(gammaOr(s.Gamma), float64(step/s.StepSize))
}

func gammaOr(g float64) float64 {
	if g == 0 {
		return 0.1
	}
	return g
}

// MultiStepLR multiplies the learning rate by Gamma at each milestone step:
// base·Gamma^(number of milestones ≤ step) (torch.optim.lr_scheduler.MultiStepLR).
// For the paper's schedule use Gamma 0.2 with milestones at 30%, 60% and 80% of training.
type MultiStepLR struct {
	// Milestones are the steps at which the rate drops, in any order; a
	// milestone listed twice drops twice, as in PyTorch.
	Milestones []int
	// Gamma is the factor per drop; 0 means 0.1, PyTorch's default.
	Gamma float64
}

// Validate reports a bad configuration.
func (s MultiStepLR) Validate() error {
	for _, m := range s.Milestones {
		if m < 0 {
			return fmt.Errorf("optim: MultiStepLR: negative milestone %d", m)
		}
	}
	return nil
}

// LR returns base·Gamma^k, k the number of milestones ≤ step.
func (s MultiStepLR) LR(base float64, step int) float64 {
	k := 0
	for _, m := range s.Milestones {
		if m <= step {
			k++
		}
	}
	return base * math.Pow(gammaOr(s.Gamma), float64(k))
}

// CosineAnnealingLR follows PyTorch's closed form
// EtaMin + (base − EtaMin)·(1 + cos(π·step/TMax))/2
// (torch.optim.lr_scheduler.CosineAnnealingLR); past TMax the cosine
// continues, rising again, as PyTorch's does.
type CosineAnnealingLR struct {
	// TMax is the number of steps from the base rate down to EtaMin (> 0).
	TMax int
	// EtaMin is the lowest rate.
	EtaMin float64
}

// Validate reports a bad configuration.
func (s CosineAnnealingLR) Validate() error {
	if s.TMax <= 0 {
		return fmt.Errorf("optim: CosineAnnealingLR: TMax %d must be > 0", s.TMax)
	}
	return nil
}

// LR returns the annealed rate at step.
func (s CosineAnnealingLR) LR(base float64, step int) float64 {
	if s.TMax <= 0 {
		return base
	}
	return s.EtaMin + (base-s.EtaMin)*(1+math.Cos(math.Pi*float64(step)/float64(s.TMax)))/2
}

// OneCycleLR is PyTorch's one-cycle policy (torch.optim.lr_scheduler.OneCycleLR,
// two phases): the base learning rate is the peak (max_lr). The rate rises
// from base/DivFactor to base over the first PctStart of TotalSteps, then
// falls to base/(DivFactor·FinalDivFactor), annealed by cosine (or linearly).
// Zero fields take PyTorch's defaults. Steps from TotalSteps−1 on keep the
// final rate (PyTorch extrapolates one step further, which can turn a linear
// anneal's rate negative, then raises an error).
type OneCycleLR struct {
	// TotalSteps is the length of the cycle, normally the number of training steps (> 0).
	TotalSteps int
	// PctStart is the fraction of steps spent rising; 0 means 0.3.
	PctStart float64
	// DivFactor sets the initial rate base/DivFactor; 0 means 25.
	DivFactor float64
	// FinalDivFactor sets the final rate base/(DivFactor·FinalDivFactor); 0 means 1e4.
	FinalDivFactor float64
	// Linear anneals linearly instead of by cosine.
	Linear bool
	// CycleMomentum moves the momentum (SGD) or β1 (Adam) inversely to the
	// rate, from MaxMomentum down to BaseMomentum and back, as PyTorch does by default.
	CycleMomentum bool
	// BaseMomentum and MaxMomentum bound the momentum cycle; 0 means 0.85 and 0.95.
	BaseMomentum, MaxMomentum float64
}

func (s OneCycleLR) withDefaults() OneCycleLR {
	if s.PctStart == 0 {
		s.PctStart = 0.3
	}
	if s.DivFactor == 0 {
		s.DivFactor = 25
	}
	if s.FinalDivFactor == 0 {
		s.FinalDivFactor = 1e4
	}
	if s.BaseMomentum == 0 {
		s.BaseMomentum = 0.85
	}
	if s.MaxMomentum == 0 {
		s.MaxMomentum = 0.95
	}
	return s
}

// Validate reports a bad configuration.
func (s OneCycleLR) Validate() error {
	d := s.withDefaults()
	if s.TotalSteps <= 0 {
		return fmt.Errorf("optim: OneCycleLR: TotalSteps %d must be > 0", s.TotalSteps)
	}
	if d.PctStart < 0 || d.PctStart > 1 {
		return fmt.Errorf("optim: OneCycleLR: PctStart %v must be in (0, 1]", s.PctStart)
	}
	// PyTorch divides by each phase's length; a phase of length 0 would give NaN rates.
	if end := d.PctStart*float64(s.TotalSteps) - 1; end == 0 || end == float64(s.TotalSteps-1) {
		return fmt.Errorf("optim: OneCycleLR: PctStart %v of %d steps leaves a phase with no steps", d.PctStart, s.TotalSteps)
	}
	if d.DivFactor <= 0 || d.FinalDivFactor <= 0 {
		return fmt.Errorf("optim: OneCycleLR: DivFactor and FinalDivFactor must be > 0")
	}
	return nil
}

// phase returns where step falls: the phase (0 rising, 1 falling) and the
// fraction of it done, as PyTorch computes them.
func (s OneCycleLR) phase(step int) (int, float64) {
	if step > s.TotalSteps-1 {
		step = s.TotalSteps - 1
	}
	t := float64(step)
	end1 := s.PctStart*float64(s.TotalSteps) - 1
	end2 := float64(s.TotalSteps - 1)
	if t <= end1 {
		return 0, t / end1
	}
	return 1, (t - end1) / (end2 - end1)
}

func (s OneCycleLR) anneal(start, end, pct float64) float64 {
	if s.Linear {
		return (end-start)*pct + start
	}
	return end + (start-end)/2*(math.Cos(math.Pi*pct)+1)
}

// LR returns the one-cycle rate at step, base being the peak rate.
func (s OneCycleLR) LR(base float64, step int) float64 {
	d := s.withDefaults()
	if s.TotalSteps <= 0 {
		return base
	}
	initial := base / d.DivFactor
	min := initial / d.FinalDivFactor
	ph, pct := d.phase(step)
	if ph == 0 {
		return d.anneal(initial, base, pct)
	}
	return d.anneal(base, min, pct)
}

// Momentum returns the cycled momentum at step when CycleMomentum is set.
func (s OneCycleLR) Momentum(step int) (float64, bool) {
	if !s.CycleMomentum || s.TotalSteps <= 0 {
		return 0, false
	}
	d := s.withDefaults()
	ph, pct := d.phase(step)
	if ph == 0 {
		return d.anneal(d.MaxMomentum, d.BaseMomentum, pct), true
	}
	return d.anneal(d.BaseMomentum, d.MaxMomentum, pct), true
}

// LinearLR scales the base rate by a factor moving linearly from StartFactor
// to EndFactor over Steps steps, then holding EndFactor
// (torch.optim.lr_scheduler.LinearLR).
type LinearLR struct {
	// StartFactor and EndFactor multiply the base rate at step 0 and from step Steps on.
	StartFactor, EndFactor float64
	// Steps is the length of the ramp (> 0).
	Steps int
}

// Validate reports a bad configuration.
func (s LinearLR) Validate() error {
	if s.Steps <= 0 {
		return fmt.Errorf("optim: LinearLR: Steps %d must be > 0", s.Steps)
	}
	return nil
}

// LR returns base·(StartFactor + (EndFactor−StartFactor)·min(step, Steps)/Steps).
func (s LinearLR) LR(base float64, step int) float64 {
	if s.Steps <= 0 {
		return base * s.EndFactor
	}
	if step > s.Steps {
		step = s.Steps
	}
	return base * (s.StartFactor + (s.EndFactor-s.StartFactor)*float64(step)/float64(s.Steps))
}

// Warmup raises the rate linearly from base·StartFactor towards base over
// Steps steps, then hands over to Then (nil: constant base), whose steps count
// from 0 at the hand-over. It equals PyTorch's
// SequentialLR([LinearLR(start_factor=StartFactor, total_iters=Steps), then], milestones=[Steps]).
type Warmup struct {
	// Steps is the length of the warm-up; Then starts at step Steps.
	Steps int
	// StartFactor is the fraction of base used at step 0 (0 starts from a zero rate).
	StartFactor float64
	// Then is the schedule after the warm-up (nil: the constant base rate).
	Then Schedule
}

// Validate reports a bad configuration, including Then's.
func (s Warmup) Validate() error {
	if s.Steps < 0 {
		return fmt.Errorf("optim: Warmup: Steps %d must be ≥ 0", s.Steps)
	}
	if v, ok := s.Then.(validator); ok {
		return v.Validate()
	}
	return nil
}

// LR returns the warm-up rate, or Then's rate after Steps.
func (s Warmup) LR(base float64, step int) float64 {
	if step < s.Steps {
		return base * (s.StartFactor + (1-s.StartFactor)*float64(step)/float64(s.Steps))
	}
	if s.Then == nil {
		return base
	}
	return s.Then.LR(base, step-s.Steps)
}

// validator is a schedule that can check its configuration.
type validator interface{ Validate() error }

// Scheduler applies a Schedule to an optimizer's groups: it records each
// group's learning rate as its base, sets the step-0 rate at once (as PyTorch's
// schedulers do on construction), and sets the next step's rate on each Step.
// Call Step after each optimizer step.
type Scheduler struct {
	opt   Optimizer
	sched Schedule
	base  []float64
	step  int
}

// NewScheduler starts schedule s on opt, taking opt's current learning rates
// as the base rates (for OneCycleLR, the peak rates).
func NewScheduler(opt Optimizer, s Schedule) (*Scheduler, error) {
	if v, ok := s.(validator); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	sc := &Scheduler{opt: opt, sched: s, base: opt.LR()}
	return sc, sc.apply()
}

// apply sets the rates (and momentum) for the current step.
func (sc *Scheduler) apply() error {
	lrs := make([]float64, len(sc.base))
	for i, b := range sc.base {
		lrs[i] = sc.sched.LR(b, sc.step)
	}
	if err := sc.opt.SetLR(lrs...); err != nil {
		return err
	}
	if ms, ok := sc.sched.(MomentumSchedule); ok {
		if m, ok := ms.Momentum(sc.step); ok {
			setter, ok := sc.opt.(MomentumSetter)
			if !ok {
				return fmt.Errorf("optim: schedule cycles momentum but %T has no momentum to set", sc.opt)
			}
			return setter.SetMomentum(m)
		}
	}
	return nil
}

// Step advances the schedule by one step and sets the groups' rates.
func (sc *Scheduler) Step() error {
	sc.step++
	return sc.apply()
}

// StepCount returns the number of Step calls so far.
func (sc *Scheduler) StepCount() int { return sc.step }

// BaseLR returns the groups' base learning rates.
func (sc *Scheduler) BaseLR() []float64 { return append([]float64(nil), sc.base...) }

// LastLR returns the rates the scheduler set last (PyTorch's get_last_lr).
func (sc *Scheduler) LastLR() []float64 { return sc.opt.LR() }
