# Plain PyTorch stitching of one pair at every cut, written out and run by
# cmd/stitchbench: the paper's recipe without augmentation (PyTorch's default
# initialisation, Adam 1e-3 with cosine decay, frozen halves in eval mode),
# the way a per-pair script does it: the bottom runs on every batch of every
# cut, batch norms stay separate layers, evaluation in training-size batches.
# Each cut's stitching layer starts from the weights stitchbench wrote (the
# stitch command's own initial layer) and the fitting images come in the
# stitch command's order, so that both sides' penalties differ by float
# rounding only.
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

a = json.load(open(sys.argv[1]))
torch.set_num_threads(a["threads"])
dev = torch.device(a["device"])
LAYOUT = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


class Basic(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, m):
        super().__init__()
        base = round(64 * m["width"])
        pad = m["stem_padding"] or 1
        self.conv1 = nn.Conv2d(m["in_channels"], base, 3, 1, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.stages = [("stem", lambda x: F.relu(self.bn1(self.conv1(x))))]
        cin = base
        for i, n in enumerate(LAYOUT[m["depth"]]):
            blocks = []
            for j in range(n):
                b = Basic(cin, base << i, 2 if i > 0 and j == 0 else 1)
                blocks.append(b)
                self.stages.append((f"layer{i + 1}.{j}", b))
                cin = base << i
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.stages.append(("pool", lambda x: torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))
        self.fc = nn.Linear(cin, m["classes"])

    def to_cut(self, x, cut):
        for name, f in self.stages:
            x = f(x)
            if name == cut:
                return x

    def from_cut(self, h, cut):
        after = False
        for name, f in self.stages:
            if after:
                h = f(h)
            after = after or name == cut
        return self.fc(h)

    def forward(self, x):
        return self.from_cut(self.to_cut(x, "stem"), "stem")


def load(m):
    net = ResNet(m)
    sd = torch.load(m["path"], map_location="cpu", weights_only=True)
    net.load_state_dict({k: v for k, v in sd.items() if k in net.state_dict()})
    net.to(dev).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def images(prefix, n, norm):
    c, h, w = a["chw"]
    x = torch.frombuffer(bytearray(open(prefix + ".u8", "rb").read()), dtype=torch.uint8).view(n, c, h, w).float() / 255
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    return ((x - mean) / std).to(dev)


def labels(prefix, n):
    return torch.frombuffer(bytearray(open(prefix + ".i64", "rb").read()), dtype=torch.int64)[:n].clone().to(dev)


def accuracy(forward, x, y, bs):
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), bs):
            correct += (forward(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return 100.0 * correct / len(y)


start = time.time()
bottom, top = load(a["bottom"]), load(a["top"])
nfit, ntest, bs = a["fit_n"], a["test_n"], a["batch_size"]
fit_x, fit_y = images(a["fit"], nfit, a["bottom"]), labels(a["fit"], nfit)
test_xb, test_xt, test_y = images(a["test"], ntest, a["bottom"]), images(a["test"], ntest, a["top"]), labels(a["test"], ntest)
order = torch.frombuffer(bytearray(open(a["order"], "rb").read()), dtype=torch.int64).view(a["epochs"], nfit)
top_acc = accuracy(top, test_xt, test_y, bs)
bottom_acc = accuracy(bottom, test_xb, test_y, bs)
out = {"top_acc": top_acc, "bottom_acc": bottom_acc, "penalties": {}}
for cut in a["cuts"]:
    torch.manual_seed(a["seed"])
    with torch.no_grad():
        sb, st = bottom.to_cut(test_xb[:1], cut).shape, top.to_cut(test_xt[:1], cut).shape
    if len(sb) == 4:
        layer = nn.Sequential(nn.BatchNorm2d(sb[1]), nn.Conv2d(sb[1], st[1], 1), nn.BatchNorm2d(st[1]))
    else:
        layer = nn.Sequential(nn.BatchNorm1d(sb[1]), nn.Linear(sb[1], st[1]), nn.BatchNorm1d(st[1]))
    layer.load_state_dict(torch.load(a["layers"][cut], map_location="cpu", weights_only=True))
    layer.to(dev)
    steps = a["steps"]
    opt = torch.optim.Adam(layer.parameters(), lr=a["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * a["epochs"])
    for epoch in range(a["epochs"]):
        layer.train()
        perm = order[epoch].to(dev)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            with torch.no_grad():
                h = bottom.to_cut(fit_x[idx], cut)
            loss = F.cross_entropy(top.from_cut(layer(h), cut), fit_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    layer.eval()
    acc = accuracy(lambda x: top.from_cut(layer(bottom.to_cut(x, cut)), cut), test_xb, test_y, bs)
    out["penalties"][cut] = top_acc - acc
out["seconds"] = time.time() - start
print(json.dumps(out))
