#!/usr/bin/env python3
"""One rank of a bit-for-bit deterministic DistributedDataParallel training run.

Started once per rank by the caller (tests/gpu/checks/multi_gpu.sh) with
RANK, WORLD_SIZE and LOCAL_RANK set, each rank on GPU LOCAL_RANK (index in
PCI bus order: the caller sets CUDA_DEVICE_ORDER=PCI_BUS_ID), NCCL as the
backend and a file rendezvous (--init-file, fresh for every run), so no port
is needed. The model is train_det.py's conv net wrapped in DDP; each rank
trains on its own shard of synthetic data made on the CPU from fixed seeds.
With deterministic algorithms, the final loss and parameters depend only on
the GPUs and the library versions: a run under the hook must print exactly
what a native run prints, on every rank.

Besides the training, every rank checks NCCL itself: an all-reduce of
--allreduce-mib MiB of exact small integers must give the exact sum on every
element, and a --ballast-gib GiB buffer of the rank's own pattern (the bulk
a switch moves when the rank shares its GPU) must be intact at the end.

Prints `RESULT ok=0|1 rank=... loss=<float.hex> hash=<sha256> steps=...
allreduce_bad=... ballast_bad=... seconds=...`.
"""

import argparse
import datetime
import os
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402  (CUBLAS_WORKSPACE_CONFIG must be set first)
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

# The same net, loss and parameter hash as the single-GPU training check.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_det import cross_entropy, model, parameter_hash  # noqa: E402

SAMPLES = 2048
BATCH = 64


def check_allreduce(rank, world, mib, device):
    """Elements of rank r are (i % 1000) + r: the sum is exact in float32."""
    n = (mib << 20) // 4
    base = torch.arange(n, device=device, dtype=torch.int64).remainder_(1000)
    values = base.to(torch.float32).add_(rank)
    dist.all_reduce(values)
    expected = base.to(torch.float32).mul_(world).add_(world * (world - 1) // 2)
    return int((values != expected).sum())


PERIOD = 253
CHUNK = PERIOD * (128 << 10)  # ~32 MiB, a whole number of periods


def ballast_chunk(rank, device):
    """One chunk of the ballast pattern: byte i is (i + 7 * rank) % 253."""
    return (torch.arange(CHUNK, device=device, dtype=torch.int32).add_(7 * rank)
            .remainder_(PERIOD).to(torch.uint8))


def ballast(gib, rank, device):
    """A --ballast-gib buffer of the rank's pattern, filled chunk by chunk
    (no temporaries larger than a chunk: the footprint stays what was asked)."""
    n = int(gib * (1 << 30))
    if n == 0:
        return None
    data = torch.empty(n, dtype=torch.uint8, device=device)
    pattern = ballast_chunk(rank, device)
    for begin in range(0, n, CHUNK):
        end = min(n, begin + CHUNK)
        data[begin:end].copy_(pattern[: end - begin])
    return data


def ballast_bad(data, rank):
    if data is None:
        return 0
    pattern = ballast_chunk(rank, data.device)
    bad = 0
    for begin in range(0, data.numel(), CHUNK):
        end = min(data.numel(), begin + CHUNK)
        bad += int((data[begin:end] != pattern[: end - begin]).sum())
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--init-file", required=True)
    parser.add_argument("--allreduce-mib", type=int, default=64)
    parser.add_argument("--ballast-gib", type=float, default=0)
    args = parser.parse_args()

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl", init_method=f"file://{args.init_file}", rank=rank,
                            world_size=world, device_id=device,
                            timeout=datetime.timedelta(seconds=240))
    started = time.time()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    extra = ballast(args.ballast_gib, rank, device)
    allreduce_bad = check_allreduce(rank, world, args.allreduce_mib, device)

    gen = torch.Generator().manual_seed(1234)
    images = torch.randn(SAMPLES, 3, 16, 16, generator=gen)
    labels = torch.randint(0, 10, (SAMPLES,), generator=gen)
    shard = torch.arange(rank, SAMPLES, world)
    images = images[shard].to(device)
    onehot = torch.nn.functional.one_hot(labels[shard], 10).float().to(device)

    net = DistributedDataParallel(model().to(device), device_ids=[local_rank])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = images.shape[0] // BATCH
    loss = torch.zeros((), device=device)
    for step in range(args.steps):
        b = step % batches
        x = images[b * BATCH:(b + 1) * BATCH]
        y = onehot[b * BATCH:(b + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    # The mean of the ranks' last losses: the same number on every rank.
    final = loss.detach().clone()
    dist.all_reduce(final)
    final /= world
    torch.cuda.synchronize()
    digest = parameter_hash(net.module)
    extra_bad = ballast_bad(extra, rank)
    seconds = time.time() - started
    dist.destroy_process_group()

    ok = allreduce_bad == 0 and extra_bad == 0
    print(f"RESULT ok={int(ok)} rank={rank} loss={float(final.item()).hex()} hash={digest} "
          f"steps={args.steps} allreduce_bad={allreduce_bad} ballast_bad={extra_bad} "
          f"seconds={seconds:.3f}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
