package loop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/experiments/progress"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/optim"
)

// withOptimizer replaces the fixture's SGD by the named optimizer.
func (f *fixture) withOptimizer(t *testing.T, name string) {
	t.Helper()
	f.opt.Close()
	var err error
	if name == "adam" {
		f.opt, err = optim.NewAdam(optim.Params(nn.Parameters(f.fc), 0.05, 1e-3), optim.AdamConfig{})
	} else {
		f.opt, err = optim.NewSGD(optim.Params(nn.Parameters(f.fc), 0.1, 5e-4), optim.SGDConfig{Momentum: 0.9})
	}
	if err != nil {
		t.Fatal(err)
	}
	if f.sched, err = optim.NewScheduler(f.opt, optim.CosineAnnealingLR{TMax: epochs * steps}); err != nil {
		t.Fatal(err)
	}
}

// noisyObjective is the fixture's objective with Gaussian noise drawn from
// libtorch's global generator added to every batch: the draws after a resume
// are the uninterrupted run's only if the generator's state was restored.
func (f *fixture) noisyObjective() Objective {
	return func(epoch int, step func(Batch) error) error {
		for k := 0; k < steps; k++ {
			s := torch.NewScope()
			xb := s.Track(f.x.Narrow(0, int64(k*batch), batch))
			xb = s.Track(xb.Add(s.Track(torch.Randn([]int64{batch, 5})).MulScalar(0.3)))
			yb := s.Track(f.y.Narrow(0, int64(k*batch), batch))
			err := step(Batch{Loss: s.Track(torch.CrossEntropy(s.Track(f.fc.Forward(xb)), yb, 0, torch.ReduceMean)), N: batch})
			s.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// weightsOf copies a module's state as float32 slices by name.
func weightsOf(t *testing.T, m nn.Module) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, n := range nn.StateDict(m) {
		v, err := n.Tensor.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		out[n.Name] = v
	}
	return out
}

// load puts weights copied by weightsOf back into m.
func load(t *testing.T, m nn.Module, w map[string][]float32) {
	t.Helper()
	sd := map[string]*torch.Tensor{}
	for _, n := range nn.StateDict(m) {
		shape, err := n.Tensor.Shape()
		if err != nil {
			t.Fatal(err)
		}
		sd[n.Name] = torch.FromSlice(w[n.Name]).Reshape(shape...)
	}
	if err := nn.LoadStateDict(m, sd, true); err != nil {
		t.Fatal(err)
	}
	for _, v := range sd {
		v.Free()
	}
}

// TestResumedRunIsBitIdentical trains 3 epochs straight, and 1 epoch, a stop,
// and a resume in a fresh "process" (new model, optimizer and a reseeded
// global generator, the checkpoint's weights loaded) to 3: with the state
// file every weight is bit-identical, for SGD with momentum and for Adam,
// while drawing noise from the global generator. Without it they differ
// (what the loop did before it kept the state).
func TestResumedRunIsBitIdentical(t *testing.T) {
	for _, name := range []string{"sgd", "adam"} {
		t.Run(name, func(t *testing.T) {
			straight := newFixture(t)
			straight.withOptimizer(t, name)
			if _, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: straight.opt, Schedule: straight.sched}, straight.noisyObjective()); err != nil {
				t.Fatal(err)
			}
			want := weightsOf(t, straight.fc)

			for _, keepState := range []bool{true, false} {
				stateFile := ""
				if keepState {
					stateFile = filepath.Join(t.TempDir(), "x.pt.state")
				}
				var checkpoint map[string][]float32
				var checkpointEpochs int
				run := func(f *fixture, stopAfter int, notes *[]string) {
					_, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched, StopAfter: stopAfter,
						StateFile: stateFile, What: "x.pt",
						Resume: func() (int, error) {
							if checkpoint != nil {
								load(t, f.fc, checkpoint)
							}
							return checkpointEpochs, nil
						},
						Save: func(done int) error { checkpoint, checkpointEpochs = weightsOf(t, f.fc), done; return nil },
						Progress: func(e progress.Event) {
							if e.Note != "" {
								*notes = append(*notes, e.Note)
							}
						},
					}, f.noisyObjective())
					if err != nil {
						t.Fatal(err)
					}
				}
				var notes []string
				first := newFixture(t)
				first.withOptimizer(t, name)
				run(first, 1, &notes)
				if keepState {
					if _, err := os.Stat(stateFile); err != nil {
						t.Fatalf("no state file after the first epoch: %v", err)
					}
				}
				second := newFixture(t) // a new process: fresh weights, optimizer and generator
				second.withOptimizer(t, name)
				if err := torch.ManualSeed(12345); err != nil {
					t.Fatal(err)
				}
				run(second, 0, &notes)
				got := weightsOf(t, second.fc)
				differ := 0
				for k, w := range want {
					for i := range w {
						if got[k][i] != w[i] {
							differ++
						}
					}
				}
				switch {
				case keepState && differ > 0:
					t.Errorf("resumed with the state file: %d weights differ from the uninterrupted run (notes %q)", differ, notes)
				case !keepState && differ == 0:
					t.Errorf("resumed without the state file, yet identical: the test cannot tell")
				}
				if keepState {
					if _, err := os.Stat(stateFile); !os.IsNotExist(err) {
						t.Errorf("the state file is still there after the last epoch (%v)", err)
					}
				} else if len(notes) == 0 || !strings.Contains(strings.Join(notes, "\n"), "resuming x.pt after epoch 1") {
					t.Errorf("notes %q", notes)
				}
			}
		})
	}
}

// TestMismatchedStateIsNotUsed: a state file from another epoch than the
// checkpoint's (a stop between writing the two) is not loaded, and the run
// says it starts the optimizer afresh.
func TestMismatchedStateIsNotUsed(t *testing.T) {
	f := newFixture(t)
	stateFile := filepath.Join(t.TempDir(), "x.pt.state")
	if err := saveState(stateFile, 2, f.opt, f.sched); err != nil {
		t.Fatal(err)
	}
	var notes []string
	_, err := Train(Run{Epochs: epochs, StepsPerEpoch: steps, Optimizer: f.opt, Schedule: f.sched, StateFile: stateFile, What: "x.pt",
		Resume: func() (int, error) { return 1, nil },
		Save:   func(int) error { return nil },
		Progress: func(e progress.Event) {
			if e.Note != "" {
				notes = append(notes, e.Note)
			}
		},
	}, f.objective(new([]int)))
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(notes, "\n"); !strings.Contains(all, "follows epoch 2, the checkpoint epoch 1") || !strings.Contains(all, "afresh") {
		t.Errorf("notes %q", notes)
	}
}
