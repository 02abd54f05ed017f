#!/usr/bin/env python3
"""The peer's SNIP and random pruning at initialization, in PyTorch, over many seeds: the
protocol of issue #5's SNIP target (LeNet-300-100 on MNIST-5k, PyTorch's default Linear
initialization, 95 % of the weights removed by one global ranking, 20 epochs from scratch with
SGD lr 0.05, momentum 0.9, cosine to 0 per step, batch 64), so PruneCheck's SNIP rows in
docs/pruning-quality.md can be set beside the peer's mean rather than beside one run.

Needs torch and numpy (the peers' environment of ../shared/bench). Each seed sets the
initialization, the scoring batch, the random mask and the data order. The mask's generator must
not be seeded like the initialization's: the same uniform stream would rank the weights by their
own draws, so the "random" mask kept the largest positive weights (85 % instead of 72 %).

    python Tests/quality/snip_peer.py --seeds 12 --scoring 100
"""
import argparse
import statistics

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(path):
    d = np.load(path)
    x = lambda a: torch.tensor(a.reshape(len(a), -1).astype(np.float32) / 255)
    return x(d["x_train"]), torch.tensor(d["y_train"]), x(d["x_test"]), torch.tensor(d["y_test"])


def run(method, seed, data, scoring, sparsity=0.95, epochs=20, batch=64, lr=0.05):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    layers = [m for m in model if isinstance(m, nn.Linear)]
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1))
    if method == "snip":
        idx = torch.randperm(len(xtr), generator=g)[:scoring]
        F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        scores = torch.cat([(m.weight.grad * m.weight).abs().flatten() for m in layers])
        model.zero_grad()
    else:
        scores = torch.rand(sum(m.weight.numel() for m in layers), generator=g)
    keep = int(round((1 - sparsity) * scores.numel()))
    threshold = torch.topk(scores, keep).values[-1]
    masks, offset = [], 0
    for m in layers:
        n = m.weight.numel()
        masks.append((scores[offset:offset + n].view_as(m.weight) >= threshold).float())
        offset += n
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * ((len(xtr) + batch - 1) // batch))
    with torch.no_grad():
        for m, k in zip(layers, masks):
            m.weight.mul_(k)
    for _ in range(epochs):
        order = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch):
            b = order[i:i + batch]
            optimizer.zero_grad()
            F.cross_entropy(model(xtr[b]), ytr[b]).backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                for m, k in zip(layers, masks):
                    m.weight.mul_(k)
    with torch.no_grad():
        return 100 * (model(xte).argmax(1) == yte).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="examples/data/mnist5k.npz")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--scoring", type=int, default=100, help="SNIP's scoring batch (examples)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load(a.data)
    for method in ["snip", "random"]:
        accs = [run(method, s, data, a.scoring) for s in range(a.seeds)]
        label = f"snip, scoring batch {a.scoring}" if method == "snip" else "random"
        print(f"{label}: {statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f} over {a.seeds} seeds "
              f"({', '.join(f'{x:.1f}' for x in accs)})", flush=True)


if __name__ == "__main__":
    main()
