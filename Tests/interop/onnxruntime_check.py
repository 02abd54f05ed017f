"""Checks that onnxruntime loads ONNX models written by `prunecheck prune` and reproduces
PruneCheck's outputs.

Usage: onnxruntime_check.py MODEL.onnx REFERENCE.npz [MODEL.onnx REFERENCE.npz ...]
Each REFERENCE.npz holds the examples under the model's graph input names (a model of one float
input: also `input`) and `logits`, the first output as PruneCheck computed it. Exits 1 when a model
fails to load or an output differs by more than 1e-4.
"""
import sys

import numpy as np
import onnxruntime as ort

TOLERANCE = 1e-4


def main(args):
    if len(args) == 0 or len(args) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    failures = 0
    for model, reference in zip(args[::2], args[1::2]):
        ref = np.load(reference)
        try:
            session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            feeds = {}
            for i in session.get_inputs():
                array = ref[i.name] if i.name in ref else ref["input"]
                feeds[i.name] = array.astype(np.float32 if i.type == "tensor(float)" else array.dtype)
            out = session.run(None, feeds)[0]
        except Exception as e:  # a model onnxruntime refuses is a failure, with its reason
            print(f"FAIL {model}: onnxruntime cannot run it: {e}")
            failures += 1
            continue
        diff = float(np.max(np.abs(out - ref["logits"]))) if out.shape == ref["logits"].shape else float("inf")
        status = "ok  " if diff <= TOLERANCE else "FAIL"
        failures += diff > TOLERANCE
        print(f"{status} {model}: onnxruntime {ort.__version__}, shape {out.shape}, max |diff| {diff:.2e}")
    print(f"onnxruntime interop: {len(args) // 2 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
