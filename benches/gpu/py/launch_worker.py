#!/usr/bin/env python3
"""Launch-bound PyTorch workloads that stay alive between measurement rounds.

benches/gpu/py/paired.py alternates rounds of a native and a hooked copy
of this program, so torch's import and the model's construction are paid
once, outside every round.

Workloads:
  small_ops    a round is 10,000 iterations of two in-place ops on a
               1024-element tensor (20,000 tiny kernels); value: us per op.
  gpt2_decode  greedy decoding at batch 1 with a KV cache by a GPT-2-sized
               model (GPT2Config() defaults: 12 layers, 768 wide, vocabulary
               50257) built from its config with random weights (no
               download), fp16; a round decodes 64 tokens after an 8-token
               prompt; value: ms per token (tokens/s in the round line).

Protocol: prints `READY` once set up; for each stdin line `run` prints
`ROUND value=... unit=...`; on `quit` (or end of input) prints
`RESULT ok=0|1 ...` with a digest of the result (small_ops: the tensor's
sum; gpt2_decode: the tokens decoded), which paired.py compares between the
native and the hooked copies.
"""

import hashlib
import sys
import time

import torch

SMALL_OPS_ITERATIONS = 10_000
PROMPT_TOKENS = 8
NEW_TOKENS = 64


def small_ops():
    x = torch.ones(1024, device="cuda")

    def round_():
        for _ in range(SMALL_OPS_ITERATIONS):
            x.mul_(1.0000001)
            x.add_(1e-7)
        return None

    def check():
        finite = bool(torch.isfinite(x).all().item())
        return finite, f"finite={int(finite)} sum={x.sum().item():.6f}"

    return round_, check, 2 * SMALL_OPS_ITERATIONS, "us_per_op", 1e6


def gpt2_decode():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).to("cuda", dtype=torch.float16).eval()
    prompt = torch.randint(0, model.config.vocab_size, (1, PROMPT_TOKENS), device="cuda")
    decoded = []

    @torch.no_grad()
    def round_():
        out = model(prompt, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        tokens = [token]
        for _ in range(NEW_TOKENS - 1):
            out = model(token, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
            tokens.append(token)
        decoded.append(torch.cat(tokens, dim=1).cpu())
        return None

    def check():
        # Native and hooked copies must decode the same tokens (paired.py
        # compares the digests); rounds of one copy should agree too.
        same = all(torch.equal(d, decoded[0]) for d in decoded)
        digest = hashlib.sha256(decoded[0].numpy().tobytes()).hexdigest()[:16]
        return True, f"tokens={digest} rounds_agree={int(same)}"

    return round_, check, NEW_TOKENS, "ms_per_token", 1e3


WORKLOADS = {"small_ops": small_ops, "gpt2_decode": gpt2_decode}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "small_ops"
    if name not in WORKLOADS:
        print(f"unknown workload {name} ({', '.join(WORKLOADS)})\nRESULT ok=0", flush=True)
        return 2
    round_, check, units, unit, scale = WORKLOADS[name]()
    # Warm-up: kernels loaded, caches and the allocator primed, and under
    # the hook the GPU taken from the scheduler.
    round_()
    torch.cuda.synchronize()
    print(f"READY workload={name}", flush=True)
    rounds = 0
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            continue
        # A short untimed start: a program idle between rounds may have to
        # take the GPU again.
        torch.cuda._sleep(1000)
        torch.cuda.synchronize()
        start = time.perf_counter()
        round_()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rounds += 1
        per_unit = seconds / units
        print(
            f"ROUND value={per_unit * scale:.4f} unit={unit} units={units} seconds={seconds:.5f} "
            f"per_second={units / seconds:.2f}",
            flush=True,
        )
    ok, facts = check()
    print(f"RESULT ok={int(ok)} rounds={rounds} workload={name} {facts}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
