// Populating a fresh allocation: what a kernel's first touch costs.
//   prefetch  cudaMallocManaged, cudaMemPrefetchAsync to the GPU, kernel
//   fault     cudaMallocManaged, kernel (every page faults in on first touch)
//   malloc    cudaMalloc, kernel (under the hook in uvm mode this is managed
//             memory that the hook prefetches on allocation or grant)
// The kernel writes every 4-byte word; a second kernel verifies them all.
//
// Usage: uvm_populate MODE GIB
// Prints `RESULT ok=0|1 mode=... alloc_s=... prefetch_s=... kernel_s=... total_s=...`.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>

#define CHECK(call)                                                                \
  do {                                                                             \
    cudaError_t err_ = (call);                                                     \
    if (err_ != cudaSuccess) {                                                     \
      std::printf("CUDA error %s at %s:%d: %s\nRESULT ok=0 error=%s\n",            \
                  cudaGetErrorName(err_), __FILE__, __LINE__, #call,               \
                  cudaGetErrorName(err_));                                         \
      std::exit(2);                                                                \
    }                                                                              \
  } while (0)

__global__ void fill(unsigned *p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x)
    p[i] = (unsigned)(i * 2654435761u);
}

__global__ void verify(const unsigned *p, size_t n, unsigned long long *bad) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x)
    if (p[i] != (unsigned)(i * 2654435761u)) atomicAdd(bad, 1ULL);
}

static double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

static void prefetch_to_gpu(void *p, size_t bytes) {
#if CUDART_VERSION >= 13000
  cudaMemLocation location{};
  location.type = cudaMemLocationTypeDevice;
  location.id = 0;
  CHECK(cudaMemPrefetchAsync(p, bytes, location, 0, 0));
#else
  CHECK(cudaMemPrefetchAsync(p, bytes, 0, 0));
#endif
}

int main(int argc, char **argv) {
  if (argc < 3) {
    std::printf("usage: %s prefetch|fault|malloc GIB\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1];
  size_t bytes = (size_t)(std::atof(argv[2]) * (1ull << 30));
  size_t n = bytes / sizeof(unsigned);
  CHECK(cudaSetDevice(0));
  CHECK(cudaFree(nullptr));  // context creation outside the timings
  unsigned long long *bad;
  CHECK(cudaMalloc(&bad, sizeof(*bad)));
  CHECK(cudaMemset(bad, 0, sizeof(*bad)));
  CHECK(cudaDeviceSynchronize());

  unsigned *p = nullptr;
  auto t = std::chrono::steady_clock::now();
  if (std::strcmp(mode, "malloc") == 0) {
    CHECK(cudaMalloc(&p, bytes));
  } else {
    CHECK(cudaMallocManaged(&p, bytes));
  }
  double alloc_s = since(t);
  double prefetch_s = 0;
  if (std::strcmp(mode, "prefetch") == 0) {
    t = std::chrono::steady_clock::now();
    prefetch_to_gpu(p, bytes);
    CHECK(cudaDeviceSynchronize());
    prefetch_s = since(t);
  }
  t = std::chrono::steady_clock::now();
  fill<<<1024, 1024>>>(p, n);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  double kernel_s = since(t);

  verify<<<1024, 1024>>>(p, n, bad);
  CHECK(cudaDeviceSynchronize());
  unsigned long long wrong = 0;
  CHECK(cudaMemcpy(&wrong, bad, sizeof(wrong), cudaMemcpyDeviceToHost));
  CHECK(cudaFree(p));
  CHECK(cudaFree(bad));
  bool ok = wrong == 0;
  std::printf("%s %.2f GiB: alloc %.4f s, prefetch %.4f s, first kernel %.4f s, %llu wrong words\n", mode,
              bytes / double(1ull << 30), alloc_s, prefetch_s, kernel_s, wrong);
  std::printf("RESULT ok=%d mode=%s gib=%.2f alloc_s=%.5f prefetch_s=%.5f kernel_s=%.5f total_s=%.5f\n", ok ? 1 : 0,
              mode, bytes / double(1ull << 30), alloc_s, prefetch_s, kernel_s, alloc_s + prefetch_s + kernel_s);
  return ok ? 0 : 1;
}
