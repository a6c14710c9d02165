# shellcheck shell=bash
# Helpers of the swap-mode benchmarks (benches/swap.sh): jobs started in the
# background with start barriers, waited for by PID, status snapshots while
# they run, GPU memory samples, and the pinned-copy baselines. No benchmark
# here (sourced with the others: only functions and the job table).

SWAP_ANALYSIS_PY=$BENCH_DIR/py/swap_analysis.py
TRAIN_JOB_PY=$BENCH_DIR/py/train_job.py

# The label of every job started by job_bg, to its PID.
declare -gA JOB_PID=()

analyze() { "$PY" "$SWAP_ANALYSIS_PY" "$@"; }

# gib_up GIB : GIB rounded up to a whole number (for need_free_gib).
gib_up() { awk -v x="$1" 'BEGIN { n = int(x); printf "%d", (x > n) ? n + 1 : n }'; }

# sample_memory FILE : appends `EPOCH USED_MIB` of GPU 0 every 0.5 s (run it
# in the background).
sample_memory() {
  while :; do
    printf '%s %s\n' "$(now)" "$(gpu_used_mib)" >>"$1"
    sleep 0.5
  done
}

# job_bg LIMIT_S LABEL MODE CMD... : starts CMD in the background, natively
# (MODE native) or under the hook in MODE as job LABEL on $SOCK.
job_bg() {
  local limit=$1 label=$2 mode=$3
  shift 3
  if [[ $mode == native ]]; then
    prog_bg "$limit" "$label" native "$@"
  else
    prog_bg "$limit" "$label" hooked "$mode" "$label" "$@"
  fi
  JOB_PID[$label]=$BG_PID
}

# mem_job LIMIT_S LABEL MODE GIB PASSES SEED [GO_FILE] : the memory-bound job.
mem_job() {
  job_bg "$1" "$2" "$3" "$BUILD/swap_job" "$2" "$4" "$5" "$6" "${7:--}"
}

# train_job LIMIT_S LABEL MODE GIB STEPS SEED GO_FILE : the training job.
train_job() {
  job_bg "$1" "$2" "$3" "$PY" "$TRAIN_JOB_PY" --name "$2" --gib "$4" --steps "$5" --seed "$6" --go "$7"
}

# wait_ready LIMIT_S LABEL... : waits until every job printed READY (it is
# at its start barrier); fails the benchmark if one died or took too long.
wait_ready() {
  local limit=$1 t0 label pending
  shift
  t0=$(now)
  while :; do
    pending=()
    for label; do
      grep -q '^READY ' "$(out_of "$label")" 2>/dev/null && continue
      if ! kill -0 "${JOB_PID[$label]}" 2>/dev/null; then
        finish_jobs "$label"
        fail "job $label ended before its start barrier: $JOBS_FAILED"
      fi
      pending+=("$label")
    done
    ((${#pending[@]} == 0)) && return 0
    if awk -v e="$(elapsed "$t0")" -v l="$limit" 'BEGIN { exit !(e > l) }'; then
      fail "jobs not at their start barrier after ${limit} s: ${pending[*]}"
    fi
    sleep 0.2
  done
}

# finish_jobs LABEL... : waits for the jobs and shows their output; sets
# JOBS_FAILED to why each failed one failed (empty if all verified).
finish_jobs() {
  local label rc
  JOBS_FAILED=""
  for label; do
    rc=0
    wait_prog "$label" "${JOB_PID[$label]}" || rc=$?
    if ((rc != 0)) || [[ $(value "$label" ok) != 1 ]]; then
      JOBS_FAILED+="${JOBS_FAILED:+; }$(why_failed "$label" "$rc")"
    fi
  done
}

# watch_status SOCK PREFIX LABEL... : a status snapshot (PREFIX.N.json) every
# second while any of the jobs runs.
watch_status() {
  local sock=$1 prefix=$2 k=0 label alive
  shift 2
  while :; do
    alive=0
    for label; do kill -0 "${JOB_PID[$label]}" 2>/dev/null && alive=1; done
    ((alive)) || break
    ctl_status "$sock" "$prefix.$k.json" || true
    k=$((k + 1))
    sleep 1
  done
  echo "status snapshots: $k; one from mid-run:"
  head -c 3000 "$prefix.$((k / 2)).json" 2>/dev/null
  echo
}

# swap_counters STATUS_JSON : "switches S, evicted E GiB, restored R GiB,
# swap time T s" from a status snapshot.
swap_counters() {
  local f=$1 s e r t
  s=$("$PY" "$STATUS_PY" get "$f" switches 2>/dev/null)
  e=$("$PY" "$STATUS_PY" get "$f" bytes_evicted 2>/dev/null)
  r=$("$PY" "$STATUS_PY" get "$f" bytes_restored 2>/dev/null)
  t=$("$PY" "$STATUS_PY" get "$f" swap_time_us 2>/dev/null)
  awk -v s="${s:-?}" -v e="${e:-0}" -v r="${r:-0}" -v t="${t:-0}" \
    'BEGIN { printf "switches %s, evicted %.1f GiB, restored %.1f GiB, swap time %.2f s", s, e / 2^30, r / 2^30, t / 1e6 }'
}

# pinned_baselines : sets PIN_GIB, PIN_H2D and PIN_D2H (GB/s) from this run's
# pinned_memcpy (at SWAP_GIB if it measured that size, else at MEMCPY_GIB:
# the rate of one large copy does not depend on its size), measuring pinned
# copies of SWAP_GIB GiB here if neither is there.
# shellcheck disable=SC2034  # PIN_* are read by benches/swap.sh
pinned_baselines() {
  local gib
  for gib in "$SWAP_GIB" "${MEMCPY_GIB:-4}"; do
    PIN_H2D=$(state_get "pinned_h2d_gbps_$gib")
    PIN_D2H=$(state_get "pinned_d2h_gbps_$gib")
    if [[ -n $PIN_H2D && -n $PIN_D2H ]]; then
      PIN_GIB=$gib
      return 0
    fi
  done
  need_build "$BUILD/pinned_bw"
  PIN_GIB=$SWAP_GIB
  PIN_H2D=$(pinned_h2d_baseline "$SWAP_GIB")
  PIN_D2H=$(state_get "pinned_d2h_gbps_$SWAP_GIB")
}
