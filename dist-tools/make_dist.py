#!/usr/bin/env python3
"""Packs a release build of PruneCheck as a Python wheel and a tarball that run on a Linux without
Swift, libgit2 or libxml2 (`make dist`; README, "Install"):

    python3 dist-tools/make_dist.py BINARY --out dist/

The Swift runtime is linked statically (`--static-swift-stdlib`). Every shared library the
binary needs beyond glibc and the GCC runtime every distribution has (libgit2, libxml2 and what
they pull in: libssh2, libssl, zlib, ICU, ...) is copied into `prunecheck/_lib` and the binary's
RUNPATH points there (`$ORIGIN/../_lib`, each library's own `$ORIGIN`), as auditwheel does; the
wheel's platform tag is manylinux_2_<glibc minor> for the newest glibc symbol version the files
need. The version comes from Sources/Common/Common.swift (`toolVersion`); the commit is written
to `prunecheck/_bin/BUILD_INFO`, which `prunecheck --version` prints. Standard library only,
plus `patchelf` on the PATH."""
import base64, hashlib, io, os, re, shutil, stat, subprocess, sys, tarfile, zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# What every glibc distribution provides (the manylinux policy's list, and the dynamic loader).
SYSTEM = re.compile(r"^(libc|libm|libdl|librt|libpthread|libutil|libresolv|libgcc_s|libstdc\+\+|ld-linux-x86-64|linux-vdso)\.so")


def version():
    text = open(os.path.join(ROOT, "Sources/Common/Common.swift")).read()
    return re.search(r'public let toolVersion = "([^"]+)"', text).group(1)


def commit():
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    return head + ("-dirty" if dirty else "")


def dependencies(path):
    """Shared libraries `path` loads (ldd's resolution), name -> file, beyond the system set."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    deps = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m and not SYSTEM.match(m.group(1)):
            if m.group(2) == "not":
                sys.exit(f"make_dist: {path} needs {m.group(1)}, which is not found")
            deps[m.group(1)] = m.group(2)
    return deps


def glibc_minor(paths):
    """The newest GLIBC_2.x symbol version any of `paths` needs."""
    newest = 17
    for p in paths:
        text = subprocess.run(["objdump", "-T", p], capture_output=True, text=True).stdout
        for minor in re.findall(r"GLIBC_2\.(\d+)", text):
            newest = max(newest, int(minor))
    return newest


def main():
    binary, out = sys.argv[1], sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "dist"
    v = version()
    stage = os.path.join(ROOT, ".build-dist", "stage")
    shutil.rmtree(stage, ignore_errors=True)
    pkg = os.path.join(stage, "prunecheck")
    os.makedirs(os.path.join(pkg, "_bin"))
    os.makedirs(os.path.join(pkg, "_lib"))
    exe = os.path.join(pkg, "_bin", "prunecheck")
    shutil.copy2(binary, exe)
    subprocess.run(["strip", "--strip-unneeded", exe], check=True)
    # The binary's libraries and theirs, transitively.
    libs, todo = {}, dict(dependencies(binary))
    while todo:
        name, path = todo.popitem()
        if name in libs:
            continue
        libs[name] = path
        for n, p in dependencies(path).items():
            if n not in libs:
                todo[n] = p
    for name, path in libs.items():
        target = os.path.join(pkg, "_lib", name)
        shutil.copy2(os.path.realpath(path), target)
        os.chmod(target, 0o755)
        subprocess.run(["patchelf", "--set-rpath", "$ORIGIN", target], check=True)
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../_lib", exe], check=True)
    with open(os.path.join(pkg, "_bin", "BUILD_INFO"), "w") as f:
        f.write(commit() + "\n")
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write(f'"""PruneCheck {v}: the native binary in _bin, run by the `prunecheck` command."""\n__version__ = "{v}"\n')
    with open(os.path.join(pkg, "__main__.py"), "w") as f:
        f.write('''"""`prunecheck` (and `python -m prunecheck`): replaces this process with the native binary."""
import os, sys


def main():
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "prunecheck")
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    main()
''')
    minor = glibc_minor([exe] + [os.path.join(pkg, "_lib", n) for n in libs])
    tag = f"py3-none-manylinux_2_{minor}_x86_64"
    os.makedirs(out, exist_ok=True)
    wheel = os.path.join(out, f"prunecheck-{v}-{tag}.whl")
    info = f"prunecheck-{v}.dist-info"
    files = []
    for dirpath, _, names in os.walk(pkg):
        for n in sorted(names):
            if n.endswith(".pyc"):
                continue
            full = os.path.join(dirpath, n)
            files.append((os.path.relpath(full, stage), full))
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: prunecheck\nVersion: {v}\nSummary: Regression checks for pruned neural networks in CI\n"
                            f"Requires-Python: >=3.8\nLicense: see the project's repository\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: prunecheck make_dist.py\nRoot-Is-Purelib: false\nTag: {tag}\n",
        f"{info}/entry_points.txt": "[console_scripts]\nprunecheck = prunecheck.__main__:main\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, full in sorted(files):
            data = open(full, "rb").read()
            zi = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (os.stat(full).st_mode & 0o777 | stat.S_IFREG) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        for arc, text in meta.items():
            data = text.encode()
            z.writestr(zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    tarball = os.path.join(out, f"prunecheck-{v}-linux-x86_64.tar.gz")
    with tarfile.open(tarball, "w:gz") as t:
        t.add(os.path.join(pkg, "_bin"), arcname=f"prunecheck-{v}/bin")
        t.add(os.path.join(pkg, "_lib"), arcname=f"prunecheck-{v}/_lib")
    for p in (wheel, tarball):
        print(f"make_dist: {p} ({os.path.getsize(p) / 1e6:.1f} MB)")
    print(f"make_dist: bundled {len(libs)} libraries: {', '.join(sorted(libs))}")


if __name__ == "__main__":
    main()
