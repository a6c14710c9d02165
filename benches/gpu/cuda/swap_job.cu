// One job of the swap-mode benchmarks (benches/swap.sh): a memory-bound loop
// over GIB GiB of device memory that checks all of it at the end.
//
// The memory is one cudaMalloc, filled with a pattern of the job's own (from
// SEED). Each of PASSES passes adds 1 to every element, one kernel per
// SLICE_MIB slice with a synchronize after each, so at most one short kernel
// is in flight when the scheduler takes the GPU away. At the end every
// element must equal its pattern value + PASSES: memory lost, stale or mixed
// up by swapping is counted in bad=.
//
// Whenever two consecutive slices complete more than GAP_MS apart, the job
// was kept off the GPU: it prints a GAP line with both CLOCK_REALTIME
// timestamps (the clock of the scheduler's log), so the end of a gap is the
// completion of the job's first kernel after it got the GPU back.
//
// With GO_FILE (not "-") the job creates its CUDA context, prints READY and
// waits for GO_FILE to exist before it allocates anything: a start barrier,
// so that jobs start together, or one after another, at the caller's word.
//
// Usage: swap_job NAME GIB PASSES SEED [GO_FILE|-] [SLICE_MIB=256] [GAP_MS=20]
// Prints `READY name=... t=...`, `FILLED name=... t=...`,
// `GAP name=... from=... to=... gap_s=... pass=...` and
// `RESULT ok=0|1 name=... gib=... passes=... start=... end=... work_s=...
//  fill_s=... loop_s=... verify_s=... gaps=... bad=... loop_gbps=...`
// (loop_gbps: bytes read + written by the passes / loop time, GB = 1e9).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unistd.h>
#include <cuda_runtime.h>

static const char *job_name = "job";

#define CHECK(call)                                                                \
  do {                                                                             \
    cudaError_t err_ = (call);                                                     \
    if (err_ != cudaSuccess) {                                                     \
      std::printf("CUDA error %s at %s:%d: %s\nRESULT ok=0 name=%s error=%s\n",    \
                  cudaGetErrorName(err_), __FILE__, __LINE__, #call, job_name,     \
                  cudaGetErrorName(err_));                                         \
      std::exit(2);                                                                \
    }                                                                              \
  } while (0)

// Seconds since the epoch, CLOCK_REALTIME (comparable with log timestamps).
static double wall_seconds() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// The job's own value for element i: a mix of the index and the seed, so
// that two jobs' data (or two places of one job's) never look alike.
__device__ __forceinline__ uint32_t pattern(uint64_t i, uint32_t seed) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(seed + 1) * 0xD1B54A32D192ED03ull;
  x ^= x >> 31;
  return (uint32_t)(x ^ (x >> 32));
}

__global__ void fill(uint32_t *data, uint64_t n, uint32_t seed) {
  uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    data[i] = pattern(i, seed);
}

// Adds 1 to every element of a slice, 16 bytes per access.
__global__ void bump(uint4 *data, uint64_t n4) {
  uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
    uint4 v = data[i];
    v.x += 1u;
    v.y += 1u;
    v.z += 1u;
    v.w += 1u;
    data[i] = v;
  }
}

__global__ void verify(const uint32_t *data, uint64_t n, uint32_t seed, uint32_t added,
                       unsigned long long *bad) {
  uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  unsigned long long wrong = 0;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    wrong += data[i] != pattern(i, seed) + added;
  if (wrong) atomicAdd(bad, wrong);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s NAME GIB PASSES SEED [GO_FILE|-] [SLICE_MIB=256] [GAP_MS=20]\n", argv[0]);
    return 2;
  }
  job_name = argv[1];
  double gib = std::atof(argv[2]);
  long passes = std::atol(argv[3]);
  uint32_t seed = (uint32_t)std::strtoul(argv[4], nullptr, 10);
  const char *go_file = argc > 5 ? argv[5] : "-";
  double slice_mib = argc > 6 ? std::atof(argv[6]) : 256.0;
  double gap_limit = (argc > 7 ? std::atof(argv[7]) : 20.0) / 1000.0;

  // Whole 16-byte vectors everywhere.
  size_t bytes = (size_t)(gib * (double)(1ull << 30)) & ~(size_t)15;
  size_t slice_bytes = (size_t)(slice_mib * (double)(1ull << 20)) & ~(size_t)15;
  if (bytes == 0 || slice_bytes == 0 || passes < 0) {
    std::printf("nothing to do: GIB and SLICE_MIB must be positive, PASSES >= 0\nRESULT ok=0 name=%s error=arguments\n",
                job_name);
    return 2;
  }
  if (slice_bytes > bytes) slice_bytes = bytes;
  uint64_t n = bytes / sizeof(uint32_t);

  CHECK(cudaSetDevice(0));
  CHECK(cudaFree(0));  // the context, before the barrier
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int threads = 256;
  const int blocks = (sms > 0 ? sms : 80) * 8;
  std::printf("READY name=%s t=%.6f\n", job_name, wall_seconds());
  std::fflush(stdout);
  if (std::strcmp(go_file, "-") != 0) {
    while (access(go_file, F_OK) != 0) usleep(5000);
  }

  double start = wall_seconds();
  unsigned long long *bad_device = nullptr;
  uint32_t *data = nullptr;
  CHECK(cudaMalloc(&bad_device, sizeof(*bad_device)));
  CHECK(cudaMalloc(&data, bytes));
  fill<<<blocks, threads>>>(data, n, seed);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  double filled = wall_seconds();
  std::printf("FILLED name=%s t=%.6f gib=%.2f\n", job_name, filled, gib);
  std::fflush(stdout);

  long gaps = 0;
  double previous = filled;
  for (long pass = 0; pass < passes; pass++) {
    for (size_t offset = 0; offset < bytes; offset += slice_bytes) {
      size_t length = bytes - offset < slice_bytes ? bytes - offset : slice_bytes;
      bump<<<blocks, threads>>>(reinterpret_cast<uint4 *>(reinterpret_cast<char *>(data) + offset), length / 16);
      CHECK(cudaGetLastError());
      CHECK(cudaDeviceSynchronize());
      double now = wall_seconds();
      if (now - previous > gap_limit) {
        gaps++;
        std::printf("GAP name=%s from=%.6f to=%.6f gap_s=%.6f pass=%ld\n", job_name, previous, now, now - previous,
                    pass);
        std::fflush(stdout);
      }
      previous = now;
    }
  }
  double looped = wall_seconds();

  CHECK(cudaMemset(bad_device, 0, sizeof(*bad_device)));
  verify<<<blocks, threads>>>(data, n, seed, (uint32_t)passes, bad_device);
  CHECK(cudaGetLastError());
  unsigned long long bad = 0;
  CHECK(cudaMemcpy(&bad, bad_device, sizeof(bad), cudaMemcpyDeviceToHost));
  double end = wall_seconds();

  double loop_s = looped - filled;
  double loop_gbps = loop_s > 0 ? 2.0 * (double)bytes * (double)passes / loop_s / 1e9 : 0.0;
  bool ok = bad == 0;
  std::printf("%s: %ld passes over %.2f GiB in %.3f s (%.1f GB/s), %ld gaps, %llu wrong elements\n", job_name, passes,
              gib, loop_s, loop_gbps, gaps, bad);
  std::printf("RESULT ok=%d name=%s gib=%.2f passes=%ld start=%.6f end=%.6f work_s=%.6f fill_s=%.6f loop_s=%.6f "
              "verify_s=%.6f gaps=%ld bad=%llu loop_gbps=%.2f\n",
              ok ? 1 : 0, job_name, gib, passes, start, end, end - start, filled - start, loop_s, end - looped, gaps,
              bad, loop_gbps);
  CHECK(cudaFree(data));
  CHECK(cudaFree(bad_device));
  return ok ? 0 : 1;
}
