// CUDA driver API smoke test, linked directly against libcuda (so the hook's
// exported symbols are what the calls bind to): primary context, cuMemAlloc,
// memset, copies (sync, async, device to device), a module loaded from PTX
// text with cuModuleLoadData, cuLaunchKernel, memory queries; all verified.
//
// Usage: driver_api PTX_FILE [EXPECTED_TOTAL_BYTES]
// Prints `RESULT ok=0|1 ...`; exits 0 only if every value is right.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <cuda.h>

#define CHECK(call)                                                          \
  do {                                                                       \
    CUresult res_ = (call);                                                  \
    if (res_ != CUDA_SUCCESS) {                                              \
      const char *name_ = "?";                                               \
      cuGetErrorName(res_, &name_);                                          \
      std::printf("CUDA driver error %s (%d) at %s:%d: %s\n", name_,        \
                  (int)res_, __FILE__, __LINE__, #call);                     \
      std::printf("RESULT ok=0 error=%s\n", name_);                         \
      std::exit(2);                                                          \
    }                                                                        \
  } while (0)

int main(int argc, char **argv) {
  if (argc < 2) {
    std::printf("usage: %s PTX_FILE [EXPECTED_TOTAL_BYTES]\n", argv[0]);
    return 2;
  }
  std::ifstream file(argv[1]);
  std::stringstream text;
  text << file.rdbuf();
  std::string ptx = text.str();
  if (ptx.empty()) {
    std::printf("cannot read PTX from %s\nRESULT ok=0 error=no_ptx\n", argv[1]);
    return 2;
  }

  const int n = 1 << 24;
  const float a = 5.0f;
  CHECK(cuInit(0));
  CUdevice dev;
  CHECK(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK(cuCtxSetCurrent(ctx));

  size_t free_b = 0, total_b = 0, device_total = 0;
  CHECK(cuMemGetInfo(&free_b, &total_b));
  CHECK(cuDeviceTotalMem(&device_total, dev));
  std::printf("cuMemGetInfo free=%zu total=%zu cuDeviceTotalMem=%zu\n", free_b, total_b, device_total);

  CUmodule module;
  CHECK(cuModuleLoadData(&module, ptx.c_str()));
  CUfunction saxpy;
  CHECK(cuModuleGetFunction(&saxpy, module, "saxpy"));

  std::vector<float> x(n), y0(n), y(n);
  for (int i = 0; i < n; i++) {
    x[i] = (float)(i % 999);
    y0[i] = (float)(i % 13);
  }
  CUdeviceptr dx, dy, dcopy, dwords;
  CHECK(cuMemAlloc(&dx, n * sizeof(float)));
  CHECK(cuMemAlloc(&dy, n * sizeof(float)));
  CHECK(cuMemAlloc(&dcopy, n * sizeof(float)));
  CHECK(cuMemAlloc(&dwords, n * sizeof(unsigned)));

  CHECK(cuMemsetD32(dwords, 0x12345678u, n));
  std::vector<unsigned> words(n);
  CHECK(cuMemcpyDtoH(words.data(), dwords, n * sizeof(unsigned)));
  long long memset_bad = 0;
  for (int i = 0; i < n; i++) memset_bad += words[i] != 0x12345678u;

  CUstream stream;
  CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CHECK(cuMemcpyHtoD(dx, x.data(), n * sizeof(float)));
  CHECK(cuMemcpyHtoDAsync(dy, y0.data(), n * sizeof(float), stream));
  int count = n;
  float alpha = a;
  void *params[] = {&count, &alpha, &dx, &dy};
  CHECK(cuLaunchKernel(saxpy, 1024, 1, 1, 256, 1, 1, 0, stream, params, nullptr));
  CHECK(cuStreamSynchronize(stream));
  CHECK(cuMemcpyDtoD(dcopy, dy, n * sizeof(float)));
  CHECK(cuMemcpyDtoH(y.data(), dcopy, n * sizeof(float)));
  CHECK(cuCtxSynchronize());

  long long mismatches = 0;
  for (int i = 0; i < n; i++) mismatches += y[i] != a * x[i] + y0[i];
  bool ok = mismatches == 0 && memset_bad == 0;
  if (argc > 2) {
    unsigned long long expected = std::strtoull(argv[2], nullptr, 10);
    if (total_b != expected || device_total != expected) {
      std::printf("memory total: cuMemGetInfo %zu, cuDeviceTotalMem %zu, expected %llu\n",
                  total_b, device_total, expected);
      ok = false;
    }
    if (free_b > total_b) {
      std::printf("cuMemGetInfo free %zu > total %zu\n", free_b, total_b);
      ok = false;
    }
  }

  CHECK(cuStreamDestroy(stream));
  CHECK(cuMemFree(dx));
  CHECK(cuMemFree(dy));
  CHECK(cuMemFree(dcopy));
  CHECK(cuMemFree(dwords));
  CHECK(cuModuleUnload(module));
  CHECK(cuDevicePrimaryCtxRelease(dev));
  std::printf("RESULT ok=%d mismatches=%lld memset_bad=%lld total=%zu free=%zu device_total=%zu\n",
              ok ? 1 : 0, mismatches, memset_bad, total_b, free_b, device_total);
  return ok ? 0 : 1;
}
