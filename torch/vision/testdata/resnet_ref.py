"""Reference tensors for torch/vision's tests and benchmark, made with torchvision.

Test-only raw format (no dependency on modelstitch's weights package): a directory
holding, per case, NAME.bin (tensors' bytes, little-endian, concatenated) and
NAME.json: {"config": {...}, "entries": [{"name", "dtype", "shape", "offset"}]}.
Entries named "sd/KEY" are the model's state dict in torchvision's order.

    /usr/bin/python3 resnet_ref.py export OUTDIR [THREADS]  # the test cases
    /usr/bin/python3 resnet_ref.py bench DIR THREADS [DEVICE]  # serve benchmark timings
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

LAYOUTS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
           50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
           152: (Bottleneck, [3, 8, 36, 3])}


class ScaledResNet(ResNet):
    """torchvision's ResNet with the base width 64 scaled, a CIFAR stem
    (3x3/1 conv, no max pool) if asked, any number of input channels, and no fc
    for classes == 0. Module names are torchvision's."""

    def __init__(self, depth, width=1.0, stem="imagenet", in_ch=3, classes=1000):
        block, layers = LAYOUTS[depth]
        self._base = int(round(64 * width))
        self._first = True
        super().__init__(block, layers, num_classes=max(classes, 1))
        base = self._base
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_ch, base, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_ch, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.fc = nn.Linear(base * 8 * block.expansion, classes) if classes else nn.Identity()

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if self._first:
            self.inplanes = self._base
            self._first = False
        return super()._make_layer(block, planes // 64 * self._base, blocks, stride, dilate)


def build(cfg):
    c = dict(cfg)
    if c.get("torchvision"):
        return getattr(torchvision.models, "resnet%d" % c["Depth"])(num_classes=c["Classes"])
    return ScaledResNet(c["Depth"], c.get("Width") or 1.0, c.get("Stem") or "imagenet",
                        c.get("InChannels") or 3, c.get("Classes", 0))


class Writer:
    def __init__(self, outdir, name, config):
        self.bin = open(os.path.join(outdir, name + ".bin"), "wb")
        self.json = os.path.join(outdir, name + ".json")
        self.index = {"config": config, "entries": []}
        self.offset = 0

    def add(self, name, t):
        t = t.detach().contiguous().cpu()
        if t.dtype != torch.int64:
            t = t.float()
        b = t.numpy().tobytes()
        self.index["entries"].append({"name": name, "dtype": "int64" if t.dtype == torch.int64 else "float32",
                                      "shape": list(t.shape), "offset": self.offset})
        self.bin.write(b)
        self.offset += len(b)

    def close(self):
        self.bin.close()
        with open(self.json, "w") as f:
            json.dump(self.index, f)


def read(dirname, name):
    """Reads a case written by Go or by Writer: returns (config, {name: tensor}, [names in order])."""
    with open(os.path.join(dirname, name + ".json")) as f:
        index = json.load(f)
    with open(os.path.join(dirname, name + ".bin"), "rb") as f:
        data = f.read()
    out, order = {}, []
    for e in index["entries"]:
        dt = torch.int64 if e["dtype"] == "int64" else torch.float32
        n = 1
        for s in e["shape"]:
            n *= s
        size = n * (8 if dt == torch.int64 else 4)
        t = torch.frombuffer(bytearray(data[e["offset"]:e["offset"] + size]), dtype=dt) if n else torch.zeros(0, dtype=dt)
        out[e["name"]] = t.reshape(e["shape"]).clone()
        order.append(e["name"])
    return index["config"], out, order


def export_case(outdir, name, cfg, input_shape, train=True):
    torch.manual_seed(1234)
    m = build(cfg)
    # Realistic batch-norm statistics (cumulative averages over two random
    # batches) and non-trivial affine parameters, so eval mode tests them.
    with torch.no_grad():
        m.train()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = None
        for _ in range(2):
            m(torch.randn(4, *input_shape))
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = 0.1
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    w = Writer(outdir, name, cfg)
    for k, v in m.state_dict().items():
        w.add("sd/" + k, v)
    x = torch.randn(2, *input_shape)
    w.add("input", x)
    m.eval()
    acts = {}

    def hook(key):
        return lambda mod, inp, out: acts.__setitem__(key, out)
    hooks = [m.maxpool.register_forward_hook(hook("stem")), m.avgpool.register_forward_hook(hook("pool"))]
    for i in range(1, 5):
        for j, blk in enumerate(getattr(m, "layer%d" % i)):
            hooks.append(blk.register_forward_hook(hook("layer%d.%d" % (i, j))))
    with torch.no_grad():
        out = m(x)
    for h in hooks:
        h.remove()
    w.add("eval/out", out)
    for k, v in acts.items():
        w.add("cut/" + k, torch.flatten(v, 1) if k == "pool" else v)
    if train and cfg.get("Classes"):
        m.train()
        y = torch.arange(2) % cfg["Classes"]
        w.add("train/target", y)
        out = m(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        w.add("train/out", out)
        w.add("train/loss", loss)
        sd = m.state_dict()
        params = dict(m.named_parameters())
        for k in ["conv1.weight", "layer1.0.conv1.weight", "layer4.0.bn1.weight", "fc.weight", "fc.bias"]:
            w.add("grad/" + k, params[k].grad)
        for k in ["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked", "layer4.0.bn1.running_var"]:
            w.add("after/" + k, sd[k])
    w.close()


def export(outdir, threads):
    # Same intra-op threads as the Go side, so that reductions run in the same
    # order: gradients through batch-norm over a few values amplify the
    # last-bit differences of another order past 1e-4.
    torch.set_num_threads(threads)
    export_case(outdir, "resnet18", {"Depth": 18, "Classes": 10, "torchvision": True}, (3, 64, 64))
    export_case(outdir, "resnet50_w0.25", {"Depth": 50, "Width": 0.25, "Classes": 7}, (3, 64, 64))
    export_case(outdir, "resnet18_cifar_1ch", {"Depth": 18, "Width": 0.25, "Stem": "cifar", "InChannels": 1,
                                               "Classes": 10}, (1, 28, 28))
    export_case(outdir, "resnet34_backbone", {"Depth": 34, "Width": 0.25, "Stem": "cifar"}, (3, 32, 32),
                train=False)


def bench(dirname, threads, device="cpu"):
    """Loads the model Go wrote (state dict, input, targets) onto device, says
    "ready THREADS LOSS" (the frozen model's loss on the batch), then answers
    "train K" and "eval K" lines on stdin with the seconds K steps took (to the
    end of the device's work) and the minor page faults the process took
    meanwhile, and "loss 0" with the trained model's eval-mode loss."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    cfg, t, order = read(dirname, "bench")
    m = build(cfg)
    m.load_state_dict({k[3:]: t[k] for k in order if k.startswith("sd/")}, strict=True)
    frozen = build(cfg)
    frozen.load_state_dict(m.state_dict())
    m.to(dev)
    frozen.to(dev).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    x, y = t["input"].to(dev), t["target"].to(dev)
    opt = torch.optim.SGD(m.parameters(), lr=cfg["LR"], momentum=cfg["Momentum"], weight_decay=cfg["WeightDecay"])

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()

    def eval_step():
        with torch.no_grad():
            frozen(x)
    with torch.no_grad():
        loss = F.cross_entropy(frozen(x), y).item()
    print("ready %d %.8f" % (torch.get_num_threads(), loss), flush=True)
    for line in sys.stdin:
        what, k = line.split()
        if what == "loss":  # the trained model's eval-mode loss on the batch
            m.eval()
            with torch.no_grad():
                print("%.8f 0" % F.cross_entropy(m(x), y).item(), flush=True)
            m.train()
            continue
        f = train_step if what == "train" else eval_step
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for _ in range(int(k)):
            f()
        sync()
        sec = time.perf_counter() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print("%.6f %d" % (sec, faults), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    elif sys.argv[1] == "bench":
        bench(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "cpu")
    else:
        sys.exit("usage: resnet_ref.py export OUTDIR [THREADS] | bench DIR THREADS [DEVICE]")
