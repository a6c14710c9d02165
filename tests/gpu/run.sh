#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The nvshare GPU suite: run on the GPU machine from the repository root,
# with the release artifacts in target/release (built elsewhere and carried).
#
#   tests/gpu/run.sh OUTDIR [--mode uvm|swap] [--gpu N] [--only NAME,NAME] [--list]
#
# Prints one line per check (PASS name / FAIL name: reason / SKIP name:
# reason) and a closing "N passed, N failed" line; writes OUTDIR/gpu-suite.log
# (everything, programs' output included) and OUTDIR/gpu-suite.json; exits
# non-zero if any check failed. --mode picks the memory mode of the
# single-program checks (default uvm); the sharing checks are uvm, the
# swap_* checks swap, by definition. The whole run keeps within
# SUITE_BUDGET_S (default 480 s): each check is time-limited, and checks
# left when the budget is spent fail as not run. --gpu N runs the suite on
# GPU N alone (its programs see only that GPU), so that suites on different
# GPUs can run at once; the multi-GPU checks need every GPU and then skip.
#
# To add a check: write check_NAME in a file under checks/ (see lib/check.sh
# for its helpers) and add NAME:LIMIT_S to CHECKS below.

set -uo pipefail

GPU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$GPU_DIR/run.sh
export GPU_DIR
# shellcheck source=lib/common.sh
source "$GPU_DIR/lib/common.sh"

# name:limit_s, in the order run (cheap and fundamental first).
CHECKS=(
  cuda_runtime_api:90
  cuda_driver_api:90
  no_scheduler:60
  autostart:60
  mem_get_info:120
  memory_limits:240
  torch_deterministic:150
  torch_expandable_segments:150
  torch_cuda_malloc_async:150
  torch_cuda_graph:90
  uvm_share_two:150
  uvm_share_three:150
  cupy:90
  jax_prealloc:150
  swap_four_12g:150
  swap_deterministic_training:180
  swap_expandable_segments:180
  swap_cuda_graph:120
  ddp_two_gpus:300
  ddp_two_jobs:300
)

# shellcheck source=lib/runner.sh
source "$GPU_DIR/lib/runner.sh"
KIND=check

# One check, in its own session (run_one starts this).
if [[ ${1:-} == __check ]]; then
  child_main "$2" "$GPU_DIR"/checks/*.sh
fi
# A check aborted by a shell error (a bad arithmetic expansion ends the whole
# if-command above) must not fall through into a run of its own.
[[ ${1:-} != __check ]] || exit 1

# ------------------------------------------------------------------ arguments
usage() { sed -n '3,21p' "$SELF" | sed 's/^# \{0,1\}//'; }
OUTDIR=
MODE=uvm
ONLY=
GPU_INDEX=
while (($#)); do
  case $1 in
    --mode) MODE=${2:?--mode needs uvm or swap}; shift 2 ;;
    --only) ONLY=${2:?--only needs check names}; shift 2 ;;
    --gpu) GPU_INDEX=${2:?--gpu needs a GPU index}; shift 2 ;;
    --list) printf '%s\n' "${CHECKS[@]%%:*}"; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) OUTDIR=$1; shift ;;
  esac
done
[[ -n $OUTDIR ]] || { usage >&2; exit 2; }
[[ $MODE == uvm || $MODE == swap ]] || { echo "--mode must be uvm or swap" >&2; exit 2; }
if [[ -n $GPU_INDEX ]]; then
  TEST_GPU=$(gpu_uuid "$GPU_INDEX")
  [[ $TEST_GPU == GPU-* ]] || { echo "--gpu $GPU_INDEX: nvidia-smi lists no such GPU" >&2; exit 2; }
  # One GPU for everything this suite starts; checks needing more skip.
  export TEST_GPU CUDA_VISIBLE_DEVICES=$TEST_GPU SUITE_ONE_GPU=1
fi

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/gpu-suite.log
: >"$LOG"
# The suite's own shell runs unhooked whatever the caller's environment says.
unset LD_PRELOAD NVSHARE_SOCK NVSHARE_MODE NVSHARE_NAME NVSHARE_SCHEDULER NVSHARE_LOG NVSHARE_DEBUG
WORK=$(mktemp -d /tmp/nvg.XXXXXX)
BUILD=$WORK/build
mkdir -p "$BUILD"
export WORK BUILD MODE OUTDIR
cleanup() { [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"; }
trap cleanup EXIT

T_START=$(now)
BUDGET=${SUITE_BUDGET_S:-480}

# ------------------------------------------------------------------- preamble
write_facts "$WORK/facts.json"
say "nvshare GPU suite, mode $MODE, $(date -u +%FT%TZ)"
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

# ---------------------------------------------------------------------- build
build() {
  local t0
  t0=$(now)
  echo "==== build ($NVCC $("$NVCC" --version 2>/dev/null | grep -o 'release [0-9.]*')) ===="
  nvcc_build "$BUILD/runtime_api" "$GPU_DIR/cuda/runtime_api.cu" || echo "BUILD FAILED: runtime_api"
  nvcc_ptx "$BUILD/saxpy.ptx" "$GPU_DIR/cuda/saxpy_kernel.cu" || echo "BUILD FAILED: saxpy.ptx"
  local link
  link=$(libcuda_link_args)
  if [[ -n $link ]]; then
    # shellcheck disable=SC2086  # $link is one or two words on purpose
    nvcc_build "$BUILD/driver_api" "$GPU_DIR/cuda/driver_api.cpp" $link || echo "BUILD FAILED: driver_api"
  else
    echo "BUILD FAILED: driver_api: no libcuda to link against"
  fi
  echo "build took $(elapsed "$t0") s"
}
build >>"$LOG" 2>&1

# --------------------------------------------------------------------- checks
write_summary() {
  "$PY" "$REPORT_PY" suite-summary "$WORK/facts.json" "$WORK/checks.jsonl" "$MODE" "$OUTDIR/gpu-suite.json"
}
write_summary
run_entries "${CHECKS[@]}"

# -------------------------------------------------------------------- summary
write_summary
read -r passed failed skipped < <("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["passed"], s["failed"], s["skipped"])' "$OUTDIR/gpu-suite.json")
say "suite took $(elapsed "$T_START") s; log $LOG, summary $OUTDIR/gpu-suite.json"
say "${passed} passed, ${failed} failed, ${skipped} skipped"
((failed == 0))
