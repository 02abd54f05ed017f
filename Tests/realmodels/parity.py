#!/usr/bin/env python3
"""Compares PruneCheck's outputs with a reference: every array of REF must be in OUT with the
same shape and max |out - ref| <= 1e-3 * max(1, max |ref|). Prints one line per array; exits 1
on any mismatch.  Usage: parity.py OUT.npz REF.npz"""
import sys

import numpy as np

out, ref = np.load(sys.argv[1]), np.load(sys.argv[2])
ok = True
for name in ref.files:
    b = ref[name].astype(np.float64)
    if name not in out.files or out[name].shape != b.shape:
        print(f"  {name}: missing or shape {out[name].shape if name in out.files else None}, expected {b.shape}  FAIL")
        ok = False
        continue
    a = out[name].astype(np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    limit = 1e-3 * max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
    good = diff <= limit
    ok &= good
    print(f"  {name}: {a.shape} max |diff| {diff:.3g} (limit {limit:.3g}, max |ref| {float(np.max(np.abs(b))):.3g}) {'ok' if good else 'FAIL'}")
sys.exit(0 if ok else 1)
