#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The nvshare GPU benchmarks: run on the GPU machine from the repository
# root, with the release artifacts in target/release.
#
#   benches/gpu/run.sh OUTDIR [--only NAME,NAME] [--list]
#
# Writes OUTDIR/gpu-bench.json (every result as {what, value, unit, baseline,
# baseline_value, ratio, target, samples, note, device, driver, uname, date})
# and OUTDIR/gpu-bench.log; prints one line per result and per benchmark.
# Keeps within BENCH_BUDGET_S (default 480 s). Knobs: BENCH_MODES ("uvm swap"),
# BENCH_ROUNDS (5, launch loop), BENCH_TRAIN_ROUNDS (2), MEMCPY_GIB (4),
# POPULATE_GIB (8), and the swap benchmarks' (benches/swap.sh). Exits
# non-zero if a benchmark could not measure.
#
# To add a benchmark: write bench_NAME in a file under benches/ and add
# NAME:LIMIT_S to BENCHES below.

set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$BENCH_DIR/run.sh
# shellcheck source=../../tests/gpu/lib/common.sh
source "$BENCH_DIR/../../tests/gpu/lib/common.sh"
# shellcheck source=../../tests/gpu/lib/runner.sh
source "$GPU_LIB_DIR/runner.sh"
KIND=benchmark
export BENCH_DIR

# name:limit_s, in the order run. The pinned baseline comes first: later
# benchmarks are ratios to it.
BENCHES=(
  pinned_memcpy:90
  launch_overhead:120
  train_overhead:150
  uvm_populate:90
  uvm_prefetch_on_grant:120
  swap_bandwidth:90
  switch_latency:90
  fitting_mix:90
  oversubscription:300
  multi_gpu_pairs:240
  slab_waste:300
  launch_paired:900
  stream_probe:120
)

if [[ ${1:-} == __check ]]; then
  child_main "$2" "$BENCH_DIR/lib/bench.sh" "$BENCH_DIR"/benches/*.sh
fi
# A check aborted by a shell error (a bad arithmetic expansion ends the whole
# if-command above) must not fall through into a run of its own.
[[ ${1:-} != __check ]] || exit 1

usage() { sed -n '3,17p' "$SELF" | sed 's/^# \{0,1\}//'; }
OUTDIR=
ONLY=
while (($#)); do
  case $1 in
    --only) ONLY=${2:?--only needs benchmark names}; shift 2 ;;
    --list) printf '%s\n' "${BENCHES[@]%%:*}"; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) OUTDIR=$1; shift ;;
  esac
done
[[ -n $OUTDIR ]] || { usage >&2; exit 2; }

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/gpu-bench.log
: >"$LOG"
unset LD_PRELOAD NVSHARE_SOCK NVSHARE_MODE NVSHARE_NAME NVSHARE_SCHEDULER NVSHARE_LOG NVSHARE_DEBUG
WORK=$(mktemp -d /tmp/nvb.XXXXXX)
BUILD=$WORK/build
mkdir -p "$BUILD"
MODE=uvm
export WORK BUILD MODE OUTDIR
cleanup() { [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"; }
trap cleanup EXIT
T_START=$(now)
BUDGET=${BENCH_BUDGET_S:-480}

write_facts "$WORK/facts.json"
say "nvshare GPU benchmarks, $(date -u +%FT%TZ)"
say "GPU facts: $("$PY" "$REPORT_PY" facts-line "$WORK/facts.json")"
{
  echo "==== facts ===="
  cat "$WORK/facts.json"
  echo "==== nvidia-smi ===="
  nvidia-smi 2>&1
  echo "==== artifacts ===="
  ls -l "$HOOK" "$SCHED" "$CTL" 2>&1
} >>"$LOG"
ARTIFACTS_OK=1
check_artifacts >>"$LOG" 2>&1 || ARTIFACTS_OK=0

build() {
  local t0 prog
  t0=$(now)
  for prog in launch_loop launch_worker uvm_populate pinned_bw swap_job; do
    nvcc_build "$BUILD/$prog" "$BENCH_DIR/cuda/$prog.cu" || echo "BUILD FAILED: $prog"
  done
  local link
  link=$(libcuda_link_args)
  # shellcheck disable=SC2086  # $link is one or two words on purpose
  nvcc_build "$BUILD/stream_probe" "$BENCH_DIR/cuda/stream_probe.cu" $link || echo "BUILD FAILED: stream_probe"
  echo "build took $(elapsed "$t0") s"
}
build >>"$LOG" 2>&1

write_summary() {
  "$PY" "$REPORT_PY" bench-summary "$WORK/facts.json" "$WORK/bench.jsonl" "$OUTDIR/gpu-bench.json" "$WORK/checks.jsonl"
}
write_summary
run_entries "${BENCHES[@]}"
write_summary
{
  echo "==== results (JSON lines) ===="
  cat "$WORK/bench.jsonl" 2>/dev/null
} >>"$LOG"
"$PY" "$REPORT_PY" bench-table "$WORK/bench.jsonl" | tee -a "$LOG"
say "benchmarks took $(elapsed "$T_START") s; log $LOG, results $OUTDIR/gpu-bench.json"
failed=$(grep -c '"status": "FAIL"' "$WORK/checks.jsonl" 2>/dev/null)
((${failed:-0} == 0))
