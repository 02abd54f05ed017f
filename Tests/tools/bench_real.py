#!/usr/bin/env python3
"""`make bench`'s real-architecture workloads: PruneCheck timed by its own harness
(`prunecheck latency`, the one `check` uses) on the exports of a folder, written in the
`prunecheck-bench/1` schema of the peers' `real_models.py bench`, so that the two compare row by
row (`compare.py prunecheck-real.json peers-real.json`).

  python bench_real.py --prunecheck BIN --dir DIR --threads 1,2 --out FILE [--only a,b]

For each of resnet18, mobilenet_v2, efficientnet_b0, vit_tiny and minilm_l6 found in DIR
(NAME.onnx and NAME.npz, as `real_models.py export` or `make real-models LARGE=1` write them):
inference p50 at batch 1 and 8 (`real_infer/NAME`), and for ResNet-18 and MobileNetV2 a training
step at batch 8 (`real_train_step/NAME`: forward, cross-entropy, backward, SGD update). Models
missing from DIR are listed and skipped.
"""
import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "vit_tiny", "minilm_l6"]
TRAINED = {"resnet18", "mobilenet_v2"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prunecheck", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--out", required=True)
    p.add_argument("--only", default="")
    a = p.parse_args()
    d = Path(a.dir)
    only = set(filter(None, a.only.split(",")))
    results = []
    for name in MODELS:
        if only and name not in only:
            continue
        model, data = d / f"{name}.onnx", d / f"{name}.npz"
        if not model.exists() or not data.exists():
            print(f"bench_real: skipped {name}: no {model} or {data}", file=sys.stderr)
            continue
        for threads in [int(t) for t in a.threads.split(",")]:
            runs = [("real_infer", ["--batch-sizes", "1,8"])]
            if name in TRAINED:
                runs.append(("real_train_step", ["--batch-sizes", "8", "--train-step"]))
            for workload, extra in runs:
                cmd = [a.prunecheck, "latency", "--model", str(model), "--data", str(data), "--threads", str(threads), "--json"] + extra
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"bench_real: {' '.join(cmd)} failed: {out.stderr.strip()[:400]}")
                report = json.loads(out.stdout)
                for r in report["results"]:
                    if (workload == "real_infer") != (r["mode"] == "inference"):
                        continue
                    results.append({"workload": f"{workload}/{name}", "impl": "prunecheck", "threads": threads, "batch": r["batch"],
                                    "metric": "latency_us_p50", "value": r["p50_us"], "samples": r["runs"]})
                    print(f"{workload}/{name} b{r['batch']} t{threads}: prunecheck {r['p50_us']:.0f} us", file=sys.stderr)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"schema": "prunecheck-bench/1", "machine": {"platform": platform.platform()},
                                       "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
