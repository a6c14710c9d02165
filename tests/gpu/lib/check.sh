# shellcheck shell=bash
# The life of one check (sourced after common.sh, in the check's own process).
#
# A check is a function check_NAME run by `run.sh __check NAME` in its own
# session (so a timeout kills all of it). It ends with `pass DETAIL`,
# `fail REASON` or `skip REASON`, which write $CHECK_DIR/verdict and exit.
# Ending without a verdict counts as a failure. Whatever it started is
# stopped on exit: the scheduler (its log tail lands in the check's output)
# and every PID registered with track_pid.

TRACKED_PIDS=()
SCHED_PID=

verdict() {
  printf '%s\n%s\n' "$1" "$2" >"$CHECK_DIR/verdict"
  exit "$3"
}
pass() { verdict PASS "$*" 0; }
fail() { verdict FAIL "$*" 1; }
skip() { verdict SKIP "$*" 0; }

track_pid() { TRACKED_PIDS+=("$1"); }

# also_report NAME PASS|FAIL|SKIP DETAIL : a further verdict, recorded as its
# own check, for a fact this check's run already established.
also_report() { printf '%s\t%s\t%s\n' "$2" "$1" "$3" >>"$CHECK_DIR/also"; }

check_cleanup() {
  local pid
  for pid in "${TRACKED_PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n ${SCHED_PID:-} ]]; then
    stop_scheduler
  fi
  if [[ -s $CHECK_DIR/scheduler.log ]]; then
    echo "---- scheduler log ($CHECK_DIR/scheduler.log) ----"
    capped "$CHECK_DIR/scheduler.log"
  fi
}
trap check_cleanup EXIT

# with_scheduler [FLAGS...] : a daemon for this check on $SOCK; fails the
# check if it does not come up.
with_scheduler() {
  echo "+ nvshare-scheduler --socket $SOCK $*"
  start_scheduler "$SOCK" "$CHECK_DIR/scheduler.log" "$@" ||
    fail "the scheduler did not start (flags: $*): see the log"
}

# prog LIMIT_S LABEL CMD... : runs CMD (time-limited) with its output in
# $CHECK_DIR/LABEL.out, shows that output, returns CMD's status (124: timeout).
prog() {
  local limit=$1 label=$2
  shift 2
  local out=$CHECK_DIR/$label.out t0 rc=0
  echo "+ [$label] $*"
  t0=$(now)
  timeout -k 5 "$limit" "$@" >"$out" 2>&1 </dev/null || rc=$?
  echo "---- [$label] rc=$rc after $(elapsed "$t0") s ----"
  capped "$out"
  return "$rc"
}

# prog_bg LIMIT_S LABEL CMD... : like prog, in the background; sets BG_PID.
# Collect it with `wait_prog LABEL PID`.
prog_bg() {
  local limit=$1 label=$2
  shift 2
  echo "+ [$label] (background) $*"
  timeout -k 5 "$limit" "$@" >"$CHECK_DIR/$label.out" 2>&1 </dev/null &
  BG_PID=$!
  track_pid "$BG_PID"
}

# wait_prog LABEL PID : waits for one background program, shows its output,
# returns its status.
wait_prog() {
  local label=$1 pid=$2 rc=0
  wait "$pid" || rc=$?
  echo "---- [$label] rc=$rc ----"
  capped "$CHECK_DIR/$label.out"
  return "$rc"
}

# out_of LABEL : the output file of a program run by prog/prog_bg.
out_of() { echo "$CHECK_DIR/$1.out"; }

# value LABEL KEY : KEY from the program's last RESULT line (empty if none).
value() { result_of "$(out_of "$1")" "$2" 2>/dev/null || true; }

# why_failed LABEL RC : a one-line reason from a program's status and output.
why_failed() {
  local label=$1 rc=$2 line
  if ((rc == 124 || rc == 137)); then
    echo "$label timed out"
    return
  fi
  line=$(grep -E 'Error|error|FAIL|Traceback|CUDA_ERROR|assert' "$(out_of "$label")" 2>/dev/null | tail -n 1 | cut -c1-200)
  echo "$label exited $rc${line:+: $line}"
}

# need_free_gib N : skips the check unless GPU 0 has N GiB free (managed
# memory beyond what is free can hang the GPU).
need_free_gib() {
  local free
  free=$(gpu_free_gib)
  ((free >= $1)) || fail "not run: only $free GiB free on the GPU, this check needs $1 GiB"
}

# need_build FILE... : fails the check if a compiled program is missing.
need_build() {
  local f
  for f in "$@"; do
    [[ -x $f || -s $f ]] || fail "not built: $f (see the build section of the log)"
  done
}

# python_has MODULE : whether MODULE imports without the hook.
python_has() { native "$PY" -c "import $1" >/dev/null 2>&1; }
