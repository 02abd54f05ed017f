#!/usr/bin/env python3
"""Writes ONNX's backend node tests for the given ops into the conformance fixtures.

ONNX 1.23 builds its node test cases in memory (onnx/backend/test/case/node, Apache-2.0) and no
longer ships them as files; this writes them in the layout of `backend-test-tools
generate-data` (model.onnx, test_data_set_0/input_i.pb, output_i.pb) and adds them to
MANIFEST.json. A case is kept when every op of its graph is one PruneCheck supports (the
registry's list, passed in) and every input and output is float32, int64 or bool. The random
data of each case comes after numpy.random.seed(0), as in ONNX, so the files are reproducible.

  python onnx_node_tests.py --supported Abs,Add,... --ops Expand,Where,... --out DIR

Needs the onnx and numpy packages (`make node-tests` runs it in the real-models venv).
"""
import argparse
import json
import os
import shutil

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases

# Cases PruneCheck leaves out on purpose: BatchNormalization's training-mode outputs (running
# statistics, which training updates in place instead) and Dropout in training mode (its masks
# come from PruneCheck's own seeded Philox stream, not NumPy's).
EXCLUDED = {"test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode", "test_training_dropout",
            "test_training_dropout_default", "test_training_dropout_default_mask", "test_training_dropout_mask"}

# Forms PruneCheck refuses with a message instead (no exporter of the supported architectures
# writes them): Resize with antialias, and TensorFlow's crop-and-resize coordinates.
UNSUPPORTED = {"test_resize_downsample_scales_cubic_antialias", "test_resize_downsample_scales_linear_antialias",
               "test_resize_downsample_sizes_cubic_antialias", "test_resize_downsample_sizes_linear_antialias",
               "test_resize_tf_crop_and_resize", "test_resize_tf_crop_and_resize_axes_2_3", "test_resize_tf_crop_and_resize_axes_3_2",
               "test_resize_tf_crop_and_resize_extrapolation_value"}

# ONNX's Einsum cases hold float64 (and bfloat16) data, which PruneCheck does not take: their
# equations, and the forms exporters write, are rebuilt in float32 with NumPy's einsum as the
# reference (names end in _float32).
EINSUM_FLOAT32 = [
    ("transpose", "ij->ji", [(3, 4)]), ("sum", "ij->i", [(3, 4)]), ("batch_diagonal", "...ii ->...i", [(3, 5, 5)]),
    ("inner_prod", "i,i", [(5,), (5,)]), ("batch_matmul", "bij, bjk -> bik", [(5, 2, 3), (5, 3, 4)]),
    ("scalar", "->", [()]), ("outer", "i,j->ij", [(4,), (6,)]), ("attention_scores", "bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ellipsis_matmul", "...ij,...jk->...ik", [(2, 3, 4), (4, 5)]), ("implicit", "ij,jk", [(3, 4), (4, 2)]),
    ("three_operands", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
]


def einsum_float32_cases():
    from onnx import helper
    rng = np.random.default_rng(0)
    for name, equation, shapes in EINSUM_FLOAT32:
        names = [f"x{i}" for i in range(len(shapes))]
        values = [rng.standard_normal(sh).astype(np.float32) for sh in shapes]
        out = np.asarray(np.einsum(equation.replace(" ", ""), *values), dtype=np.float32)
        node = helper.make_node("Einsum", names, ["y"], equation=equation)
        graph = helper.make_graph([node], f"test_einsum_{name}_float32",
                                  [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, v.shape) for n, v in zip(names, values)],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out.shape)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
        yield f"test_einsum_{name}_float32", model, values, [out]


TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool"}


def value_types(values):
    out = []
    for v in values:
        t = v.type.tensor_type.elem_type if v.type.HasField("tensor_type") else None
        out.append(TYPES.get(t))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--supported", required=True, help="every op the engine runs, comma-separated")
    p.add_argument("--ops", required=True, help="write the cases that use at least one of these ops")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    supported, wanted = set(args.supported.split(",")), set(args.ops.split(","))
    np.random.seed(0)
    cases = node_cases.collect_testcases(None)
    manifest_path = os.path.join(args.out, "MANIFEST.json")
    manifest = json.load(open(manifest_path))
    known = {t["name"] for t in manifest["tests"]}
    written = []
    for case in sorted(cases, key=lambda c: c.name):
        g = case.model.graph
        ops = {n.op_type for n in g.node}
        domains = {n.domain for n in g.node}
        if not ops & wanted or not ops <= supported or not domains <= {"", "ai.onnx"}:
            continue
        if None in value_types(g.input) or None in value_types(g.output) or not case.data_sets:
            continue
        if case.name in known or case.name in EXCLUDED or case.name in UNSUPPORTED:
            continue
        opset = max(o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 6:  # PruneCheck reads opset 6 and newer
            continue
        inputs, outputs = case.data_sets[0]
        folder = os.path.join(args.out, case.name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(os.path.join(folder, "test_data_set_0"))
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for kind, values, decl in (("input", inputs, g.input), ("output", outputs, g.output)):
            for i, v in enumerate(values):
                t = numpy_helper.from_array(np.asarray(v), decl[i].name)
                with open(os.path.join(folder, "test_data_set_0", f"{kind}_{i}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
        manifest["tests"].append({
            "name": case.name, "source": "node", "category": "single-op" if len(g.node) == 1 else "composite",
            "op_type": g.node[0].op_type if len(g.node) == 1 else None, "opset_version": opset,
            "graph_ops": sorted(ops),
        })
        written.append(case.name)
    if "Einsum" in wanted:
        for name, model, inputs, outputs in einsum_float32_cases():
            if name in known:
                continue
            folder = os.path.join(args.out, name)
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(os.path.join(folder, "test_data_set_0"))
            with open(os.path.join(folder, "model.onnx"), "wb") as f:
                f.write(model.SerializeToString())
            for kind, values, decl in (("input", inputs, model.graph.input), ("output", outputs, model.graph.output)):
                for i, v in enumerate(values):
                    with open(os.path.join(folder, "test_data_set_0", f"{kind}_{i}.pb"), "wb") as f:
                        f.write(numpy_helper.from_array(v, decl[i].name).SerializeToString())
            manifest["tests"].append({"name": name, "source": "node (float32 variant)", "category": "single-op", "op_type": "Einsum",
                                      "opset_version": 12, "graph_ops": ["Einsum"]})
            written.append(name)
    manifest["tests"].sort(key=lambda t: t["name"])
    manifest["test_count"] = len(manifest["tests"])
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(manifest_path + ".tmp", manifest_path)
    print(f"node tests: wrote {len(written)} cases for {sorted(wanted)}; {manifest['test_count']} in all")


if __name__ == "__main__":
    main()
