#!/usr/bin/env python3
"""CUDA graphs captured before a swap-out replay correctly after the swap-in.

Captures two graphs once, at the start: one adds 1 to every element of a
--mib MiB int32 buffer (pattern i % 977) and to a counter; one runs a small
network's forward pass on a static input into a static output. Then, for
--seconds seconds, replays them (the program is swapped out and in by a
second program meanwhile: the captured kernels' pointers must still reach
the same memory, restored in place), and every --check-every replays checks
the counter, a slice of the buffer and the forward output against eager
execution. At the end the whole buffer must equal i % 977 + replays.

Prints `RESULT ok=0|1 replays=... counter=... bad=... forward_max_diff=...`.
"""

import argparse
import sys
import time

import torch

from mem_worker import CHUNK, pattern  # the buffer pattern i % 977, in chunks


def capture(fn):
    """Captures `fn` as a graph after warming it up on a side stream, as
    PyTorch's documentation does."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--check-every", type=int, default=200)
    args = parser.parse_args()

    n = args.mib * (1 << 20) // 4
    data = torch.empty(n, dtype=torch.int32, device="cuda")
    for start in range(0, n, CHUNK):
        data[start : min(n, start + CHUNK)] = pattern(start, min(n, start + CHUNK))
    counter = torch.zeros(1, dtype=torch.int64, device="cuda")

    def bump():
        data.add_(1)
        counter.add_(1)

    bump_graph, _ = capture(bump)
    # The warm-up ran bump once: start counting from here.
    torch.cuda.synchronize()
    data.sub_(1)
    counter.zero_()

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 64)
    ).cuda().eval()
    static_x = torch.randn(32, 256, device="cuda")
    with torch.no_grad():
        forward_graph, static_y = capture(lambda: net(static_x))
    torch.cuda.synchronize()
    print(f"READY {time.time():.3f} captured both graphs", flush=True)

    replays = 0
    worst = 0.0
    bad = 0
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        bump_graph.replay()
        replays += 1
        if replays % args.check_every == 0:
            x = torch.randn(32, 256, device="cuda")
            static_x.copy_(x)
            forward_graph.replay()
            with torch.no_grad():
                eager = net(x)
            worst = max(worst, (static_y - eager).abs().max().item())
            got = int(counter.item())
            head = data[:4096].to(torch.int64)
            want = pattern(0, 4096).to(torch.int64) + replays
            bad += int((head != want).sum().item()) + (got != replays)
            print(f"{time.time():.3f} replays={replays} counter={got}", flush=True)
    torch.cuda.synchronize()
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        want = pattern(start, end) + replays
        bad += int((data[start:end] != want).sum().item())
    got = int(counter.item())
    ok = bad == 0 and got == replays and worst < 1e-4 and replays >= args.check_every
    print(
        f"RESULT ok={int(ok)} replays={replays} counter={got} bad={bad} forward_max_diff={worst:.2e}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
