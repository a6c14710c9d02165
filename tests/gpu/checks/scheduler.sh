# shellcheck shell=bash
# Running without a daemon: unshared on request, or with one the hook starts.

# Proves: NVSHARE_SCHEDULER=off runs the program unshared and correct, and
# starts no daemon.
check_no_scheduler() {
  need_build "$BUILD/runtime_api"
  local rc=0
  SOCK=$CHECK_DIR/never.sock
  NVSHARE_SCHEDULER=off prog 60 hooked hooked "$MODE" unshared "$BUILD/runtime_api" || rc=$?
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  [[ ! -e $SOCK ]] || fail "a scheduler socket appeared at $SOCK although NVSHARE_SCHEDULER=off"
  grep -qi warn "$(out_of hooked)" || echo "note: no warning about running unshared was printed"
  pass "NVSHARE_SCHEDULER=off: correct, no daemon started"
}

# pids_with_arg TEXT : PIDs whose command line contains TEXT.
pids_with_arg() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    { tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null | grep -qF -- "$1" && echo "$pid"
  done
}

# Proves: with no daemon running, the hook starts one on the program's socket
# (the nvshare-scheduler next to libnvshare.so), and the program is correct.
check_autostart() {
  need_build "$BUILD/runtime_api"
  local rc=0 i daemon="" exe=""
  SOCK=$CHECK_DIR/auto.sock
  NVSHARE_SCHEDULER=auto prog 90 hooked hooked "$MODE" autostart "$BUILD/runtime_api" || rc=$?
  for ((i = 0; i < 50; i++)); do
    [[ -S $SOCK ]] && break
    sleep 0.1
  done
  if [[ -S $SOCK ]] && ctl_status "$SOCK" "$CHECK_DIR/status.json"; then
    daemon=$("$PY" "$STATUS_PY" get "$CHECK_DIR/status.json" scheduler_pid || true)
    cat "$CHECK_DIR/status.json"
  fi
  if [[ -z $daemon ]]; then
    daemon=$(pids_with_arg "$SOCK" | head -n 1)
  fi
  if [[ -n $daemon ]]; then
    track_pid "$daemon"
    exe=$(basename "$(readlink "/proc/$daemon/exe" 2>/dev/null)")
    echo "auto-started daemon: pid $daemon ($exe)"
    [[ $exe == nvshare-scheduler* ]] || { echo "pid $daemon is not nvshare-scheduler: left alone"; TRACKED_PIDS=(); }
  fi
  ((rc == 0)) || fail "$(why_failed hooked "$rc")"
  [[ -S $SOCK ]] || fail "no daemon socket appeared at $SOCK"
  [[ -n $daemon ]] || fail "socket appeared but no scheduler_pid in the status and no process with it"
  [[ $exe == nvshare-scheduler* ]] || fail "the status's scheduler_pid $daemon is $exe, not nvshare-scheduler"
  stop_pid "$daemon"
  # shellcheck disable=SC2034  # read by check.sh's exit trap
  TRACKED_PIDS=()
  pass "daemon auto-started (pid $daemon) on $SOCK; program correct; daemon stopped"
}
