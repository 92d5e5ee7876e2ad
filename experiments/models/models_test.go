package models

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
	"modelstitch/weights"
)

// pytorchFiles has PyTorch write one torchvision ResNet-18 in every format
// people hand over, with its logits (and pooled features) on a fixed input.
const pytorchFiles = `
import argparse, collections, torchvision
D = %q
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10).eval()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
x = torch.randn(2, 3, 64, 64)
save("x", x)
with torch.no_grad():
    save("logits", m(x))
    h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
    save("features", torch.flatten(m.avgpool(h), 1))
sd = m.state_dict()
torch.save(sd, D + "/plain.pt")
torch.save(sd, D + "/legacy.pt", _use_new_zipfile_serialization=False)
torch.save({"state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
            "epoch": 3, "args": argparse.Namespace(lr=0.1),
            "optimizer": torch.optim.SGD(m.parameters(), lr=0.1).state_dict()}, D + "/dataparallel.pt")
torch.save({"state_dict": {"model." + k: v for k, v in sd.items()}, "hyper_parameters": {"lr": 0.1},
            "pytorch-lightning_version": "1.9.0"}, D + "/lightning.pt")
ssl = {"backbone." + k: v for k, v in sd.items() if not k.startswith("fc.")}
ssl["projector.0.weight"] = torch.randn(128, 512)
ssl["projector.2.weight"] = torch.randn(128, 128)
torch.save({"model": ssl, "epoch": 100}, D + "/ssl.pt")
torch.jit.save(torch.jit.script(m), D + "/torchscript.pt")

c = torchvision.models.resnet18(num_classes=10)
c.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
c.maxpool = torch.nn.Identity()
c.eval()
xc = torch.randn(2, 1, 28, 28)
save("xc", xc)
with torch.no_grad():
    save("logits_cifar", c(xc))
torch.save(c.state_dict(), D + "/cifar.pt")
`

func TestLoadsEveryPyTorchFormat(t *testing.T) {
	reftest.Require(t)
	dir := t.TempDir()
	refs := reftest.Run(t, fmt.Sprintf(pytorchFiles, dir))
	x := refs.Tensor(t, "x")
	// safetensors: written by us from PyTorch's own state dict (no Python package here).
	ck, err := weights.Open(filepath.Join(dir, "plain.pt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := weights.WriteSafetensors(filepath.Join(dir, "model.safetensors"), ck.State, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file, want, describe string
	}{
		{"plain.pt", "logits", "ResNet-18"},
		{"legacy.pt", "logits", "ResNet-18"},
		{"dataparallel.pt", "logits", "ResNet-18"},
		{"lightning.pt", "logits", "ResNet-18"},
		{"ssl.pt", "features", "no classifier"},
		{"torchscript.pt", "logits", "ResNet-18"},
		{"model.safetensors", "logits", "ResNet-18"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			m, err := Load(filepath.Join(dir, c.file), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			if !strings.Contains(m.Description, c.describe) {
				t.Errorf("description %q should mention %q", m.Description, c.describe)
			}
			t.Logf("%s: %s, %s; notes %v", c.file, m.Format, m.Description, m.Notes)
			var got *torch.Tensor
			_ = torch.NoGrad(func() error { got = m.Net.Forward(x); return nil }) // Compare reports got's error
			reftest.Compare(t, c.file, got, refs.Get(t, c.want), 1e-4, 1e-4)
		})
	}
	t.Run("cifar-stem-1ch", func(t *testing.T) {
		m, err := Load(filepath.Join(dir, "cifar.pt"), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		if m.Meta.Stem != "cifar" || m.Meta.InChannels != 1 {
			t.Errorf("inferred %+v", m.Meta)
		}
		var got *torch.Tensor
		_ = torch.NoGrad(func() error { got = m.Net.Forward(refs.Tensor(t, "xc")); return nil }) // Compare reports got's error
		reftest.Compare(t, "cifar", got, refs.Get(t, "logits_cifar"), 1e-4, 1e-4)
	})
}

// readOurs has PyTorch open a file we wrote, with weights_only=True, load it
// into torchvision's ResNet-18 and report its logits and our metadata.
const readOurs = `
import json, torchvision
sd = torch.load(%q, weights_only=True)
meta = json.loads(sd._modelstitch)
save("classes", meta["classes"])
m = torchvision.models.resnet18(num_classes=10).eval()
m.load_state_dict(sd)
with torch.no_grad():
    save("logits", m(torch.tensor(%s).reshape(2, 3, 64, 64)))
`

func TestOurCheckpointsOpenInPyTorch(t *testing.T) {
	reftest.Require(t)
	dir := t.TempDir()
	refs := reftest.Run(t, fmt.Sprintf(pytorchFiles, dir))
	m, err := Load(filepath.Join(dir, "plain.pt"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	meta := m.Meta
	meta.Objective, meta.Dataset = Supervised, "imagenet-like"
	ours := filepath.Join(dir, "ours.pt")
	if err := Save(ours, m.Net, meta); err != nil {
		t.Fatal(err)
	}
	x := refs.Get(t, "x")
	vals := make([]string, len(x.Data))
	for i, v := range x.Data {
		vals[i] = fmt.Sprint(float32(v))
	}
	back := reftest.Run(t, fmt.Sprintf(readOurs, ours, "["+strings.Join(vals, ",")+"]"))
	if back.Float(t, "classes") != 10 {
		t.Errorf("metadata read in Python: classes %v", back.Float(t, "classes"))
	}
	reftest.CompareFloats(t, "PyTorch on our file", back.Get(t, "logits").Data, refs.Get(t, "logits"), 1e-4, 1e-4)
	again, err := Load(ours, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Free()
	if !again.HasMeta || again.Meta.Dataset != "imagenet-like" {
		t.Errorf("our metadata did not come back: %+v", again.Meta)
	}
}

func TestLoadErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "nope.pt"), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "nope.pt") {
		t.Errorf("missing file: %v", err)
	}
	sd := weights.NewStateDict()
	r, _ := weights.NewFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})
	sd.Set("encoder.layers.0.weight", r)
	p := filepath.Join(dir, "notresnet.safetensors")
	if err := weights.WriteSafetensors(p, sd, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "notresnet") {
		t.Errorf("not a ResNet: %v", err)
	}
	t.Log(err)
}
