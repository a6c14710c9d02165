// What weight streaming (issue 17) must know of this driver before it is
// built, measured in one run:
//
// 1. Host-located VMM memory as the safety net: can cuMemCreate make a
//    handle in host memory (CU_MEM_LOCATION_TYPE_HOST, then HOST_NUMA),
//    can it be mapped at a reserved VA with device access, and do kernels
//    read and write it correctly? A range that streaming moved out would
//    then stay mapped (to its host copy) instead of unmapped, so a kernel
//    that reaches it unpredicted is slow, never faulting.
// 2. What that costs: a kernel reading PROBE_GIB (1) GiB through the
//    host mapping vs through device memory, GB/s each.
// 3. Moving a range in and out at the same VA: the pattern written through
//    device memory, copied to the host handle, the VA remapped to the host
//    handle, read back by a kernel (and the reverse); the time of each
//    remap (unmap + map + set access).
// 4. cuFuncGetParamInfo: whether the driver tells a kernel's parameter
//    offsets and sizes (how the hook would find pointers in the arguments
//    of every launch).
//
// Prints one `FACT name=value` line per finding and `RESULT ok=0|1 ...`
// (ok: every probe ran; each finding, supported or not, is a fact).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda.h>
#include <cuda_runtime.h>

#define CHECK_RT(call)                                                             \
  do {                                                                             \
    cudaError_t err_ = (call);                                                     \
    if (err_ != cudaSuccess) {                                                     \
      std::printf("CUDA error %s at %s:%d: %s\nRESULT ok=0 error=%s\n",            \
                  cudaGetErrorName(err_), __FILE__, __LINE__, #call,               \
                  cudaGetErrorName(err_));                                         \
      std::exit(2);                                                                \
    }                                                                              \
  } while (0)

// A driver call whose failure is a finding, not the end of the probe.
static bool ok_or_say(CUresult res, const char *what) {
  if (res == CUDA_SUCCESS) return true;
  const char *name = "?";
  cuGetErrorName(res, &name);
  std::printf("FACT %s=%s\n", what, name);
  return false;
}

#define CHECK_DRV(call)                                                            \
  do {                                                                             \
    CUresult res_ = (call);                                                        \
    if (res_ != CUDA_SUCCESS) {                                                    \
      const char *name_ = "?";                                                     \
      cuGetErrorName(res_, &name_);                                                \
      std::printf("CUDA driver error %s at %s:%d: %s\nRESULT ok=0 error=%s\n",     \
                  name_, __FILE__, __LINE__, #call, name_);                        \
      std::exit(2);                                                                \
    }                                                                              \
  } while (0)

__global__ void fill(unsigned *data, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    data[i] = (unsigned)(i * 2654435761u) ^ seed;
}

__global__ void count_bad(const unsigned *data, size_t n, unsigned seed,
                          unsigned long long *bad) {
  unsigned long long mine = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    mine += data[i] != ((unsigned)(i * 2654435761u) ^ seed);
  if (mine) atomicAdd(bad, mine);
}

__global__ void probe_params(int *a, size_t b, float c, double *d) {
  if (a) *a = (int)b + (int)c + (d ? 1 : 0);
}

static double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Checks `n` words at `ptr` against `seed`; returns the bad count and the
// kernel's read bandwidth (GB/s).
static unsigned long long verify(const unsigned *ptr, size_t n, unsigned seed,
                                 unsigned long long *bad, double *gbps) {
  CHECK_RT(cudaMemset(bad, 0, sizeof(*bad)));
  CHECK_RT(cudaDeviceSynchronize());
  auto t = std::chrono::steady_clock::now();
  count_bad<<<1024, 256>>>(ptr, n, seed, bad);
  CHECK_RT(cudaDeviceSynchronize());
  *gbps = n * sizeof(unsigned) / seconds_since(t) / 1e9;
  unsigned long long h = 0;
  CHECK_RT(cudaMemcpy(&h, bad, sizeof(h), cudaMemcpyDeviceToHost));
  return h;
}

int main() {
  size_t gib = std::getenv("PROBE_GIB") ? std::strtoul(std::getenv("PROBE_GIB"), nullptr, 10) : 1;
  size_t bytes = gib << 30;
  size_t words = bytes / sizeof(unsigned);
  CHECK_RT(cudaSetDevice(0));
  CHECK_RT(cudaFree(nullptr));
  int driver = 0;
  CHECK_DRV(cuDriverGetVersion(&driver));
  std::printf("FACT driver_version=%d\n", driver);
  CUdevice dev;
  CHECK_DRV(cuDeviceGet(&dev, 0));
  unsigned long long *bad;
  CHECK_RT(cudaMalloc(&bad, sizeof(*bad)));

  // 4. Parameter layout.
  {
    cudaFunction_t rt_func;
    CHECK_RT(cudaGetFuncBySymbol(&rt_func, (const void *)probe_params));
    CUfunction func = (CUfunction)rt_func;
    bool all = true;
    for (size_t i = 0; i < 4; i++) {
      size_t offset = 0, size = 0;
      CUresult res = cuFuncGetParamInfo(func, i, &offset, &size);
      if (res != CUDA_SUCCESS) {
        ok_or_say(res, "param_info");
        all = false;
        break;
      }
      std::printf("FACT param%zu=offset:%zu,size:%zu\n", i, offset, size);
    }
    size_t offset = 0, size = 0;
    CUresult past = cuFuncGetParamInfo(func, 4, &offset, &size);
    const char *past_name = "?";
    cuGetErrorName(past, &past_name);
    std::printf("FACT param_info=%s param_past_end=%s\n", all ? "supported" : "unsupported", past_name);
  }

  // Device memory at a reserved VA: the baseline and the other half of a move.
  CUmemAllocationProp dprop = {};
  dprop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  dprop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  dprop.location.id = dev;
  size_t granularity = 0;
  CHECK_DRV(cuMemGetAllocationGranularity(&granularity, &dprop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  CUmemGenericAllocationHandle dhandle;
  CHECK_DRV(cuMemCreate(&dhandle, bytes, &dprop, 0));
  CUdeviceptr va;
  CHECK_DRV(cuMemAddressReserve(&va, bytes, 0, 0, 0));
  CUmemAccessDesc device_rw = {};
  device_rw.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  device_rw.location.id = dev;
  device_rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CHECK_DRV(cuMemMap(va, bytes, 0, dhandle, 0));
  CHECK_DRV(cuMemSetAccess(va, bytes, &device_rw, 1));
  unsigned *ptr = (unsigned *)va;
  const unsigned seed = 0x5eed;
  fill<<<1024, 256>>>(ptr, words, seed);
  CHECK_RT(cudaDeviceSynchronize());
  double device_gbps = 0;
  unsigned long long bad_device = verify(ptr, words, seed, bad, &device_gbps);
  verify(ptr, words, seed, bad, &device_gbps);  // warm
  std::printf("FACT device_read_gbps=%.1f device_bad=%llu\n", device_gbps, bad_device);

  // 1. Host-located handles.
  CUmemGenericAllocationHandle hhandle = 0;
  const char *host_kind = nullptr;
  CUmemLocationType kinds[] = {CU_MEM_LOCATION_TYPE_HOST, CU_MEM_LOCATION_TYPE_HOST_NUMA};
  const char *kind_names[] = {"host", "host_numa"};
  for (int k = 0; k < 2 && host_kind == nullptr; k++) {
    CUmemAllocationProp hprop = {};
    hprop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    hprop.location.type = kinds[k];
    hprop.location.id = 0;
    size_t hg = 0;
    char what[64];
    std::snprintf(what, sizeof what, "%s_granularity", kind_names[k]);
    if (!ok_or_say(cuMemGetAllocationGranularity(&hg, &hprop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), what))
      continue;
    std::printf("FACT %s_granularity=%zu\n", kind_names[k], hg);
    std::snprintf(what, sizeof what, "%s_create", kind_names[k]);
    auto t = std::chrono::steady_clock::now();
    if (ok_or_say(cuMemCreate(&hhandle, bytes, &hprop, 0), what)) {
      std::printf("FACT %s_create_s=%.4f\n", kind_names[k], seconds_since(t));
      host_kind = kind_names[k];
    }
  }
  std::printf("FACT host_vmm=%s\n", host_kind ? host_kind : "unsupported");
  bool moves_ok = true;
  if (host_kind != nullptr) {
    // A second VA for the host handle: the copy target of a move out.
    CUdeviceptr hva;
    CHECK_DRV(cuMemAddressReserve(&hva, bytes, 0, 0, 0));
    bool mapped = ok_or_say(cuMemMap(hva, bytes, 0, hhandle, 0), "host_map") &&
                  ok_or_say(cuMemSetAccess(hva, bytes, &device_rw, 1), "host_device_access");
    std::printf("FACT host_mapped_for_device=%d\n", mapped ? 1 : 0);
    if (mapped) {
      // 3a. Out: copy device -> host handle, remap the VA onto the host handle.
      auto t = std::chrono::steady_clock::now();
      CHECK_DRV(cuMemcpyDtoD(hva, va, bytes));
      CHECK_RT(cudaDeviceSynchronize());
      double copy_out_s = seconds_since(t);
      t = std::chrono::steady_clock::now();
      CHECK_DRV(cuMemUnmap(va, bytes));
      bool remapped = ok_or_say(cuMemMap(va, bytes, 0, hhandle, 0), "remap_to_host") &&
                      ok_or_say(cuMemSetAccess(va, bytes, &device_rw, 1), "remap_to_host_access");
      double remap_out_s = seconds_since(t);
      std::printf("FACT copy_out_gbps=%.1f remap_to_host_s=%.5f host_mapped_twice=%d\n",
                  bytes / copy_out_s / 1e9, remap_out_s, remapped ? 1 : 0);
      if (!remapped) {
        // Back onto device memory, so the VA is mapped for the cleanup.
        cuMemUnmap(va, bytes);
        CHECK_DRV(cuMemMap(va, bytes, 0, dhandle, 0));
        CHECK_DRV(cuMemSetAccess(va, bytes, &device_rw, 1));
      } else {
        double host_gbps = 0;
        unsigned long long bad_host = verify(ptr, words, seed, bad, &host_gbps);
        verify(ptr, words, seed, bad, &host_gbps);
        std::printf("FACT host_read_gbps=%.1f host_bad=%llu host_over_device=%.3f\n", host_gbps,
                    bad_host, host_gbps / device_gbps);
        moves_ok &= bad_host == 0;
        // Writes through the host mapping land in the host handle.
        fill<<<1024, 256>>>(ptr, words, seed + 1);
        CHECK_RT(cudaDeviceSynchronize());
        // 3b. In: copy the host handle back to device memory, remap the VA.
        CUdeviceptr dva2;
        CHECK_DRV(cuMemAddressReserve(&dva2, bytes, 0, 0, 0));
        CHECK_DRV(cuMemMap(dva2, bytes, 0, dhandle, 0));
        CHECK_DRV(cuMemSetAccess(dva2, bytes, &device_rw, 1));
        t = std::chrono::steady_clock::now();
        CHECK_DRV(cuMemcpyDtoD(dva2, hva, bytes));
        CHECK_RT(cudaDeviceSynchronize());
        double copy_in_s = seconds_since(t);
        t = std::chrono::steady_clock::now();
        CHECK_DRV(cuMemUnmap(va, bytes));
        CHECK_DRV(cuMemMap(va, bytes, 0, dhandle, 0));
        CHECK_DRV(cuMemSetAccess(va, bytes, &device_rw, 1));
        double remap_in_s = seconds_since(t);
        double back_gbps = 0;
        unsigned long long bad_back = verify(ptr, words, seed + 1, bad, &back_gbps);
        std::printf("FACT copy_in_gbps=%.1f remap_to_device_s=%.5f back_bad=%llu\n",
                    bytes / copy_in_s / 1e9, remap_in_s, bad_back);
        moves_ok &= bad_back == 0;
        CHECK_DRV(cuMemUnmap(dva2, bytes));
        CHECK_DRV(cuMemAddressFree(dva2, bytes));
      }
      CHECK_DRV(cuMemUnmap(hva, bytes));
    }
    CHECK_DRV(cuMemAddressFree(hva, bytes));
    CHECK_DRV(cuMemRelease(hhandle));
  }
  CHECK_DRV(cuMemUnmap(va, bytes));
  CHECK_DRV(cuMemAddressFree(va, bytes));
  CHECK_DRV(cuMemRelease(dhandle));
  CHECK_RT(cudaFree(bad));
  bool ok = bad_device == 0 && moves_ok;
  std::printf("RESULT ok=%d host_vmm=%s granularity=%zu\n", ok ? 1 : 0,
              host_kind ? host_kind : "unsupported", granularity);
  return ok ? 0 : 1;
}
