# shellcheck shell=bash
# uvm mode: populating fresh memory, and bringing memory back on each grant.

POPULATE_GIB=${POPULATE_GIB:-8}

# Measures: a fresh 8 GiB allocation's population before the first kernel:
# managed + prefetch vs managed + first-touch page faults (native; DESIGN.md
# expects ~0.035 s vs ~0.74 s), and cudaMalloc under the hook in uvm mode
# (managed memory that the hook prefetches) against the same page-fault
# baseline.
bench_uvm_populate() {
  need_build "$BUILD/uvm_populate"
  need_free_gib $((POPULATE_GIB + 8))
  local rounds=${BENCH_POPULATE_ROUNDS:-2} r
  for ((r = 1; r <= rounds; r++)); do
    run_sample 20 "prefetch$r" native "$BUILD/uvm_populate" prefetch "$POPULATE_GIB"
    run_sample 20 "fault$r" native "$BUILD/uvm_populate" fault "$POPULATE_GIB"
  done
  with_scheduler
  for ((r = 1; r <= rounds; r++)); do
    run_sample 30 "hooked$r" hooked uvm populate "$BUILD/uvm_populate" malloc "$POPULATE_GIB"
    [[ $(value "hooked$r" ok) == 1 ]] || break
  done
  local fault_samples prefetch_samples hooked_samples fault
  fault_samples=$(samples_of fault "$rounds" total_s)
  prefetch_samples=$(samples_of prefetch "$rounds" total_s)
  hooked_samples=$(samples_of hooked "$rounds" total_s)
  fault=$(median_of "$fault_samples")
  [[ -n $fault ]] || fail "page-fault baseline runs failed: $(first_failure fault "$rounds")"
  local base="cudaMallocManaged + first kernel, page faults (native)"
  add_result "uvm populate ${POPULATE_GIB} GiB: cudaMallocManaged + prefetch + first kernel (native)" \
    "$(median_of "$prefetch_samples")" s "$base" "$fault" "~0.05 (DESIGN.md: 0.035 s vs 0.74 s)" \
    "$prefetch_samples" "${prefetch_samples:+prefetch alone: $(value prefetch1 prefetch_s) s}${prefetch_samples:-runs failed: $(first_failure prefetch "$rounds")}"
  add_result "uvm populate ${POPULATE_GIB} GiB under the hook: cudaMalloc (managed, prefetched by the hook) + first kernel" \
    "$(median_of "$hooked_samples")" s "$base" "$fault" "<= 0.1" "$hooked_samples" \
    "${hooked_samples:+includes the lock request}${hooked_samples:-hooked runs failed: $(first_failure hooked "$rounds")}"
  pass "fault $fault s; prefetch $(median_of "$prefetch_samples") s; hooked $(median_of "$hooked_samples") s"
}

# pinned_h2d_baseline GIB : the pinned H2D GB/s at GIB GiB measured in this
# run (bench_pinned_memcpy's, or measured now).
pinned_h2d_baseline() {
  local gib=$1 h2d
  h2d=$(state_get "pinned_h2d_gbps_$gib")
  if [[ -z $h2d ]]; then
    prog 120 pinned native "$BUILD/pinned_bw" "$gib" 3 >&2 || true
    h2d=$(value pinned h2d_gbps)
    [[ -n $h2d ]] && state_set "pinned_h2d_gbps_$gib" "$h2d" && state_set "pinned_d2h_gbps_$gib" "$(value pinned d2h_gbps)"
  fi
  echo "$h2d"
}

# Measures: the bandwidth of the bulk prefetch the hook does on each grant,
# as a fraction of pinned H2D (target >= 0.8). Two uvm programs of 4 GiB on
# a 6 GiB capacity with a 1 s quantum take turns; each turn restores 4 GiB.
# Read from the hook's debug log, else the scheduler's log; the status
# counters (bytes and time of evictions and restores together) are reported
# beside it.
bench_uvm_prefetch_on_grant() {
  need_build "$BUILD/pinned_bw"
  need_free_gib 20
  local gib=4 h2d d2h
  h2d=$(pinned_h2d_baseline "$gib")
  d2h=$(state_get "pinned_d2h_gbps_$gib")
  with_scheduler --memory-capacity 6GiB --quantum 1
  local i pids=() k=0 pid
  for i in 1 2; do
    NVSHARE_LOG=debug prog_bg 150 "g$i" hooked uvm "g$i" "$PY" "$TESTS_GPU_DIR/py/mem_worker.py" \
      --gib "$gib" --steps 2000 --name "g$i"
    pids+=("$BG_PID")
  done
  while :; do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    ctl_status "$SOCK" "$CHECK_DIR/status.$k.json" || true
    k=$((k + 1))
    sleep 0.5
  done
  local failed=""
  for i in 1 2; do
    local rc=0
    wait_prog "g$i" "${pids[i - 1]}" || rc=$?
    [[ $rc == 0 && $(value "g$i" ok) == 1 ]] || failed+=" $(why_failed "g$i" "$rc")"
  done
  "$PY" "$SWAPLOG_PY" "$(out_of g1)" "$(out_of g2)" >"$CHECK_DIR/hooklog.json"
  "$PY" "$SWAPLOG_PY" "$CHECK_DIR/scheduler.log" >"$CHECK_DIR/schedlog.json"
  "$PY" "$STATUS_PY" summarize "$CHECK_DIR"/status.*.json >"$CHECK_DIR/status-summary.json"
  echo "hook log events: $(cat "$CHECK_DIR/hooklog.json")"
  echo "scheduler log events: $(cat "$CHECK_DIR/schedlog.json")"
  echo "status counters: $(cat "$CHECK_DIR/status-summary.json")"
  [[ -z $failed ]] || echo "worker failures:$failed"

  local source=hook restore evict events logfile=$CHECK_DIR/hooklog.json
  events=$(json_get "$logfile" restore.events)
  if [[ ${events:-0} == 0 ]]; then
    source=scheduler logfile=$CHECK_DIR/schedlog.json
    events=$(json_get "$logfile" restore.events)
  fi
  restore=$(json_get "$logfile" restore.gbps_aggregate)
  evict=$(json_get "$logfile" evict.gbps_aggregate)
  local setup="2 x ${gib} GiB uvm programs, 6 GiB capacity, quantum 1 s"
  add_result "uvm prefetch-on-grant bandwidth ($setup)" "$restore" GB/s \
    "pinned cudaMemcpy H2D, ${gib} GiB, same run" "$h2d" ">= 0.8" "" \
    "${restore:+from the $source log, ${events} restores of >= 256 MiB}${restore:-not measured: no restore events with bytes and elapsed time in the hook or scheduler logs}${failed:+; worker failures:$failed}"
  add_result "uvm eviction bandwidth on drop ($setup)" "$evict" GB/s \
    "pinned cudaMemcpy D2H, ${gib} GiB, same run" "$d2h" "" "" \
    "${evict:+from the $source log (DESIGN.md: managed eviction ~8 GB/s)}${evict:-not measured}"
  local summary=$CHECK_DIR/status-summary.json restored evicted moved us rate=""
  restored=$(json_get "$summary" max_bytes_restored) evicted=$(json_get "$summary" max_bytes_evicted)
  us=$(json_get "$summary" max_swap_time_us)
  moved=$((${restored:-0} + ${evicted:-0}))
  if ((moved > 0 && ${us:-0} > 0)); then
    rate=$(awk -v b="$moved" -v u="$us" 'BEGIN { printf "%.3f", b / (u * 1e-6) / 1e9 }')
  fi
  add_result "uvm memory moved per second of swap time, status counters ($setup)" "$rate" GB/s \
    "pinned cudaMemcpy H2D, ${gib} GiB, same run" "$h2d" "" "" \
    "(bytes_restored + bytes_evicted) / swap_time_us, evictions and restores together; switches $(json_get "$summary" max_switches)"
  [[ -n $restore || -n $rate ]] || fail "no restore measured${failed:+; worker failures:$failed}"
  [[ -z $failed ]] || fail "measured, but a worker failed:$failed"
  pass "restore $restore GB/s (pinned H2D $h2d GB/s), from the $source log"
}

# json_get FILE DOTTED.KEY : a value from a JSON file (empty if absent).
json_get() {
  "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null || true
import json, sys
node = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    node = node[part]
print(node if not isinstance(node, float) else f"{node:.4f}")
PYEOF
}
