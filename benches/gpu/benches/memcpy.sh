# shellcheck shell=bash
# The physical limit: pinned host <-> device copies.

# Measures: pinned cudaMemcpy H2D, D2H and both at once (two streams) at
# MEMCPY_GIB (default 4) GiB, no hook. Leaves the H2D/D2H figures for the
# uvm and swap benchmarks, which are ratios to them.
bench_pinned_memcpy() {
  need_build "$BUILD/pinned_bw"
  local gib=${MEMCPY_GIB:-4} rc=0
  need_free_gib $((2 * gib + 4))
  prog 120 pinned native "$BUILD/pinned_bw" "$gib" 5 || rc=$?
  ((rc == 0)) || fail "$(why_failed pinned "$rc")"
  local h2d d2h both
  h2d=$(value pinned h2d_gbps) d2h=$(value pinned d2h_gbps) both=$(value pinned bidir_gbps)
  state_set "pinned_h2d_gbps_${gib}" "$h2d"
  state_set "pinned_d2h_gbps_${gib}" "$d2h"
  local ref="DESIGN.md figure (H100 PCIe Gen5, 8 GiB buffers)"
  add_result "pinned cudaMemcpy H2D, ${gib} GiB, median of 5" "$h2d" GB/s "$ref" 54.7 "" "" "host memory malloc+touch+cudaHostRegister"
  add_result "pinned cudaMemcpy D2H, ${gib} GiB, median of 5" "$d2h" GB/s "$ref" 54.9 "" "" ""
  add_result "pinned cudaMemcpy H2D + D2H at once on two streams, ${gib} GiB each way" "$both" GB/s "$ref" 89 "" "" "bytes moved both ways / time"
  pass "H2D $h2d GB/s, D2H $d2h GB/s, both $both GB/s"
}
