// The kernel the driver-API test loads as PTX (nvcc -ptx). extern "C" keeps
// its name unmangled for cuModuleGetFunction.
extern "C" __global__ void saxpy(int n, float a, const float *x, float *y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    y[i] = a * x[i] + y[i];
  }
}
