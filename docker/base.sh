#!/usr/bin/env bash
# Makes the two base images nvshare builds on, locally, from Debian 11's
# packages (these machines reach Debian's archive but no container
# registry, so no image can be pulled):
#   nvshare-base:bullseye     a minimal Debian 11 (debootstrap minbase), for
#                             the builder (docker/Dockerfile.builder)
#   nvshare-runtime:bullseye  a root file system of glibc, libgcc and
#                             busybox only, for the shipped image
# Each is made once and kept; NVSHARE_REBASE=1 makes them again.
# Needs root (debootstrap) and debootstrap (installed with apt-get if
# missing). Set DEBIAN_MIRROR to use another mirror.
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bullseye

have() { [[ "${NVSHARE_REBASE:-0}" != 1 ]] && docker image inspect "$1" > /dev/null 2>&1; }

if ! have "nvshare-base:$SUITE"; then
    if [[ $(id -u) != 0 ]]; then
        echo "docker/base.sh: making nvshare-base:$SUITE needs root (debootstrap); run it as root once" >&2
        exit 1
    fi
    if ! command -v debootstrap > /dev/null; then
        echo "docker/base.sh: installing debootstrap" >&2
        apt-get install -y debootstrap > /dev/null 2>&1 \
            || { apt-get update > /dev/null && apt-get install -y debootstrap > /dev/null; }
    fi
    rootfs=$(mktemp -d /tmp/nvshare-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "docker/base.sh: debootstrap $SUITE from $MIRROR" >&2
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" > "$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; echo "docker/base.sh: debootstrap failed (log above)" >&2; exit 1; }
    rm -f "$rootfs.log"
    # What a build environment does not need.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "nvshare-base:$SUITE" > /dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

if ! have "nvshare-runtime:$SUITE"; then
    echo "docker/base.sh: making nvshare-runtime:$SUITE (glibc, libgcc, busybox)" >&2
    # Unpacked (not installed) from the packages: no dpkg, apt or shell
    # scripts in what ships; busybox gives the probes and people a shell.
    docker run --rm "nvshare-base:$SUITE" sh -euc '
        apt-get update > /dev/null
        cd /tmp && apt-get download libc6 libgcc-s1 busybox-static > /dev/null
        mkdir -p /r/tmp /r/etc /r/var/run /r/usr/local/bin /r/root
        chmod 1777 /r/tmp
        for deb in /tmp/*.deb; do dpkg-deb -x "$deb" /r; done
        rm -rf /r/usr/share/doc /r/usr/share/lintian /r/usr/share/man \
               /r/usr/lib/x86_64-linux-gnu/gconv /r/usr/share/locale
        chroot /r /bin/busybox --install -s /bin
        printf "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" > /r/etc/passwd
        printf "root:x:0:\nnogroup:x:65534:\n" > /r/etc/group
        tar -C /r -c .' \
    | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'CMD ["/bin/sh"]' - "nvshare-runtime:$SUITE" > /dev/null
fi
