# shellcheck shell=bash
# CUDA C programs under the hook: the runtime API (libcudart reaches the
# driver through dlsym/cuGetProcAddress) and the driver API (calls bound
# directly to the symbols the hook exports).

# Proves: a plain CUDA runtime program (malloc, memset, sync/async/D2D copies,
# kernels, events) runs correctly under the hook, as it does natively.
check_cuda_runtime_api() {
  need_build "$BUILD/runtime_api"
  local rc=0
  prog 60 native "$BUILD/runtime_api" || fail "the program fails even without the hook: $(why_failed native $?)"
  with_scheduler
  prog 60 hooked hooked "$MODE" rt_api "$BUILD/runtime_api" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  [[ $(value hooked ok) == 1 ]] || fail "hooked run printed no ok=1 result"
  pass "runtime API program correct under the hook ($MODE mode); kernel $(value hooked kernel_ms) ms"
}

# Proves: a driver API program linked against libcuda (primary context,
# cuMemAlloc, cuMemsetD32, copies, cuModuleLoadData of PTX, cuLaunchKernel)
# runs correctly under the hook.
check_cuda_driver_api() {
  need_build "$BUILD/driver_api" "$BUILD/saxpy.ptx"
  local rc=0
  prog 60 native "$BUILD/driver_api" "$BUILD/saxpy.ptx" ||
    fail "the program fails even without the hook: $(why_failed native $?)"
  with_scheduler
  prog 60 hooked hooked "$MODE" drv_api "$BUILD/driver_api" "$BUILD/saxpy.ptx" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  [[ $(value hooked ok) == 1 ]] || fail "hooked run printed no ok=1 result"
  pass "driver API program (PTX module, cuLaunchKernel) correct under the hook ($MODE mode)"
}
