# shellcheck shell=bash
# Several GPUs on one node (issue 7): one scheduler, one scheduling domain
# per GPU; jobs time-sliced on one GPU must not slow down jobs time-sliced on
# another. Needs two GPUs (skips otherwise). Knobs: MGPU_PASSES (500),
# MGPU_QUANTUM (2 s); the job size is SWAP_GIB (12) on SWAP_CAPACITY_GIB (16).

MGPU_PASSES=${MGPU_PASSES:-500}
MGPU_QUANTUM=${MGPU_QUANTUM:-2}

# pair_phase PHASE GPU... : on each GPU (nvidia-smi index) a pair of hooked
# swap-mode jobs of SWAP_GIB GiB (they cannot fit the virtual GPU together),
# all released at once from their start barriers; waits for every job. Sets
# PHASE_MAKESPAN[PHASE.GPU] (first start to last end of that GPU's pair, in
# s) and adds to PHASE_FAILED why any job failed.
declare -gA PHASE_MAKESPAN=()
PHASE_FAILED=""
pair_phase() {
  local phase=$1 g j uuid labels=()
  shift
  local go=$CHECK_DIR/$phase.go
  for g; do
    uuid=$(gpu_uuid "$g")
    for j in 1 2; do
      CUDA_VISIBLE_DEVICES=$uuid NVSHARE_LOG=debug \
        mem_job 200 "$phase.g$g.j$j" swap "$SWAP_GIB" "$MGPU_PASSES" "$((10 * g + j))" "$go"
      labels+=("$phase.g$g.j$j")
    done
  done
  wait_ready 120 "${labels[@]}"
  touch "$go"
  watch_status "${SOCK:?}" "$CHECK_DIR/$phase-status" "${labels[@]}"
  finish_jobs "${labels[@]}"
  [[ -z $JOBS_FAILED ]] || PHASE_FAILED+="${PHASE_FAILED:+; }$phase: $JOBS_FAILED"
  ctl_status "$SOCK" "$CHECK_DIR/$phase.status.json" || true
  for g; do
    PHASE_MAKESPAN[$phase.$g]=$(awk -v a="$(value "$phase.g$g.j1" start)" -v b="$(value "$phase.g$g.j2" start)" \
      -v c="$(value "$phase.g$g.j1" end)" -v d="$(value "$phase.g$g.j2" end)" \
      'BEGIN { if (a == "" || b == "" || c == "" || d == "") exit; s = a < b ? a : b; e = c > d ? c : d; printf "%.3f", e - s }')
    echo "phase $phase, GPU $g: makespan ${PHASE_MAKESPAN[$phase.$g]:-?} s"
  done
}

# Measures: two oversubscribed job pairs, one pair per GPU, under one
# scheduler: the makespan of each GPU's pair while the other GPU's pair runs
# at the same time, against the same pair on that GPU with the other GPU
# idle (same run, same scheduler). Equal makespans mean the GPUs' domains
# are independent: a switch on one GPU never waits for the other. Also
# shows, from the status, that each domain time-sliced (switches) on its own.
# Target: ratio <= 1.05 on each GPU.
bench_multi_gpu_pairs() {
  local n g
  n=$(gpu_count)
  ((n >= 2)) || skip "needs 2 GPUs, nvidia-smi lists $n"
  need_build "$BUILD/swap_job"
  for g in 0 1; do
    (($(gpu_free_gib "$g") >= 2 * $(gib_up "$SWAP_GIB") + 8)) ||
      fail "not run: GPU $g has only $(gpu_free_gib "$g") GiB free, the pair needs $((2 * $(gib_up "$SWAP_GIB") + 8))"
  done
  with_scheduler --memory-capacity "${SWAP_CAPACITY_GIB}GiB" --quantum "$MGPU_QUANTUM"
  pair_phase alone0 0
  pair_phase alone1 1
  pair_phase both 0 1
  local setup="2 jobs x ${SWAP_GIB} GiB per GPU (cuda/swap_job.cu, $MGPU_PASSES passes), ${SWAP_CAPACITY_GIB} GiB virtual GPU each, quantum ${MGPU_QUANTUM} s, one scheduler"
  local switches
  switches=$("$PY" "$STATUS_PY" per-gpu "$CHECK_DIR/both.status.json" switches | awk '{ printf "%s%s: %s", sep, substr($1, 1, 12), $2; sep = ", " }')
  local ok=1 summary=""
  for g in 0 1; do
    local alone=${PHASE_MAKESPAN[alone$g.$g]:-} both=${PHASE_MAKESPAN[both.$g]:-}
    add_result "GPU $g: makespan of its job pair while GPU $((1 - g))'s pair runs too ($setup)" \
      "$both" s "the same pair on GPU $g with GPU $((1 - g)) idle, same run" "$alone" "<= 1.05" "" \
      "switches per GPU over the run (cumulative): $switches"
    [[ -n $alone && -n $both ]] || ok=0
    summary+="${summary:+; }GPU $g: $both s with the other GPU busy vs $alone s alone"
  done
  ((ok)) || fail "makespans not measured${PHASE_FAILED:+: $PHASE_FAILED}"
  [[ -z $PHASE_FAILED ]] || fail "measured, but a job failed: $PHASE_FAILED"
  pass "$summary (switches $switches)"
}
