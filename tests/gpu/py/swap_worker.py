#!/usr/bin/env python3
"""One of several swap-mode programs that cannot fit the GPU together.

Holds --gib GiB as one int32 tensor filled with a pattern of its own: element
i holds (i % p) + 1000 * seed, with p a prime chosen by --seed, so programs
differ in both period and offset and a page of one program's data can never
pass for another's. Each step adds 1 to every element (all the memory must
be resident to run). After --steps steps every element must equal its
pattern value + steps; the whole buffer is checked in chunks, so memory
lost, stale, or mixed up by an eviction and restore is counted in bad=.

Prints `MAPPED t=...` once the buffer is allocated (mapped, not yet
written), `FILLED t=...` once it is filled (the program has then held the
GPU at least once), progress, and `RESULT ok=0|1 name=... bad=... seconds=...
start=... end=... filled=...` (epoch seconds).
"""

import argparse
import sys
import time

import torch

GIB = 1 << 30
CHUNK = 16 << 20  # elements per fill/check chunk (~200 MiB of temporaries)
PRIMES = (977, 983, 991, 997, 1009, 1013, 1019, 1021)


def pattern(start, end, seed):
    """The initial values of elements start..end of program `seed`."""
    prime = PRIMES[seed % len(PRIMES)]
    index = torch.arange(start, end, dtype=torch.int64, device="cuda")
    return index.remainder_(prime).add_(1000 * seed).to(torch.int32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--sync-every", type=int, default=50)
    parser.add_argument("--name", default="worker")
    args = parser.parse_args()

    n = int(args.gib * GIB) // 4
    start = time.time()
    data = torch.empty(n, dtype=torch.int32, device="cuda")
    print(f"MAPPED name={args.name} t={time.time():.6f}", flush=True)
    for begin in range(0, n, CHUNK):
        end = min(n, begin + CHUNK)
        data[begin:end] = pattern(begin, end, args.seed)
    torch.cuda.synchronize()
    filled = time.time()
    print(f"FILLED name={args.name} t={filled:.6f}", flush=True)
    for step in range(1, args.steps + 1):
        data.add_(1)
        if step % args.sync_every == 0:
            torch.cuda.synchronize()
            if step % (args.sync_every * 4) == 0:
                print(f"[{args.name}] {time.time():.3f} step {step}", flush=True)
    torch.cuda.synchronize()
    done = time.time()

    bad = 0
    for begin in range(0, n, CHUNK):
        end = min(n, begin + CHUNK)
        expected = pattern(begin, end, args.seed).add_(args.steps)
        bad += int((data[begin:end] != expected).sum().item())
    end_time = time.time()
    ok = bad == 0
    print(f"[{args.name}] {args.steps} steps over {args.gib} GiB in {done - filled:.2f} s, "
          f"checked in {end_time - done:.2f} s: {bad} wrong elements", flush=True)
    print(f"RESULT ok={int(ok)} name={args.name} bad={bad} seconds={done - filled:.3f} "
          f"start={start:.6f} filled={filled:.6f} end={end_time:.6f} seed={args.seed}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
