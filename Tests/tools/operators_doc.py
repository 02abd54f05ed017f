#!/usr/bin/env python3
"""Writes the engine's table of supported ops (`prunecheck-conformance --operators`) into
docs/operators.md, between the `operators:begin` and `operators:end` markers.

Usage: operators_doc.py CONFORMANCE_BINARY DOC. A test (OpRegistryTests) fails when the
committed doc differs from the registry, so the table cannot drift from the code."""
import subprocess
import sys

binary, doc_path = sys.argv[1], sys.argv[2]
table = subprocess.run([binary, "--operators"], check=True, capture_output=True, text=True).stdout
doc = open(doc_path).read()
begin, end = "<!-- operators:begin -->\n", "<!-- operators:end -->"
a, b = doc.index(begin) + len(begin), doc.index(end)
new = doc[:a] + table + doc[b:]
if new != doc:
    with open(doc_path + ".tmp", "w") as f:
        f.write(new)
    import os
    os.replace(doc_path + ".tmp", doc_path)
print(f"operators: {doc_path} matches the op registry")
