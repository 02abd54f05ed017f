#!/usr/bin/env bash
# The wheel on a machine without Swift, libgit2 or libxml2 (`make dist-check`): a fresh Debian
# bookworm root from debootstrap (minbase with python3, python3-venv, git, ca-certificates) gets
# the wheel, the bundled examples, config and baselines; a venv there installs the wheel with
# `pip install --no-index` and runs every command that touches git, libxml2 or the engine.
# Needs root (debootstrap, chroot, mounting /proc).
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$(ls dist/prunecheck-*.whl | head -n 1)
root=${DIST_ROOT:-.build-dist/bookworm}
if [ ! -x "$root/usr/bin/python3" ] || [ ! -x "$root/usr/bin/git" ]; then
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > .build-dist/debootstrap.log 2>&1 \
        || { tail -20 .build-dist/debootstrap.log; echo "dist-check: debootstrap failed" >&2; exit 1; }
fi
# The point of the test: none of what the build needed is there.
for gone in usr/bin/swift usr/lib/x86_64-linux-gnu/libgit2.so.1.5 usr/lib/x86_64-linux-gnu/libxml2.so.2; do
    if [ -e "$root/$gone" ]; then echo "dist-check: $root has /$gone; not a clean machine" >&2; exit 1; fi
done
rm -rf "$root/work" && mkdir -p "$root/work/repo"
cp "$wheel" "$root/work/"
cp -r examples prunecheck.yml baselines "$root/work/repo/"
mounted=""
if ! mountpoint -q "$root/proc"; then mount -t proc proc "$root/proc"; mounted=1; fi
trap '[ -n "$mounted" ] && umount "$root/proc"' EXIT
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 /bin/sh -euc '
    cd /work
    python3 -m venv v
    v/bin/pip install -q --no-index prunecheck-*.whl
    export PATH=/work/v/bin:$PATH
    prunecheck --version
    cd repo
    git init -q && git add -A && git -c user.name=dist -c user.email=dist@example.invalid commit -qm "bundled examples"
    prunecheck baseline update --force
    prunecheck check --junit r.xml --json r.json --markdown r.md --html r.html
    grep -q "<testsuites" r.xml
    git -c user.name=dist -c user.email=dist@example.invalid commit -qam "re-recorded baselines" || true
    prunecheck check --base HEAD --changed-only
    prunecheck hook install && test -x .git/hooks/pre-commit
    prunecheck history lenet300100-global90 > /dev/null
    prunecheck prune --model examples/models/mlp_digits.onnx --data examples/data/digits.npz --sparsity 0.5 --out /tmp/p.onnx > /dev/null
    prunecheck infer --model /tmp/p.onnx --data examples/data/digits.npz --input input=x_test --out /tmp/o.npz
    echo "dist-check: the wheel works without Swift, libgit2 and libxml2"
'
