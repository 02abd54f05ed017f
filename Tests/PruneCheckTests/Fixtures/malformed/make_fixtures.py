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
# Inputs found by `make fuzz` (kept as they were found, not regenerated here).
found = {"fuzz-hang-deflate.npz": ("npz", ""),   # a deflate stream without its final block: hung ZIPFoundation's extract
         "fuzz-inflate-overread.npz": ("npz", "")}  # a short last chunk: inflate read past it (ASan SEGV)
for name, (loader, phrase) in found.items():
    if os.path.exists(os.path.join(here, name)):
        out[name] = {"loader": loader, "contains": phrase}
json.dump(out, open(os.path.join(here, "expected.json"), "w"), indent=1, sort_keys=True)
print(f"wrote {len(out)} malformed fixtures")
