# shellcheck shell=bash
# Several hooked programs sharing the GPU in uvm mode, time-sliced because
# their memory does not fit the scheduler's capacity together.

# share_uvm N GIB CAPACITY_GIB STEPS : N workers of GIB GiB each on a
# scheduler of CAPACITY_GIB GiB with a 2 s quantum. Every worker must verify
# its data; status snapshots taken while they run must show all N clients
# and at least one switch.
share_uvm() {
  local n=$1 gib=$2 cap=$3 steps=$4 i k=0 pid rc failed=() pids=()
  need_free_gib $((n * gib + 8))
  with_scheduler --memory-capacity "${cap}GiB" --quantum 2
  for ((i = 1; i <= n; i++)); do
    prog_bg 150 "w$i" hooked uvm "w$i" "$PY" "$GPU_DIR/py/mem_worker.py" \
      --gib "$gib" --steps "$steps" --name "w$i"
    pids+=("$BG_PID")
  done
  # Snapshots while any worker runs.
  while :; do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    ctl_status "$SOCK" "$CHECK_DIR/status.$k.json" || true
    k=$((k + 1))
    sleep 0.5
  done
  for ((i = 1; i <= n; i++)); do
    rc=0
    wait_prog "w$i" "${pids[i - 1]}" || rc=$?
    if ((rc != 0)) || [[ $(value "w$i" ok) != 1 ]]; then
      failed+=("$(why_failed "w$i" "$rc") bad=$(value "w$i" bad)")
    fi
  done
  local clients switches summary=$CHECK_DIR/status-summary.json
  "$PY" "$STATUS_PY" summarize "$CHECK_DIR"/status.*.json >"$summary"
  echo "status over $k snapshots: $(cat "$summary")"
  echo "a snapshot from mid-run:"
  head -c 4000 "$CHECK_DIR/status.$((k / 2)).json" 2>/dev/null
  echo
  ((${#failed[@]} == 0)) || fail "${failed[*]}"
  clients=$("$PY" "$STATUS_PY" get "$summary" max_clients)
  switches=$("$PY" "$STATUS_PY" get "$summary" max_switches)
  ((clients >= n)) || fail "status never showed $n clients at once (most: $clients; $k snapshots)"
  ((switches > 0)) || fail "no switch between programs in the status (capacity ${cap} GiB < $n x $gib GiB should force time-slicing)"
  local times=""
  for ((i = 1; i <= n; i++)); do times+=" w$i=$(value "w$i" seconds)s"; done
  pass "$n x $gib GiB on ${cap} GiB, quantum 2 s: all verified; $switches switches, $clients clients;$times"
}

# Proves: two uvm programs that cannot fit together take turns and both
# finish with correct data (evict and restore lose nothing).
check_uvm_share_two() { share_uvm 2 2 3 4000; }

# Proves: three uvm programs, two of which fit together, are co-run and
# time-sliced by the auto policy, all finishing with correct data.
check_uvm_share_three() { share_uvm 3 2 5 4000; }
