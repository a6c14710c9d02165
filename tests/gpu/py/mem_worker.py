#!/usr/bin/env python3
"""One of several programs sharing the GPU: holds --gib GiB and works on all of it.

The buffer is int32 values i % 977; each step adds 1 to every element (so
every step touches all the memory, which must be resident to run). After
--steps steps every element must equal i % 977 + steps, checked in chunks,
so a lost or stale page after an eviction and restore is caught. Besides
the buffer the program holds ~200 MiB of temporaries.

Prints progress with timestamps and `RESULT ok=0|1 seconds=... steps_per_s=...`.
"""

import argparse
import sys
import time

import torch

GIB = 1 << 30
CHUNK = 16 << 20  # elements per initialization/verification chunk (~200 MiB of temporaries)


def pattern(start, end):
    """The initial values of elements start..end: i % 977 (int64 index, so
    buffers beyond 2^31 elements work)."""
    index = torch.arange(start, end, dtype=torch.int64, device="cuda")
    return index.remainder_(977).to(torch.int32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--sync-every", type=int, default=50)
    parser.add_argument("--name", default="worker")
    args = parser.parse_args()

    n = int(args.gib * GIB) // 4
    t0 = time.time()
    data = torch.empty(n, dtype=torch.int32, device="cuda")
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        data[start:end] = pattern(start, end)
    torch.cuda.synchronize()
    t_alloc = time.time()
    print(f"[{args.name}] {t_alloc:.3f} allocated {args.gib} GiB in {t_alloc - t0:.2f} s", flush=True)
    for step in range(1, args.steps + 1):
        data.add_(1)
        if step % args.sync_every == 0:
            torch.cuda.synchronize()
            if step % (args.sync_every * 10) == 0:
                print(f"[{args.name}] {time.time():.3f} step {step}", flush=True)
    torch.cuda.synchronize()
    t_done = time.time()

    bad = 0
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        expected = pattern(start, end).add_(args.steps)
        bad += int((data[start:end] != expected).sum().item())
    seconds = t_done - t_alloc
    ok = bad == 0
    print(f"[{args.name}] {time.time():.3f} done: {args.steps} steps in {seconds:.2f} s, "
          f"{bad} wrong elements", flush=True)
    print(f"RESULT ok={int(ok)} name={args.name} bad={bad} seconds={seconds:.3f} "
          f"steps_per_s={args.steps / seconds:.2f} start={t_alloc:.3f} end={t_done:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
