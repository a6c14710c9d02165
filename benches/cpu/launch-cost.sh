#!/usr/bin/env bash
# The hook's own CPU cost per kernel launch, counted by callgrind
# (instructions, not seconds: the same on a loaded or idle machine).
#
# cuda-worker on the fake driver launches one kernel per iteration (4 KiB
# buffer, one stream, no pauses), under the hook with the gate open as for
# a holder (`NVSHARE_SCHEDULER=off`), at two iteration counts; per launch is
# the difference over the difference in launches, so start-up and exit
# cancel out. The hook's cost is what runs inside libnvshare.so (callgrind's
# self cost of its object). Also printed: the whole program's instructions
# per launch with and without the hook. Their difference is not the hook's
# cost: it also holds libc's heap doing one-time work differently in the two
# runs (the swap engine's zeroed bookkeeping and malloc_consolidate cost
# more or less depending on the heap's state after N launches), which the
# subtraction does not cancel.
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

# One run: `run OUT ITERATIONS [LD_PRELOAD]` leaves callgrind's data in OUT.
run() {
    local out=$1 iterations=$2 preload=${3:-}
    env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$LIB" FAKE_CUDA_STATE_DIR="$STATE" \
        ${preload:+LD_PRELOAD=$preload} NVSHARE_SCHEDULER=off NVSHARE_LOG=error \
        valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$T/cuda-worker" --bytes 4096 --iterations "$iterations" > /dev/null 2>&1
}
total() { sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1"; }
# Instructions executed inside libnvshare.so.
in_hook() {
    callgrind_annotate --threshold=100 "$1" 2> /dev/null \
        | awk '/\[.*libnvshare\.so\]/ { gsub(",", "", $1); sum += $1 } END { print sum + 0 }'
}

run "$STATE/native.low" "$LOW"
run "$STATE/native.high" "$HIGH"
run "$STATE/hooked.low" "$LOW" "$T/libnvshare.so"
run "$STATE/hooked.high" "$HIGH" "$T/libnvshare.so"
launches=$((HIGH - LOW))
native=$((($(total "$STATE/native.high") - $(total "$STATE/native.low")) / launches))
hooked=$((($(total "$STATE/hooked.high") - $(total "$STATE/hooked.low")) / launches))
hook=$((($(in_hook "$STATE/hooked.high") - $(in_hook "$STATE/hooked.low")) / launches))
echo "whole program: native $native, hooked $hooked instructions per launch (difference $((hooked - native)))"
echo "hook instructions per launch: $hook"
