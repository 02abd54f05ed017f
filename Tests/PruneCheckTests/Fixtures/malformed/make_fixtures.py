"""Writes the malformed input files of this folder from the bundled examples (run from the
repository root: python3 Tests/PruneCheckTests/Fixtures/malformed/make_fixtures.py).
expected.json maps each file to the loader that reads it and a phrase its error must contain;
the test also requires the file's name in the message."""
import io, json, os, struct, zipfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", "..", ".."))
ex = lambda p: open(os.path.join(root, "examples", p), "rb").read()
out = {}

def write(name, data, loader, phrase):
    open(os.path.join(here, name), "wb").write(data)
    out[name] = {"loader": loader, "contains": phrase}

onnx = ex("models/mlp_digits.onnx")
write("truncated.onnx", onnx[: len(onnx) // 3], "onnx", "not a valid ONNX model")
flipped = bytearray(onnx); flipped[5] ^= 0xFF
write("bitflip-header.onnx", bytes(flipped), "onnx", "")
write("empty.onnx", b"", "onnx", "no graph")
st = ex("models/mlp_digits.safetensors")
write("truncated.safetensors", st[: len(st) - 100], "safetensors", "")
n = struct.unpack("<Q", st[:8])[0]
write("header-length-lies.safetensors", struct.pack("<Q", n * 1000) + st[8:], "safetensors", "")
write("not-json-header.safetensors", struct.pack("<Q", 4) + b"{{{{" , "safetensors", "")
npy_hdr = lambda descr, shape: (lambda h: b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h)(
    (("{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)).ljust(117) + "\n").encode())
write("complex-dtype.npy", npy_hdr("<c8", "(2,)") + b"\0" * 16, "npy", "c8")
write("shape-needs-more-bytes.npy", npy_hdr("<f4", "(1000, 1000)") + b"\0" * 64, "npy", "")
write("negative-shape.npy", npy_hdr("<f4", "(-3,)"), "npy", "")
write("not-npy.npy", b"just text", "npy", "")
npz = ex("data/digits.npz")
write("truncated.npz", npz[: len(npz) // 2], "npz", "")
bomb = io.BytesIO()
with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("x_train.npy", npy_hdr("<f4", "(64000000,)") + b"\0" * (4 * 64_000_000))
write("zip-bomb.npz", bomb.getvalue(), "npz-small-limit", "limit")
write("truncated-images.idx", bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\0" * 100, "idx", "need 1568 data bytes")
write("bad-type.idx", bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "idx", "type byte")
write("ragged.csv", b"a,b,label\n1,2,0\n3,4\n", "csv", "line 3")
write("text-in-number.csv", b"a,b,label\n1,two,0\n", "csv", "column 'b'")
# Hostile inputs (issue 27): each must cost at most the caps and end in an error naming it.
big = npy_hdr("<f4", "(1000000,)") + b"\0" * 4_000_000
liar = io.BytesIO()
with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("x.npy", big)
liar = bytearray(liar.getvalue())
# Declare 1,000 bytes uncompressed in the local header (offset 22) and the central directory
# entry (offset 24): inflation must stop there, not at the size cap.
liar[22:26] = struct.pack("<I", 1000)
cd = liar.rfind(b"PK\x01\x02")
liar[cd + 24:cd + 28] = struct.pack("<I", 1000)
write("declares-less-than-it-inflates.npz", bytes(liar), "npz", "declared size")
trailing = io.BytesIO()
with zipfile.ZipFile(trailing, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("x.npy", npy_hdr("<f4", "(4,)") + b"\0" * 16 + b"\0" * 1_000_000)
write("trailing-data.npz", trailing.getvalue(), "npz", "after the data")
write("trailing-data.npy", npy_hdr("<f4", "(4,)") + b"\0" * 16 + b"junk", "npy", "after the data")
hdr = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                  "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}).encode()
write("overlapping.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\0" * 24, "safetensors", "overlap")
# A file that is not CSV at all (what /proc/self/environ looks like): refused without quoting it.
write("environ.csv", b"SECRET_TOKEN=hunter2\0SHELL=/bin/bash\0", "csv", "not UTF-8 text")
out["environ.csv"]["absent"] = "hunter2"
try:
    import numpy as np
    import onnx
    from onnx import helper, TensorProto, numpy_helper
    def model(nodes, inputs, inits=(), name="hostile"):
        g = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m.SerializeToString()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    pads = numpy_helper.from_array(np.array([0, 0, 0, 4_000_000_000_000], dtype=np.int64), "pads")
    write("pad-grows.onnx", model([helper.make_node("Pad", ["x", "pads"], ["y"], name="grow")], [x], [pads]),
          "model", "PRUNECHECK_MAX_TENSOR_BYTES")
    shape = numpy_helper.from_array(np.array([1, 1_000_000_000_000], dtype=np.int64), "shape")
    write("expand-grows.onnx", model([helper.make_node("Expand", ["x", "shape"], ["y"], name="grow")],
                                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])], [shape]),
          "model", "PRUNECHECK_MAX_TENSOR_BYTES")
    # Five tensors of 40 MB each at batch 1, all alive at the Sum: under the per-tensor cap, over
    # a total cap of 150 MB (the test sets PRUNECHECK_MAX_TOTAL_BYTES).
    wide = numpy_helper.from_array(np.array([1, 10_000_000], dtype=np.int64), "wide")
    write("many-expands.onnx", model([helper.make_node("Expand", ["x", "wide"], [f"e{i}"], name=f"grow{i}") for i in range(5)]
                                     + [helper.make_node("Sum", [f"e{i}" for i in range(5)], ["y"], name="sum")],
                                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])], [wide]),
          "model", "")
    del out["many-expands.onnx"]  # fine under the default caps: HostileInputTests runs it with small ones
    kernel = numpy_helper.from_array(np.ones((1, 1, 3, 3), dtype=np.float32), "k")
    write("conv-pads.onnx", model([helper.make_node("Conv", ["x", "k"], ["y"], name="grow", pads=[1 << 40] * 4)],
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])], [kernel]),
          "model", "beyond")
    huge = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1 << 40])
    write("huge-input.onnx", model([helper.make_node("Relu", ["x"], ["y"])], [huge]), "model", "over the limit")
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "external-offset-huge.bin"), ("offset", str(2**63 - 1)), ("length", "64")):
        e = w.external_data.add(); e.key = k; e.value = v
    open(os.path.join(here, "external-offset-huge.bin"), "wb").write(b"\0" * 64)
    write("external-offset-huge.onnx", model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [w]), "onnx", "offset")
except ImportError:
    print("onnx not installed: the ONNX fixtures are kept as they are")
    for name, phrase in (("pad-grows.onnx", "PRUNECHECK_MAX_TENSOR_BYTES"), ("expand-grows.onnx", "PRUNECHECK_MAX_TENSOR_BYTES"),
                         ("huge-input.onnx", "over the limit")):
        out[name] = {"loader": "model", "contains": phrase}
    out["external-offset-huge.onnx"] = {"loader": "onnx", "contains": "offset"}
# Inputs found by `make fuzz` (kept as they were found, not regenerated here).
found = {"fuzz-hang-deflate.npz": ("npz", ""),   # a deflate stream without its final block: hung ZIPFoundation's extract
         "fuzz-inflate-overread.npz": ("npz", "")}  # a short last chunk: inflate read past it (ASan SEGV)
for name, (loader, phrase) in found.items():
    if os.path.exists(os.path.join(here, name)):
        out[name] = {"loader": loader, "contains": phrase}
json.dump(out, open(os.path.join(here, "expected.json"), "w"), indent=1, sort_keys=True)
print(f"wrote {len(out)} malformed fixtures")
