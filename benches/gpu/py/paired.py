#!/usr/bin/env python3
"""Paired rounds of one workload: a baseline copy and hooked copies, alive
side by side, alternating measurement rounds.

    paired.py --pairs 15 --out FILE.json --variant native='CMD' \\
              --variant uvm='CMD' --variant swap='CMD' [--variant original='CMD']

The first variant is the baseline. Each CMD (run by bash) starts a worker
that prints `READY`, answers each `run` line with `ROUND value=<v> ...`
(lower is better: time per unit of work) and, on `quit`, prints
`RESULT ok=0|1 ...` (benches/gpu/cuda/launch_worker.cu,
benches/gpu/py/launch_worker.py). For each pair and each other variant
V, one baseline round and one round of V run back to back (their order
alternating from pair to pair, so drift and warm-up favour neither), and
the pair's ratio is V's value over the baseline's. Workers idle while
another measures, so each round has the GPU to itself.

Writes FILE.json: for every variant its values, and for every non-baseline
one the per-pair ratios with their median, quartiles and range, and
whether its RESULT digest (`tokens=`, where given) equals the baseline's.
Prints one line per variant. A variant that does not start or fails a
round is reported with the reason and left out of later rounds.
"""

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import time


class Worker:
    def __init__(self, name, command, log_dir):
        self.name = name
        self.command = command
        self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
        self.stdout_log = open(os.path.join(log_dir, f"{name}.stdout"), "w")
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.stderr_path, "w"),
            bufsize=0,
        )
        self.buffer = b""
        self.error = None
        self.values = []
        self.result = {}

    def readline(self, timeout):
        """The next stdout line, or None at end of output or after timeout."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                if not sel.select(left):
                    return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.decode(errors="replace")
        self.stdout_log.write(text + "\n")
        self.stdout_log.flush()
        return text

    def expect(self, prefix, timeout):
        """The next line starting with `prefix` (other lines are logged)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            if line.startswith(prefix):
                return line

    def send(self, text):
        try:
            self.proc.stdin.write((text + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def fail(self, why):
        tail = ""
        try:
            with open(self.stderr_path, errors="replace") as f:
                tail = " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            pass
        self.error = f"{why}; exit {self.proc.poll()}; stderr: {tail}"[:600]
        self.proc.kill()

    def round(self, timeout):
        if not self.send("run"):
            self.fail("the worker closed its input")
            return None
        line = self.expect("ROUND ", timeout)
        fields = parse_fields(line) if line else {}
        try:
            value = float(fields["value"])
        except (KeyError, ValueError):
            exited = self.proc.poll() is not None
            self.fail("it ended during a round" if exited else f"no ROUND line within {timeout} s")
            return None
        self.values.append(value)
        return value

    def finish(self, timeout):
        if self.error is None and self.send("quit"):
            line = self.expect("RESULT ", timeout)
            self.result = parse_fields(line) if line else {}
            if self.result.get("ok") != "1":
                self.error = f"its final check failed: {line}"
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def parse_fields(line):
    fields = {}
    for word in (line or "").split()[1:]:
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


def quantile(values, q):
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--ready-timeout", type=float, default=300)
    parser.add_argument("--round-timeout", type=float, default=120)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=CMD")
    args = parser.parse_args()

    log_dir = args.log_dir or os.path.dirname(os.path.abspath(args.out))
    os.makedirs(log_dir, exist_ok=True)
    specs = []
    for spec in args.variant:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command:
            parser.error(f"--variant {spec!r}: give NAME=CMD")
        specs.append((name, command))
    if len(specs) < 2:
        parser.error("give a baseline and at least one other variant")

    workers = [Worker(name, command, log_dir) for name, command in specs]
    for w in workers:
        if w.expect("READY", args.ready_timeout) is None:
            exited = w.proc.poll() is not None
            w.fail("it ended before it was ready" if exited else f"not ready within {args.ready_timeout} s")
    baseline, others = workers[0], workers[1:]
    pairs = {w.name: [] for w in others}
    for i in range(args.pairs):
        for w in others:
            if baseline.error or w.error:
                continue
            order = (baseline, w) if i % 2 == 0 else (w, baseline)
            got = {}
            for worker in order:
                got[worker.name] = worker.round(args.round_timeout)
            if got.get(baseline.name) and got.get(w.name) is not None:
                pairs[w.name].append(got[w.name] / got[baseline.name])
    for w in workers:
        w.finish(args.round_timeout)

    report = {"pairs": args.pairs, "baseline": baseline.name, "variants": {}}
    for w in workers:
        entry = {
            "command": w.command,
            "values": w.values,
            "median_value": statistics.median(w.values) if w.values else None,
            "error": w.error,
            "result": w.result,
        }
        if w is not baseline:
            ratios = pairs[w.name]
            entry.update(
                ratios=ratios,
                median_ratio=statistics.median(ratios) if ratios else None,
                p25=quantile(ratios, 0.25),
                p75=quantile(ratios, 0.75),
                min=min(ratios) if ratios else None,
                max=max(ratios) if ratios else None,
            )
            if "tokens" in baseline.result or "tokens" in w.result:
                entry["same_result"] = baseline.result.get("tokens") == w.result.get("tokens")
        report["variants"][w.name] = entry
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    for name, entry in report["variants"].items():
        if name == baseline.name:
            print(f"{name}: median {entry['median_value']} over {len(entry['values'])} rounds"
                  + (f"; error: {entry['error']}" if entry["error"] else ""))
            continue
        ratio = entry["median_ratio"]
        print(
            f"{name}: median ratio {ratio if ratio is None else round(ratio, 4)} over {len(entry['ratios'])} pairs"
            f" (p25 {entry['p25']}, p75 {entry['p75']})"
            + (f"; error: {entry['error']}" if entry["error"] else "")
        )
    return 0 if all(w.error is None for w in workers) else 1


if __name__ == "__main__":
    sys.exit(main())
