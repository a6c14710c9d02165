#!/usr/bin/env bash
# Builds the nvshare image from this checkout with nothing pulled:
#   1. the base images (docker/base.sh, from Debian's packages, made once);
#   2. the binaries, once, in the builder image (glibc 2.31, so that
#      libnvshare.so loads into users' older images too), with this
#      machine's Rust toolchain and crate cache mounted (`cargo fetch` here
#      first), profile `dist`: release code, no debug info, stripped;
#   3. the image (docker/Dockerfile) from those binaries, and, with --test,
#      the test image (docker/Dockerfile.test: plus the fake driver and
#      cuda-worker) that docker/test.sh runs.
# Usage: docker/build.sh [--test]      (NVSHARE_IMAGE sets the tag)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
IMAGE=${NVSHARE_IMAGE:-nvshare:$VERSION}
WITH_TEST=0
[[ "${1:-}" == --test ]] && WITH_TEST=1

started=$(date +%s)
docker/base.sh
docker build -q -t nvshare-builder:bullseye -f docker/Dockerfile.builder docker > /dev/null

packages=(-p nvshare-scheduler -p nvshare-ctl -p nvshare-hook -p nvshare-device-plugin)
if [[ $WITH_TEST == 1 ]]; then
    packages+=(-p fake-cuda -p cuda-programs)
fi
cargo fetch --locked > /dev/null
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
SYSROOT=$(rustc --print sysroot)
echo "docker/build.sh: building ${packages[*]} (profile dist) in nvshare-builder:bullseye" >&2
docker run --rm --user "$(id -u):$(id -g)" \
    -v "$ROOT:/src" -v "$SYSROOT:/opt/rust:ro" -v "$CARGO_HOME:/cargo" \
    -e CARGO_HOME=/cargo -e HOME=/tmp -e CARGO_TERM_COLOR=never \
    -e PATH=/opt/rust/bin:/usr/bin:/bin -w /src \
    nvshare-builder:bullseye \
    cargo build --profile dist --locked --offline --target-dir target/docker "${packages[@]}"
built=$(date +%s)

out=target/docker/dist
context=target/docker/context
rm -rf "$context" && mkdir -p "$context/bin" "$context/test"
cp "$out/nvshare-scheduler" "$out/nvshare-ctl" "$out/nvshare-device-plugin" "$out/libnvshare.so" "$context/bin/"
cp docker/Dockerfile "$context/"
docker build -q --build-arg VERSION="$VERSION" -t "$IMAGE" "$context" > /dev/null
if [[ $WITH_TEST == 1 ]]; then
    cp "$out/libcuda.so" "$context/test/libcuda.so.1"
    cp "$out/cuda-worker" "$context/test/"
    cp docker/Dockerfile.test "$context/"
    docker build -q --build-arg IMAGE="$IMAGE" -t "nvshare-test:$VERSION" \
        -f "$context/Dockerfile.test" "$context" > /dev/null
fi
finished=$(date +%s)
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
echo "docker/build.sh: $IMAGE: $((size / 1000000)) MB; binaries built in $((built - started)) s, all in $((finished - started)) s" >&2
