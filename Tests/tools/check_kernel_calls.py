#!/usr/bin/env python3
"""Scans a built binary for kernel functions that call the standard library's raw-pointer
vector loads and stores instead of inlining them.

`UnsafeRawPointer.loadUnaligned(as: SIMD8<Float>.self)` and `storeBytes(of:as:)` are generic;
Swift's inliner stops inlining into a function once it is large, and a GEMM driver with its
packing and micro-kernels inlined was: each 8-float load became a call that returned the vector
in two 128-bit halves. Measured on LeNet-300-100 at batch 64 (2026-12-03): 5 % of the time in
those calls; fc1 took 240 µs, 210 once packA and the small kernels stood as functions of their
own (where the loads inline again).

The same for the sixteen-lane math (`expf32`, `geluErf32`, `sigmoid32`, the `LaneMap` types'
`apply`) and the standard library's generic SIMD operations: with `@inline(__always)`, the
build with -enable-testing (`make build`) left `expf32` and `apply` as calls compiled in 128-bit
pieces (2026-12-07: the ViT's Softmax at 1.5 ns a value against 0.75 inlined).

Usage: check_kernel_calls.py BINARY...   (exit 1 if a Kernels function makes such a call)
The scan reads x86-64 ELF disassembly; elsewhere it says so and passes.
"""
import platform
import re
import subprocess
import sys

FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")
CALL = re.compile(r"\t(call|jmp)\s+[0-9a-f]+ <([^>]+)>")
KERNEL = re.compile(r"^\$s(7Kernels|13KernelsAVX512)")
VECTOR_ACCESS = re.compile(r"(loadUnaligned|storeBytes).*SIMD(2|4|8|16|32|64)V")
LANE_MATH = re.compile(r"^\$s13KernelsAVX512\d+((expf32|geluErf32|sigmoid32|negated)ys6SIMD16V|\w*LanesO5apply)")
GENERIC_SIMD = re.compile(r"^\$ss\d+SIMD\d+V")


def inline_only(callee):
    """A callee that a kernel must inline: a vector load or store, lane math, a generic SIMD op."""
    return bool(VECTOR_ACCESS.search(callee) or LANE_MATH.match(callee) or GENERIC_SIMD.match(callee))


def offenders(disassembly):
    """(caller, callee) for every call from a kernel function to what it must inline."""
    found, name = [], None
    for line in disassembly.splitlines():
        m = FUNCTION.match(line)
        if m:
            name = m.group(1)
            continue
        c = CALL.search(line)
        # (A lane function's own emitted body may jump to a merged copy of itself.)
        if c and name and KERNEL.match(name) and not LANE_MATH.match(name) and inline_only(c.group(2)):
            found.append((name, c.group(2)))
    return found


def main(paths):
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print("kernel calls: the scan reads x86-64 ELF disassembly; skipped on this machine")
        return 0
    bad = []
    for path in paths:
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], check=True, capture_output=True, text=True).stdout
        bad += [(path, caller, callee) for caller, callee in offenders(out)]
    for path, caller, callee in sorted(set(bad)):
        print(f"{path}: {caller} calls {callee} (not inlined)")
    if bad:
        print(f"kernel calls: {len(bad)} calls to vector loads, stores or lane math that did not inline; move the code that "
              "makes them into a smaller function (@inline(never)), or make the callee @_transparent")
        return 1
    print(f"kernel calls: every vector load, store and lane function inlined in {len(paths)} binaries")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
