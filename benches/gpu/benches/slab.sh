# shellcheck shell=bash
# What the swap engine's memory layout costs: a program's requested bytes
# against the bytes of the VMM units backing them (allocations rounded up to
# the 2 MiB granule; those of at most 1 MiB cut from shared 2 MiB slabs).
# The figures are the hook's own, from the line it logs at exit
# (NVSHARE_LOG=info, `nvshare memory footprint ...`, parsed by
# lib/footprint.py): at the program's peak of physical use.

# slab_run LABEL WORKLOAD [ENV=VALUE...] : one hooked swap-mode run of
# py/slab_workload.py; sets FP to the footprint figures ("" if none).
slab_run() {
  local label=$1 workload=$2
  shift 2
  run_sample 240 "$label" env NVSHARE_LOG=info "$@" \
    hooked swap "$label" "$PY" "$BENCH_DIR/py/slab_workload.py" --workload "$workload" \
    --steps "${SLAB_STEPS:-200}"
  FP=$("$PY" "$BENCH_DIR/lib/footprint.py" "$(out_of "$label")" 0 2>/dev/null || true)
}

# fp_get KEY : KEY from $FP.
fp_get() { tr ' ' '\n' <<<"$FP" | sed -n "s/^$1=//p"; }

# slab_results LABEL DESCRIPTION : the results of one run.
slab_results() {
  local label=$1 what=$2 mib_waste mib_slab figures
  if [[ -z $FP || $(value "$label" ok) != 1 ]]; then
    add_result "memory footprint, $what: physical / requested bytes at the peak" "" x \
      "requested bytes (1.0: nothing wasted)" 1 "<= 1.05" "" \
      "not measured: $(why_failed "$label" "$(cat "$CHECK_DIR/$label.rc" 2>/dev/null || echo "?")")${FP:-; no footprint line in the log of the hook}"
    return 1
  fi
  mib_waste=$(awk -v b="$(fp_get waste_bytes)" 'BEGIN { printf "%.1f", b / 2^20 }')
  mib_slab=$(awk -v b="$(fp_get slab_waste_bytes)" 'BEGIN { printf "%.1f", b / 2^20 }')
  figures="peak requested $(fp_get peak_requested) B, physical $(fp_get peak_physical) B (waste $mib_waste MiB); slabs: requested $(fp_get peak_slab_requested) B, physical $(fp_get peak_slab_physical) B (waste $mib_slab MiB, ratio $(fp_get slab_ratio)); torch max allocated $(value "$label" torch_allocated) B, reserved $(value "$label" torch_reserved) B"
  add_result "memory footprint, $what: physical / requested bytes at the peak" \
    "$(fp_get ratio)" x "requested bytes (1.0: nothing wasted)" 1 "<= 1.05" "$(fp_get ratio)" "$figures"
  add_result "slab waste, $what: slab bytes not requested, at the peak" \
    "$mib_slab" MiB "requested bytes in slabs (MiB)" \
    "$(awk -v b="$(fp_get peak_slab_requested)" 'BEGIN { printf "%.3f", b / 2^20 }')" \
    "informational" "$mib_slab" "$figures"
  echo "FOOTPRINT $label $FP"
}

bench_slab_waste() {
  python_has torch || skip "torch is not importable here"
  need_free_gib 4
  with_scheduler
  local failed=0
  slab_run slab-transformer transformer
  slab_results slab-transformer "small transformer LM training (py/slab_workload.py transformer, caching allocator)" || failed=1
  slab_run slab-small small_tensors
  slab_results slab-small "many small tensors (py/slab_workload.py small_tensors, caching allocator)" || failed=1
  SLAB_STEPS=${SLAB_NOCACHE_STEPS:-40} slab_run slab-small-nocache small_tensors PYTORCH_NO_CUDA_MEMORY_CACHING=1
  slab_results slab-small-nocache "many small tensors, PYTORCH_NO_CUDA_MEMORY_CACHING=1 (every tensor its own allocation)" || failed=1
  ((failed == 0)) || fail "a workload was not measured (see the results' notes)"
  pass "footprints measured: see the FOOTPRINT lines"
}
