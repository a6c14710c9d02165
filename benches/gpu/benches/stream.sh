# shellcheck shell=bash
# What weight streaming (issue 17) must know of the driver before it is
# built: cuda/stream_probe.cu, natively (no hook, no scheduler). Every
# finding is recorded, supported or not; the benchmark fails only if the
# probe could not run or data came out wrong.

# Measures: whether host-located VMM handles can back a reserved VA with
# device access (the safety net for memory streamed out), the kernel read
# bandwidth through them vs device memory, the cost of remapping a range
# between the two, and whether cuFuncGetParamInfo gives parameter layouts.
bench_stream_probe() {
  need_build "$BUILD/stream_probe"
  local rc=0
  prog 120 probe native "$BUILD/stream_probe" || rc=$?
  local facts
  facts=$(grep '^FACT ' "$(out_of probe)" | sed 's/^FACT //' | tr '\n' ' ')
  [[ -n $facts ]] || fail "the probe printed no findings: $(why_failed probe "$rc")"
  local host device ratio
  host=$(grep -o 'host_read_gbps=[0-9.]*' "$(out_of probe)" | head -1 | cut -d= -f2)
  device=$(grep -o 'device_read_gbps=[0-9.]*' "$(out_of probe)" | head -1 | cut -d= -f2)
  add_result "kernel read bandwidth through host-located VMM memory mapped at a device VA (PROBE_GIB GiB)" \
    "$host" "GB/s" "the same kernel on device memory, same run" "$device" "informational (issue 17 design)" "" "$facts"
  ((rc == 0)) || fail "the probe failed or data came out wrong: $(why_failed probe "$rc"); findings: $facts"
  pass "findings: $facts"
}
