# shellcheck shell=bash
# Helpers for one benchmark (sourced into its process after tests/gpu/lib/check.sh,
# whose pass/fail/skip, prog, with_scheduler ... it reuses).
#
# A benchmark records any number of results with add_result and ends with
# pass (it measured), fail (it could not) or skip.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SWAPLOG_PY=$BENCH_DIR/lib/swaplog.py
export SWAPLOG_PY

# add_result WHAT VALUE UNIT BASELINE BASELINE_VALUE TARGET SAMPLES NOTE
# VALUE or BASELINE_VALUE may be empty (not measured); the ratio is
# VALUE / BASELINE_VALUE. SAMPLES is a comma list of the raw measurements.
add_result() {
  "$PY" "$REPORT_PY" bench-add "$WORK/bench.jsonl" --what "$1" --value "$2" --unit "$3" \
    --baseline "$4" --baseline-value "$5" --target "$6" --samples "$7" --note "$8"
}

# median_of LIST : the median of a comma list of numbers (empty if none).
median_of() { "$PY" "$RESULTS_PY" median "$@" 2>/dev/null || true; }

# state_set KEY VALUE / state_get KEY : values one benchmark leaves for a
# later one in the same run (e.g. the pinned bandwidth baseline).
state_set() { mkdir -p "$WORK/state" && printf '%s\n' "$2" >"$WORK/state/$1"; }
state_get() { cat "$WORK/state/$1" 2>/dev/null || true; }

# samples_of LABEL_PREFIX COUNT KEY : comma list of KEY from the RESULT
# lines of programs LABEL_PREFIX1..COUNT that printed ok=1.
samples_of() {
  local prefix=$1 count=$2 key=$3 i list="" v
  for ((i = 1; i <= count; i++)); do
    [[ $(value "$prefix$i" ok) == 1 ]] || continue
    v=$(value "$prefix$i" "$key")
    [[ -n $v ]] && list+="${list:+,}$v"
  done
  echo "$list"
}

# first_failure LABEL_PREFIX COUNT : why the first failed run failed.
first_failure() {
  local prefix=$1 count=$2 i
  for ((i = 1; i <= count; i++)); do
    if [[ $(value "$prefix$i" ok) != 1 ]]; then
      why_failed "$prefix$i" "$(cat "$CHECK_DIR/$prefix$i.rc" 2>/dev/null || echo '?')"
      return
    fi
  done
}

# run_sample LIMIT LABEL CMD... : prog, keeping the status for first_failure.
run_sample() {
  local rc=0
  prog "$@" || rc=$?
  echo "$rc" >"$CHECK_DIR/$2.rc"
  return 0
}

# bench_modes : the hook's memory modes the overhead benchmarks cover.
bench_modes() { echo "${BENCH_MODES:-uvm swap}"; }
