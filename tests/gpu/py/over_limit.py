#!/usr/bin/env python3
"""A program that asks for more than its memory limit (NVSHARE_MEMORY_LIMIT).

Allocates --gib GiB at once, which must fail with torch's out-of-memory
error (CUDA_ERROR_OUT_OF_MEMORY under the hook), then 256 MiB, which must
work: the refusal is an error the program can handle, never a crash.

Prints `RESULT oom=0|1 after_ok=0|1 total=... error=...`; exits 0 unless it
crashed.
"""

import argparse

import torch

GIB = 1 << 30


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, required=True)
    args = parser.parse_args()
    free, total = torch.cuda.mem_get_info()
    oom, error = 0, ""
    try:
        big = torch.empty(int(args.gib * GIB), dtype=torch.uint8, device="cuda")
        big.fill_(1)
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError as err:
        oom, error = 1, str(err).splitlines()[0][:120].replace(" ", "_")
    after_ok = 0
    small = torch.ones(256 << 20, dtype=torch.uint8, device="cuda")
    after_ok = int(small.sum().item() == 256 << 20)
    print(f"RESULT oom={oom} after_ok={after_ok} total={total} free={free} error={error or 'none'}")


if __name__ == "__main__":
    main()
