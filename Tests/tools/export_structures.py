#!/usr/bin/env python3
"""Exports the topologies structured pruning must follow, as tiny PyTorch modules through
PyTorch's own ONNX exporter (dynamo, dynamic batch), for PruneCheck's masked == shrunk tests:

  dense_concat   DenseNet: BatchNorm-ReLU-Conv layers whose outputs are concatenated
  shuffle        ShuffleNetV2: channel split (chunk), branch, concat, channel shuffle
  grouped        ResNeXt: a grouped 3x3 convolution between 1x1 convolutions, residual Add
  convnext       ConvNeXt: depthwise 7x7, LayerNorm over channels (channels last), layer scale,
                 PReLU, residual Add
  mbconv         MobileNetV2/EfficientNet: expand, depthwise, squeeze-and-excitation (SiLU as
                 Sigmoid * x), ReLU6, HardSwish, projection with a residual
  swin_tail      Swin's head: channels-last LayerNorm, permute, average pool and flatten (which
                 the exporter writes as a Gather of computed indices), classifier

  python export_structures.py --out DIR

writes NAME.onnx, NAME.npz (`input`, batch 3, and `labels`: the module's own argmax) per
module, and manifest.json (what Tests/realmodels/structured.py reads). Needs torch, onnx,
onnxscript.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class DenseConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.ModuleList()
        c = 8
        for _ in range(3):
            self.layers.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 4, 3, padding=1)))
            c += 4
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        x = F.relu(self.norm(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(6, 6, 1), nn.BatchNorm2d(6), nn.ReLU(),
                                    nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6),
                                    nn.Conv2d(6, 6, 1), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU())
        self.head = nn.Conv2d(12, 10, 1)
        self.fc = nn.Linear(10, 4)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat([a, self.branch(b)], 1), 2)
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat([a, self.branch2(b)], 1), 2)
        return self.fc(self.head(x).mean([2, 3]))


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.reduce = nn.Conv2d(16, 8, 1)
        self.group = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.expand = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.expand(F.relu(self.group(F.relu(self.reduce(x)))))
        return self.fc(F.relu(x + y).mean([2, 3]))


class ConvNeXtLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.LayerNorm(8)
        self.pw1 = nn.Linear(8, 16)
        self.act = nn.PReLU(16)
        self.pw2 = nn.Linear(16, 8)
        self.gamma = nn.Parameter(torch.rand(8) + 0.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.gamma
        x = x + y.permute(0, 3, 1, 2)
        return self.fc(x.mean([2, 3]))


class MBConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1), nn.BatchNorm2d(24), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24))
        self.se1 = nn.Conv2d(24, 6, 1)
        self.se2 = nn.Conv2d(6, 24, 1)
        self.project = nn.Sequential(nn.Conv2d(24, 8, 1), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        y = self.expand(x)
        y = self.dw(y)
        y = y * torch.sigmoid(y)
        s = torch.sigmoid(self.se2(F.silu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
        y = self.project(y * s)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x + y, 1), 1))


class SwinTail(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.mlp = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        x = x + self.mlp(x)
        x = self.norm(x).permute(0, 3, 1, 2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


MODULES = {"dense_concat": DenseConcat, "shuffle": Shuffle, "grouped": Grouped, "convnext": ConvNeXtLike, "mbconv": MBConv, "swin_tail": SwinTail}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, cls in MODULES.items():
        torch.manual_seed(0)
        m = cls().eval()
        # Non-trivial statistics, so that BatchNorm is not the identity.
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.2, 0.2)
        x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(m, (x,), str(out / f"{name}.onnx"), input_names=["input"], output_names=["output"],
                          dynamo=True, dynamic_shapes=({0: batch},), external_data=False)
        with torch.no_grad():
            labels = m(x).argmax(1).numpy().astype(np.int64)
        np.savez(out / f"{name}.npz", input=x.numpy(), labels=labels)
        manifest[name] = {"family": "vision", "exporter": "dynamo", "inputs": ["input"]}
        print(name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
