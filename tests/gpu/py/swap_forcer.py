#!/usr/bin/env python3
"""Keeps the GPU busy with --bytes of memory until told to stop, forcing others out.

Beside another program on a scheduler whose capacity is only a little more
than --bytes, the two cannot fit together: every switch between them moves
the other program's memory out to the host and back. The buffer is one
uint8 tensor (the exact size asked, no temporaries, so the footprint stays
within the capacity); byte i starts as i % 251 and each round adds 1 to
every element. Once --stop-file exists (or after --max-seconds) the program
copies its buffer to the host chunk by chunk (no GPU memory needed) and
checks every byte.

Prints `READY t=...` once it has filled its buffer (it holds the GPU then),
and `RESULT ok=0|1 rounds=... bad=... seconds=...`.
"""

import argparse
import os
import sys
import time

import torch

PERIOD = 251
CHUNK = PERIOD * (128 << 10)  # ~31 MiB, a whole number of periods


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--name", default="forcer")
    args = parser.parse_args()

    n = args.bytes
    data = torch.empty(n, dtype=torch.uint8, device="cuda")
    # Every chunk starts at a multiple of the period, so one host chunk of
    # the pattern serves them all; copied from the host, no device temporaries.
    initial = torch.arange(CHUNK, dtype=torch.int64).remainder_(PERIOD).to(torch.uint8)
    for begin in range(0, n, CHUNK):
        end = min(n, begin + CHUNK)
        data[begin:end].copy_(initial[: end - begin])
    torch.cuda.synchronize()
    started = time.time()
    print(f"READY name={args.name} t={started:.6f}", flush=True)
    rounds = 0
    while not os.path.exists(args.stop_file) and time.time() - started < args.max_seconds:
        for _ in range(10):
            data.add_(1)
        rounds += 10
        torch.cuda.synchronize()
    seconds = time.time() - started

    expected = initial.to(torch.int64).add_(rounds).remainder_(256).to(torch.uint8)
    bad = 0
    for begin in range(0, n, CHUNK):
        end = min(n, begin + CHUNK)
        bad += int((data[begin:end].cpu() != expected[: end - begin]).sum())
    ok = bad == 0
    print(f"[{args.name}] {rounds} rounds over {n} bytes in {seconds:.2f} s; {bad} wrong bytes", flush=True)
    print(f"RESULT ok={int(ok)} name={args.name} rounds={rounds} bad={bad} seconds={seconds:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
