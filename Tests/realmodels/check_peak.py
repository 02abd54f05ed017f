#!/usr/bin/env python3
"""Peak resident memory of a `prunecheck check` of ResNet-18, fine-tuning included, against
PyTorch's peak for the same training step plus the model's weights (issue 23).

  python check_peak.py --dir DIR --prunecheck BIN [--torch-python PY] [--batch 8]

DIR holds resnet18.onnx(.data) and resnet18.npz (`input`, `labels`) from
`real_models.py export` or `make real-models LARGE=1`; its examples, repeated to --batch, are
the data of both sides. The check runs in a scratch git repository: magnitude pruning at 50 %,
one epoch (one step) of SGD fine-tuning at --batch, evaluation and latency, as `check` does for
any model (no baseline: exit 3 is the expected outcome; any other non-zero exit fails, as does a
report without the pruned model's sparsity and accuracy). With --torch-python (a Python with torch and
torchvision), the same training step (forward, cross-entropy, backward, SGD with momentum) runs
there in a child process and its peak is the bound's base; without it, the bound is not checked.
Exits 1 when the check's peak is over the bound.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TORCH_STEP = r"""
import resource, sys, numpy as np, torch, torchvision
torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[3]))
d = np.load(sys.argv[1])
batch = int(sys.argv[2])
x = torch.from_numpy(np.resize(d["input"], (batch,) + d["input"].shape[1:]))
y = torch.from_numpy(np.resize(d["labels"], (batch,)))
m = torchvision.models.resnet18(num_classes=1000)
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for _ in range(3):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

CONFIG = """version: 1
baselines: baselines
defaults:
  seed: 0
  threads: {threads}
  latency: {{batch_sizes: [1], warmup: 2, min_runs: 5, max_seconds: 1}}
models:
  - name: resnet18-magnitude50
    model: {model}
    data:
      file: {data}
      train: [input, labels]
      eval: [input, labels]
    prune:
      method: magnitude
      scope: global
      sparsity: 0.5
      finetune: {{epochs: 1, batch_size: {batch}, optimizer: sgd, lr: 0.01, momentum: 0.9}}
"""


def peak_mib(cmd, ok_codes=(0,)):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read().decode(errors="replace"), proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        sys.exit(f"{' '.join(cmd)} exited {code}: {err.strip()[-600:]}")
    return usage.ru_maxrss / 1024, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--prunecheck", required=True)
    p.add_argument("--torch-python")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = Path(a.dir).resolve()
    files = [d / "resnet18.onnx", d / "resnet18.onnx.data"]
    weights = sum(f.stat().st_size for f in files if f.exists()) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for f in files:
            if f.exists():
                shutil.copy(f, repo / f.name)
        # Exactly --batch examples (the export's, repeated), for both sides: one training step.
        import numpy as np
        src = np.load(d / "resnet18.npz")
        data = repo / "data.npz"
        np.savez(data, input=np.resize(src["input"], (a.batch,) + src["input"].shape[1:]).astype(np.float32),
                 labels=np.resize(src["labels"], (a.batch,)).astype(np.int64))
        (repo / "prunecheck.yml").write_text(CONFIG.format(threads=a.threads, model="resnet18.onnx", data="data.npz", batch=a.batch))
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        report = repo / "report.json"
        check, _ = peak_mib([str(Path(a.prunecheck).resolve()), "check", "--no-cache", "-c", str(repo / "prunecheck.yml"),
                             "--json", str(report)], ok_codes=(0, 3))
        # The run did prune and fine-tune: its report has the pruned model's metrics.
        model = json.loads(report.read_text())["models"][0]
        metrics = {m["name"]: m["current"] for m in model["metrics"]}
        if abs(metrics.get("sparsity", 0) - 0.5) > 0.01 or "accuracy" not in metrics:
            sys.exit(f"check-peak: the check did not prune and evaluate ResNet-18: {sorted(metrics)[:12]}")
        print(f"check-peak: prunecheck check of ResNet-18 (fine-tuning at batch {a.batch}): {check:.0f} MiB resident, weights {weights:.0f} MiB")
        if not a.torch_python:
            print("check-peak: the bound against PyTorch skipped: no --torch-python")
            return
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(TORCH_STEP)
        try:
            torch_peak, out = peak_mib([a.torch_python, f.name, str(data), str(a.batch), str(a.threads)])
        finally:
            os.unlink(f.name)
        imported = float(out.split()[0])
        bound = torch_peak + weights
        print(f"check-peak: PyTorch training step at batch {a.batch}: {torch_peak:.0f} MiB resident ({imported:.0f} after import and "
              f"model); bound PyTorch + weights = {bound:.0f} MiB: {'within' if check <= bound else 'OVER'}")
        sys.exit(0 if check <= bound else 1)


if __name__ == "__main__":
    main()
