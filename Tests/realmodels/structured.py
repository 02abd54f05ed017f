#!/usr/bin/env python3
"""Structured pruning on real exports: for every model of a directory written by
export_models.py or ../shared/real-models/real_models.py (manifest.json, NAME.onnx, NAME.npz),
`prunecheck prune` with channel granularity (vision models; for vision transformers and
decoders the width), head and neuron granularity (transformers), then ONNX Runtime on the pruned model against
`prunecheck infer` on it (max |diff| <= 1e-3 * max(1, max |ref|)), and the pruned model's
float parameters against the dense model's (at most 85 %).

  structured.py --dir DIR --prunecheck BIN --work WORK [--only a,b] [--limit 0.85]

Prints one line per model and granularity; exits 1 on any failure.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def float_parameters(path):
    m = onnx.load(str(path))
    return sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--prunecheck", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--limit", type=float, default=0.85, help="largest share of the dense float parameters allowed")
    args = ap.parse_args()
    src, work = Path(args.dir), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((src / "manifest.json").read_text())
    only = set(filter(None, args.only.split(",")))
    failures = 0
    for name, info in manifest.items():
        if only and name not in only:
            continue
        family = info.get("family", "vision")
        data = np.load(src / f"{name}.npz")
        inputs = [i["name"] if isinstance(i, dict) else i for i in info["inputs"]]
        if family == "vision":
            runs = [("channel", 0.3)]
        elif family == "vision-transformer":
            runs = [("channel", 0.3), ("head", 0.5), ("neuron", 0.3)]
        elif family == "decoder":
            # channel: the width (embeddings, every norm and projection on the residual stream)
            runs = [("head", 0.5), ("neuron", 0.3), ("channel", 0.3)]
        else:
            # an encoder's output is its width: channel pruning has nothing it may remove
            runs = [("head", 0.5), ("neuron", 0.3)]
        task = {"decoder": "language-model", "text-encoder": "embedding"}.get(family, "classification")
        dense = float_parameters(src / f"{name}.onnx")
        for granularity, sparsity in runs:
            out = work / f"{name}-{granularity}.onnx"
            cmd = [args.prunecheck, "prune", "--model", str(src / f"{name}.onnx"), "--data", str(src / f"{name}.npz"),
                   "--task", task, "--granularity", granularity, "--sparsity", str(sparsity), "--out", str(out)]
            for i in inputs:
                cmd += ["--input", f"{i}={i}"]
            if task != "embedding":
                cmd += ["--labels", "labels"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{name} {granularity} {sparsity}: prune exit {r.returncode}: {r.stderr.strip()[:400]}  FAIL")
                failures += 1
                continue
            pruned = float_parameters(out)
            ours = work / f"{name}-{granularity}.out.npz"
            r = subprocess.run([args.prunecheck, "infer", "--model", str(out), "--data", str(src / f"{name}.npz"),
                                "--out", str(ours)] + sum([["--input", f"{i}={i}"] for i in inputs], []), capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{name} {granularity}: infer exit {r.returncode}: {r.stderr.strip()[:300]}  FAIL")
                failures += 1
                continue
            sess = ort.InferenceSession(str(out))
            ref = sess.run(None, {i: data[i] for i in inputs})
            got = np.load(ours)
            first = sess.get_outputs()[0].name
            a, b = got[first].astype(np.float64), ref[0].astype(np.float64)
            diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
            limit = 1e-3 * max(1.0, float(np.max(np.abs(b))))
            ratio = pruned / dense
            ok = diff <= limit and ratio <= args.limit and ratio < 1
            failures += not ok
            print(f"{name} {granularity} {sparsity}: parameters {dense} -> {pruned} ({ratio:.1%}), "
                  f"ORT vs infer max |diff| {diff:.3g} (limit {limit:.3g})  {'ok' if ok else 'FAIL'}", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
