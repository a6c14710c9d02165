#!/usr/bin/env python3
"""CuPy under the hook: memory queries show the capacity, results are right.

Covers CuPy's memory pool (cuMemAlloc), a runtime-compiled RawKernel
(NVRTC + cuModuleLoadData), an ElementwiseKernel, cuBLAS and cuFFT, each
compared with NumPy.

Prints `RESULT ok=0|1 ...`.
"""

import argparse
import sys

import cupy as cp
import numpy as np

SQUARE_MOD = r'''
extern "C" __global__ void square_mod(const long long *x, long long *y, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) y[i] = (x[i] * x[i]) % 1009;
}
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, required=True)
    args = parser.parse_args()

    free, total = cp.cuda.runtime.memGetInfo()
    n = 10_000_000
    x = cp.arange(n, dtype=cp.int64)
    y = cp.empty_like(x)
    kernel = cp.RawKernel(SQUARE_MOD, "square_mod")
    kernel(((n + 255) // 256,), (256,), (x, y, cp.int64(n)))
    host = np.arange(n, dtype=np.int64)
    raw_ok = bool(np.array_equal(cp.asnumpy(y), (host * host) % 1009))

    axpb = cp.ElementwiseKernel("int64 v", "int64 w", "w = v * 7 + 3", "axpb")
    elementwise_ok = bool(np.array_equal(cp.asnumpy(axpb(x)), host * 7 + 3))

    rng = np.random.default_rng(0)
    a = rng.standard_normal((768, 512))
    b = rng.standard_normal((512, 640))
    matmul_ok = bool(np.allclose(cp.asnumpy(cp.asarray(a) @ cp.asarray(b)), a @ b, rtol=1e-9, atol=1e-9))
    signal = rng.standard_normal(1 << 16)
    fft_ok = bool(np.allclose(cp.asnumpy(cp.fft.fft(cp.asarray(signal))), np.fft.fft(signal),
                              rtol=1e-7, atol=1e-7))
    cp.cuda.Device().synchronize()

    memory_ok = total == args.capacity and 0 < free <= total
    ok = raw_ok and elementwise_ok and matmul_ok and fft_ok and memory_ok
    print(f"memGetInfo free={free} total={total} (want total == {args.capacity}); raw_ok={raw_ok} "
          f"elementwise_ok={elementwise_ok} matmul_ok={matmul_ok} fft_ok={fft_ok}")
    print(f"RESULT ok={int(ok)} total={total} free={free} raw_ok={int(raw_ok)} "
          f"elementwise_ok={int(elementwise_ok)} matmul_ok={int(matmul_ok)} fft_ok={int(fft_ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
