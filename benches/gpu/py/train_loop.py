#!/usr/bin/env python3
"""A small training loop for measuring the hook's overhead (steps per second).

An MLP (1024 -> 2048 -> 2048 -> 10) with AdamW on a fixed synthetic batch:
a realistic mix of cuBLAS matmuls, elementwise kernels and optimizer
launches. Times --steps steps after --warmup, with a synchronize at both ends.

Prints `RESULT ok=0|1 steps_per_s=... seconds=... loss=...`.
"""

import argparse
import sys
import time

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(1024, 2048), torch.nn.ReLU(),
        torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
        torch.nn.Linear(2048, 10),
    ).cuda()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(512, 1024, device="cuda")
    y = torch.randint(0, 10, (512,), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    final = loss.item()
    ok = final == final
    print(f"{args.steps} steps in {seconds:.4f} s; loss {final:.4f}")
    print(f"RESULT ok={int(ok)} steps_per_s={args.steps / seconds:.3f} seconds={seconds:.5f} loss={final:.5f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
