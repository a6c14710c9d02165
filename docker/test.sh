#!/usr/bin/env bash
# The container test: nvshare as operators run it, one container each,
# sharing only the socket volume and the fake GPU (the fake driver's state
# volume, standing for one card that every container sees).
#   - the scheduler in one container (64 MiB virtual GPU, quantum 200 ms);
#   - two programs under LD_PRELOAD=/opt/nvshare/libnvshare.so in two more
#     (cuda-worker, 40 MiB each in swap mode: they do not fit together, so
#     they time-slice and swap);
#   - the scheduler container is killed (SIGKILL) while they run and started
#     again on the same socket volume: they keep running;
#   - both must exit 0 with a verified checksum, and the restarted
#     scheduler's status must show switches and memory swapped out.
# Builds the images first (docker/build.sh --test). Skipped, with a line
# saying why, where no Docker daemon answers. Prints its timings.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info > /dev/null 2>&1; then
    echo "docker/test.sh: SKIPPED: no Docker daemon answers here (docker info failed)"
    exit 0
fi

started=$(date +%s)
docker/build.sh --test
built=$(date +%s)
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
IMAGE=nvshare-test:$VERSION
P=nvshare-ct-$$
SOCK=/var/run/nvshare/scheduler.sock

cleanup() {
    docker rm -f "$P-scheduler" "$P-a" "$P-b" > /dev/null 2>&1 || true
    docker volume rm "$P-run" "$P-gpu" > /dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
    echo "docker/test.sh: FAILED: $*" >&2
    for c in "$P-scheduler" "$P-a" "$P-b"; do
        echo "--- logs of $c" >&2
        docker logs "$c" 2>&1 | tail -30 >&2 || true
    done
    exit 1
}

docker volume create "$P-run" > /dev/null
docker volume create "$P-gpu" > /dev/null

start_scheduler() {
    docker run -d --name "$P-scheduler" -v "$P-run:/var/run/nvshare" "$IMAGE" \
        nvshare-scheduler --socket "$SOCK" --memory-capacity 64MiB --quantum 200ms \
        --recovery-grace 1 > /dev/null
}
status() {
    docker exec "$P-scheduler" nvshare-ctl --socket "$SOCK" status --json
}
wait_for() { # seconds, description, command...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 10))); do
        if "$@" > /dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "$what"
}
program() { # name
    docker run -d --name "$P-$1" \
        -v "$P-run:/var/run/nvshare" -v "$P-gpu:/var/lib/fake-gpu" \
        -e LD_PRELOAD=/opt/nvshare/libnvshare.so -e NVSHARE_SOCK="$SOCK" \
        -e NVSHARE_SCHEDULER=external -e NVSHARE_MODE=swap -e NVSHARE_NAME="$1" \
        -e FAKE_CUDA_STATE_DIR=/var/lib/fake-gpu \
        "$IMAGE" cuda-worker --bytes $((40 << 20)) --iterations 150 \
        --sleep-us 20000 --pause-ms 1 > /dev/null
}

start_scheduler
wait_for 20 "the scheduler never answered" status
program a
program b
# Both attached, and the GPU changed hands at least once.
switched() { status | grep -q '"switches": [1-9]'; }
wait_for 30 "the programs never time-sliced" switched
before=$(status)
swapped_out() { echo "$1" | grep -q '"bytes_evicted": [1-9]'; }
swapped_out "$before" || fail "no memory was swapped out before the restart: $before"

# Kill the scheduler in the middle of their work and start it again.
docker kill "$P-scheduler" > /dev/null
sleep 0.3
docker start "$P-scheduler" > /dev/null
restarted=$(date +%s)
both_back() { [[ $(status | grep -c '"name": "[ab]"') == 2 ]]; }
wait_for 20 "the programs did not re-attach to the restarted scheduler" both_back
# The restarted scheduler counts from zero: it must see them switch and
# swap again.
switched_and_swapped() {
    local now
    now=$(status) && echo "$now" | grep -q '"switches": [1-9]' && swapped_out "$now"
}
wait_for 30 "the programs did not time-slice and swap after the restart" switched_and_swapped

for name in a b; do
    code=$(docker wait "$P-$name")
    out=$(docker logs "$P-$name" 2> /dev/null | grep '^{' | tail -1)
    [[ $code == 0 ]] || fail "program $name exited with $code: $out"
    echo "$out" | grep -q '"ok":true' || fail "program $name did not verify its result: $out"
done
finished=$(date +%s)
echo "docker/test.sh: passed: 2 programs time-sliced and swapped in containers, kept running through a scheduler restart, results verified"
echo "docker/test.sh: images built in $((built - started)) s; containers ran $((finished - built)) s ($((finished - restarted)) s after the restart)"
