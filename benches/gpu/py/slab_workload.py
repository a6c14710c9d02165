#!/usr/bin/env python3
"""PyTorch training workloads for measuring what the hook's 2 MiB slabs and
granule rounding cost in GPU memory (`benches/slab.sh`).

--workload transformer: a small transformer language model (4 layers,
  d_model 256, 4 heads, vocabulary 8192, sequences of 128, batch 32) trained
  with AdamW on synthetic tokens: cuBLAS, attention and layer-norm kernels,
  and the caching allocator's usual mix of block sizes.
--workload small_tensors: many small tensors: 600 tiny MLP blocks
  (64 -> 64, biases and layer norms: thousands of parameters and optimizer
  states of 256 B .. 16 KiB each) trained with per-parameter AdamW
  (foreach=False), plus 2000 long-lived small buffers of 1 .. 900 KiB.
  Under PYTORCH_NO_CUDA_MEMORY_CACHING=1 every tensor is its own driver
  allocation: the slabs' worst case.

Prints `RESULT ok=0|1 workload=... steps=... loss=... torch_allocated=...
torch_reserved=... seconds=...` (torch_* in bytes, from torch.cuda at the
end). The hook's own figures are in its exit log line, which the bench reads.
"""

import argparse
import math
import sys
import time

import torch


def transformer(steps):
    torch.manual_seed(0)
    vocab, d_model, seq, batch = 8192, 256, 128, 32
    layer = torch.nn.TransformerEncoderLayer(
        d_model, nhead=4, dim_feedforward=1024, batch_first=True, dropout=0.0
    )
    net = torch.nn.ModuleDict(
        {
            "embed": torch.nn.Embedding(vocab, d_model),
            "body": torch.nn.TransformerEncoder(layer, num_layers=4),
            "head": torch.nn.Linear(d_model, vocab),
        }
    ).cuda()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(seq, device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    loss = None
    for _ in range(steps):
        tokens = torch.randint(0, vocab, (batch, seq + 1), device="cuda")
        x, y = tokens[:, :-1], tokens[:, 1:]
        opt.zero_grad(set_to_none=True)
        hidden = net["body"](net["embed"](x), mask=mask, is_causal=True)
        logits = net["head"](hidden)
        loss = loss_fn(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()
    return loss


def small_tensors(steps):
    torch.manual_seed(0)
    blocks = torch.nn.Sequential(
        *[
            torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Tanh())
            for _ in range(600)
        ]
    ).cuda()
    opt = torch.optim.AdamW(blocks.parameters(), lr=1e-4, foreach=False)
    # Long-lived small buffers of assorted sizes (1 KiB .. 900 KiB).
    keep = [
        torch.empty(int(256 * (1 + (i * 37) % 900)), dtype=torch.float32, device="cuda")
        for i in range(2000)
    ]
    for t in keep:
        t.fill_(1.0)
    x = torch.randn(256, 64, device="cuda")
    loss = None
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = blocks(x).pow(2).mean()
        loss.backward()
        opt.step()
    total = sum(float(t.sum()) for t in keep[:10])
    if not math.isfinite(total):
        raise RuntimeError("the small buffers lost their contents")
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["transformer", "small_tensors"], required=True)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    start = time.perf_counter()
    run = transformer if args.workload == "transformer" else small_tensors
    loss = run(args.steps)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    value = float(loss.item())
    ok = 1 if math.isfinite(value) else 0
    print(
        f"RESULT ok={ok} workload={args.workload} steps={args.steps} loss={value:.6f} "
        f"torch_allocated={torch.cuda.max_memory_allocated()} "
        f"torch_reserved={torch.cuda.max_memory_reserved()} seconds={seconds:.3f}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
