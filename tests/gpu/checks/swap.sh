# shellcheck shell=bash
# swap mode (issue 5), whatever --mode says: programs whose memory does not
# fit the GPU together take turns, their memory moved out to host memory and
# back at the same address on every switch, and nothing they compute changes.

SWAP_CAPACITY_GIB=16
# The four programs' steps: ~3.5 s of work each alone on an H100.
SWAP_FOUR_STEPS=${SWAP_FOUR_STEPS:-400}
# Physical use above this (GiB over what was used before) fails swap_four_12g.
SWAP_PEAK_LIMIT_GIB=${SWAP_PEAK_LIMIT_GIB:-30}
# train_det.py steps for swap_deterministic_training: ~8 s of training natively
# (600 steps took ~1 s on the H100, too short to be switched twice), so that
# at a 1 s quantum it is swapped out and in several times.
SWAP_DET_STEPS=${SWAP_DET_STEPS:-4000}

# sample_gpu_memory FILE : appends `EPOCH USED_MIB` for GPU 0 every 0.5 s
# (run it in the background).
sample_gpu_memory() {
  while :; do
    printf '%s %s\n' "$(now)" "$(gpu_used_mib)" >>"$1"
    sleep 0.5
  done
}

# peak_mib FILE FROM TO : the largest used MiB among FILE's samples taken
# from epoch FROM up to (not including) TO, when, and how many samples there
# were: "MIB EPOCH COUNT" (0 - 0 if none).
peak_mib() {
  awk -v from="$2" -v to="$3" '$1 >= from && $1 < to { n++; if ($2 >= peak) { peak = $2; at = $1 } }
    END { printf "%d %s %d\n", peak, (n ? at : "-"), n }' "$1"
}

# integer TEXT : TEXT if it is a whole number, else 0.
integer() { if [[ $1 =~ ^[0-9]+$ ]]; then echo "$1"; else echo 0; fi; }

# moves_in LABEL WHAT : how many of the hook's debug lines `memory WHAT` with
# a non-zero bytes= the program printed.
moves_in() {
  grep -E "memory $2" "$(out_of "$1")" 2>/dev/null | grep -cE 'bytes=[1-9]'
}

# Proves: four programs of 12 GiB each (more than fit together on a 16 GiB
# virtual GPU, quantum 2 s) take turns in swap mode, every one of them
# verifies all of its memory (a pattern of its own) at the end, the scheduler
# switched and swapped, and the GPU's physical use stayed near the capacity
# once every program had run once.
# Also reports: swap_startup_memory, the physical peak before that (the four
# start together: programs that wait for the GPU must not hold 4 x 12 GiB of
# it at once).
check_swap_four_12g() {
  python_has torch || skip "torch is not importable here"
  local gib=12 n=4 i base sampler pids=() failed=() k=0 pid
  # Were the hook not to swap at all, all four would be resident at once.
  need_free_gib $((n * gib + 8))
  with_scheduler --memory-capacity "${SWAP_CAPACITY_GIB}GiB" --quantum 2
  base=$(integer "$(gpu_used_mib)")
  sample_gpu_memory "$CHECK_DIR/used.samples" &
  sampler=$!
  track_pid "$sampler"
  for ((i = 1; i <= n; i++)); do
    NVSHARE_LOG=debug prog_bg 150 "w$i" hooked swap "w$i" "$PY" "$GPU_DIR/py/swap_worker.py" \
      --gib "$gib" --steps "$SWAP_FOUR_STEPS" --seed "$i" --name "w$i"
    pids+=("$BG_PID")
  done
  while :; do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    ctl_status "$SOCK" "$CHECK_DIR/status.$k.json" || true
    k=$((k + 1))
    sleep 1
  done
  stop_pid "$sampler"
  for ((i = 1; i <= n; i++)); do
    local rc=0
    wait_prog "w$i" "${pids[i - 1]}" || rc=$?
    if ((rc != 0)) || [[ $(value "w$i" ok) != 1 ]]; then
      failed+=("$(why_failed "w$i" "$rc") bad=$(value "w$i" bad)")
    fi
  done
  ctl_status "$SOCK" "$CHECK_DIR/final.json" || true
  echo "final status: $(cat "$CHECK_DIR/final.json" 2>/dev/null)"
  echo "a snapshot from mid-run:"
  head -c 4000 "$CHECK_DIR/status.$((k / 2)).json" 2>/dev/null
  echo

  # Every program has held the GPU once when the last one has filled its memory.
  local all_ran=0 filled
  for ((i = 1; i <= n; i++)); do
    filled=$(value "w$i" filled)
    [[ -n $filled ]] && all_ran=$(awk -v a="$all_ran" -v b="$filled" 'BEGIN { print (b > a ? b : a) }')
  done
  local early early_at early_n late late_at late_n
  read -r early early_at early_n < <(peak_mib "$CHECK_DIR/used.samples" 0 "$all_ran")
  read -r late late_at late_n < <(peak_mib "$CHECK_DIR/used.samples" "$all_ran" 1e12)
  local grow=$((early - base)) steady_grow=$((late - base)) limit=$((SWAP_PEAK_LIMIT_GIB * 1024))
  echo "GPU used memory: $base MiB before; until every program had run once ($all_ran): peak $early MiB at $early_at ($early_n samples); after: peak $late MiB at $late_at ($late_n samples)"
  local evicted restored switches outs="" ins=""
  evicted=$(integer "$("$PY" "$STATUS_PY" get "$CHECK_DIR/final.json" bytes_evicted 2>/dev/null)")
  restored=$(integer "$("$PY" "$STATUS_PY" get "$CHECK_DIR/final.json" bytes_restored 2>/dev/null)")
  switches=$(integer "$("$PY" "$STATUS_PY" get "$CHECK_DIR/final.json" switches 2>/dev/null)")
  for ((i = 1; i <= n; i++)); do
    outs+="${outs:+/}$(moves_in "w$i" evicted)"
    ins+="${ins:+/}$(moves_in "w$i" restored)"
  done
  local facts="$switches switches; $((evicted >> 30)) GiB evicted, $((restored >> 30)) GiB restored (swap-outs/ins per program $outs, $ins); physical peak +$grow MiB until every program had run once, +$steady_grow MiB after"

  if ((early_n == 0)); then
    also_report swap_startup_memory FAIL "not measured: no nvidia-smi sample before every program had run once"
  elif ((grow <= limit)); then
    also_report swap_startup_memory PASS "4 x ${gib} GiB programs started together on a ${SWAP_CAPACITY_GIB} GiB virtual GPU: physical use at most +$grow MiB until every program had run once (limit ${SWAP_PEAK_LIMIT_GIB} GiB)"
  else
    also_report swap_startup_memory FAIL "physical use grew by $grow MiB at $early_at, before every program had run once (limit ${SWAP_PEAK_LIMIT_GIB} GiB): programs waiting for the GPU held their new allocations on it"
  fi
  ((${#failed[@]} == 0)) || fail "${failed[*]}; $facts"
  ((switches > 0 && evicted > 0 && restored > 0)) ||
    fail "4 x ${gib} GiB on ${SWAP_CAPACITY_GIB} GiB finished without swapping ($facts)"
  ((late_n > 0)) || fail "no nvidia-smi sample after every program had run once: physical use not measured; $facts"
  ((steady_grow <= limit)) ||
    fail "physical use grew by $steady_grow MiB at $late_at, after every program had run once (limit ${SWAP_PEAK_LIMIT_GIB} GiB): memory was not swapped out; $facts"
  local times=""
  for ((i = 1; i <= n; i++)); do times+=" w$i=$(value "w$i" seconds)s"; done
  pass "4 x ${gib} GiB on ${SWAP_CAPACITY_GIB} GiB, quantum 2 s: all verified; $facts;$times"
}

# start_forcer CAP_GIB : starts, in the background, a hooked program that
# holds all but 8 MiB of a CAP_GIB virtual GPU and verifies its memory, so
# that every switch moves the other program's memory out and back; sets
# FORCER_PID. It runs until $CHECK_DIR/stop exists.
start_forcer() {
  prog_bg 300 forcer hooked swap forcer "$PY" "$GPU_DIR/py/swap_forcer.py" \
    --bytes $(($1 * GIB - 8 * 1024 * 1024)) --stop-file "$CHECK_DIR/stop" --name forcer
  FORCER_PID=$BG_PID
}

# await_forcer : waits up to 60 s for the forcer to hold its memory; fails
# the check if it never does.
await_forcer() {
  local i frc=0
  for ((i = 0; i < 600; i++)); do
    grep -q '^READY ' "$(out_of forcer)" 2>/dev/null && break
    kill -0 "$FORCER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^READY ' "$(out_of forcer)" 2>/dev/null; then
    touch "$CHECK_DIR/stop"
    wait_prog forcer "$FORCER_PID" || frc=$?
    fail "the forcing program did not start: $(why_failed forcer "$frc")"
  fi
}

# stop_forcer : stops the forcer and waits for it; sets FORCER_RC.
stop_forcer() {
  FORCER_RC=0
  touch "$CHECK_DIR/stop"
  wait_prog forcer "$FORCER_PID" || FORCER_RC=$?
}

# forcer_verified : fails the check if the forcer failed or its memory did
# not survive.
forcer_verified() {
  if ((FORCER_RC != 0)) || [[ $(value forcer ok) != 1 ]]; then
    fail "the forcing program failed or its memory did not survive: $(why_failed forcer "$FORCER_RC") bad=$(value forcer bad)"
  fi
}

# Proves: the deterministic training run (tests/gpu/py/train_det.py) gives
# the identical loss and parameter hash as a native run while it is swapped
# out and in every second: a second hooked program holding all but 8 MiB of a
# 4 GiB virtual GPU (quantum 1 s) takes turns with it, so each switch moves
# the training's memory (all but at most 8 MiB of it) to the host and back.
# The second program verifies its own memory too.
check_swap_deterministic_training() {
  python_has torch || skip "torch is not importable here"
  local cap=4 args=(--steps "$SWAP_DET_STEPS") rc=0
  need_free_gib $((cap + 8))
  with_scheduler --memory-capacity "${cap}GiB" --quantum 1
  start_forcer "$cap"
  # The native run meanwhile (its result does not depend on sharing the GPU).
  prog 150 native native "$PY" "$TORCH_DET" "${args[@]}" || fail "native run: $(why_failed native $?)"
  await_forcer
  NVSHARE_LOG=debug prog 150 hooked hooked swap det "$PY" "$TORCH_DET" "${args[@]}" || rc=$?
  stop_forcer
  ctl_status "$SOCK" "$CHECK_DIR/final.json" || true
  echo "final status: $(cat "$CHECK_DIR/final.json" 2>/dev/null)"
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  forcer_verified
  local outs ins
  outs=$(moves_in hooked evicted)
  ins=$(moves_in hooked restored)
  echo "the training was swapped out $outs times and in $ins times"
  ((outs >= 2 && ins >= 2)) ||
    fail "the training was swapped out $outs and in $ins times (want >= 2 each; NVSHARE_LOG=debug lines 'memory evicted'/'memory restored'): too few switches to prove anything"
  same_training native hooked "${args[@]}"
  pass "identical loss and parameter hash while swapped out $outs times and in $ins times (quantum 1 s, ${cap} GiB capacity, $("$PY" "$STATUS_PY" get "$CHECK_DIR/final.json" switches 2>/dev/null || echo '?') switches): $SAME"
}

# Proves: memory PyTorch maps itself with CUDA's VMM API
# (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: cuMemCreate, cuMemMap,
# cuMemSetAccess at addresses of its own reservation) is swapped out and in
# like cudaMalloc memory and nothing changes: the deterministic training,
# swapped out and in every second by a second program holding all but 8 MiB
# of a 4 GiB virtual GPU (quantum 1 s), gives the identical loss and
# parameter hash as a native run with expandable segments, the hooked run
# really used expandable segments, and the hook made its segments swap units
# (NVSHARE_LOG lines "the program's own GPU mapping can be swapped").
check_swap_expandable_segments() {
  python_has torch || skip "torch is not importable here"
  local cap=4 args=(--steps "$SWAP_DET_STEPS") rc=0
  local conf=expandable_segments:True
  need_free_gib $((cap + 8))
  with_scheduler --memory-capacity "${cap}GiB" --quantum 1
  start_forcer "$cap"
  PYTORCH_CUDA_ALLOC_CONF=$conf prog 150 native native "$PY" "$TORCH_DET" "${args[@]}" ||
    fail "native run: $(why_failed native $?)"
  await_forcer
  PYTORCH_CUDA_ALLOC_CONF=$conf NVSHARE_LOG=debug,nvshare::engine::swap::mapped=trace \
    prog 150 hooked hooked swap det "$PY" "$TORCH_DET" "${args[@]}" || rc=$?
  stop_forcer
  ctl_status "$SOCK" "$CHECK_DIR/final.json" || true
  echo "final status: $(cat "$CHECK_DIR/final.json" 2>/dev/null)"
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  forcer_verified
  [[ $(value hooked expandable) == 1 ]] ||
    fail "the hooked run did not use expandable segments (expandable=$(value hooked expandable))"
  local segments outs ins
  segments=$(grep -c "the program's own GPU mapping can be swapped" "$(out_of hooked)" 2>/dev/null)
  outs=$(moves_in hooked evicted)
  ins=$(moves_in hooked restored)
  echo "$segments of PyTorch's segments became swappable; the training was swapped out $outs times and in $ins times"
  ((segments > 0)) || fail "no segment of PyTorch's own VMM memory became swappable"
  ((outs >= 2 && ins >= 2)) ||
    fail "the training was swapped out $outs and in $ins times (want >= 2 each): too few switches to prove anything"
  PYTORCH_CUDA_ALLOC_CONF=$conf same_training native hooked "${args[@]}"
  pass "expandable segments: identical loss and parameter hash while swapped out $outs times and in $ins times ($segments segments swappable): $SAME"
}

# Proves: CUDA graphs captured before a swap-out replay correctly after the
# swap-in (issue 16): tests/gpu/py/graph_swap.py captures a 1 GiB in-place
# add and a small network's forward pass once, then replays them for
# SWAP_GRAPH_SECONDS while a second program holding all but 8 MiB of a 4 GiB
# virtual GPU (quantum 1 s) takes turns with it, so each switch moves the
# graphs' memory out and back; the counter, every element of the buffer and
# the forward output (against eager execution) must come out right, and the
# program must have been swapped out and in at least twice.
check_swap_cuda_graph() {
  python_has torch || skip "torch is not importable here"
  local cap=4 rc=0
  need_free_gib $((cap + 8))
  with_scheduler --memory-capacity "${cap}GiB" --quantum 1
  start_forcer "$cap"
  await_forcer
  NVSHARE_LOG=debug prog 120 hooked hooked swap graph "$PY" "$GPU_DIR/py/graph_swap.py" \
    --mib 1024 --seconds "${SWAP_GRAPH_SECONDS:-8}" || rc=$?
  stop_forcer
  ctl_status "$SOCK" "$CHECK_DIR/final.json" || true
  ((rc == 0)) || fail "$(why_failed hooked "$rc") bad=$(value hooked bad) counter=$(value hooked counter) replays=$(value hooked replays)"
  forcer_verified
  local outs ins
  outs=$(moves_in hooked evicted)
  ins=$(moves_in hooked restored)
  ((outs >= 2 && ins >= 2)) ||
    fail "the graphs' program was swapped out $outs and in $ins times (want >= 2 each): too few switches to prove anything"
  pass "$(value hooked replays) graph replays verified across $outs swap-outs and $ins swap-ins (forward diff $(value hooked forward_max_diff))"
}
