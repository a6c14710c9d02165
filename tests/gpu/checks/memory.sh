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

# Proves: per-job memory limits (NVSHARE_MEMORY_LIMIT) are what a program
# sees and may hold: PyTorch programs with limits of 10 and 20 GiB (on a
# 40 GiB virtual GPU) see exactly those as their GPU's total, through
# cuMemGetInfo and through NVML in the process, and a program that asks for
# more than its limit gets torch's out-of-memory error (and can go on with
# less) while a job beside it keeps running and ends correct.
check_memory_limits() {
  local rc=0 steady_pid gib label
  need_free_gib 12
  with_scheduler --memory-capacity 40GiB
  NVSHARE_MEMORY_LIMIT=8GiB prog_bg 300 steady hooked "$MODE" steady \
    "$PY" "$GPU_DIR/py/mem_worker.py" --gib 4 --steps 8000 --name steady
  steady_pid=$BG_PID
  for gib in 10 20; do
    label=limit$gib
    rc=0
    NVSHARE_MEMORY_LIMIT=${gib}GiB prog 120 "$label" hooked "$MODE" "$label" \
      "$PY" "$GPU_DIR/py/mem_info.py" --capacity $((gib * GIB)) || rc=$?
    ((rc == 0)) || fail "$(why_failed "$label" "$rc")"
    [[ $(value "$label" torch_ok) == 1 ]] ||
      fail "with a $gib GiB limit mem_get_info reports total $(value "$label" total) (want $((gib * GIB))), free $(value "$label" free)"
    case $(value "$label" nvml_ok) in
      1 | absent) ;;
      *) fail "with a $gib GiB limit NVML in the process reports total $(value "$label" nvml_total) (want $((gib * GIB)))" ;;
    esac
  done
  rc=0
  NVSHARE_MEMORY_LIMIT=2GiB prog 120 greedy hooked "$MODE" greedy \
    "$PY" "$GPU_DIR/py/over_limit.py" --gib 3 || rc=$?
  ((rc == 0)) || fail "$(why_failed greedy "$rc")"
  [[ $(value greedy oom) == 1 ]] || fail "3 GiB under a 2 GiB limit did not fail with out-of-memory"
  [[ $(value greedy after_ok) == 1 ]] || fail "after the refusal, 256 MiB within the limit did not work"
  grep -q 'its memory limit is 2048.0 MiB (NVSHARE_MEMORY_LIMIT)' "$(out_of greedy)" ||
    fail "no warning naming the limit in the program's log"
  rc=0
  wait_prog steady "$steady_pid" || rc=$?
  ((rc == 0)) || fail "the job beside them failed: $(why_failed steady "$rc")"
  [[ $(value steady ok) == 1 ]] || fail "the job beside them ended with wrong data"
  pass "10 and 20 GiB limits seen as totals; 3 GiB over a 2 GiB limit refused with OOM, the program went on; the job beside them ended correct"
}
