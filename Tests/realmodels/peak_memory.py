#!/usr/bin/env python3
"""Peak resident memory of `prunecheck infer` and `eval` on the large exports (issue 20, item 6).

  python peak_memory.py --dir DIR --prunecheck BIN [--min-mib 100]

For every model of DIR/manifest.json whose weights (NAME.onnx plus NAME.onnx.data) are at least
--min-mib MiB, runs `prunecheck infer` and `prunecheck eval` on NAME.npz in a child process
and reads its peak resident set (getrusage of the child). The bound is 1.5 × the weights plus
what one run's activations and the runtime take: ALLOWANCE_MB MiB (the executable and its libraries
are about 30 MB; BERT-base at 8 × 128 tokens holds under 40 MB of activations at once).
Exits 1 when a run goes over, 0 when none does (also when no model is that large).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ALLOWANCE_MB = 96


def peak_mb(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.strip()[:400]}")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--prunecheck", required=True)
    p.add_argument("--min-mib", type=float, default=100)
    a = p.parse_args()
    d = Path(a.dir)
    manifest = json.loads((d / "manifest.json").read_text())
    failed = False
    for name, info in sorted(manifest.items()):
        files = [d / f"{name}.onnx", d / f"{name}.onnx.data"]
        weights = sum(f.stat().st_size for f in files if f.exists()) / 2**20
        if weights < a.min_mib:
            continue
        task = {"text-encoder": "embedding", "decoder": "language-model"}.get(info["family"], "classification")
        runs = {
            "infer": [a.prunecheck, "infer", "--model", str(files[0]), "--data", str(d / f"{name}.npz"),
                      "--out", str(d / f"{name}.peak.out.npz")],
            "eval": [a.prunecheck, "eval", "--model", str(files[0]), "--data", str(d / f"{name}.npz"), "--task", task],
        }
        for what, cmd in runs.items():
            peak = peak_mb(cmd)
            bound = 1.5 * weights + ALLOWANCE_MB
            ok = peak <= bound
            failed |= not ok
            print(f"peak-memory: {name} {what}: {peak:.0f} MiB resident, weights {weights:.0f} MiB "
                  f"({peak / weights:.2f}x; bound 1.5x + {ALLOWANCE_MB} MiB = {bound:.0f} MiB){'' if ok else '  OVER'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
