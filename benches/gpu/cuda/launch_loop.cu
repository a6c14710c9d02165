// Kernel-launch-heavy loop: N launches of a one-thread kernel, timed on the
// host from the first launch to the end of the last kernel. Measures what a
// wrapper on the launch path costs (the hook's gate must be ~free when held).
//
// Usage: launch_loop [LAUNCHES=200000] [WARMUP=10000]
// Prints `RESULT ok=0|1 ns_per_launch=... launches=... seconds=...`.
#include <chrono>
#include <cstdio>
#include <cstdlib>
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

__global__ void bump(unsigned long long *counter) { *counter += 1; }

int main(int argc, char **argv) {
  long launches = argc > 1 ? std::atol(argv[1]) : 200000;
  long warmup = argc > 2 ? std::atol(argv[2]) : 10000;
  unsigned long long *counter;
  CHECK(cudaMalloc(&counter, sizeof(*counter)));
  CHECK(cudaMemset(counter, 0, sizeof(*counter)));
  for (long i = 0; i < warmup; i++) bump<<<1, 1>>>(counter);
  CHECK(cudaDeviceSynchronize());
  auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < launches; i++) bump<<<1, 1>>>(counter);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  unsigned long long count = 0;
  CHECK(cudaMemcpy(&count, counter, sizeof(count), cudaMemcpyDeviceToHost));
  bool ok = count == (unsigned long long)(launches + warmup);
  std::printf("%ld launches in %.4f s; counter %llu (want %ld)\n", launches, seconds, count, launches + warmup);
  std::printf("RESULT ok=%d ns_per_launch=%.2f launches=%ld seconds=%.5f\n", ok ? 1 : 0,
              seconds * 1e9 / launches, launches, seconds);
  CHECK(cudaFree(counter));
  return ok ? 0 : 1;
}
