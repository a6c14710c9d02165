#!/usr/bin/env python3
"""JAX under the hook: preallocation follows the virtual capacity, results are right.

JAX preallocates XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.75) of the memory
cuMemGetInfo reports. Under a scheduler of --capacity bytes it must take
about 0.75 * capacity, not 0.75 of the physical card.

Prints `RESULT ok=0|1 bytes_limit=... fraction=...`.
"""

import argparse
import sys

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, required=True)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    limit = int(stats.get("bytes_limit", 0))
    reserved = int(stats.get("bytes_reservable_limit", 0) or stats.get("pool_bytes", 0) or 0)
    fraction = limit / args.capacity
    print(f"device {device} platform={device.platform}; memory_stats={stats}")

    values = jnp.arange(1_000_000, dtype=jnp.int32)
    mixed = jax.jit(lambda v: (v * 3 + 7) % 1000)(values)
    ints_ok = bool(np.array_equal(np.asarray(mixed), (np.arange(1_000_000) * 3 + 7) % 1000))

    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    b = rng.standard_normal((512, 512)).astype(np.float32)
    product = jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST)
    matmul_ok = bool(np.allclose(np.asarray(product), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3))

    on_gpu = device.platform == "gpu"
    prealloc_ok = 0.70 <= fraction <= 0.80
    ok = on_gpu and ints_ok and matmul_ok and prealloc_ok
    print(f"on_gpu={on_gpu} ints_ok={ints_ok} matmul_ok={matmul_ok}; preallocated limit {limit} bytes "
          f"= {fraction:.3f} of the capacity {args.capacity} (want 0.70..0.80)")
    print(f"RESULT ok={int(ok)} bytes_limit={limit} fraction={fraction:.4f} pool={reserved} "
          f"on_gpu={int(on_gpu)} ints_ok={int(ints_ok)} matmul_ok={int(matmul_ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
