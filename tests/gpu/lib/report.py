#!/usr/bin/env python3
"""Facts about the machine and the JSON records of the GPU suite and benchmarks.

Subcommands (stdlib only, so it runs before anything else is importable):
  facts                                   JSON facts about GPU 0 and the host
  facts-line FACTS                        those facts in one line, for people
  check-add JSONL NAME STATUS SECONDS DETAIL
                                          append one check record
  suite-summary FACTS JSONL MODE OUT      write the suite's JSON summary
  bench-add JSONL --what W --value V --unit U [--baseline B --baseline-value BV]
            [--ratio R] [--target T] [--samples S] [--note N]
                                          append one benchmark result
  bench-summary FACTS JSONL OUT [RUNS]    write the benchmarks' JSON summary
                                          (RUNS: the benchmarks' own verdicts)
  bench-table JSONL                       one line per result, for people
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

SMI_FIELDS = [
    "name", "driver_version", "memory.total", "memory.used", "memory.free",
    "compute_cap", "pcie.link.gen.current", "pcie.link.width.current",
    "persistence_mode", "uuid",
]


def run(cmd):
    """stdout of cmd, or '' if it cannot run."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def version_of(*distributions):
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cupy_version():
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-cuda"):
            return f"{name} {dist.version}"
    return None


def facts():
    row = run(["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}",
               "--format=csv,noheader,nounits", "-i", os.environ.get("TEST_GPU", "0")])
    values = [v.strip() for v in row.split(",")] if row else []
    smi = dict(zip(SMI_FIELDS, values))
    driver_cuda = ""
    for line in run(["nvidia-smi", "-q"]).splitlines():
        if "CUDA Version" in line:
            driver_cuda = line.split(":", 1)[1].strip()
            break
    nvcc = ""
    for line in run(["nvcc", "--version"]).splitlines():
        if "release" in line:
            nvcc = line.strip()
    return {
        "device": smi.get("name", "unknown"),
        "driver": smi.get("driver_version", "unknown"),
        "uname": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu_uuid": smi.get("uuid"),
        "gpu_count": len([u for u in run(["nvidia-smi", "--query-gpu=uuid",
                                          "--format=csv,noheader"]).splitlines() if u.strip()]),
        "memory_total_mib": smi.get("memory.total"),
        "memory_used_mib": smi.get("memory.used"),
        "memory_free_mib": smi.get("memory.free"),
        "compute_cap": smi.get("compute_cap"),
        "pcie": f"gen{smi.get('pcie.link.gen.current', '?')} x{smi.get('pcie.link.width.current', '?')}",
        "persistence_mode": smi.get("persistence_mode"),
        "driver_cuda_version": driver_cuda,
        "nvcc": nvcc,
        "smi_summary": row,
        "python": platform.python_version(),
        "torch": version_of("torch"),
        "jax": version_of("jax"),
        "jaxlib": version_of("jaxlib"),
        "cupy": cupy_version(),
        "host_cpus": run(["nproc"]),
    }


def append(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path):
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    records.append(json.loads(line))
    except FileNotFoundError:
        pass
    return records


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def load_facts(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def facts_line(args):
    f = load_facts(args.facts)
    print(f"{f['device']} ({f.get('gpu_uuid')}; {f.get('gpu_count', '?')} GPUs), driver {f['driver']} (CUDA {f['driver_cuda_version']}), "
          f"{f['memory_free_mib']} of {f['memory_total_mib']} MiB free, {f['pcie']}, "
          f"kernel {f['uname']}, {f['nvcc'] or 'no nvcc'}, torch {f['torch']}")


def check_add(args):
    status = args.status.upper()
    append(args.jsonl, {
        "name": args.name,
        "ok": True if status == "PASS" else (None if status == "SKIP" else False),
        "status": status,
        "seconds": round(float(args.seconds), 3),
        "detail": args.detail,
    })


def suite_summary(args):
    f = load_facts(args.facts)
    checks = read_jsonl(args.jsonl)
    write_json(args.out, {
        "suite": "nvshare GPU suite",
        "mode": args.mode,
        "device": f["device"],
        "driver": f["driver"],
        "uname": f["uname"],
        "date": f["date"],
        "passed": sum(1 for c in checks if c["status"] == "PASS"),
        "failed": sum(1 for c in checks if c["status"] == "FAIL"),
        "skipped": sum(1 for c in checks if c["status"] == "SKIP"),
        "checks": checks,
        "facts": f,
    })


def number_or_none(text):
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_samples(text):
    """'1.5,2,x' -> [1.5, 2.0, 'x']: the raw measurements behind a median."""
    if not text:
        return None
    values = []
    for item in text.split(","):
        number = number_or_none(item.strip())
        values.append(item.strip() if number is None else number)
    return values


def bench_add(args):
    value = number_or_none(args.value)
    baseline_value = number_or_none(args.baseline_value)
    ratio = number_or_none(args.ratio)
    if ratio is None and value is not None and baseline_value:
        ratio = value / baseline_value
    record = {
        "what": args.what,
        "value": value,
        "unit": args.unit,
        "baseline": args.baseline,
        "baseline_value": baseline_value,
        "ratio": None if ratio is None else round(ratio, 4),
        "target": args.target,
        "samples": parse_samples(args.samples),
        "note": args.note if value is not None else (args.note or "not measured"),
    }
    append(args.jsonl, record)
    print("BENCH " + bench_line(record))


def bench_line(record):
    value = record["value"]
    shown = "not measured" if value is None else f"{value:.4g} {record['unit']}"
    line = f"{record['what']}: {shown}"
    if record.get("baseline_value") is not None:
        line += f" vs {record['baseline_value']:.4g} ({record['baseline']})"
    if record.get("ratio") is not None:
        line += f", ratio {record['ratio']}"
    if record.get("target"):
        line += f", target {record['target']}"
    if value is None and record.get("note"):
        line += f" [{record['note']}]"
    return line


def bench_table(args):
    for record in read_jsonl(args.jsonl):
        print(bench_line(record))


def bench_summary(args):
    f = load_facts(args.facts)
    stamp = {k: f[k] for k in ("device", "driver", "uname", "date")}
    results = [dict(r, **stamp) for r in read_jsonl(args.jsonl)]
    runs = read_jsonl(args.runs) if args.runs else []
    write_json(args.out, dict(stamp, suite="nvshare GPU benchmarks", results=results,
                              benchmarks=runs, facts=f))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("facts")
    sub.add_parser("facts-line").add_argument("facts")
    p = sub.add_parser("check-add")
    for name in ("jsonl", "name", "status", "seconds", "detail"):
        p.add_argument(name)
    p = sub.add_parser("suite-summary")
    for name in ("facts", "jsonl", "mode", "out"):
        p.add_argument(name)
    p = sub.add_parser("bench-add")
    p.add_argument("jsonl")
    p.add_argument("--what", required=True)
    p.add_argument("--value", default="")
    p.add_argument("--unit", required=True)
    p.add_argument("--baseline", default=None)
    p.add_argument("--baseline-value", default="")
    p.add_argument("--ratio", default="")
    p.add_argument("--target", default=None)
    p.add_argument("--samples", default=None)
    p.add_argument("--note", default=None)
    sub.add_parser("bench-table").add_argument("jsonl")
    p = sub.add_parser("bench-summary")
    for name in ("facts", "jsonl", "out"):
        p.add_argument(name)
    p.add_argument("runs", nargs="?")
    args = parser.parse_args()
    if args.cmd == "facts":
        json.dump(facts(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.cmd == "facts-line":
        facts_line(args)
    elif args.cmd == "check-add":
        check_add(args)
    elif args.cmd == "suite-summary":
        suite_summary(args)
    elif args.cmd == "bench-add":
        bench_add(args)
    elif args.cmd == "bench-table":
        bench_table(args)
    elif args.cmd == "bench-summary":
        bench_summary(args)


if __name__ == "__main__":
    main()
