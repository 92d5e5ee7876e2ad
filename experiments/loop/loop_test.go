package loop

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
)

// fixture is a real linear classifier with SGD and a cosine schedule over
// 3 epochs of 4 batches of 8 samples of fixed random data.
type fixture struct {
	fc    *nn.Linear
	opt   optim.Optimizer
	sched *optim.Scheduler
	x, y  *torch.Tensor
}

const epochs, steps, batch = 3, 4, 8

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if err := torch.ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	f := &fixture{fc: nn.NewLinear(5, 3, true)}
	f.x = torch.Randn([]int64{steps * batch, 5})
	xs, err := f.x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	// Learnable labels: which of the first three features is largest.
	labels := make([]int64, steps*batch)
	for i := range labels {
		for c := 1; c < 3; c++ {
			if xs[i*5+c] > xs[i*5+int(labels[i])] {
				labels[i] = int64(c)
			}
		}
	}
	f.y = torch.FromSlice(labels)
	if f.opt, err = optim.NewSGD(optim.Params(nn.Parameters(f.fc), 0.1, 0), optim.SGDConfig{Momentum: 0.9}); err != nil {
		t.Fatal(err)
	}
	if f.sched, err = optim.NewScheduler(f.opt, optim.CosineAnnealingLR{TMax: epochs * steps}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.opt.Close(); nn.Free(f.fc); torch.FreeAll(f.x, f.y) })
	return f
}

// objective records the epochs it runs and hands the loop the cross-entropy
// of every batch.
func (f *fixture) objective(ran *[]int) Objective {
	return func(epoch int, step func(Batch) error) error {
		*ran = append(*ran, epoch)
		for k := 0; k < steps; k++ {
			s := torch.NewScope()
			xb := s.Track(f.x.Narrow(0, int64(k*batch), batch))
			yb := s.Track(f.y.Narrow(0, int64(k*batch), batch))
			logits := s.Track(f.fc.Forward(xb))
			err := step(Batch{Loss: s.Track(torch.CrossEntropy(logits, yb, 0, torch.ReduceMean)), N: batch, Logits: logits, Labels: yb})
			s.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
}

func TestTrainSavesEveryEpochAndReportsProgress(t *testing.T) {
	f := newFixture(t)
	var saved, ran []int
	var events []progress.Event
	var stepsSeen []Step
	res, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched,
		Save:     func(done int) error { saved = append(saved, done); return nil },
		OnStep:   func(s Step) error { stepsSeen = append(stepsSeen, s); return nil },
		Progress: func(e progress.Event) { events = append(events, e) },
	}, f.objective(&ran))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(saved, []int{1, 2, 3}) || !slices.Equal(ran, []int{0, 1, 2}) {
		t.Errorf("saved after %v, ran epochs %v", saved, ran)
	}
	if res.Samples != epochs*steps*batch || res.Resumed != 0 || res.Stopped {
		t.Errorf("result %+v", res)
	}
	if len(stepsSeen) != epochs*steps || stepsSeen[5].Epoch != 1 || stepsSeen[5].Step != 5 {
		t.Errorf("steps %+v", stepsSeen)
	}
	// The mean loss fell from the first epoch to the last.
	var first, last float64
	for i, s := range stepsSeen {
		switch s.Epoch {
		case 0:
			first += stepsSeen[i].Loss
		case epochs - 1:
			last += stepsSeen[i].Loss
		}
	}
	if !(last < first) {
		t.Errorf("summed loss %g in the first epoch, %g in the last", first, last)
	}
	// The schedule ran to its end: cosine annealing to 0.
	if lr := f.opt.LR()[0]; math.Abs(lr) > 1e-12 {
		t.Errorf("final learning rate %g, want 0", lr)
	}
	var ends []string
	for _, e := range events {
		if e.End {
			ends = append(ends, e.Stage)
			if e.Done != steps || e.Total != steps || e.Unit != "batches" || !strings.Contains(e.Detail, "acc") {
				t.Errorf("end of stage %+v", e)
			}
		}
	}
	if !slices.Equal(ends, []string{"epoch 1/3", "epoch 2/3", "epoch 3/3"}) {
		t.Errorf("stages ended: %v", ends)
	}
}

func TestTrainResumesAndFastForwardsTheSchedule(t *testing.T) {
	// The learning rate a full run has after two epochs.
	full := newFixture(t)
	var fullLR float64
	var ran []int
	if _, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: full.opt, Schedule: full.sched,
		OnStep: func(s Step) error {
			if s.Step == 2*steps-1 {
				fullLR = full.opt.LR()[0]
			}
			return nil
		}}, full.objective(&ran)); err != nil {
		t.Fatal(err)
	}

	f := newFixture(t)
	var saved []int
	var notes []string
	var firstLR float64
	firstStep := -1
	ran = nil
	res, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched, What: "x.pt",
		Resume: func() (int, error) { return 2, nil },
		Save:   func(done int) error { saved = append(saved, done); return nil },
		OnStep: func(s Step) error {
			if firstStep < 0 {
				firstStep = s.Step
			}
			return nil
		},
		Progress: func(e progress.Event) {
			if e.Note != "" {
				notes = append(notes, e.Note)
			}
		},
	}, func(epoch int, step func(Batch) error) error {
		if epoch == 2 && firstLR == 0 {
			firstLR = f.opt.LR()[0]
		}
		return f.objective(&ran)(epoch, step)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ran, []int{2}) || !slices.Equal(saved, []int{3}) || res.Resumed != 2 || res.Samples != steps*batch {
		t.Errorf("ran %v, saved %v, result %+v", ran, saved, res)
	}
	if firstStep != 2*steps {
		t.Errorf("the first step after resuming is number %d, want %d", firstStep, 2*steps)
	}
	if math.Abs(firstLR-fullLR) > 1e-12 {
		t.Errorf("learning rate after resuming %g, a full run's %g", firstLR, fullLR)
	}
	if len(notes) != 1 || notes[0] != "resuming x.pt after epoch 2 of 3" {
		t.Errorf("notes %q", notes)
	}

	// A failed resume stops the run before any epoch.
	ran = nil
	bad := errors.New("checkpoint made by another recipe")
	if _, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched,
		Resume: func() (int, error) { return 0, bad }}, f.objective(&ran)); !errors.Is(err, bad) || len(ran) > 0 {
		t.Errorf("failed resume: %v, ran %v", err, ran)
	}
}

func TestTrainStopsAfter(t *testing.T) {
	f := newFixture(t)
	var saved, ran []int
	res, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched, StopAfter: 1,
		Save: func(done int) error { saved = append(saved, done); return nil }}, f.objective(&ran))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped || !slices.Equal(saved, []int{1}) || !slices.Equal(ran, []int{0}) {
		t.Errorf("stopped %v, saved %v, ran %v", res.Stopped, saved, ran)
	}
}

func TestTrainRefusesADivergedLoss(t *testing.T) {
	f := newFixture(t)
	before, err := f.fc.Weight.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	var saved []int
	_, err = Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched,
		Save: func(done int) error { saved = append(saved, done); return nil },
	}, func(epoch int, step func(Batch) error) error {
		s := torch.NewScope()
		defer s.Close()
		logits := s.Track(f.fc.Forward(f.x))
		nan := s.Track(logits.Sum().MulScalar(math.NaN()))
		n, err := f.x.Size(0)
		if err != nil {
			return err
		}
		return step(Batch{Loss: nan, N: int(n)})
	})
	if err == nil || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), "epoch 1") {
		t.Errorf("NaN loss: error %v", err)
	}
	after, err := f.fc.Weight.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) || len(saved) > 0 {
		t.Errorf("a NaN loss reached the weights (or a checkpoint: %v)", saved)
	}
}
