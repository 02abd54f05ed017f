#!/usr/bin/env python3
"""Scans built binaries for swiftlang/swift#90477: a Swift function that reports errors in r12
(the swifterror register: every throwing function and every closure passed to a `rethrows` or
`throws(E)` API such as `withUnsafeTemporaryAllocation`) uses r12 as a scratch register and
leaves through a tail jump to memcpy, memmove or memset. Its epilogue then skips restoring r12,
the caller reads the scratch value as a thrown error and runs into whatever code follows. With
Swift 6.3 on x86-64 this took PruneCheck's AVX-512 kernel down (the fix is
llvm/llvm-project#214590, not in that toolchain).

A function counts as reporting errors in r12 when some caller tests r12 right after calling it.
Usage: check_swifterror_tailcalls.py BINARY...        (exit 1 if any function matches)
       check_swifterror_tailcalls.py --self-test      (the pattern recorded in fixtures/ is found)
The scan reads x86-64 ELF disassembly (r12 is the error register there; arm64 uses x21), so
elsewhere it says so and passes; the self-test runs everywhere.
"""
import os
import platform
import re
import subprocess
import sys

CALL = re.compile(r"\tcall\s+[0-9a-f]+ <([^>]+)>")
TESTS_R12 = re.compile(r"\ttest\s+%r12,%r12")
WRITES_R12 = re.compile(r"(,%r12[dwb]?$|\tpop\s+%r12$|\txchg\s.*%r12)")
TAIL_MEM = re.compile(r"\tjmp\s.*<(memmove|memcpy|memset)(@plt)?>")


def functions(disassembly):
    """Maps each function's name to its instruction lines in `objdump -d` output."""
    result, name = {}, None
    for line in disassembly.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            name = m.group(1)
            result[name] = []
        elif name and line.strip():
            result[name].append(line)
    return result


def suspicious(disassembly):
    funcs = functions(disassembly)
    callees = set()
    for body in funcs.values():
        for i, line in enumerate(body):
            m = CALL.search(line)
            if m and any(TESTS_R12.search(x) for x in body[i + 1:i + 5]):
                callees.add(m.group(1))
    return sorted(name for name in callees
                  if any(WRITES_R12.search(l) for l in funcs.get(name, []))
                  and any(TAIL_MEM.search(l) for l in funcs.get(name, [])))


def main(argv):
    if argv == ["--self-test"]:
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "fixtures", "swifterror-tailcall.objdump")) as f:
            found = suspicious(f.read())
        want = ["$s13KernelsAVX512016microKernel1x128B02kc1a7aStride1b05panelF06panels1c2nr4loadySi_SPySfGSiALS2iSpySfGSiSbtFySrySfGXEfU_"]
        if found != want:
            print(f"self-test: expected {want}, found {found}", file=sys.stderr)
            return 1
        print("swifterror tail calls: self-test finds the recorded miscompile")
        return 0
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print(f"swifterror tail calls: scan skipped on {platform.system()} {platform.machine()} (it reads x86-64 ELF)")
        return 0
    bad = False
    for path in argv:
        try:
            out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True)
        except FileNotFoundError:
            print("objdump not found: install binutils (make setup does)", file=sys.stderr)
            return 2
        if out.returncode != 0:
            print(f"{path}: objdump failed: {out.stderr.strip()}", file=sys.stderr)
            return 2
        found = suspicious(out.stdout)
        for name in found:
            print(f"{path}: {name} leaves through a tail call to a memory routine with r12 overwritten "
                  "(swiftlang/swift#90477): restructure it so it is not a closure or throwing function",
                  file=sys.stderr)
        bad = bad or bool(found)
    if not bad:
        print(f"swifterror tail calls: none in {len(argv)} binaries")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
