# shellcheck shell=bash
# Other frameworks under the hook: JAX (preallocation follows the virtual
# capacity) and CuPy.

FRAMEWORK_GIB=16

# sample_gpu_used FILE : appends GPU 0's used MiB every 0.5 s (background).
sample_gpu_used() {
  while :; do
    gpu_used_mib >>"$1"
    sleep 0.5
  done
}

# Proves: JAX's default preallocation (75% of cuMemGetInfo's total) takes
# ~12 GiB of a 16 GiB virtual GPU, not 75% of the card; JAX computes right.
check_jax_prealloc() {
  python_has jax || skip "jax is not importable here"
  # Were the hook not to virtualize, JAX would take 75% of the card: be sure
  # that fits (it is managed memory in uvm mode).
  need_free_gib $(($(gpu_total_mib) * 80 / 100 / 1024))
  local cap=$((FRAMEWORK_GIB * GIB)) rc=0 base peak sampler
  with_scheduler --memory-capacity "${FRAMEWORK_GIB}GiB"
  base=$(gpu_used_mib)
  sample_gpu_used "$CHECK_DIR/used.mib" &
  sampler=$!
  track_pid "$sampler"
  # JAX's defaults: preallocate 75%, BFC allocator.
  unset XLA_PYTHON_CLIENT_PREALLOCATE XLA_PYTHON_CLIENT_MEM_FRACTION XLA_PYTHON_CLIENT_ALLOCATOR
  JAX_PLATFORMS=cuda prog 180 hooked hooked "$MODE" jax "$PY" "$GPU_DIR/py/jax_smoke.py" --capacity "$cap" || rc=$?
  stop_pid "$sampler"
  peak=$(sort -n "$CHECK_DIR/used.mib" 2>/dev/null | tail -n 1)
  echo "GPU used memory: ${base} MiB before, peak ${peak:-?} MiB during the run"
  ((rc == 0)) || fail "$(why_failed hooked "$rc"); preallocated $(value hooked bytes_limit) bytes = $(value hooked fraction) of $cap"
  if [[ -n $peak && -n $base ]] && ((peak - base > (FRAMEWORK_GIB + 1) * 1024)); then
    fail "physical use grew by $((peak - base)) MiB, more than the ${FRAMEWORK_GIB} GiB virtual GPU"
  fi
  pass "JAX preallocated $(value hooked bytes_limit) bytes = $(value hooked fraction) of ${FRAMEWORK_GIB} GiB; physical use +$((${peak:-0} - ${base:-0})) MiB; results verified"
}

# Proves: CuPy (memory pool, NVRTC RawKernel, ElementwiseKernel, cuBLAS,
# cuFFT) is correct under the hook and sees the virtual capacity.
check_cupy() {
  python_has cupy || skip "cupy is not importable here"
  local cap=$((FRAMEWORK_GIB * GIB)) rc=0
  with_scheduler --memory-capacity "${FRAMEWORK_GIB}GiB"
  prog 120 hooked hooked "$MODE" cupy "$PY" "$GPU_DIR/py/cupy_smoke.py" --capacity "$cap" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  pass "CuPy results verified; memGetInfo total $(value hooked total) == ${FRAMEWORK_GIB} GiB"
}
