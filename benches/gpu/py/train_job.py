#!/usr/bin/env python3
"""A training job of the swap-mode benchmarks: an MLP trained over a dataset held on the GPU.

The job holds about --gib GiB: a synthetic dataset of float32 rows of 1024
features, generated on the GPU from --seed, plus the model (1024 -> 4096 ->
4096 -> 10), its AdamW state, activations and library workspaces (~0.5 GiB).
Each of --steps steps trains on the next batch of rows, wrapping around, so
an epoch reads every row; a row's label is the argmax of its first 10
features (learnable, so the loss must fall). At the end the dataset is
generated again chunk by chunk and compared with what the GPU holds: rows
lost or corrupted by swapping are counted in bad_rows=.

With --go FILE the job imports torch, creates its CUDA context, prints READY
and waits for FILE to exist before it allocates anything (a start barrier).

Prints `READY name=... t=...` and `RESULT ok=0|1 name=... start=... end=...
work_s=... train_s=... steps=... loss_first=... loss_last=... bad_rows=...`
(times are seconds since the epoch; work_s runs from the go to the end of the
check).
"""

import argparse
import math
import os
import sys
import time

import torch

GIB = 1 << 30
FEATURES = 1024
HIDDEN = 4096
CLASSES = 10
BATCH = 4096
CHUNK_ROWS = 1 << 16  # 256 MiB of rows per generation/check chunk
OVERHEAD_GIB = 0.5  # model, AdamW state, activations, cuBLAS workspace


def generate(dataset, seed, out=None):
    """Yields (start, end, rows) of the dataset as generated from `seed`, one
    chunk at a time; with `out` the rows are generated into `out` instead of
    the dataset (to compare), with the same chunking and so the same values."""
    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)
    rows = dataset.shape[0]
    for start in range(0, rows, CHUNK_ROWS):
        end = min(rows, start + CHUNK_ROWS)
        target = dataset[start:end] if out is None else out[: end - start]
        target.normal_(generator=gen)
        yield start, end, target


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="train")
    parser.add_argument("--gib", type=float, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--go", help="wait for this file to exist before allocating")
    args = parser.parse_args()

    rows = int((args.gib - OVERHEAD_GIB) * GIB) // (FEATURES * 4)
    if rows < BATCH:
        sys.exit(f"--gib {args.gib} leaves no room for a dataset (need > {OVERHEAD_GIB} GiB)")
    torch.empty(1, device="cuda")  # the CUDA context, before the barrier
    print(f"READY name={args.name} t={time.time():.6f}", flush=True)
    if args.go:
        while not os.path.exists(args.go):
            time.sleep(0.005)

    start = time.time()
    torch.manual_seed(args.seed)
    dataset = torch.empty((rows, FEATURES), device="cuda")
    for _ in generate(dataset, args.seed):
        pass
    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    ).cuda()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = rows // BATCH
    loss_first = None
    loss = None
    for step in range(args.steps):
        block = step % batches
        x = dataset[block * BATCH:(block + 1) * BATCH]
        y = x[:, :CLASSES].argmax(dim=1)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if loss_first is None:
            loss_first = loss.item()
        if (step + 1) % 200 == 0:
            print(f"[{args.name}] {time.time():.3f} step {step + 1} loss {loss.item():.4f}", flush=True)
    loss_last = loss.item() if loss is not None else float("nan")
    trained = time.time()

    scratch = torch.empty((CHUNK_ROWS, FEATURES), device="cuda")
    bad_rows = 0
    for begin, end, expected in generate(dataset, args.seed, out=scratch):
        bad_rows += int((dataset[begin:end] != expected).any(dim=1).sum().item())
    end_time = time.time()

    learned = loss_first is not None and math.isfinite(loss_last) and loss_last < loss_first
    ok = learned and bad_rows == 0
    print(f"[{args.name}] {args.steps} steps over {rows} rows ({rows * FEATURES * 4 / GIB:.2f} GiB) in "
          f"{trained - start:.2f} s; loss {loss_first} -> {loss_last}; {bad_rows} rows wrong", flush=True)
    print(f"RESULT ok={int(ok)} name={args.name} start={start:.6f} end={end_time:.6f} "
          f"work_s={end_time - start:.6f} train_s={trained - start:.6f} steps={args.steps} "
          f"loss_first={loss_first:.5f} loss_last={loss_last:.5f} bad_rows={bad_rows} "
          f"learned={int(learned)} gib={args.gib}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
