# shellcheck shell=bash
# The hook's overhead on a single program: hooked vs native in the same run,
# alternated (native, uvm, swap, native, uvm, swap, ...), medians compared.
# The scheduler runs (default capacity and quantum); the program is alone.

# overhead_series NAME ROUNDS LIMIT_S CMD... : runs CMD natively and under
# the hook in each mode, alternating, ROUNDS times, each run limited to
# LIMIT_S. Labels: NAME-native1.., NAME-uvm1.., NAME-swap1.. A mode whose run
# fails is not run again (a mode that does not work yet must not eat the
# time budget).
overhead_series() {
  local name=$1 rounds=$2 limit=$3
  shift 3
  local r mode broken=" "
  for ((r = 1; r <= rounds; r++)); do
    run_sample "$limit" "$name-native$r" native "$@"
    for mode in $(bench_modes); do
      [[ $broken == *" $mode "* ]] && continue
      run_sample "$limit" "$name-$mode$r" hooked "$mode" "$name" "$@"
      [[ $(value "$name-$mode$r" ok) == 1 ]] || broken+="$mode "
    done
  done
}

# overhead_results NAME ROUNDS KEY WHAT UNIT TARGET : one result per mode,
# the hooked median against the native median.
overhead_results() {
  local name=$1 rounds=$2 key=$3 what=$4 unit=$5 target=$6 mode native_samples native samples measured=0
  native_samples=$(samples_of "$name-native" "$rounds" "$key")
  native=$(median_of "$native_samples")
  [[ -n $native ]] || fail "native runs failed: $(first_failure "$name-native" "$rounds")"
  for mode in $(bench_modes); do
    samples=$(samples_of "$name-$mode" "$rounds" "$key")
    if [[ -z $samples ]]; then
      add_result "$what, hooked ($mode mode)" "" "$unit" "native (no hook), same run, alternated" "$native" "$target" "" \
        "hooked runs failed: $(first_failure "$name-$mode" "$rounds")"
      continue
    fi
    measured=1
    add_result "$what, hooked ($mode mode)" "$(median_of "$samples")" "$unit" \
      "native (no hook), same run, alternated" "$native" "$target" "$samples" \
      "medians of $rounds; native samples $native_samples"
  done
  ((measured)) || fail "every hooked run failed"
}

# Measures: time per kernel launch over 200k one-thread kernels, hooked vs
# native. Target: ratio <= 1.01.
bench_launch_overhead() {
  need_build "$BUILD/launch_loop"
  # Rounds of one configuration spread by +-15% on the GPU VM (run 2 of
  # 2026-11-25): 11 alternated rounds make the medians steady enough to
  # compare with a 1% target (~1 s a run).
  local rounds=${BENCH_ROUNDS:-11}
  with_scheduler
  overhead_series launch "$rounds" 30 "$BUILD/launch_loop" 200000 10000
  overhead_results launch "$rounds" ns_per_launch "kernel launch loop (200k 1-thread kernels): time per launch" \
    ns "<= 1.01"
  pass "native and hooked launch loops measured ($rounds rounds)"
}

# Measures: steps/s of a small MLP training loop, hooked vs native.
# Target: ratio >= 0.99. Each run spends ~12 s importing torch: few rounds of
# many steps (~5 s measured per run) keep the measured part dominant.
bench_train_overhead() {
  local rounds=${BENCH_TRAIN_ROUNDS:-2}
  with_scheduler
  overhead_series train "$rounds" 45 "$PY" "$BENCH_DIR/py/train_loop.py" --steps 3000 --warmup 100
  overhead_results train "$rounds" steps_per_s "MLP training loop (3000 AdamW steps, batch 512)" \
    steps/s ">= 0.99"
  pass "native and hooked training loops measured ($rounds rounds)"
}
