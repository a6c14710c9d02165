# shellcheck shell=bash
# swap mode (issue 5): moving memory at PCIe speed, switching between jobs
# that do not fit the GPU together, and what sharing costs a mix of jobs.
#
# The jobs: cuda/swap_job.cu (a memory-bound loop over GIB GiB that prints a
# GAP line, with CLOCK_REALTIME timestamps, each time it gets the GPU back)
# and py/train_job.py (an MLP trained over a dataset held on the GPU). Both
# check all their memory at the end, so every figure here also says that the
# data survived. py/swap_analysis.py reads the logs; swap_jobs.sh has the
# helpers that start, release and wait for the jobs. Sized for an 80 GB H100;
# knobs: SWAP_GIB (12), SWAP_PAIR_PASSES (450), SWAP_PAIR_QUANTUM (1),
# OVERSUB_PASSES (800), OVERSUB_STEPS (700), OVERSUB_QUANTA ("30 5"),
# FIT_GIB (4), FIT_PASSES (1400), BENCH_FIT_ROUNDS (2).

SWAP_GIB=${SWAP_GIB:-12}
SWAP_CAPACITY_GIB=16

# ------------------------------------------------------------ the swap pair

PAIR_PASSES=${SWAP_PAIR_PASSES:-450}
PAIR_QUANTUM=${SWAP_PAIR_QUANTUM:-1}
PAIR_SETUP="2 jobs x ${SWAP_GIB} GiB (cuda/swap_job.cu), ${SWAP_CAPACITY_GIB} GiB capacity, quantum ${PAIR_QUANTUM} s"

# swap_pair AHEAD : two hooked swap-mode jobs of SWAP_GIB GiB on a 16 GiB
# virtual GPU with a short quantum, the scheduler's --restore-ahead AHEAD
# (true: the arriving job's restore overlaps the leaving job's eviction and
# fills the memory free beside it; false: each switch moves out, then in).
# They cannot fit together, so each switch moves one job's memory out and
# the other's in. Runs once per benchmark run and AHEAD: a second benchmark
# that needs it reads the first one's analysis. Sets PAIR_DIR (where
# pair.moves.json, pair.switches.json, pair.status.json and pair.failed are).
swap_pair() {
  local ahead=$1
  PAIR_DIR=$(state_get "swap_pair_dir_$ahead")
  if [[ -n $PAIR_DIR && -s $PAIR_DIR/pair.switches.json ]]; then
    echo "using this run's two-job swap run (restore ahead $ahead) in $PAIR_DIR"
    return 0
  fi
  need_build "$BUILD/swap_job"
  # Both jobs may be resident at once before the first switch.
  need_free_gib $((2 * $(gib_up "$SWAP_GIB") + 8))
  with_scheduler --memory-capacity "${SWAP_CAPACITY_GIB}GiB" --quantum "$PAIR_QUANTUM" --restore-ahead "$ahead"
  local i labels=()
  for i in 1 2; do
    NVSHARE_LOG=debug mem_job 150 "pair$i" swap "$SWAP_GIB" "$PAIR_PASSES" "$i"
    labels+=("pair$i")
  done
  watch_status "${SOCK:?}" "$CHECK_DIR/pair-status" "${labels[@]}"
  finish_jobs "${labels[@]}"
  ctl_status "$SOCK" "$CHECK_DIR/pair.status.json" || true
  echo "final status: $(cat "$CHECK_DIR/pair.status.json" 2>/dev/null)"
  # The daemon writes its log in batches: stop it so the log is complete.
  stop_scheduler
  analyze moves "$(out_of pair1)" "$(out_of pair2)" >"$CHECK_DIR/pair.moves.json"
  analyze switches "$CHECK_DIR/scheduler.log" "$(out_of pair1)" "$(out_of pair2)" >"$CHECK_DIR/pair.switches.json"
  printf '%s\n' "$JOBS_FAILED" >"$CHECK_DIR/pair.failed"
  echo "moves: $(cat "$CHECK_DIR/pair.moves.json")"
  echo "switches: $(cat "$CHECK_DIR/pair.switches.json")"
  PAIR_DIR=$CHECK_DIR
  state_set "swap_pair_dir_$ahead" "$CHECK_DIR"
}

# Measures: swap-out and swap-in bandwidth of 12 GiB of VMM-backed memory,
# from the hook's `memory evicted` / `memory restored on grant` debug lines
# (bytes / elapsed_us, so unmap+release and create+map are included), as
# fractions of pinned D2H / H2D copies measured in the same run. Each job's
# first swap-out also allocates and pins its host shadows: reported apart.
# Measured with restore ahead off, so that each direction has the link to
# itself. Target: >= 0.9 each way.
bench_swap_bandwidth() {
  pinned_baselines
  swap_pair false
  local moves=$PAIR_DIR/pair.moves.json failed out in first
  failed=$(cat "$PAIR_DIR/pair.failed" 2>/dev/null)
  out=$(json_get "$moves" evict.median_gbps)
  in=$(json_get "$moves" restore.median_gbps)
  first=$(json_get "$moves" evict_first.median_gbps)
  local d2h="pinned cudaMemcpy D2H, ${PIN_GIB} GiB, same run" h2d="pinned cudaMemcpy H2D, ${PIN_GIB} GiB, same run"
  local out_note="not measured: no later swap-out with bytes and elapsed_us in the debug log of the hook"
  local in_note="not measured: no swap-in with bytes and elapsed_us in the debug log of the hook"
  if [[ -n $out ]]; then
    out_note="$(json_get "$moves" evict.events) swap-outs of >= 1 GiB (median $(awk -v b="$(json_get "$moves" evict.bytes_median)" 'BEGIN { printf "%.2f", b / 2^30 }') GiB), aggregate $(json_get "$moves" evict.aggregate_gbps) GB/s; from the memory evicted lines of the hook"
  fi
  if [[ -n $in ]]; then
    in_note="$(json_get "$moves" restore.events) swap-ins of >= 1 GiB, aggregate $(json_get "$moves" restore.aggregate_gbps) GB/s; from the memory restored on grant lines of the hook"
  fi
  add_result "swap-out bandwidth: ${SWAP_GIB} GiB VMM memory to reused pinned host shadows, unmap included (${PAIR_SETUP}, restore ahead off), median" \
    "$out" GB/s "$d2h" "$PIN_D2H" ">= 0.9" "$(json_get "$moves" evict.gbps_list)" "$out_note${failed:+; job failures: $failed}"
  add_result "swap-in bandwidth: ${SWAP_GIB} GiB host shadows to fresh VMM memory at the same address, map included (${PAIR_SETUP}, restore ahead off), median" \
    "$in" GB/s "$h2d" "$PIN_H2D" ">= 0.9" "$(json_get "$moves" restore.gbps_list)" "$in_note"
  add_result "first swap-out of a job: ${SWAP_GIB} GiB, host shadows allocated and pinned on the way (${PAIR_SETUP}), median" \
    "$first" GB/s "$d2h" "$PIN_D2H" "" "$(json_get "$moves" evict_first.gbps_list)" \
    "one per job; DESIGN.md: pinning 12 GiB costs ~1.6 s unless shadows are registered in chunks pipelined with the copies"
  local status=$PAIR_DIR/pair.status.json moved us rate=""
  moved=$(awk -v e="$("$PY" "$STATUS_PY" get "$status" bytes_evicted 2>/dev/null)" \
    -v r="$("$PY" "$STATUS_PY" get "$status" bytes_restored 2>/dev/null)" 'BEGIN { printf "%.0f", e + r }')
  us=$("$PY" "$STATUS_PY" get "$status" swap_time_us 2>/dev/null)
  if awk -v b="$moved" -v u="$us" 'BEGIN { exit !(b > 0 && u > 0) }'; then
    rate=$(awk -v b="$moved" -v u="$us" 'BEGIN { printf "%.3f", b / (u * 1e-6) / 1e9 }')
  fi
  add_result "memory moved per second of swap time, status counters (${PAIR_SETUP})" "$rate" GB/s \
    "$d2h" "$PIN_D2H" "" "" \
    "(bytes_evicted + bytes_restored) / swap_time_us over the whole run, first swap-outs included; $(swap_counters "$status")"
  [[ -n $out && -n $in ]] || fail "swap bandwidth not measured (out '${out}', in '${in}')${failed:+; job failures: $failed}"
  [[ -z $failed ]] || fail "measured, but a job failed: $failed"
  pass "swap-out $out GB/s (pinned D2H $PIN_D2H), swap-in $in GB/s (pinned H2D $PIN_H2D); first swap-out $first GB/s"
}

# Measures: the time from the scheduler's drop request to the next job's
# first kernel done, with 12 GiB leaving and 12 GiB arriving: the scheduler
# log's `lock drop requested` timestamp to the end of the arriving job's GAP
# (its first slice completed after the grant), median over the switches of
# the two-job run. Its parts: drop request -> `lock granted` (the leaving
# job drains and swaps out) and grant -> first kernel (the arriving job
# swaps in). Measured with restore ahead on (the default: the arriving
# job's restore overlaps the eviction and fills the memory free beside the
# leaving job before the switch), and compared with restore ahead off when
# swap_bandwidth ran that pair. Target: <= 0.6 s.
bench_switch_latency() {
  pinned_baselines
  swap_pair true
  local sw=$PAIR_DIR/pair.switches.json failed median n bound
  failed=$(cat "$PAIR_DIR/pair.failed" 2>/dev/null)
  median=$(json_get "$sw" latency.median)
  n=$(json_get "$sw" latency.n)
  # The copies alone, one direction after the other, at this run's pinned rates.
  bound=$(awk -v g="$SWAP_GIB" -v d="$PIN_D2H" -v h="$PIN_H2D" \
    'BEGIN { if (d > 0 && h > 0) printf "%.4f", g * 2^30 / 1e9 / d + g * 2^30 / 1e9 / h }')
  local note="not measured: no drop request matched to a grant and a GAP line of the arriving job"
  if [[ -n $median ]]; then
    note="max $(json_get "$sw" latency.max) s; first switch out of each job (shadows pinned on the way): $(json_get "$sw" latency_first_out.list) s; later switches median $(json_get "$sw" latency_steady.median) s; unmatched drop requests $(json_get "$sw" unmatched_drops)"
  fi
  add_result "switch latency: drop request to the next job's first kernel, ${SWAP_GIB} GiB out + ${SWAP_GIB} GiB in (${PAIR_SETUP}), median of ${n:-0}" \
    "$median" s "the two copies alone, one after the other, at this run's pinned D2H + H2D rates" "$bound" "<= 0.6 s" \
    "$(json_get "$sw" latency.list)" "$note${failed:+; job failures: $failed}"
  add_result "switch part 1: drop request to lock granted (the leaving job drains, swaps ${SWAP_GIB} GiB out, releases), median" \
    "$(json_get "$sw" release.median)" s "pinned D2H of ${SWAP_GIB} GiB at this run's rate" \
    "$(awk -v g="$SWAP_GIB" -v d="$PIN_D2H" 'BEGIN { if (d > 0) printf "%.4f", g * 2^30 / 1e9 / d }')" "" \
    "$(json_get "$sw" release.list)" "scheduler log timestamps"
  add_result "switch part 2: lock granted to the arriving job's first kernel done (it swaps ${SWAP_GIB} GiB in, then runs one slice), median" \
    "$(json_get "$sw" arrive.median)" s "pinned H2D of ${SWAP_GIB} GiB at this run's rate" \
    "$(awk -v g="$SWAP_GIB" -v h="$PIN_H2D" 'BEGIN { if (h > 0) printf "%.4f", g * 2^30 / 1e9 / h }')" "" \
    "$(json_get "$sw" arrive.list)" "scheduler log grant timestamp to the job's GAP end (CLOCK_REALTIME)"
  local serial_dir off=""
  serial_dir=$(state_get swap_pair_dir_false)
  if [[ -n $serial_dir && -s $serial_dir/pair.switches.json ]]; then
    off=$(json_get "$serial_dir/pair.switches.json" latency.median)
    add_result "switch latency with restore ahead on vs off (the same two-job run with --restore-ahead false, from swap_bandwidth), median" \
      "$median" s "restore ahead off: out, then in" "$off" "" "$(json_get "$serial_dir/pair.switches.json" latency.list)" \
      "DESIGN.md: ~0.47 s in sequence, ~0.29 s with both directions overlapped"
  fi
  [[ -n $median ]] || fail "no switch measured${failed:+; job failures: $failed}"
  [[ -z $failed ]] || fail "measured, but a job failed: $failed"
  pass "median $median s over $n switches (copies alone: $bound s${off:+; restore ahead off: $off s})"
}

# ---------------------------------------------------------- oversubscription

OVERSUB_PASSES=${OVERSUB_PASSES:-800}
OVERSUB_STEPS=${OVERSUB_STEPS:-700}
read -r -a OVERSUB_QUANTA <<<"${OVERSUB_QUANTA:-30 5}"

# oversub_phase PHASE MODE : starts the mix's four jobs for PHASE (two
# memory-bound loops PHASE-m1/m2, two training loops PHASE-t1/t2), natively
# or hooked in MODE on $SOCK, each waiting at its go file
# ($CHECK_DIR/go.LABEL). Limits are long: they wait for earlier phases.
oversub_phase() {
  local phase=$1 mode=$2
  mem_job 400 "$phase-m1" "$mode" "$SWAP_GIB" "$OVERSUB_PASSES" 1 "$CHECK_DIR/go.$phase-m1"
  train_job 400 "$phase-t1" "$mode" "$SWAP_GIB" "$OVERSUB_STEPS" 2 "$CHECK_DIR/go.$phase-t1"
  mem_job 400 "$phase-m2" "$mode" "$SWAP_GIB" "$OVERSUB_PASSES" 3 "$CHECK_DIR/go.$phase-m2"
  train_job 400 "$phase-t2" "$mode" "$SWAP_GIB" "$OVERSUB_STEPS" 4 "$CHECK_DIR/go.$phase-t2"
}

# phase_labels PHASE : the labels of PHASE's jobs, in the serial order.
phase_labels() { echo "$1-m1 $1-t1 $1-m2 $1-t2"; }

# Measures: four 12 GiB jobs (two memory-bound loops, two training loops,
# each a fixed amount of work) on a 16 GiB virtual GPU in swap mode, at
# quantum 30 s and 5 s: makespan (first job's start to last job's end) as a
# ratio to the same four run alone one after another without nvshare (the
# sum of their times, measured in this run), and the GPU's physical memory
# peak (nvidia-smi, every 0.5 s). Every process starts at once and waits at
# a start barrier, so Python imports are outside every figure. Target:
# <= 1.05 at 30 s.
bench_oversubscription() {
  need_build "$BUILD/swap_job"
  python_has torch || skip "torch is not importable here"
  # Allocations are mapped when made: before the first switch all four jobs
  # of a phase may be resident at once, beside the contexts of the waiting ones.
  need_free_gib $((4 * $(gib_up "$SWAP_GIB") + 12))
  local q phases=(serial) labels=() label phase_jobs=()
  for q in "${OVERSUB_QUANTA[@]}"; do phases+=("q$q"); done
  # One daemon per quantum, each on its own socket.
  for q in "${OVERSUB_QUANTA[@]}"; do
    echo "+ nvshare-scheduler --socket $CHECK_DIR/q$q.sock --memory-capacity ${SWAP_CAPACITY_GIB}GiB --quantum $q"
    start_scheduler "$CHECK_DIR/q$q.sock" "$CHECK_DIR/scheduler-q$q.log" \
      --memory-capacity "${SWAP_CAPACITY_GIB}GiB" --quantum "$q" || fail "the scheduler for quantum $q did not start"
    track_pid "$SCHED_PID"
    SCHED_PID=
  done
  oversub_phase serial native
  for q in "${OVERSUB_QUANTA[@]}"; do
    SOCK=$CHECK_DIR/q$q.sock oversub_phase "q$q" swap
  done
  for label in "${phases[@]}"; do
    read -r -a phase_jobs <<<"$(phase_labels "$label")"
    labels+=("${phase_jobs[@]}")
  done
  wait_ready 120 "${labels[@]}"
  local sampler samples=$CHECK_DIR/memory.samples
  sample_memory "$samples" &
  sampler=$!
  track_pid "$sampler"
  sleep 1

  # Serial: one job at a time, nothing shared. Recorded at once, as is each
  # shared phase after it, so that a phase cut short leaves the earlier ones.
  local t0 serial serial_jobs=$CHECK_DIR/jobs-serial.json
  t0=$(now)
  for label in $(phase_labels serial); do
    touch "$CHECK_DIR/go.$label"
    finish_jobs "$label"
    [[ -z $JOBS_FAILED ]] || fail "the native job $label failed: $JOBS_FAILED"
  done
  analyze memory "$samples" --start "$t0" --end "$(now)" >"$CHECK_DIR/memory-serial.json"
  # shellcheck disable=SC2046  # the paths are words
  analyze jobs $(for label in $(phase_labels serial); do out_of "$label"; done) >"$serial_jobs"
  echo "serial: $(cat "$serial_jobs"); GPU memory: $(cat "$CHECK_DIR/memory-serial.json")"
  serial=$(json_get "$serial_jobs" sum_work_s)
  [[ -n $serial ]] || fail "the serial baseline was not measured"
  add_result "serial baseline: the four jobs alone one after another without nvshare" "$serial" s "" "" "" \
    "$(json_get "$serial_jobs" work_list)" \
    "physical memory peak $(json_get "$CHECK_DIR/memory-serial.json" peak_gib) GiB"

  # Shared: all four at once, one quantum per phase.
  local setup="4 jobs x ${SWAP_GIB} GiB (2 x cuda/swap_job.cu ${OVERSUB_PASSES} passes, 2 x py/train_job.py ${OVERSUB_STEPS} steps), ${SWAP_CAPACITY_GIB} GiB capacity"
  local failures="" f mem failed makespan target summary=""
  for q in "${OVERSUB_QUANTA[@]}"; do
    read -r -a phase_jobs <<<"$(phase_labels "q$q")"
    t0=$(now)
    for label in "${phase_jobs[@]}"; do touch "$CHECK_DIR/go.$label"; done
    watch_status "$CHECK_DIR/q$q.sock" "$CHECK_DIR/status-q$q" "${phase_jobs[@]}"
    finish_jobs "${phase_jobs[@]}"
    failed=$JOBS_FAILED
    f=$CHECK_DIR/jobs-q$q.json mem=$CHECK_DIR/memory-q$q.json
    analyze memory "$samples" --start "$t0" --end "$(now)" >"$mem"
    ctl_status "$CHECK_DIR/q$q.sock" "$CHECK_DIR/final-q$q.json" || true
    # shellcheck disable=SC2046
    analyze jobs $(for label in "${phase_jobs[@]}"; do out_of "$label"; done) >"$f"
    echo "quantum $q s: $(cat "$f"); GPU memory: $(cat "$mem"); $(swap_counters "$CHECK_DIR/final-q$q.json")"
    echo "---- scheduler log, quantum $q s ----"
    capped "$CHECK_DIR/scheduler-q$q.log" 40 120
    makespan=$(json_get "$f" makespan_s)
    target=""
    [[ $q == 30 ]] && target="<= 1.05"
    add_result "oversubscription makespan, swap mode, quantum $q s: $setup" "$makespan" s \
      "the four alone one after another without nvshare (sum of their times), same run" "$serial" "$target" \
      "$(json_get "$f" work_list)" \
      "${makespan:+per-job times from the start barrier in samples; serial times $(json_get "$serial_jobs" work_list); $(swap_counters "$CHECK_DIR/final-q$q.json")}${makespan:-not measured}${failed:+; job failures: $failed}"
    add_result "GPU physical memory peak (nvidia-smi, every 0.5 s) during the mix at quantum $q s" \
      "$(json_get "$mem" peak_gib)" GiB "the ${SWAP_CAPACITY_GIB} GiB virtual GPU" "$SWAP_CAPACITY_GIB" "" "" \
      "$(json_get "$mem" peak_above_base_gib) GiB above the $(json_get "$mem" base_mib) MiB in use before the phase (the contexts of the processes waiting at their barriers); median $(json_get "$mem" median_mib) MiB over $(json_get "$mem" samples) samples"
    [[ -z $failed ]] || failures+="${failures:+; }quantum $q: $failed"
    summary+="q$q ${makespan:-?} s (peak $(json_get "$mem" peak_gib) GiB) "
  done
  stop_pid "$sampler"
  add_result "oversubscription makespan, uvm mode, the same mix" "" s "" "" "" "" \
    "not run: 4 x 12 GiB of managed memory would fit the 80 GB card, but memory comes back by demand paging at ~7 GB/s (DESIGN.md): minutes per phase, beyond this run's time budget; uvm_prefetch_on_grant measures the uvm path"
  [[ -z $failures ]] || fail "measured, but jobs failed: $failures"
  pass "serial $serial s; makespans: $summary"
}

# --------------------------------------------------------------- fitting mix

FIT_GIB=${FIT_GIB:-4}
FIT_PASSES=${FIT_PASSES:-1400}

# fit_round TAG MODE : two memory-bound jobs of FIT_GIB GiB started together
# at a barrier, natively or hooked in MODE; leaves jobs-TAG.json.
fit_round() {
  local tag=$1 mode=$2 i labels=()
  for i in 1 2; do
    mem_job 120 "$tag-$i" "$mode" "$FIT_GIB" "$FIT_PASSES" "$i" "$CHECK_DIR/go.$tag-$i"
    labels+=("$tag-$i")
  done
  wait_ready 60 "${labels[@]}"
  for i in "${labels[@]}"; do touch "$CHECK_DIR/go.$i"; done
  finish_jobs "${labels[@]}"
  analyze jobs "$(out_of "$tag-1")" "$(out_of "$tag-2")" >"$CHECK_DIR/jobs-$tag.json"
  echo "$tag: $(cat "$CHECK_DIR/jobs-$tag.json")"
  [[ -z $JOBS_FAILED ]] || fail "round $tag: $JOBS_FAILED"
}

# Measures: two 4 GiB memory-bound jobs that fit a 16 GiB virtual GPU
# together: hooked in swap mode they run side by side (auto policy, nothing
# swapped), and their throughput (memory traffic of both / makespan) is a
# ratio to the same two run together without nvshare. Alternated, medians.
# Target: >= 0.98.
bench_fitting_mix() {
  need_build "$BUILD/swap_job"
  need_free_gib $((2 * $(gib_up "$FIT_GIB") + 8))
  local rounds=${BENCH_FIT_ROUNDS:-2} r native_list="" hooked_list="" m traffic
  with_scheduler --memory-capacity "${SWAP_CAPACITY_GIB}GiB"
  # Bytes read and written by both jobs' passes, GB.
  traffic=$(awk -v g="$FIT_GIB" -v p="$FIT_PASSES" 'BEGIN { printf "%.6f", 2 * 2 * g * 2^30 * p / 1e9 }')
  for ((r = 1; r <= rounds; r++)); do
    fit_round "native$r" native
    m=$(json_get "$CHECK_DIR/jobs-native$r.json" makespan_s)
    native_list+="${native_list:+,}$(awk -v t="$traffic" -v m="$m" 'BEGIN { printf "%.3f", t / m }')"
    fit_round "hooked$r" swap
    m=$(json_get "$CHECK_DIR/jobs-hooked$r.json" makespan_s)
    hooked_list+="${hooked_list:+,}$(awk -v t="$traffic" -v m="$m" 'BEGIN { printf "%.3f", t / m }')"
  done
  ctl_status "$SOCK" "$CHECK_DIR/status.json" || true
  local counters native hooked
  counters=$(swap_counters "$CHECK_DIR/status.json")
  native=$(median_of "$native_list")
  hooked=$(median_of "$hooked_list")
  add_result "fitting mix: 2 jobs x ${FIT_GIB} GiB (cuda/swap_job.cu, ${FIT_PASSES} passes each) on a ${SWAP_CAPACITY_GIB} GiB virtual GPU, swap mode: throughput, median of $rounds" \
    "$hooked" GB/s "the same two together without nvshare, alternated, median" "$native" ">= 0.98" "$hooked_list" \
    "GB/s = bytes read + written by both jobs / makespan; native samples $native_list; scheduler: $counters (0 evicted expected: they fit)"
  [[ -n $hooked && -n $native ]] || fail "not measured"
  pass "hooked $hooked GB/s vs native $native GB/s; $counters"
}
