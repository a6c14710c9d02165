#!/usr/bin/env python3
"""Finds memory-move events (restores and evictions) in nvshare log files.

The hook (NVSHARE_LOG=debug) and the scheduler log a line per move with the
bytes and the time it took. Field spellings vary, so this accepts any of:
  bytes=4294967296   bytes=4.0GiB   bytes=4.0 GiB   bytes="4.0 GiB"   moved=4294967296
  elapsed_us=81234   elapsed_ms=81.2   elapsed_s=0.081   elapsed=81.2ms
A line is a restore if it mentions restor/prefetch/swap-in, an eviction if it
mentions evict/swap-out. ANSI colour codes are ignored.

Usage: swaplog.py [--min-bytes N] FILE...
Prints one JSON object: for "restore" and "evict", the events counted (those
of at least --min-bytes, default 256 MiB), their bytes and seconds, the
aggregate GB/s (all bytes / all seconds) and the median of per-event GB/s.
"""

import argparse
import json
import re
import statistics
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
         "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
BYTES = re.compile(r'\b(?:bytes|moved)\s*=\s*"?\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b)?\b', re.I)
ELAPSED = [
    (re.compile(r"\belapsed_us\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.I), 1e-6),
    (re.compile(r"\belapsed_ms\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.I), 1e-3),
    (re.compile(r"\belapsed_s\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.I), 1.0),
]
ELAPSED_WITH_UNIT = re.compile(r"\belapsed\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|s)\b", re.I)
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
RESTORE_WORDS = ("restor", "prefetch", "swap-in", "swap_in", "swapped in")
EVICT_WORDS = ("evict", "swap-out", "swap_out", "swapped out")


def parse_line(line):
    """(kind, bytes, seconds) or None."""
    text = ANSI.sub("", line)
    lower = text.lower()
    if any(w in lower for w in RESTORE_WORDS):
        kind = "restore"
    elif any(w in lower for w in EVICT_WORDS):
        kind = "evict"
    else:
        return None
    size = BYTES.search(text)
    if not size:
        return None
    unit = (size.group(2) or "").lower()
    nbytes = float(size.group(1)) * UNITS.get(unit, 1)
    seconds = None
    for pattern, scale in ELAPSED:
        found = pattern.search(text)
        if found:
            seconds = float(found.group(1)) * scale
            break
    if seconds is None:
        found = ELAPSED_WITH_UNIT.search(text)
        if found:
            seconds = float(found.group(1)) * UNIT_SECONDS[found.group(2).lower()]
    if seconds is None or seconds <= 0:
        return None
    return kind, nbytes, seconds


def summarize(events, min_bytes):
    kept = [(b, s) for b, s in events if b >= min_bytes]
    if not kept:
        return {"events": 0, "events_seen": len(events)}
    total_bytes = sum(b for b, _ in kept)
    total_seconds = sum(s for _, s in kept)
    return {
        "events": len(kept),
        "events_seen": len(events),
        "bytes": total_bytes,
        "seconds": total_seconds,
        "gbps_aggregate": total_bytes / total_seconds / 1e9,
        "gbps_median": statistics.median(b / s / 1e9 for b, s in kept),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-bytes", type=float, default=256 * (1 << 20))
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    events = {"restore": [], "evict": []}
    for path in args.files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    parsed = parse_line(line)
                    if parsed:
                        events[parsed[0]].append(parsed[1:])
        except OSError as err:
            print(f"cannot read {path}: {err}", file=sys.stderr)
    print(json.dumps({kind: summarize(found, args.min_bytes) for kind, found in events.items()}))


if __name__ == "__main__":
    main()
