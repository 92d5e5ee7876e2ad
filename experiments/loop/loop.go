// Package loop is the one training loop of the experiments: supervised and
// SimCLR training, linear probes and stitching layers all run through Train.
// The loop owns what every objective shares: resuming an interrupted run,
// fast-forwarding the learning-rate schedule past its finished epochs, a
// checkpoint after every epoch, back-propagation with a guard against a
// diverged loss, the optimizer and schedule steps, and progress events. An
// objective only computes each batch's loss.
package loop

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"time"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/optim"
)

// MaxEpochs is the most epochs a run may have. It is far beyond any recipe
// here (the paper trains for 200 epochs and stitches for 30); a larger count
// is a slip (epochs = 99999999999), not a run that could finish.
const MaxEpochs = 1_000_000

// CheckEpochs refuses an epoch count below 0 or above MaxEpochs, as an
// invalid setting of "epochs". Train applies it; the commands' and the grid
// spec's checks call it earlier.
func CheckEpochs(n int) error {
	if n < 0 || n > MaxEpochs {
		return invalid.Errorf("epochs", "must be in 0..%d, got %d", MaxEpochs, n)
	}
	return nil
}

// Batch is one optimizer step's work, handed by an objective to the loop.
type Batch struct {
	// Loss is the batch's mean loss; its graph reaches the trained parameters.
	Loss *torch.Tensor
	// N is the number of samples in the batch.
	N int
	// Logits and Labels, when both are set, add the batch's training accuracy
	// to the progress report.
	Logits, Labels *torch.Tensor
}

// Objective computes one epoch's losses (epoch counts from 0): it calls step
// once per batch, in order, and returns at once the error step returns. The
// batch's tensors may be freed once step has returned.
type Objective func(epoch int, step func(Batch) error) error

// Step describes one finished optimizer step, for Run.OnStep.
type Step struct {
	// Epoch counts from 0; Step counts every step of the run from 0, across
	// epochs (resumed epochs included).
	Epoch, Step int
	Loss        float64
}

// Run is one training run's settings.
type Run struct {
	// Epochs is the length of the whole run (resumed epochs included).
	Epochs int
	// StepsPerEpoch is the number of batches an epoch has; the schedule is
	// fast-forwarded by that many steps per resumed epoch.
	StepsPerEpoch int
	Optimizer     optim.Optimizer
	Schedule      *optim.Scheduler
	// Resume, if set, loads an interrupted run's state into the model and
	// returns the number of epochs it finished (0: start afresh).
	Resume func() (int, error)
	// Save, if set, writes a checkpoint after every finished epoch; done
	// counts the epochs finished so far.
	Save func(done int) error
	// StateFile, if set with Save and Resume, is where the run keeps what its
	// checkpoint lacks for a bit-identical resume: the optimizer's state
	// (momentum buffers, Adam's moments) and the random generators'. It is
	// written after every Save, read when Resume finds finished epochs, and
	// removed when the last epoch is done. Without it (or when it does not
	// match the checkpoint) a resumed run restarts the optimizer's state and
	// says so. The optimizer must be optim.Stateful.
	StateFile string
	// StopAfter > 0 ends the run after that many epochs (resumed ones
	// included), as if interrupted there; Result.Stopped says so.
	StopAfter int
	// OnStep, if set, is called after every optimizer step; an error stops
	// the run (the epochs already saved stay). ErrFinished ends it as done:
	// Train returns no error and Result.Finished says so.
	OnStep func(Step) error
	// What names the run in messages ("x.pt"); Stage names its progress
	// stages ("epoch" gives "epoch 2/5"; the default is "epoch").
	What, Stage string
	// OneStage reports the whole run as one stage counting steps, instead of
	// one stage per epoch counting batches.
	OneStage bool
	// LossName labels the running loss in progress reports (default "loss").
	LossName string
	// Progress receives progress events (nil: none).
	Progress progress.Func
}

// Result says what a run did.
type Result struct {
	// Resumed is the number of epochs an earlier, interrupted run finished.
	Resumed int
	// Samples is the number of samples trained on by this run.
	Samples int
	// Seconds is the time the epochs of this run took.
	Seconds float64
	// Stopped says the run ended early, by StopAfter.
	Stopped bool
	// Finished says OnStep ended the run early with ErrFinished (a fit that
	// converged before its cap).
	Finished bool
	// LastEpochAccuracy is the running training accuracy (percent) over the
	// last epoch this run trained, when its batches gave logits and labels
	// (Scored says so): the labels as trained on, noisy ones included.
	LastEpochAccuracy float64
	Scored            bool
}

// ErrFinished, returned by Run.OnStep, ends a run early as a normal end:
// what was trained is the result.
var ErrFinished = errors.New("loop: finished early")

// Train runs the epochs of r that are not done yet, each by objective.
func Train(r Run, objective Objective) (Result, error) {
	var res Result
	if err := CheckEpochs(r.Epochs); err != nil {
		return res, fmt.Errorf("loop: %w", err)
	}
	if r.Optimizer == nil || r.Schedule == nil {
		return res, fmt.Errorf("loop: no optimizer or schedule")
	}
	if r.Resume != nil {
		done, err := r.Resume()
		if err != nil {
			return res, err
		}
		if done > 0 {
			res.Resumed = done
			r.Progress.Notef("resuming %s after epoch %d of %d", r.What, done, r.Epochs)
		}
	}
	// Fast-forward the schedule past finished epochs.
	for i := 0; i < min(res.Resumed, r.Epochs)*r.StepsPerEpoch; i++ {
		if err := r.Schedule.Step(); err != nil {
			return res, err
		}
	}
	if r.StateFile != "" && res.Resumed > 0 && res.Resumed < r.Epochs {
		switch err := loadState(r.StateFile, res.Resumed, r.Optimizer, r.Schedule); {
		case errors.Is(err, fs.ErrNotExist):
			r.Progress.Notef("%s has no optimizer state beside it (%s): the resumed run starts the optimizer afresh, so it will differ from an uninterrupted one", r.What, r.StateFile)
		case err != nil:
			r.Progress.Notef("not using the optimizer state in %s (%v): the resumed run starts the optimizer afresh, so it will differ from an uninterrupted one", r.StateFile, err)
		}
	}
	// One OS thread for the whole run, with the thread count asked for:
	// libtorch's thread pools are per OS thread, and a migrating goroutine
	// measurably slows training.
	defer torch.LockThread()()
	stage, lossName := r.Stage, r.LossName
	if stage == "" {
		stage = "epoch"
	}
	if lossName == "" {
		lossName = "loss"
	}
	var bar *progress.Stage
	if r.OneStage && res.Resumed < r.Epochs {
		bar = r.Progress.Start(stage, "steps", (r.Epochs-res.Resumed)*r.StepsPerEpoch)
	}
	start := time.Now()
	step := res.Resumed * r.StepsPerEpoch
	for epoch := res.Resumed; epoch < r.Epochs; epoch++ {
		if !r.OneStage {
			bar = r.Progress.Start(fmt.Sprintf("%s %d/%d", stage, epoch+1, r.Epochs), "batches", r.StepsPerEpoch)
		}
		var lossSum float64
		var correct, seen, scored int64
		err := objective(epoch, func(b Batch) error {
			l, err := optimize(b.Loss, r.Optimizer, r.Schedule)
			if err != nil {
				return err
			}
			lossSum += l * float64(b.N)
			seen += int64(b.N)
			res.Samples += b.N
			detail := fmt.Sprintf("%s %.3f", lossName, lossSum/float64(seen))
			if b.Logits != nil && b.Labels != nil {
				c, err := evaluate.Correct(b.Logits, b.Labels)
				if err != nil {
					return err
				}
				correct += c
				scored += int64(b.N)
				detail += fmt.Sprintf(" acc %.1f%%", evaluate.Percent(correct, scored))
			}
			bar.SetDetail("%s", detail)
			bar.Add(1)
			if r.OnStep != nil {
				if err := r.OnStep(Step{Epoch: epoch, Step: step, Loss: l}); err != nil {
					return err
				}
			}
			step++
			return nil
		})
		if scored > 0 {
			res.LastEpochAccuracy, res.Scored = evaluate.Percent(correct, scored), true
		}
		if errors.Is(err, ErrFinished) {
			res.Finished = true
			break
		}
		if err != nil {
			return res, fmt.Errorf("epoch %d: %w", epoch+1, err)
		}
		if !r.OneStage {
			bar.End()
		}
		if err := r.saveEpoch(epoch + 1); err != nil {
			return res, err
		}
		if r.StopAfter > 0 && epoch+1 >= r.StopAfter && epoch+1 < r.Epochs {
			res.Stopped = true
			break
		}
	}
	bar.End()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

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
		return l, fmt.Errorf("loss is %v: training diverged (try a smaller learning rate)", l)
	}
	if err := opt.Step(); err != nil {
		return l, err
	}
	if err := opt.ZeroGrad(); err != nil {
		return l, err
	}
	return l, sched.Step()
}

// saveEpoch writes the checkpoint (Save) after done epochs, and the state
// file beside it until the last epoch, which removes it.
func (r Run) saveEpoch(done int) error {
	if r.Save == nil {
		return nil
	}
	if err := r.Save(done); err != nil {
		return err
	}
	if r.StateFile != "" && done < r.Epochs {
		if err := saveState(r.StateFile, done, r.Optimizer, r.Schedule); err != nil {
			return fmt.Errorf("writing %s: %w", r.StateFile, err)
		}
	}
	if r.StateFile != "" && done == r.Epochs {
		// Finished: nothing will resume, and the file would only go stale.
		if err := os.Remove(r.StateFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
