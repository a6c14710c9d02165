# shellcheck shell=bash source-path=SCRIPTDIR
# Runs a list of checks (or benchmarks) one at a time, each in its own
# session via `bash $SELF __check NAME`, within a time budget, and records
# each verdict. Shared by tests/gpu/run.sh and benches/gpu/run.sh.
#
# Needs: SELF, WORK, LOG, T_START, BUDGET (s), ONLY (comma list or empty),
# ARTIFACTS_OK (0/1), KIND ("check" or "bench", for messages).
# Records go to $WORK/checks.jsonl (name, status, seconds, detail); after
# each entry the caller's write_summary (if defined) rewrites the JSON in
# OUTDIR, so a run cut short still leaves what it measured.

log() { printf '%s\n' "$*" >>"$LOG"; }
say() { printf '%s\n' "$*" | tee -a "$LOG"; }

record() { "$PY" "$REPORT_PY" check-add "$WORK/checks.jsonl" "$1" "$2" "$3" "$4"; }

show() {
  local status=$1 name=$2 detail=$3
  if [[ $status == PASS ]]; then say "PASS $name"; else say "$status $name: $detail"; fi
  log "     ($detail)"
}

wanted() {
  [[ -z $ONLY ]] && return 0
  [[ ",$ONLY," == *",$1,"* ]]
}

# run_one NAME LIMIT_S : runs and records one entry.
run_one() {
  local name=$1 limit=$2 spent left t0 rc=0 seconds status detail verdict_file
  log ""
  log "==== $KIND $name (limit ${limit} s) ===="
  if ((ARTIFACTS_OK == 0)); then
    record "$name" FAIL 0 "not run: release artifacts missing"
    show FAIL "$name" "not run: release artifacts missing"
    return
  fi
  spent=$(elapsed "$T_START")
  left=$(awk -v b="$BUDGET" -v s="$spent" 'BEGIN { printf "%d", b - s }')
  if ((left < 15)); then
    record "$name" FAIL 0 "not run: the time budget (${BUDGET} s) is spent"
    show FAIL "$name" "not run: the time budget (${BUDGET} s) is spent"
    return
  fi
  ((limit > left)) && limit=$left
  t0=$(now)
  run_limited "$limit" "$WORK/$name.out" bash "$SELF" __check "$name" || rc=$?
  seconds=$(elapsed "$t0")
  capped "$WORK/$name.out" 150 450 >>"$LOG"
  verdict_file=$WORK/c/$name/verdict
  if ((rc == 124)); then
    status=FAIL detail="timed out after ${limit} s"
  elif [[ -s $verdict_file ]]; then
    status=$(sed -n 1p "$verdict_file")
    detail=$(sed -n 2p "$verdict_file")
  else
    status=FAIL detail="exited $rc without a verdict"
  fi
  log "---- $name: $status after $seconds s"
  record "$name" "$status" "$seconds" "$detail"
  show "$status" "$name" "$detail"
  if [[ -s $WORK/c/$name/also ]]; then
    local a_status a_name a_detail
    while IFS=$'\t' read -r a_status a_name a_detail; do
      record "$a_name" "$a_status" 0 "$a_detail (established by $name)"
      show "$a_status" "$a_name" "$a_detail"
    done <"$WORK/c/$name/also"
  fi
  if declare -F write_summary >/dev/null; then write_summary; fi
}

# run_entries NAME:LIMIT... : run_one for each wanted entry, in order.
run_entries() {
  local entry
  for entry in "$@"; do
    wanted "${entry%%:*}" || continue
    run_one "${entry%%:*}" "${entry##*:}"
  done
}

# child_main NAME FILES... : the body of `SELF __check NAME`: sources the
# helpers and FILES, runs check_NAME (or bench_NAME) and makes sure a
# verdict is written.
child_main() {
  local name=$1 file
  shift
  CHECK_DIR=$WORK/c/$name
  SOCK=$CHECK_DIR/s.sock
  mkdir -p "$CHECK_DIR"
  export CHECK_DIR SOCK
  # shellcheck source=check.sh
  source "$GPU_LIB_DIR/check.sh"
  for file in "$@"; do
    # shellcheck source=/dev/null
    source "$file"
  done
  local fn=check_$name
  declare -F "$fn" >/dev/null || fn=bench_$name
  declare -F "$fn" >/dev/null || fail "no $KIND named $name"
  "$fn"
  fail "$fn ended without a verdict"
}
