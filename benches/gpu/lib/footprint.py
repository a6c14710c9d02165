#!/usr/bin/env python3
"""Reads the hook's memory footprint line from a program's output.

At exit, libnvshare.so (NVSHARE_LOG=info or more) logs one line per GPU:

  ... INFO nvshare::engine::swap::tally: nvshare memory footprint: requested
  vs physical bytes of swap-mode GPU memory device=0 requested=... physical=...
  slab_requested=... slab_physical=... peak_requested=... peak_physical=...
  peak_slab_requested=... peak_slab_physical=... peak_ratio="1.0123"

Usage: footprint.py FILE [DEVICE]
Prints the figures of the last such line (of DEVICE, default any) as
`key=value` words on one line, plus derived ones: waste_bytes (peak physical
- peak requested), slab_waste_bytes, ratio (peak physical / peak requested)
and slab_ratio. Exits 1, printing nothing, if there is no such line.
"""

import re
import sys

MARKER = "nvshare memory footprint"
FIELD = re.compile(r'(\w+)="?([0-9.]+)"?')
WANTED = (
    "device",
    "requested",
    "physical",
    "slab_requested",
    "slab_physical",
    "peak_requested",
    "peak_physical",
    "peak_slab_requested",
    "peak_slab_physical",
)


def parse(text, device=None):
    found = None
    for line in text.splitlines():
        if MARKER not in line:
            continue
        # Drop escape codes, in case colours were on.
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        fields = {k: v for k, v in FIELD.findall(line.split(MARKER, 1)[1])}
        if not all(k in fields for k in WANTED):
            continue
        if device is not None and fields["device"] != str(device):
            continue
        found = {k: int(float(fields[k])) for k in WANTED}
    if found is None:
        return None
    req, phys = found["peak_requested"], found["peak_physical"]
    sreq, sphys = found["peak_slab_requested"], found["peak_slab_physical"]
    found["waste_bytes"] = phys - req
    found["slab_waste_bytes"] = sphys - sreq
    found["ratio"] = round(phys / req, 6) if req else 1.0
    found["slab_ratio"] = round(sphys / sreq, 6) if sreq else 1.0
    return found


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        figures = parse(f.read(), sys.argv[2] if len(sys.argv) == 3 else None)
    if figures is None:
        sys.exit(1)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
