// CUDA runtime API smoke test: allocation, memset, copies (sync, async from
// pinned memory, device to device), a kernel, events, a memory query; every
// result verified exactly (small integers are exact in float).
//
// Usage: runtime_api [EXPECTED_TOTAL_BYTES]
// Prints `RESULT ok=0|1 ...`; exits 0 only if every value is right.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>

#define CHECK(call)                                                              \
  do {                                                                           \
    cudaError_t err_ = (call);                                                   \
    if (err_ != cudaSuccess) {                                                   \
      std::printf("CUDA error %s (%d) at %s:%d: %s\n", cudaGetErrorName(err_),  \
                  (int)err_, __FILE__, __LINE__, #call);                         \
      std::printf("RESULT ok=0 error=%s\n", cudaGetErrorName(err_));            \
      std::exit(2);                                                              \
    }                                                                            \
  } while (0)

__global__ void saxpy(int n, float a, const float *x, float *y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    y[i] = a * x[i] + y[i];
  }
}

__global__ void count_not_equal(int n, const unsigned *p, unsigned expected, unsigned long long *bad) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    if (p[i] != expected) atomicAdd(bad, 1ULL);
  }
}

int main(int argc, char **argv) {
  const int n = 1 << 24;  // 64 MiB per float array
  const float a = 3.0f;
  int devices = 0;
  CHECK(cudaGetDeviceCount(&devices));
  CHECK(cudaSetDevice(0));
  size_t free_b = 0, total_b = 0;
  CHECK(cudaMemGetInfo(&free_b, &total_b));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("devices=%d name=%s mem_get_info free=%zu total=%zu props.totalGlobalMem=%zu\n",
              devices, prop.name, free_b, total_b, (size_t)prop.totalGlobalMem);

  std::vector<float> x(n), y0(n), y(n);
  for (int i = 0; i < n; i++) {
    x[i] = (float)(i % 1000);
    y0[i] = (float)(i % 7);
  }
  float *dx, *dy, *dy2;
  unsigned *dfill;
  unsigned long long *dbad;
  CHECK(cudaMalloc(&dx, n * sizeof(float)));
  CHECK(cudaMalloc(&dy, n * sizeof(float)));
  CHECK(cudaMalloc(&dy2, n * sizeof(float)));
  CHECK(cudaMalloc(&dfill, n * sizeof(unsigned)));
  CHECK(cudaMalloc(&dbad, sizeof(unsigned long long)));

  // memset: every byte 0xA5 -> every word 0xA5A5A5A5.
  CHECK(cudaMemset(dfill, 0xA5, n * sizeof(unsigned)));
  CHECK(cudaMemset(dbad, 0, sizeof(unsigned long long)));
  count_not_equal<<<256, 256>>>(n, dfill, 0xA5A5A5A5u, dbad);
  CHECK(cudaGetLastError());
  unsigned long long memset_bad = 1;
  CHECK(cudaMemcpy(&memset_bad, dbad, sizeof(memset_bad), cudaMemcpyDeviceToHost));

  // Async H2D from pinned memory on a stream, kernel, timed with events.
  float *pinned;
  CHECK(cudaMallocHost(&pinned, n * sizeof(float)));
  std::memcpy(pinned, y0.data(), n * sizeof(float));
  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaEventRecord(start, stream));
  CHECK(cudaMemcpyAsync(dy, pinned, n * sizeof(float), cudaMemcpyHostToDevice, stream));
  saxpy<<<1024, 256, 0, stream>>>(n, a, dx, dy);
  CHECK(cudaGetLastError());
  CHECK(cudaEventRecord(stop, stream));
  CHECK(cudaStreamSynchronize(stream));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, start, stop));

  // Device to device, then back to the host.
  CHECK(cudaMemcpy(dy2, dy, n * sizeof(float), cudaMemcpyDeviceToDevice));
  CHECK(cudaMemcpy(y.data(), dy2, n * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaDeviceSynchronize());

  long long mismatches = 0;
  for (int i = 0; i < n; i++) {
    if (y[i] != a * x[i] + y0[i]) mismatches++;
  }
  bool ok = mismatches == 0 && memset_bad == 0;
  if (argc > 1) {
    unsigned long long expected_total = std::strtoull(argv[1], nullptr, 10);
    if (total_b != expected_total) {
      std::printf("cudaMemGetInfo total %zu != expected %llu\n", total_b, expected_total);
      ok = false;
    }
  }
  CHECK(cudaFreeHost(pinned));
  CHECK(cudaFree(dx));
  CHECK(cudaFree(dy));
  CHECK(cudaFree(dy2));
  CHECK(cudaFree(dfill));
  CHECK(cudaFree(dbad));
  CHECK(cudaStreamDestroy(stream));
  std::printf("RESULT ok=%d mismatches=%lld memset_bad=%llu total=%zu free=%zu props_total=%zu kernel_ms=%.3f\n",
              ok ? 1 : 0, mismatches, memset_bad, total_b, free_b, (size_t)prop.totalGlobalMem, ms);
  return ok ? 0 : 1;
}
