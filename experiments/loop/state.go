package loop

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"modelstitch/experiments/models"
	"modelstitch/torch"
	"modelstitch/torch/optim"
	"modelstitch/weights"
)

// What the state file keeps beside a checkpoint, so that a resumed run is
// the uninterrupted one bit for bit: the optimizer's per-parameter state
// (momentum buffers, Adam's moments and step counts) and libtorch's default
// random generators' states. The data order and augmentations need nothing:
// the loaders draw them from (seed, epoch) alone. The schedule is
// fast-forwarded by step count, which the file records to check.

// stateKey is the state file's metadata entry (JSON, stateMeta).
const stateKey = "modelstitch_train_state"

// stateMeta describes a state file.
type stateMeta struct {
	// EpochsDone is the number of finished epochs the state follows; it must
	// match the checkpoint's.
	EpochsDone int `json:"epochs_done"`
	// ScheduleSteps is the schedule's step count after those epochs.
	ScheduleSteps int `json:"schedule_steps"`
	// Optimizer is the optimizer's Go type, e.g. "*optim.SGD".
	Optimizer string `json:"optimizer"`
	// Steps holds each parameter's update count by "group.index" (Adam).
	Steps map[string]int `json:"steps,omitempty"`
}

// StatePath is the state file kept beside checkpoint path: "x.pt" →
// "x.pt.state" (a safetensors file).
func StatePath(checkpoint string) string { return checkpoint + ".state" }

// rngDevices are the devices whose default generators a run may draw from:
// the CPU's always, and the parameters' CUDA device.
func rngDevices(opt optim.Optimizer) []torch.Device {
	devs := []torch.Device{torch.CPU}
	for _, g := range opt.Groups() {
		for _, p := range g.Params {
			if d := p.Device(); d.IsCUDA() {
				return append(devs, d)
			}
		}
	}
	return devs
}

// saveState writes the optimizer's and the random generators' state after
// done epochs to path, atomically.
func saveState(path string, done int, opt optim.Optimizer, sched *optim.Scheduler) error {
	st, ok := opt.(optim.Stateful)
	if !ok {
		return fmt.Errorf("loop: %T cannot save its state", opt)
	}
	meta := stateMeta{EpochsDone: done, ScheduleSteps: sched.StepCount(), Optimizer: fmt.Sprintf("%T", opt), Steps: map[string]int{}}
	sd := weights.NewStateDict()
	for _, ps := range st.State() {
		at := fmt.Sprintf("%d.%d", ps.Group, ps.Index)
		if ps.Step > 0 {
			meta.Steps[at] = ps.Step
		}
		for name, t := range ps.Tensors {
			raw, err := models.ToRaw(t)
			if err != nil {
				return fmt.Errorf("optimizer state %s.%s: %w", at, name, err)
			}
			sd.Set("optimizer."+at+"."+name, raw)
		}
	}
	for _, d := range rngDevices(opt) {
		t := torch.RNGState(d)
		raw, err := models.ToRaw(t)
		t.Free()
		if err != nil {
			return fmt.Errorf("random generator state (%s): %w", d, err)
		}
		sd.Set("rng."+d.String(), raw)
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	return weights.WriteSafetensors(path, sd, map[string]string{stateKey: string(js)})
}

// loadState restores what saveState wrote into opt and the random
// generators, after checking that it follows the same done epochs and
// schedule step. A missing file returns fs.ErrNotExist. The file is checked
// whole before the optimizer is touched; only a generator state libtorch
// refuses can fail after the optimizer's state is in place.
func loadState(path string, done int, opt optim.Optimizer, sched *optim.Scheduler) error {
	st, ok := opt.(optim.Stateful)
	if !ok {
		return fmt.Errorf("%T cannot restore its state", opt)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ck, err := weights.ReadSafetensors(path)
	if err != nil {
		return err
	}
	var meta stateMeta
	if err := json.Unmarshal([]byte(ck.Metadata[stateKey]), &meta); err != nil {
		return fmt.Errorf("not a training state file (%s: %v)", stateKey, err)
	}
	switch {
	case meta.EpochsDone != done:
		return fmt.Errorf("it follows epoch %d, the checkpoint epoch %d (the run stopped between writing the two)", meta.EpochsDone, done)
	case meta.ScheduleSteps != sched.StepCount():
		return fmt.Errorf("it follows schedule step %d, this run's schedule is at %d after %d epochs (another recipe?)", meta.ScheduleSteps, sched.StepCount(), done)
	case meta.Optimizer != fmt.Sprintf("%T", opt):
		return fmt.Errorf("it is the state of %s, this run uses %T", meta.Optimizer, opt)
	}
	tensors, err := models.ToTensors(ck.State)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range tensors {
			t.Free()
		}
	}()
	byParam := map[string]*optim.ParamState{}
	var order []string
	for _, k := range ck.State.Keys {
		rest, ok := strings.CutPrefix(k, "optimizer.")
		if !ok {
			continue
		}
		parts := strings.SplitN(rest, ".", 3)
		if len(parts) != 3 {
			return fmt.Errorf("tensor %q is not optimizer.GROUP.INDEX.NAME", k)
		}
		g, err1 := strconv.Atoi(parts[0])
		i, err2 := strconv.Atoi(parts[1])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("tensor %q is not optimizer.GROUP.INDEX.NAME", k)
		}
		at := parts[0] + "." + parts[1]
		ps := byParam[at]
		if ps == nil {
			ps = &optim.ParamState{Group: g, Index: i, Step: meta.Steps[at], Tensors: map[string]*torch.Tensor{}}
			byParam[at] = ps
			order = append(order, at)
		}
		ps.Tensors[parts[2]] = tensors[k]
	}
	states := make([]optim.ParamState, len(order))
	for i, at := range order {
		states[i] = *byParam[at]
	}
	devs := rngDevices(opt)
	for _, d := range devs {
		if tensors["rng."+d.String()] == nil {
			return fmt.Errorf("it has no random generator state for %s", d)
		}
	}
	if err := st.LoadState(states); err != nil {
		return err
	}
	for _, d := range devs {
		u := tensors["rng."+d.String()].To(torch.Uint8) // the file keeps integers as int64
		err := torch.SetRNGState(d, u)
		u.Free()
		if err != nil {
			return fmt.Errorf("random generator state (%s): %w", d, err)
		}
	}
	return nil
}
