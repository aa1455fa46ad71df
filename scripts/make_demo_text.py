#!/usr/bin/env python3
"""Writes the text `squeeze demo` evaluates: Sources/SqueezeCLI/DemoText/wiki.test.excerpt.txt.

It is the beginning of ../shared/data/wiki.test.txt (cleaned English Wikipedia, CC BY-SA 3.0; see
that folder's ATTRIBUTION.md), cut before the first ` = Heading = ` line that would take it past
200,000 bytes, so the excerpt ends at a section boundary. Usage:

    python3 scripts/make_demo_text.py [SOURCE] [OUTPUT]
"""
import sys

LIMIT = 200_000

source = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/wiki.test.txt"
output = sys.argv[2] if len(sys.argv) > 2 else "Sources/SqueezeCLI/DemoText/wiki.test.excerpt.txt"

with open(source, "rb") as f:
    lines = f.read().split(b"\n")

size, cut = 0, 0
for i, line in enumerate(lines):
    if line.startswith(b" = ") and size > 0:
        cut = i  # a section may end here
    size += len(line) + 1
    if size > LIMIT:
        break
else:
    cut = len(lines)

text = b"\n".join(lines[:cut]).rstrip(b"\n") + b"\n"
with open(output, "wb") as f:
    f.write(text)
print(f"{output}: {len(text)} bytes, {cut} lines of {source}")
