package models

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"modelstitch/internal/reftest"
	"modelstitch/torch"
	"modelstitch/torch/vision"
	"modelstitch/weights/resnetkeys"
)

// familyFiles has PyTorch write random-weight ResNets in the exact layout of
// each project researchers take checkpoints from, with the logits (or pooled
// features) the network each file holds gives on a fixed input.
const familyFiles = `
import argparse, collections, copy
import torch.nn as nn, torchvision
from torchvision.models.resnet import ResNet, BasicBlock, Bottleneck
D = %q
torch.manual_seed(0)

def shake(m):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
                mod.num_batches_tracked.fill_(11)
    return m.eval()

# torchvision's ResNet-18 at 1/8 width (8 stem channels, 64 features), built by
# torchvision's own _make_layer and forward: the exact layout, files 64 times smaller.
W, FEAT = 8, 64
class NarrowResNet(ResNet):
    def __init__(self, block=BasicBlock, layers=(2, 2, 2, 2), num_classes=10, width_per_group=64):
        nn.Module.__init__(self)
        self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, W, 1, 1, width_per_group
        self.conv1 = nn.Conv2d(3, W, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(W); self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, W, layers[0])
        self.layer2 = self._make_layer(block, 2 * W, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * W, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * W, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * W * block.expansion, num_classes)

def r18(classes=10):
    return shake(NarrowResNet(num_classes=classes))

def features(m, x):
    h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return torch.flatten(m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(h))))), 1)

def opt(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9).state_dict()

x = torch.randn(2, 3, 32, 32)
save("x", x)
ng = torch.no_grad(); ng.__enter__()

# 2017-era torchvision hub files: no num_batches_tracked.
m = r18(1000)
torch.save(collections.OrderedDict((k, v) for k, v in m.state_dict().items() if "num_batches_tracked" not in k), D + "/old_hub.pth")
save("old_hub", m(x))

# wide_resnet50_2's layout (bottlenecks [3, 4, 6, 3], width_per_group 128), at 1/8 width.
w = shake(NarrowResNet(Bottleneck, (3, 4, 6, 3), num_classes=10, width_per_group=128))
torch.save(w.state_dict(), D + "/wide_resnet50_2.pth")
save("wide_resnet50_2", w(x))

# MoCo v2 (facebookresearch/moco): DataParallel encoder_q/encoder_k with MLP fc, a queue.
class MoCo(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder_q = r18(128); self.encoder_k = r18(128)
        for e in (self.encoder_q, self.encoder_k):
            e.fc = nn.Sequential(nn.Linear(FEAT, FEAT), nn.ReLU(), e.fc)
        self.register_buffer("queue", torch.randn(128, 64))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
moco = MoCo()
sd = collections.OrderedDict(("module." + k, v) for k, v in moco.state_dict().items())
torch.save({"epoch": 200, "arch": "resnet18", "state_dict": sd, "optimizer": opt(moco.parameters())}, D + "/moco_v2.pth.tar")
save("moco_v2", features(moco.encoder_q, x)); save("moco_v2_k", features(moco.encoder_k, x))

# MoCo v3: base_encoder / momentum_encoder with a BN MLP in fc, a predictor.
class MoCo3(nn.Module):
    def __init__(self):
        super().__init__()
        self.base_encoder = r18(256); self.momentum_encoder = r18(256)
        for e in (self.base_encoder, self.momentum_encoder):
            e.fc = nn.Sequential(nn.Linear(FEAT, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 256, bias=False), nn.BatchNorm1d(256, affine=False))
        self.predictor = nn.Sequential(nn.Linear(256, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 256))
moco3 = MoCo3()
sd = collections.OrderedDict(("module." + k, v) for k, v in moco3.state_dict().items())
torch.save({"epoch": 100, "arch": "resnet18", "state_dict": sd, "optimizer": opt(moco3.parameters()), "scaler": {"scale": 1024.0}}, D + "/moco_v3.pth.tar")
save("moco_v3", features(moco3.base_encoder, x))

# BYOL, lucidrains/byol-pytorch: net (shared with online_encoder.net), target_encoder, online_predictor.
class MLP(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(i, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, o))
class NetWrapper(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net; self.projector = MLP(1000, 32)
class BYOL(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = r18(1000)
        self.online_encoder = NetWrapper(self.net)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        shake(self.target_encoder)
        self.online_predictor = MLP(32, 32)
byol = BYOL()
torch.save(byol.state_dict(), D + "/byol_lucidrains.pt")
save("byol_lucidrains", byol.net(x)); save("byol_lucidrains_target", byol.target_encoder.net(x))

# BYOL, sthalles/PyTorch-BYOL: torchvision children in nn.Sequential, online and target networks.
class SthallesNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(*list(r18(1000).children())[:-1])
        self.projetion = MLP(FEAT, 128)
online, target = SthallesNet(), SthallesNet()
torch.save({"online_network_state_dict": online.state_dict(), "target_network_state_dict": target.state_dict(),
            "optimizer_state_dict": opt(online.parameters())}, D + "/byol_sthalles.pth")
save("byol_sthalles", torch.flatten(online.encoder(x), 1)); save("byol_sthalles_target", torch.flatten(target.encoder(x), 1))

# Lightning: model.* beside a stray criterion.weight.
m = r18(10)
sd = collections.OrderedDict(("model." + k, v) for k, v in m.state_dict().items())
sd["criterion.weight"] = torch.ones(10)
torch.save({"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.1.0", "state_dict": sd,
            "hyper_parameters": {"lr": 0.1}, "optimizer_states": [opt(m.parameters())]}, D + "/lightning_stray.ckpt")
save("lightning_stray", m(x))

# solo-learn: backbone (CIFAR stem 3x3 padding 2, no maxpool, fc Identity) beside classifier and projector.
b = r18(10)
b.conv1 = nn.Conv2d(3, W, kernel_size=3, stride=1, padding=2, bias=False)
b.maxpool = nn.Identity(); b.fc = nn.Identity(); shake(b)
classifier = nn.Linear(FEAT, 10)
sd = collections.OrderedDict(("backbone." + k, v) for k, v in b.state_dict().items())
sd.update(("classifier." + k, v) for k, v in classifier.state_dict().items())
sd.update(("projector." + k, v) for k, v in shake(nn.Sequential(nn.Linear(FEAT, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 64))).state_dict().items())
sd.update(("momentum_backbone." + k, v) for k, v in b.state_dict().items())
torch.save({"epoch": 399, "pytorch-lightning_version": "1.9.5", "state_dict": sd,
            "hyper_parameters": {"backbone": "resnet18", "cifar": True, "method": "byol"}}, D + "/solo_learn.ckpt")
save("solo_learn", classifier(b(x)))

# lightly: torchvision children in nn.Sequential as backbone, a projection head.
class Lightly(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(*list(r18(1000).children())[:-1])
        self.projection_head = MLP(FEAT, 128)
l = Lightly()
torch.save(l.state_dict(), D + "/lightly.pt")
save("lightly", torch.flatten(l.backbone(x), 1))

# VISSL: classy_state_dict.base_model.model.trunk._feature_blocks.*
m = r18(1000)
trunk = collections.OrderedDict(("_feature_blocks." + k, v) for k, v in m.state_dict().items() if not k.startswith("fc."))
heads = collections.OrderedDict([("0.clf.0.weight", torch.randn(1000, FEAT)), ("0.clf.0.bias", torch.randn(1000))])
torch.save({"phase_idx": 104, "iteration": 5000, "type": "checkpoint",
            "classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": heads}, "meta": {}},
                                  "optimizer": {"name": "sgd"}}}, D + "/vissl.torch")
save("vissl", features(m, x))

# kuangliu/pytorch-cifar: shortcut and linear, DataParallel, {"net", "acc", "epoch"}.
class KBlock(nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))
class KResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, W, 3, 1, 1, bias=False); self.bn1 = nn.BatchNorm2d(W)
        inp, layers = W, []
        for planes, stride in ((W, 1), (2 * W, 2), (4 * W, 2), (8 * W, 2)):
            layers.append(nn.Sequential(KBlock(inp, planes, stride), KBlock(planes, planes, 1))); inp = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(FEAT, 10)
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))
k = shake(KResNet())
torch.save({"net": collections.OrderedDict(("module." + n, v) for n, v in k.state_dict().items()), "acc": 93.1, "epoch": 180}, D + "/kuangliu.pth")
save("kuangliu", k(x))

# MadryLab robustness: AttackerModel (normalizer, model, attacker.normalize, attacker.model) in DataParallel.
class InputNormalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("new_mean", mean[..., None, None]); self.register_buffer("new_std", std[..., None, None])
    def forward(self, x):
        return (x - self.new_mean) / self.new_std
class Attacker(nn.Module):
    def __init__(self, model, mean, std):
        super().__init__()
        self.normalize = InputNormalize(mean, std); self.model = model
class AttackerModel(nn.Module):
    def __init__(self, model, mean, std):
        super().__init__()
        self.normalizer = InputNormalize(mean, std); self.model = model; self.attacker = Attacker(model, mean, std)
mean, std = torch.tensor([0.4850, 0.4560, 0.4060]), torch.tensor([0.2290, 0.2240, 0.2250])
am = AttackerModel(r18(10), mean, std)
sd = collections.OrderedDict(("module." + k, v) for k, v in am.state_dict().items())
torch.save({"model": sd, "optimizer": opt(am.parameters()), "schedule": None, "epoch": 90}, D + "/robustness.pt")
save("robustness", am.model(am.normalizer(x)))

# A whole pickled module that stores a plain function as an attribute.
class ActNet(NarrowResNet):
    def __init__(self):
        super().__init__(num_classes=10)
        self.act = F.relu
a = shake(ActNet())
torch.save(a, D + "/whole_module_fn.pt")
save("whole_module_fn", a(x))

# timm's deep stem (resnet50d-like conv1.0/1/3/4/6): must be refused.
m = r18(10)
m.conv1 = nn.Sequential(nn.Conv2d(3, W // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(W // 2), nn.ReLU(),
                        nn.Conv2d(W // 2, W // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(W // 2), nn.ReLU(), nn.Conv2d(W // 2, W, 3, 1, 1, bias=False))
torch.save(m.state_dict(), D + "/timm_deep_stem.pth")
`

// TestLoadsEveryFamily loads each family's file and compares the network's
// output with PyTorch's, then checks the refusals and flags on the same files.
func TestLoadsEveryFamily(t *testing.T) {
	reftest.Require(t)
	dir := t.TempDir()
	refs := reftest.Run(t, fmt.Sprintf(familyFiles, dir))
	t.Run("refusals-and-flags", func(t *testing.T) { familyRefusalsAndFlags(t, dir, refs) })
	x := refs.Tensor(t, "x")
	defer x.Free()
	cases := []struct {
		file, key, want, describe, note string
	}{
		{"old_hub.pth", "", "old_hub", "ResNet-18 (width 0.125) with a 1000-class", ""},
		{"wide_resnet50_2.pth", "", "wide_resnet50_2", "Wide ResNet-50-2", ""},
		{"moco_v2.pth.tar", "", "moco_v2", "no classifier", "chose module.encoder_q"},
		{"moco_v2.pth.tar", "module.encoder_k", "moco_v2_k", "no classifier", "key module.encoder_k: kept"},
		{"moco_v3.pth.tar", "", "moco_v3", "no classifier", "chose module.base_encoder"},
		{"byol_lucidrains.pt", "", "byol_lucidrains", "1000-class", "chose online_encoder.net"},
		{"byol_lucidrains.pt", "target_encoder", "byol_lucidrains_target", "1000-class", "key target_encoder: kept"},
		{"byol_sthalles.pth", "", "byol_sthalles", "no classifier", `chose "online_network_state_dict"`},
		{"byol_sthalles.pth", "target_network_state_dict", "byol_sthalles_target", "no classifier", "took the wrapper entry target_network_state_dict"},
		{"lightning_stray.ckpt", "", "lightning_stray", "10-class", "ignored 1 other keys (criterion.)"},
		{"solo_learn.ckpt", "", "solo_learn", "stem padding 2", "hyper-parameters agree with the stem (hyper_parameters.cifar = true)"},
		{"lightly.pt", "", "lightly", "no classifier", "renamed nn.Sequential children"},
		{"vissl.torch", "", "vissl", "no classifier", "trunk"},
		{"kuangliu.pth", "", "kuangliu", "CIFAR stem", "kuangliu"},
		{"robustness.pt", "", "robustness", "10-class", "chose module.model"},
		{"whole_module_fn.pt", "", "whole_module_fn", "10-class", "pickled __main__.ActNet"},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.key, func(t *testing.T) {
			m, err := Load(filepath.Join(dir, c.file), LoadOptions{Key: c.key})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			t.Logf("%s: %s; notes:\n  %s", c.file, m.Description, strings.Join(m.Notes, "\n  "))
			if !strings.Contains(m.Description, c.describe) {
				t.Errorf("description %q should mention %q", m.Description, c.describe)
			}
			if c.note != "" && !strings.Contains(strings.Join(m.Notes, "\n"), c.note) {
				t.Errorf("notes should mention %q", c.note)
			}
			in := x
			if len(m.Meta.Mean) == 3 { // robustness normalises inside the model: so do we, before the net
				mean := torch.FromSlice([]float32{float32(m.Meta.Mean[0]), float32(m.Meta.Mean[1]), float32(m.Meta.Mean[2])}, 1, 3, 1, 1)
				std := torch.FromSlice([]float32{float32(m.Meta.Std[0]), float32(m.Meta.Std[1]), float32(m.Meta.Std[2])}, 1, 3, 1, 1)
				d := x.Sub(mean)
				in = d.Div(std)
				torch.FreeAll(mean, std, d)
				defer in.Free()
			}
			var got *torch.Tensor
			_ = torch.NoGrad(func() error { got = m.Net.Forward(in); return got.Err() })
			defer got.Free()
			reftest.Compare(t, c.file, got, refs.Get(t, c.want), 1e-5, 1e-5)
		})
	}
}

// fullSizeFiles has PyTorch write torchvision's own wide_resnet50_2 and a
// 2017-era resnet18 hub file (no num_batches_tracked) at full size.
const fullSizeFiles = `
import collections, torchvision
D = %q
torch.manual_seed(1)
x = torch.randn(1, 3, 32, 32)
save("x", x)
with torch.no_grad():
    for name, m in (("wide_resnet50_2", torchvision.models.wide_resnet50_2()), ("resnet18", torchvision.models.resnet18())):
        m.eval()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
        sd = collections.OrderedDict((k, v) for k, v in m.state_dict().items() if "num_batches_tracked" not in k)
        torch.save(sd, D + "/" + name + ".pth")
        save(name, m(x))
`

// TestLoadsFullSizeTorchvision loads torchvision's full-size
// wide_resnet50_2 (a 270 MB file) and an old resnet18 hub file.
func TestLoadsFullSizeTorchvision(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 270 MB file (-short)")
	}
	reftest.Require(t)
	dir := t.TempDir()
	refs := reftest.Run(t, fmt.Sprintf(fullSizeFiles, dir))
	x := refs.Tensor(t, "x")
	defer x.Free()
	for name, desc := range map[string]string{"wide_resnet50_2": "a Wide ResNet-50-2 with a 1000-class classifier", "resnet18": "a ResNet-18 with a 1000-class classifier"} {
		m, err := Load(filepath.Join(dir, name+".pth"), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m.Description != desc || m.Meta.Arch != name {
			t.Errorf("%s: %s (arch %s)", name, m.Description, m.Meta.Arch)
		}
		var got *torch.Tensor
		_ = torch.NoGrad(func() error { got = m.Net.Forward(x); return got.Err() })
		reftest.Compare(t, name, got, refs.Get(t, name), 1e-5, 1e-5)
		got.Free()
		m.Free()
	}
}

func familyRefusalsAndFlags(t *testing.T, dir string, refs reftest.Refs) {
	// timm's deep stem is refused, naming it.
	_, err := Load(filepath.Join(dir, "timm_deep_stem.pth"), LoadOptions{})
	if !errors.Is(err, resnetkeys.ErrDeepStem) || !strings.Contains(err.Error(), "timm_deep_stem.pth") {
		t.Errorf("deep stem: %v", err)
	}
	// A key that names nothing lists what there is, naming the key setting.
	_, err = Load(filepath.Join(dir, "moco_v2.pth.tar"), LoadOptions{Key: "module.encoder_z"})
	if err == nil || !strings.Contains(err.Error(), "module.encoder_q.") || !strings.Contains(err.Error(), "key module.encoder_z") {
		t.Errorf("bad key: %v", err)
	}
	// The solo-learn stem padding can be overridden (and then the features differ, as they must).
	m, err := Load(filepath.Join(dir, "solo_learn.ckpt"), LoadOptions{StemPadding: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if m.Net.Config.StemPadding != 1 || m.Meta.StemPadding != 1 {
		t.Errorf("--stem-padding 1 gave %+v", m.Net.Config)
	}
	x := refs.Tensor(t, "x")
	defer x.Free()
	var got *torch.Tensor
	_ = torch.NoGrad(func() error { got = m.Net.Forward(x); return got.Err() })
	defer got.Free()
	if shape, err := got.Shape(); err != nil || len(shape) != 2 || shape[1] != 10 {
		t.Errorf("logits shape %v", shape)
	}
	g, _ := got.Float64s()
	if _, worst := reftest.Diff(g, refs.Get(t, "solo_learn").Data, 1e-5, 1e-5); worst <= 0 {
		t.Errorf("padding 1 gave solo-learn's padding-2 logits: the padding is not used")
	}
	// The same choice every time: the notes are identical run after run.
	var first string
	for i := 0; i < 3; i++ {
		ck, err := Open(filepath.Join(dir, "robustness.pt"))
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Join(ck.Notes, "\n")
		if i == 0 {
			first = n
		} else if n != first {
			t.Errorf("notes differ between runs:\n%s\n---\n%s", first, n)
		}
	}
	if !strings.Contains(first, "the key setting") {
		t.Errorf("the choice among networks should name the key setting:\n%s", first)
	}
}

func TestBaseName(t *testing.T) {
	for in, want := range map[string]string{
		"runs/x.pth.tar": "x", "x.pth": "x", "model.safetensors": "model", "a.b.ckpt": "a.b", "embedded:seed1": "seed1", "noext": "noext",
	} {
		if got := baseName(in); got != want {
			t.Errorf("baseName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWideMetaRoundTrip(t *testing.T) {
	meta := MetaFor(vision.ResNetConfig{Depth: 50, WidthPerGroup: 128, Width: 0.0625, Stem: "cifar", StemPadding: 2, Classes: 3})
	if meta.Arch != "wide_resnet50_2" || meta.StemPadding != 2 {
		t.Fatalf("MetaFor: %+v", meta)
	}
	m, err := NewRandom(meta, 3, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	p := filepath.Join(t.TempDir(), "wide.pt")
	if err := Save(p, m.Net, meta); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	if back.Net.Config != m.Net.Config || !strings.Contains(back.Description, "Wide ResNet-50-2") {
		t.Errorf("came back as %+v (%s), want %+v", back.Net.Config, back.Description, m.Net.Config)
	}
}
