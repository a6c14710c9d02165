// A launch-bound workload that stays alive between measurement rounds, so
// that benches/gpu/py/paired.py can alternate rounds of a native and a
// hooked copy (true pairs, no process start or context creation inside a
// round).
//
// Usage: launch_worker empty|graph
//   empty: a round is LAUNCHES (100k) launches of an empty one-thread kernel,
//          timed from the first launch to the end of the last.
//   graph: a CUDA graph of GRAPH_KERNELS (100) such kernels, captured and
//          instantiated once at start; a round is GRAPH_REPLAYS (1000)
//          replays of it.
// Protocol: prints `READY` once set up; for each stdin line `run` prints
// `ROUND value=<ns per kernel>`; on `quit` (or end of input) checks that
// every kernel ran (a counter) and prints `RESULT ok=0|1 kernels=...`.
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
      std::fflush(stdout);                                                         \
      std::exit(2);                                                                \
    }                                                                              \
  } while (0)

static const long LAUNCHES = 100000;
static const long WARMUP = 1000;
static const int GRAPH_KERNELS = 100;
static const long GRAPH_REPLAYS = 1000;

__global__ void bump(unsigned long long *counter) { atomicAdd(counter, 1ULL); }

int main(int argc, char **argv) {
  const char *workload = argc > 1 ? argv[1] : "empty";
  bool graph_mode = std::strcmp(workload, "graph") == 0;
  if (!graph_mode && std::strcmp(workload, "empty") != 0) {
    std::printf("unknown workload %s (empty or graph)\nRESULT ok=0\n", workload);
    return 2;
  }
  unsigned long long *counter;
  CHECK(cudaMalloc(&counter, sizeof(*counter)));
  CHECK(cudaMemset(counter, 0, sizeof(*counter)));
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  unsigned long long expected = 0;
  cudaGraphExec_t exec = nullptr;
  if (graph_mode) {
    cudaGraph_t graph;
    CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < GRAPH_KERNELS; i++) bump<<<1, 1, 0, stream>>>(counter);
    CHECK(cudaStreamEndCapture(stream, &graph));
    CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CHECK(cudaGraphDestroy(graph));
  }
  // Warm-up: first launches load the module and, under the hook, take the
  // GPU from the scheduler.
  for (long i = 0; i < WARMUP; i++) bump<<<1, 1, 0, stream>>>(counter);
  expected += WARMUP;
  if (graph_mode) {
    CHECK(cudaGraphLaunch(exec, stream));
    expected += GRAPH_KERNELS;
  }
  CHECK(cudaStreamSynchronize(stream));
  std::printf("READY workload=%s\n", workload);
  std::fflush(stdout);

  char line[64];
  while (std::fgets(line, sizeof line, stdin) != nullptr) {
    if (std::strncmp(line, "quit", 4) == 0) break;
    if (std::strncmp(line, "run", 3) != 0) continue;
    // A few untimed launches first: a program that sat idle between rounds
    // may have to take the GPU again.
    for (int i = 0; i < 100; i++) bump<<<1, 1, 0, stream>>>(counter);
    expected += 100;
    CHECK(cudaStreamSynchronize(stream));
    auto start = std::chrono::steady_clock::now();
    long kernels;
    if (graph_mode) {
      for (long i = 0; i < GRAPH_REPLAYS; i++) CHECK(cudaGraphLaunch(exec, stream));
      kernels = GRAPH_REPLAYS * GRAPH_KERNELS;
    } else {
      for (long i = 0; i < LAUNCHES; i++) bump<<<1, 1, 0, stream>>>(counter);
      CHECK(cudaGetLastError());
      kernels = LAUNCHES;
    }
    CHECK(cudaStreamSynchronize(stream));
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    expected += kernels;
    std::printf("ROUND value=%.3f unit=ns_per_kernel kernels=%ld seconds=%.5f\n",
                seconds * 1e9 / kernels, kernels, seconds);
    std::fflush(stdout);
  }
  unsigned long long count = 0;
  CHECK(cudaMemcpy(&count, counter, sizeof(count), cudaMemcpyDeviceToHost));
  bool ok = count == expected;
  std::printf("RESULT ok=%d kernels=%llu expected=%llu\n", ok ? 1 : 0, count, expected);
  if (exec != nullptr) CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaStreamDestroy(stream));
  CHECK(cudaFree(counter));
  return ok ? 0 : 1;
}
