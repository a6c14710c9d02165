# The build environment of the shipped binaries, FROM the Debian 11 base
# that docker/base.sh makes locally (no image is pulled): a C linker and
# glibc 2.31's headers. Binaries linked here need glibc >= 2.31 (Debian 11,
# Ubuntu 20.04, RHEL 9 and later), which matters for libnvshare.so: it is
# preloaded into users' containers. The Rust toolchain is not installed:
# docker/build.sh mounts the host's (rustup is not reachable here).
ARG BASE=nvshare-base:bullseye
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
