package vision

import (
	"testing"

	"modelstitch/torch"
	"modelstitch/torch/nn"
)

func TestSetClassifier(t *testing.T) {
	r, err := NewResNet(ResNetConfig{Depth: 18, Width: 0.125, Stem: StemCIFAR, InChannels: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(r)
	if r.HasClassifier() {
		t.Fatal("a Classes 0 ResNet has a classifier")
	}
	if err := r.SetClassifier(nil); err == nil {
		t.Error("nil classifier: no error")
	}
	wrong := nn.NewLinear(r.FeatureDim()+1, 10, true)
	defer nn.Free(wrong)
	if err := r.SetClassifier(wrong); err == nil {
		t.Error("wrong input size: no error")
	}
	noBias := nn.NewLinear(r.FeatureDim(), 10, false)
	defer nn.Free(noBias)
	if err := r.SetClassifier(noBias); err == nil {
		t.Error("no bias: no error")
	}

	fc := nn.NewLinear(r.FeatureDim(), 7, true)
	if err := r.SetClassifier(fc); err != nil {
		t.Fatal(err)
	}
	if !r.HasClassifier() || r.Config.Classes != 7 {
		t.Errorf("after SetClassifier: HasClassifier %v, Classes %d", r.HasClassifier(), r.Config.Classes)
	}
	shapes, err := nn.Shapes(r)
	if err != nil {
		t.Fatal(err)
	}
	if s := shapes["fc.weight"]; len(s) != 2 || s[0] != 7 || s[1] != r.FeatureDim() {
		t.Errorf("fc.weight shape %v", s)
	}
	if s := shapes["fc.bias"]; len(s) != 1 || s[0] != 7 {
		t.Errorf("fc.bias shape %v", s)
	}
	sd := nn.StateDict(r)
	if last := sd[len(sd)-1].Name; last != "fc.bias" {
		t.Errorf("last state-dict entry %q, want fc.bias (torchvision order)", last)
	}

	s := torch.NewScope()
	defer s.Close()
	x := s.Track(torch.Randn([]int64{2, 1, 16, 16}))
	nn.Eval(r)
	var logits, from *torch.Tensor
	_ = torch.NoGrad(func() error { // the checks below report the tensors' errors
		logits = r.Forward(x)
		from = r.ForwardFrom(r.ForwardTo(x, "layer3.1"), "layer3.1")
		return nil
	})
	if got := shapeOf(t, logits); len(got) != 2 || got[0] != 2 || got[1] != 7 {
		t.Fatalf("logits shape %v (err %v)", got, logits.Err())
	}
	if ok, err := torch.AllClose(logits, from, 1e-5, 1e-6); err != nil || !ok {
		t.Errorf("ForwardFrom(ForwardTo) differs from Forward (err %v)", err)
	}

	another := nn.NewLinear(r.FeatureDim(), 7, true)
	defer nn.Free(another)
	if err := r.SetClassifier(another); err == nil {
		t.Error("second classifier: no error")
	}
}
