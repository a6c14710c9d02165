// Pinned host <-> device copy bandwidth: the physical limit every swap
// benchmark is compared with. Host buffers are malloc'd, touched, then
// registered (cudaHostRegister), the way the hook pins its shadows.
//   h2d    one cudaMemcpyAsync host -> device
//   d2h    one cudaMemcpyAsync device -> host
//   bidir  both at once on two streams (bytes moved both ways / time)
//
// Usage: pinned_bw [GIB=4] [REPS=3]
// Prints `RESULT ok=1 gib=... h2d_gbps=... d2h_gbps=... bidir_gbps=...`
// (median of REPS, GB = 1e9 bytes).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
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

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *pinned(size_t bytes, double *seconds) {
  auto t = std::chrono::steady_clock::now();
  void *p = std::aligned_alloc(4096, bytes);
  if (!p) {
    std::printf("cannot allocate %zu bytes of host memory\nRESULT ok=0 error=host_oom\n", bytes);
    std::exit(2);
  }
  std::memset(p, 0x5a, bytes);
  CHECK(cudaHostRegister(p, bytes, cudaHostRegisterDefault));
  *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  return p;
}

int main(int argc, char **argv) {
  double gib = argc > 1 ? std::atof(argv[1]) : 4.0;
  int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  size_t bytes = (size_t)(gib * (1ull << 30));
  CHECK(cudaSetDevice(0));
  double pin_s = 0;
  void *h_in = pinned(bytes, &pin_s);
  void *h_out = pinned(bytes, &pin_s);
  void *d_in, *d_out;
  CHECK(cudaMalloc(&d_in, bytes));
  CHECK(cudaMalloc(&d_out, bytes));
  cudaStream_t s1, s2;
  CHECK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CHECK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  cudaEvent_t start, mid, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&mid));
  CHECK(cudaEventCreate(&stop));
  // Warm-up: the first copy over a fresh registration is slower.
  CHECK(cudaMemcpyAsync(d_in, h_in, bytes, cudaMemcpyHostToDevice, s1));
  CHECK(cudaMemcpyAsync(h_out, d_out, bytes, cudaMemcpyDeviceToHost, s2));
  CHECK(cudaDeviceSynchronize());

  std::vector<double> h2d, d2h, bidir;
  float ms = 0;
  for (int r = 0; r < reps; r++) {
    CHECK(cudaEventRecord(start, s1));
    CHECK(cudaMemcpyAsync(d_in, h_in, bytes, cudaMemcpyHostToDevice, s1));
    CHECK(cudaEventRecord(stop, s1));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    h2d.push_back(bytes / (ms * 1e-3) / 1e9);

    CHECK(cudaEventRecord(start, s1));
    CHECK(cudaMemcpyAsync(h_out, d_out, bytes, cudaMemcpyDeviceToHost, s1));
    CHECK(cudaEventRecord(stop, s1));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    d2h.push_back(bytes / (ms * 1e-3) / 1e9);

    CHECK(cudaEventRecord(start, s1));
    CHECK(cudaStreamWaitEvent(s2, start, 0));
    CHECK(cudaMemcpyAsync(d_in, h_in, bytes, cudaMemcpyHostToDevice, s1));
    CHECK(cudaMemcpyAsync(h_out, d_out, bytes, cudaMemcpyDeviceToHost, s2));
    CHECK(cudaEventRecord(mid, s2));
    CHECK(cudaStreamWaitEvent(s1, mid, 0));
    CHECK(cudaEventRecord(stop, s1));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    bidir.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);
  }
  std::printf("%.2f GiB pinned (malloc+touch+register %.2f s for both buffers), %d reps\n", gib, pin_s, reps);
  for (int r = 0; r < reps; r++)
    std::printf("rep %d: h2d %.2f GB/s, d2h %.2f GB/s, both %.2f GB/s\n", r, h2d[r], d2h[r], bidir[r]);
  std::printf("RESULT ok=1 gib=%.2f h2d_gbps=%.3f d2h_gbps=%.3f bidir_gbps=%.3f pin_s=%.3f\n", gib, median(h2d),
              median(d2h), median(bidir), pin_s);
  CHECK(cudaHostUnregister(h_in));
  CHECK(cudaHostUnregister(h_out));
  std::free(h_in);
  std::free(h_out);
  CHECK(cudaFree(d_in));
  CHECK(cudaFree(d_out));
  return 0;
}
