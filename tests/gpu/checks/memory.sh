# shellcheck shell=bash
# Memory virtualization: every program sees the scheduler's capacity as the
# GPU's total memory, whichever way it asks.

VIRTUAL_GIB=16

# Proves: torch.cuda.mem_get_info (cuMemGetInfo_v2 via libcudart) reports the
# virtual capacity as total and shrinks by what the program allocates.
# Also reports: NVML in the same process (nvml_mem_info) and the driver API
# linked directly (driver_api_mem_info).
check_mem_get_info() {
  local cap=$((VIRTUAL_GIB * GIB)) rc=0 nvml_ok drv_rc=0
  with_scheduler --memory-capacity "${VIRTUAL_GIB}GiB"

  if [[ -s $BUILD/driver_api && -s $BUILD/saxpy.ptx ]]; then
    prog 60 driver hooked "$MODE" memdrv "$BUILD/driver_api" "$BUILD/saxpy.ptx" "$cap" || drv_rc=$?
    if ((drv_rc == 0)); then
      also_report driver_api_mem_info PASS "cuMemGetInfo and cuDeviceTotalMem (linked) report $cap"
    else
      also_report driver_api_mem_info FAIL "$(why_failed driver "$drv_rc"); cuMemGetInfo total $(value driver total), cuDeviceTotalMem $(value driver device_total), want $cap"
    fi
  fi

  prog 120 hooked hooked "$MODE" meminfo "$PY" "$GPU_DIR/py/mem_info.py" --capacity "$cap" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  nvml_ok=$(value hooked nvml_ok)
  case $nvml_ok in
    1) also_report nvml_mem_info PASS "nvmlDeviceGetMemoryInfo in the hooked process: total $(value hooked nvml_total) == $cap" ;;
    absent) also_report nvml_mem_info SKIP "libnvidia-ml.so.1 not loadable" ;;
    *) also_report nvml_mem_info FAIL "nvmlDeviceGetMemoryInfo in the hooked process: total $(value hooked nvml_total) (want $cap) $(value hooked nvml_error)" ;;
  esac

  echo "outside the hook nvidia-smi reports used/total MiB: $(nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits -i "$TEST_GPU")"
  [[ $(value hooked torch_ok) == 1 ]] ||
    fail "mem_get_info total $(value hooked total) free $(value hooked free) (want total $cap, free <= total, free lower by 1 GiB after allocating 1 GiB: $(value hooked free_after_1g))"
  pass "total $(value hooked total) == ${VIRTUAL_GIB} GiB, free $(value hooked free) -> $(value hooked free_after_1g) after 1 GiB; device properties total $(value hooked props_total)"
}
