#!/usr/bin/env python3
"""A bit-for-bit deterministic PyTorch training run.

A small conv net (cuDNN convolutions, cuBLAS matmuls, Adam) trained on
synthetic data made on the CPU from a fixed seed. With deterministic
algorithms on, the final loss and the parameters depend only on the GPU and
the library versions, so a run under the hook must print exactly what a
native run prints.

Prints `RESULT loss=<float.hex> hash=<sha256 of every parameter> ...`.
"""

import argparse
import hashlib
import os
import sys

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402  (CUBLAS_WORKSPACE_CONFIG must be set first)


def model():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


def cross_entropy(logits, onehot):
    # Written out: log_softmax has a deterministic backward on every build.
    return -(torch.log_softmax(logits, dim=1) * onehot).sum(dim=1).mean()


def allocator_facts():
    backend = torch.cuda.get_allocator_backend()
    expandable = "unknown"
    try:
        segments = torch.cuda.memory_snapshot()
        flags = [s.get("is_expandable") for s in segments if "is_expandable" in s]
        if flags:
            expandable = "1" if any(flags) else "0"
    except (RuntimeError, AttributeError):
        pass
    return backend, expandable


def parameter_hash(net):
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    gen = torch.Generator().manual_seed(1234)
    images = torch.randn(1024, 3, 16, 16, generator=gen)
    labels = torch.randint(0, 10, (1024,), generator=gen)
    order = torch.randperm(1024, generator=gen)
    device = torch.device("cuda")
    images = images[order].to(device)
    onehot = torch.nn.functional.one_hot(labels[order], 10).float().to(device)

    net = model().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = 128
    first_loss = None
    loss = None
    for step in range(args.steps):
        start = (step * batch) % images.shape[0]
        x = images[start:start + batch]
        y = onehot[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if first_loss is None:
            first_loss = loss.item()
    torch.cuda.synchronize()
    final = loss.item()
    backend, expandable = allocator_facts()
    learned = final < first_loss and final == final
    print(f"first loss {first_loss!r}, final loss {final!r}, learned={learned}")
    print(f"RESULT loss={final.hex()} hash={parameter_hash(net)} steps={args.steps} "
          f"first_loss={first_loss.hex()} learned={int(learned)} "
          f"allocator={backend} expandable={expandable}")
    return 0 if learned else 1


if __name__ == "__main__":
    sys.exit(main())
