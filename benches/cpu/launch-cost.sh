#!/usr/bin/env bash
# The hook's own CPU cost per kernel launch, counted by callgrind
# (instructions, not seconds: the same on a loaded or idle machine).
#
# cuda-worker on the fake driver launches one kernel per iteration (4 KiB
# buffer, one stream, no pauses), under the hook with the gate open as for
# a holder (`NVSHARE_SCHEDULER=off`), at two iteration counts; per launch is
# the difference over the difference in launches, so start-up and exit
# cancel out. The hook's cost is what callgrind collects with
# `--collect-atstart=no --toggle-collect=cuLaunchKernel`: collection turns
# on entering the hook's `cuLaunchKernel` and off again inside the real
# one it calls (same name), so exactly the hook's own instructions per
# launch are counted, on the launching thread only. (Summing the self cost
# of libnvshare.so's functions instead over-counts: callgrind merges
# same-named functions of different objects, so the fake driver's and the
# program's Rust allocator shims, `__rust_alloc` and friends, were charged
# to the preloaded hook, about 16 instructions per launch, and the hook's
# background threads' work came on top.) Also printed: the whole program's
# instructions per launch with and without the hook; their difference is
# not the hook's cost either (libc's heap does one-time work differently
# in the two runs).
# Issue 16's target: <= 40. Last line: `hook instructions per launch: N`.
#
# Usage: benches/cpu/launch-cost.sh [LOW HIGH]   (iterations; default 2000 6000)
set -euo pipefail
cd "$(dirname "$0")/../.."
LOW=${1:-2000}
HIGH=${2:-6000}
command -v valgrind > /dev/null || { echo "launch-cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p nvshare-hook -p fake-cuda -p cuda-programs
T=$PWD/target/release
LIB=$T/fake-cuda-lib
mkdir -p "$LIB"
ln -sf "$T/libcuda.so" "$LIB/libcuda.so.1"
STATE=$(mktemp -d)
trap 'rm -rf "$STATE"' EXIT

# One run: `run OUT ITERATIONS [LD_PRELOAD [VALGRIND OPTIONS...]]` leaves
# callgrind's data in OUT.
run() {
    local out=$1 iterations=$2 preload=${3:-}
    shift $(($# < 3 ? $# : 3))
    env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$LIB" FAKE_CUDA_STATE_DIR="$STATE" \
        ${preload:+LD_PRELOAD=$preload} NVSHARE_SCHEDULER=off NVSHARE_LOG=error \
        valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
        "$T/cuda-worker" --bytes 4096 --iterations "$iterations" > /dev/null 2>&1
}
total() { sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1"; }
own=(--collect-atstart=no --toggle-collect=cuLaunchKernel)

run "$STATE/native.low" "$LOW"
run "$STATE/native.high" "$HIGH"
run "$STATE/hooked.low" "$LOW" "$T/libnvshare.so"
run "$STATE/hooked.high" "$HIGH" "$T/libnvshare.so"
run "$STATE/own.low" "$LOW" "$T/libnvshare.so" "${own[@]}"
run "$STATE/own.high" "$HIGH" "$T/libnvshare.so" "${own[@]}"
launches=$((HIGH - LOW))
native=$((($(total "$STATE/native.high") - $(total "$STATE/native.low")) / launches))
hooked=$((($(total "$STATE/hooked.high") - $(total "$STATE/hooked.low")) / launches))
hook=$((($(total "$STATE/own.high") - $(total "$STATE/own.low")) / launches))
echo "whole program: native $native, hooked $hooked instructions per launch (difference $((hooked - native)))"
echo "hook instructions per launch: $hook"
