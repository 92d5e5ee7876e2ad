package optim_test

import (
	"slices"
	"strings"
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/optim"
)

// TestStateRoundTrip: an optimizer given another's state (SGD's momentum,
// Adam's moments and step counts, AMSGrad's maxima) takes the very steps the
// other takes, and its state is a copy.
func TestStateRoundTrip(t *testing.T) {
	makers := map[string]func(ps []*torch.Tensor) (optim.Optimizer, error){
		"sgd": func(ps []*torch.Tensor) (optim.Optimizer, error) {
			return optim.NewSGD(optim.Params(ps, 0.1, 0.01), optim.SGDConfig{Momentum: 0.9, Nesterov: true})
		},
		"adam": func(ps []*torch.Tensor) (optim.Optimizer, error) {
			return optim.NewAdam(optim.Params(ps, 0.1, 0.01), optim.AdamConfig{AMSGrad: true})
		},
	}
	for name, make := range makers {
		t.Run(name, func(t *testing.T) {
			a, b := []*torch.Tensor{param(t, 1, 2, 3), param(t, -1)}, []*torch.Tensor{param(t, 1, 2, 3), param(t, -1)}
			oa, err := make(a)
			if err != nil {
				t.Fatal(err)
			}
			defer oa.Close()
			ob, err := make(b)
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			step := func(o optim.Optimizer, ps []*torch.Tensor, g float32) {
				setGrad(t, ps[0], g, -2*g, 0.5)
				setGrad(t, ps[1], g*g)
				if err := o.Step(); err != nil {
					t.Fatal(err)
				}
				if err := o.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
			}
			for _, g := range []float32{1, -0.5, 2} {
				step(oa, a, g)
			}
			// b gets a's weights and state, then both go on.
			for i := range a {
				if err := torch.NoGrad(func() error { return b[i].CopyFrom(a[i]) }); err != nil {
					t.Fatal(err)
				}
			}
			st := oa.(optim.Stateful).State()
			if len(st) != 2 {
				t.Fatalf("%d parameter states, want 2", len(st))
			}
			if err := ob.(optim.Stateful).LoadState(st); err != nil {
				t.Fatal(err)
			}
			for _, g := range []float32{0.3, -1.5} {
				step(oa, a, g)
				step(ob, b, g)
			}
			for i := range a {
				if va, vb := values(t, a[i]), values(t, b[i]); !slices.Equal(va, vb) {
					t.Errorf("parameter %d: %v with the state it had, %v with the state loaded", i, va, vb)
				}
			}
		})
	}
}

func TestLoadStateRefusesMismatches(t *testing.T) {
	p := param(t, 1, 2)
	o, err := optim.NewSGD(optim.Params([]*torch.Tensor{p}, 0.1, 0), optim.SGDConfig{Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	wrong := torch.FromSlice([]float32{1, 2, 3})
	defer wrong.Free()
	for _, c := range []struct {
		st   optim.ParamState
		want string
	}{
		{optim.ParamState{Group: 0, Index: 0, Tensors: map[string]*torch.Tensor{"momentum_buffer": wrong}}, "shape [3] but the parameter has [2]"},
		{optim.ParamState{Group: 0, Index: 1, Tensors: map[string]*torch.Tensor{"momentum_buffer": wrong}}, "does not have"},
		{optim.ParamState{Group: 0, Index: 0, Tensors: map[string]*torch.Tensor{}}, "missing"},
	} {
		if err := o.LoadState([]optim.ParamState{c.st}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one saying %q", c.st, err, c.want)
		}
	}
}
