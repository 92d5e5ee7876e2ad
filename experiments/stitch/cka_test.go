package stitch

import (
	"errors"
	"math"
	"testing"

	"modelstitch/torch"
)

// TestCKAsMatchesExact compares CKAs (float32 Gram matrices, through a
// convolution on the CPU) with the float64 estimators on real activations of
// shipped models at a wide cut (the stem: 12,544 features) and a narrow one.
func TestCKAsMatchesExact(t *testing.T) {
	bottom := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed2")
	top := load(t, "embedded:fmnist-resnet18-w0.25-sup-seed1")
	_, te := fashionSplits(t)
	x := fashionImages(t, te, 300)
	defer x.Free()
	for _, cut := range []string{"stem", "layer3.1", "pool"} {
		err := torch.NoGrad(func() error {
			s := torch.NewScope()
			defer s.Close()
			a, b := s.Track(bottom.Net.ForwardTo(x, cut)), s.Track(top.Net.ForwardTo(x, cut))
			if err := torch.FirstError(a, b); err != nil {
				return err
			}
			wantB, err := LinearCKA(a, b)
			if err != nil {
				return err
			}
			wantU, err := UnbiasedLinearCKA(a, b)
			if err != nil {
				return err
			}
			gotB, gotU, err := CKAs(a, b)
			if err != nil {
				return err
			}
			if gotU == nil {
				return errors.New("no unbiased CKA for 300 samples")
			}
			if math.Abs(gotB-wantB) > 1e-5 || math.Abs(*gotU-wantU) > 1e-5 {
				t.Errorf("%s: CKAs %.8f / %.8f, float64 %.8f / %.8f", cut, gotB, *gotU, wantB, wantU)
			}
			t.Logf("%s: biased %.8f (float64 %.8f), unbiased %.8f (float64 %.8f)", cut, gotB, wantB, *gotU, wantU)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	y := torch.Randn([]int64{3, 4})
	defer y.Free()
	if b, u, err := CKAs(y, y); err != nil || u != nil || math.Abs(b-1) > 1e-6 {
		t.Errorf("3 samples: %v, %v, %v; want 1, no unbiased value, no error", b, u, err)
	}
}
