#!/usr/bin/env python3
"""The pruning quality table: every recipe of docs/pruning-quality.md run through the real
`prunecheck prune` on the bundled MNIST-5k LeNets, over seeds, set beside the peer's numbers
(PyTorch's torch.nn.utils.prune on the same models, data and fine-tuning budget) when the peer
table is given. `make quality` runs it; it prints Markdown and writes JSON with --out.

Seeds change the fine-tuning data order (and the initialization of pruning at init); runs
without fine-tuning are deterministic and run once.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SCALE = "0.00392156862745098"
MODELS = {
    "lenet300100": ["--model", "examples/models/lenet300100_mnist5k.safetensors",
                    "--architecture", "examples/models/lenet300100_mnist5k.json"],
    "lenet5": ["--model", "examples/models/lenet5_mnist5k.onnx"],
}
FT3 = ["--finetune-epochs", "3", "--lr", "0.01"]
FT5 = ["--finetune-epochs", "5", "--lr", "0.01"]
INIT_SEEDS = 12

# (model, label, peer key or None, prunecheck arguments, seeded: True for --seeds, False for one
# deterministic run, or a number N for seeds 0…N−1)
RECIPES = [
    # The peer's own regimes, same budget: SGD lr 0.01, momentum 0.9, cosine to 0, batch 64.
    *[(m, f"one-shot global magnitude, no FT, {s}", ("oneshot_noft", s), ["--sparsity", s], False)
      for m in MODELS for s in ["0.8", "0.9"]],
    *[(m, f"one-shot global magnitude + 3 ep, {s}", ("oneshot_ft3", s), ["--sparsity", s, *FT3], True)
      for m in MODELS for s in ["0.9", "0.95"]],
    *[(m, "iterative, 5 rounds x 1 ep, 0.95", ("iterative5", "0.95"), ["--sparsity", "0.95", "--schedule", "iterative:5", *FT5], True)
      for m in MODELS],
    *[(m, "gradual (cubic, masks every 10 steps), 5 ep, 0.95", None, ["--sparsity", "0.95", "--schedule", "gradual:10", *FT5], True)
      for m in MODELS],
    *[(m, "gradual + distillation (T 4, alpha 0.5), 5 ep, 0.95", None,
       ["--sparsity", "0.95", "--schedule", "gradual:10", "--distill", "4,0.5", *FT5], True) for m in MODELS],
    *[(m, "SparseGPT + 5 ep, 0.95", None, ["--method", "sparsegpt", "--sparsity", "0.95", *FT5], True) for m in MODELS],
    # One-shot, calibration-based, no fine-tuning.
    *[(m, f"{meth} ({scope}), no FT, {s}", None, ["--method", meth, "--scope", scope, "--sparsity", s], False)
      for m in MODELS for meth, scope in [("sparsegpt", "layer"), ("sparsegpt", "global"), ("wanda", "global"), ("wanda", "layer"), ("obs", "global")]
      for s in ["0.8", "0.9"]],
    # Other criteria with the peer's fine-tuning.
    *[(m, f"{meth} + 3 ep, 0.9", None, ["--method", meth, "--sparsity", "0.9", *FT3], True)
      for m in MODELS for meth in ["taylor", "obd", "random"]],
    # Pruning at initialization, trained from scratch for 20 epochs (SGD lr 0.05), over 12 seeds:
    # random masks at PyTorch's default initialization vary by ±8 points from seed to seed.
    # SNIP once more with the peer's single scoring batch of 100 (Tests/quality/snip_peer.py runs
    # the peer itself).
    *[("lenet300100", f"{meth} at init ({init}), 20 ep from scratch, 0.95", None,
       ["--method", meth, "--initializer", init, "--sparsity", "0.95", "--finetune-epochs", "20", "--lr", "0.05"], INIT_SEEDS)
      for init in ["pytorch_default", "xavier_uniform"] for meth in ["snip", "random"]],
    ("lenet300100", "snip at init (pytorch_default), one scoring batch of 100, 20 ep from scratch, 0.95", None,
     ["--method", "snip", "--initializer", "pytorch_default", "--calibration-samples", "100", "--sparsity", "0.95",
      "--finetune-epochs", "20", "--lr", "0.05"], INIT_SEEDS),
    # Structured: units removed from every hidden layer (per-layer ratio, as the peer).
    *[(m, f"{g} {meth} 50 % per layer + 3 ep", ("structured_ft3_wb", "0.5"),
       ["--method", meth, "--granularity", g, "--scope", "layer", "--sparsity", "0.5", *FT3], True)
      for m, g in [("lenet300100", "neuron"), ("lenet5", "channel")] for meth in ["magnitude", "lrp", "taylor"]],
    # Allocation within a 1-point budget on 1000 calibration examples, no fine-tuning.
    *[(m, f"{meth} within 1 point, no FT", None,
       ["--method", meth, "--sparsity", "0.99", "--max-accuracy-drop", "0.01", "--calibration-samples", "1000"], False)
      for m in MODELS for meth in ["auto", "energy"]],
]


def peer_value(peers, model, key):
    if not peers or key is None:
        return None
    regime, amount = key
    name = f"{model}_mnist5k"
    for row in peers.get("aggregated", []):
        if row.get("model") == name and row.get("regime") == regime and abs(float(row.get("target", -1)) - float(amount)) < 1e-9:
            return row.get("acc_mean")
    return None


def run(binary, model, args, seed, out_dir):
    cmd = [binary, "prune", *MODELS[model], "--data", "examples/data/mnist5k.npz", "--scale", SCALE, "--threads", "2",
           "--seed", str(seed), "--out", os.path.join(out_dir, "m.onnx"), "--json", *args]
    started = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quality: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    result = json.loads(r.stdout)
    result["seconds"] = time.time() - started
    result["notes"] = [line.strip() for line in r.stderr.splitlines() if "per-layer" in line]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--binary", default=".build/release/prunecheck")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--peers", help="peer-pruning.json (the peer table's raw numbers)")
    ap.add_argument("--only", help="run only recipes whose label contains this text")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    peers = json.load(open(a.peers)) if a.peers and os.path.exists(a.peers) else None
    seeds = [int(s) for s in a.seeds.split(",")]
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for model, label, key, args, seeded in RECIPES:
            if a.only and a.only not in label:
                continue
            used = seeds if seeded is True else list(range(seeded)) if seeded else [0]
            runs = [run(a.binary, model, args, s, tmp) for s in used]
            accs = [100 * r["accuracy_finetuned"] for r in runs]
            mean = statistics.mean(accs)
            spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
            peer = peer_value(peers, model, key)
            sparsity = statistics.mean(r["sparsity"] for r in runs)
            params = f"{runs[0]['params_before']:.0f} → {runs[0]['params_after']:.0f}"
            notes = "; ".join(runs[0]["notes"])
            rows.append((model, label, f"{mean:.2f}{spread}", "-" if peer is None else f"{100 * peer:.2f}", f"{100 * sparsity:.2f}", params,
                         f"{statistics.median(r['seconds'] for r in runs):.1f}", len(runs), notes))
            results.append({"model": model, "recipe": label, "args": args, "seeds": used, "accuracy": accs,
                            "peer": peer, "sparsity": sparsity, "notes": runs[0]["notes"]})
            print(f"quality: {model} {label}: {mean:.2f}{spread}", file=sys.stderr)
    print("| model | recipe | PruneCheck acc. (%) | peer acc. (%) | sparsity (%) | parameters | s/run | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r[:8]) + " |")
    notes = [(r[0], r[1], r[8]) for r in rows if r[8]]
    if notes:
        print("\nAllocations:\n")
        for model, label, n in notes:
            print(f"- {model}, {label}: {n}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
