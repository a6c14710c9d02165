#!/usr/bin/env python3
"""Reads what the swap-mode benchmarks leave behind (stdlib only).

Inputs: the jobs' outputs (the hook's debug log lines on stderr, and the
jobs' own READY/GAP/RESULT lines), the scheduler's log, and GPU memory
samples (`EPOCH USED_MIB` lines). Log lines start with an RFC 3339 UTC
timestamp (`2026-11-25T14:32:28.535446Z`) and carry `key=value` fields.

Subcommands, each printing one JSON object:
  moves FILE...               the hook's `memory evicted` and `memory restored`
                              lines (bytes=, elapsed_us=): per direction the
                              events, each one's GB/s, median and aggregate;
                              each job's first eviction (which pins its host
                              shadows) counted apart from the later ones
  switches SCHED_LOG FILE...  for each `lock drop requested` of one job: the
                              next `lock granted` to another job, and the end
                              of that job's GAP spanning the request (its first
                              kernel done after the switch): latency and parts;
                              switches in which the leaving job evicted for the
                              first time (pinning its shadows) apart
  jobs FILE...                the jobs' last RESULT lines: makespan (first
                              start to last end), sum of work_s, all ok?
  memory SAMPLES [--start T] [--end T]
                              peak and median used MiB within [start, end] and
                              the last sample before start (the base)
Numbers lists are also given as comma strings (`*_list`) for the shell.
"""

import argparse
import calendar
import json
import re
import statistics
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?$", re.I)
UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
         "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}


def read_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [ANSI.sub("", line.rstrip("\n")) for line in f]
    except OSError as err:
        print(f"cannot read {path}: {err}", file=sys.stderr)
        return []


def stamp_of(line):
    """Seconds since the epoch of the line's first RFC 3339 UTC timestamp, or None."""
    found = STAMP.search(line)
    if not found:
        return None
    year, month, day, hour, minute, second = (int(g) for g in found.groups()[:6])
    fraction = float(found.group(7) or 0)
    return calendar.timegm((year, month, day, hour, minute, second)) + fraction


def fields_of(line):
    """The line's key=value fields, quotes removed."""
    return {k: v[1:-1] if v.startswith('"') else v for k, v in FIELD.findall(line)}


def size_of(text):
    """Bytes of `12884901888`, `12.0GiB`, `8.0 GiB`; None if not a size."""
    found = SIZE.match((text or "").strip())
    if not found:
        return None
    return float(found.group(1)) * UNITS[(found.group(2) or "").lower()]


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values), "list": ",".join(f"{v:.4g}" for v in values)}


# ---------------------------------------------------------------- moves

def hook_moves(path):
    """[(kind, stamp, bytes, seconds)] of the hook's move lines in one job's output."""
    moves = []
    for line in read_lines(path):
        if "memory evicted" in line:
            kind = "evict"
        elif "memory restored" in line:
            kind = "restore"
        else:
            continue
        fields = fields_of(line)
        nbytes = size_of(fields.get("bytes"))
        try:
            seconds = float(fields["elapsed_us"]) * 1e-6
        except (KeyError, ValueError):
            continue
        if nbytes and seconds > 0:
            moves.append((kind, stamp_of(line), nbytes, seconds))
    return moves


def direction(events):
    """Summary of [(bytes, seconds)]."""
    if not events:
        return {"events": 0}
    total_bytes = sum(b for b, _ in events)
    total_seconds = sum(s for _, s in events)
    rates = [b / s / 1e9 for b, s in events]
    return {
        "events": len(events),
        "bytes_median": statistics.median(b for b, _ in events),
        "seconds_median": statistics.median(s for _, s in events),
        "median_gbps": statistics.median(rates),
        "aggregate_gbps": total_bytes / total_seconds / 1e9,
        "gbps_list": ",".join(f"{r:.2f}" for r in rates),
    }


def cmd_moves(args):
    first, later, restores, per_job = [], [], [], {}
    for path in args.files:
        moves = [m for m in hook_moves(path) if m[2] >= args.min_bytes]
        evictions = [(b, s) for kind, _, b, s in moves if kind == "evict"]
        first += evictions[:1]
        later += evictions[1:]
        restores += [(b, s) for kind, _, b, s in moves if kind == "restore"]
        per_job[path] = {"evictions": len(evictions), "restores": len(moves) - len(evictions)}
    print(json.dumps({"evict": direction(later), "evict_first": direction(first),
                      "restore": direction(restores), "per_job": per_job,
                      "min_bytes": args.min_bytes}))


# ---------------------------------------------------------------- switches

def scheduler_events(path):
    """[(stamp, kind, name, evict_bytes)] for lock drop requests and grants."""
    events = []
    for line in read_lines(path):
        if "lock drop requested" in line:
            kind = "drop"
        elif "lock granted" in line:
            kind = "grant"
        else:
            continue
        stamp = stamp_of(line)
        if stamp is None:
            continue
        fields = fields_of(line)
        events.append((stamp, kind, fields.get("name", "?"), size_of(fields.get("evict")) or 0))
    events.sort()
    return events


def job_gaps(paths):
    """{name: [(from, to)]} from the jobs' GAP lines."""
    gaps = {}
    for path in paths:
        for line in read_lines(path):
            if not line.startswith("GAP "):
                continue
            fields = fields_of(line)
            try:
                span = (float(fields["from"]), float(fields["to"]))
            except (KeyError, ValueError):
                continue
            gaps.setdefault(fields.get("name", "?"), []).append(span)
    return gaps


def first_evictions(paths):
    """{job name: stamp of its first `memory evicted` line} (the name from
    the job's own READY/FILLED/GAP lines)."""
    first = {}
    for path in paths:
        name = next((fields_of(line).get("name") for line in read_lines(path)
                     if line.startswith(("READY ", "FILLED ", "GAP "))), None)
        stamps = [stamp for kind, stamp, _, _ in hook_moves(path) if kind == "evict" and stamp]
        if name and stamps:
            first[name] = min(stamps)
    return first


def cmd_switches(args):
    events = scheduler_events(args.sched_log)
    gaps = job_gaps(args.files)
    first_evicted = first_evictions(args.files)
    grants = [e for e in events if e[1] == "grant"]
    switches, unmatched, small = [], 0, 0
    for stamp, kind, leaving, evict in events:
        if kind != "drop":
            continue
        if evict < args.min_evict:
            small += 1
            continue
        grant = next((g for g in grants if g[0] >= stamp and g[2] != leaving), None)
        if grant is None:
            unmatched += 1
            continue
        arriving = grant[2]
        # The arriving job was waiting when the drop was asked (its gap spans
        # the request) and its gap ends with its first kernel after the grant.
        gap = next((g for g in gaps.get(arriving, []) if g[0] <= stamp and g[1] >= grant[0]), None)
        if gap is None:
            unmatched += 1
            continue
        # The leaving job's first eviction pins its host shadows: told apart.
        first_out = stamp <= first_evicted.get(leaving, float("-inf")) <= grant[0]
        switches.append({"leaving": leaving, "arriving": arriving, "drop": stamp,
                         "grant": grant[0], "first_kernel": gap[1], "evict_asked": evict,
                         "latency_s": gap[1] - stamp, "release_s": grant[0] - stamp,
                         "arrive_s": gap[1] - grant[0], "first_out": first_out})
    steady = [s for s in switches if not s["first_out"]]
    first = [s for s in switches if s["first_out"]]
    print(json.dumps({
        "switches": len(switches), "unmatched_drops": unmatched, "small_drops": small,
        "latency": stats([s["latency_s"] for s in switches]),
        "release": stats([s["release_s"] for s in switches]),
        "arrive": stats([s["arrive_s"] for s in switches]),
        "latency_steady": stats([s["latency_s"] for s in steady]),
        "latency_first_out": stats([s["latency_s"] for s in first]),
        "detail": switches[:40],
    }))


# ---------------------------------------------------------------- jobs

def result_of(path):
    fields = None
    for line in read_lines(path):
        if line.startswith("RESULT "):
            fields = fields_of(line)
    return fields


def cmd_jobs(args):
    jobs, missing = [], []
    for path in args.files:
        fields = result_of(path)
        try:
            jobs.append({"file": path, "name": fields.get("name", path), "ok": fields.get("ok") == "1",
                         "start": float(fields["start"]), "end": float(fields["end"]),
                         "work_s": float(fields["work_s"])})
        except (AttributeError, KeyError, ValueError):
            missing.append(path)
    summary = {"jobs": len(jobs), "missing": missing,
               "all_ok": bool(jobs) and not missing and all(j["ok"] for j in jobs),
               "work_list": ",".join(f"{j['work_s']:.3f}" for j in jobs)}
    if jobs:
        summary.update({
            "start": min(j["start"] for j in jobs), "end": max(j["end"] for j in jobs),
            "makespan_s": max(j["end"] for j in jobs) - min(j["start"] for j in jobs),
            "sum_work_s": sum(j["work_s"] for j in jobs),
        })
    print(json.dumps(summary))


# ---------------------------------------------------------------- memory

def cmd_memory(args):
    samples = []
    for line in read_lines(args.samples):
        parts = line.split()
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            continue
    start = args.start if args.start is not None else float("-inf")
    end = args.end if args.end is not None else float("inf")
    inside = [(t, m) for t, m in samples if start <= t <= end]
    before = [m for t, m in samples if t < start]
    base = before[-1] if before else (samples[0][1] if samples else None)
    summary = {"samples": len(inside), "base_mib": base}
    if inside:
        peak_t, peak = max(inside, key=lambda s: s[1])
        summary.update({"peak_mib": peak, "peak_at": peak_t,
                        "median_mib": statistics.median(m for _, m in inside),
                        "peak_gib": peak / 1024,
                        "peak_above_base_gib": (peak - (base or 0)) / 1024})
    print(json.dumps(summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    moves = sub.add_parser("moves")
    moves.add_argument("--min-bytes", type=float, default=float(1 << 30))
    moves.add_argument("files", nargs="+")
    switches = sub.add_parser("switches")
    switches.add_argument("--min-evict", type=float, default=float(1 << 30))
    switches.add_argument("sched_log")
    switches.add_argument("files", nargs="+")
    jobs = sub.add_parser("jobs")
    jobs.add_argument("files", nargs="+")
    memory = sub.add_parser("memory")
    memory.add_argument("samples")
    memory.add_argument("--start", type=float)
    memory.add_argument("--end", type=float)
    args = parser.parse_args()
    {"moves": cmd_moves, "switches": cmd_switches, "jobs": cmd_jobs, "memory": cmd_memory}[args.cmd](args)


if __name__ == "__main__":
    main()
