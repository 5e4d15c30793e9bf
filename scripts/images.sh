#!/usr/bin/env bash
# LiteObs container images (Dockerfiles in deploy/docker/).
#   bash scripts/images.sh build          liteobs-server and liteobs-agent images from the release
#                                         binaries in the target dir (stripped), FROM debian:bookworm-slim
#   bash scripts/images.sh build-source   the same images from the Dockerfiles' rust builder stage
#                                         (needs a registry for the rust and debian images)
#   bash scripts/images.sh test           what the container tests and the e2e use: `build`, plus
#                                         liteobs-test-base:bookworm (Debian with python3 and curl)
# Every mode starts dockerd when no Docker daemon answers (as root) and waits for it.
#
# Without a registry (this project's build machines), debian:bookworm-slim is made here: debootstrap
# --variant=minbase, imported with `docker import`, once per machine (the root file system is cached
# as a tar in $LITEOBS_IMAGE_CACHE). The Dockerfiles are the ones users build with a registry.
#
# Sourced by scripts/e2e.sh, e2e-kind.sh and start.sh for its functions; run, it does one mode.
# shellcheck shell=bash

IMAGE_CACHE=${LITEOBS_IMAGE_CACHE:-/var/cache/liteobs/images}
# The release binaries to package (default: the target dir of scripts/lib.sh; the tests in
# deploy/check set LITEOBS_BIN_DIR).
IMAGE_BIN_DIR=${LITEOBS_BIN_DIR:-${BIN_DIR:-}}
DEBIAN_MIRROR=${LITEOBS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TEST_BASE_IMAGE=liteobs-test-base:bookworm
DEBIAN_IMAGE=debian:bookworm-slim
# libpcap0.8 for the agent image; python3 and curl for the e2e workloads; ca-certificates for both.
TEST_BASE_PACKAGES=libpcap0.8,python3,curl,ca-certificates
DOCKERD_LOG=${LITEOBS_DOCKERD_LOG:-/var/log/liteobs-dockerd.log}

# liteobs_version: the workspace version, which is also the images' tag.
liteobs_version() {
    sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1
}
IMAGE_TAG=$(liteobs_version)
# shellcheck disable=SC2034 # used by the scripts that source this one
SERVER_IMAGE=liteobs-server:$IMAGE_TAG
# shellcheck disable=SC2034
AGENT_IMAGE=liteobs-agent:$IMAGE_TAG

# d ARGS...: docker, time-bounded, so that a wedged daemon fails the run instead of hanging it.
d() { timeout "${DOCKER_TIMEOUT:-300}" docker "$@"; }

# alive PIDFILE: the process PIDFILE names is running (a zombie is not).
alive() {
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    [ -n "$pid" ] && grep -qs '^State:[[:space:]]*[RSD]' "/proc/$pid/status"
}

# ensure_dockerd: a Docker daemon that answers, started here (as root) when none does.
ensure_dockerd() {
    command -v docker >/dev/null || ensure_packages docker.io
    docker info >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "no Docker daemon answers: start it (e.g. sudo systemctl start docker) or run as root"
    command -v dockerd >/dev/null || ensure_packages docker.io
    local i pid=
    for _ in 1 2; do
        if alive /var/run/docker.pid; then
            say "waiting for dockerd (pid $(cat /var/run/docker.pid)) to answer"
        else
            # After a SIGKILL, the pid files of the dead daemon and of its containerd block the
            # next start.
            alive /var/run/docker/containerd/containerd.pid || rm -f /var/run/docker/containerd/containerd.pid
            rm -f /var/run/docker.pid
            # --iptables=false: LiteObs's containers need no NAT (they talk over their own bridge,
            # and published ports go through docker-proxy), and a daemon managing iptables sets the
            # host's FORWARD policy to DROP, which breaks tests routing between network namespaces.
            say "starting dockerd --iptables=false (log: $DOCKERD_LOG)"
            setsid dockerd --iptables=false >>"$DOCKERD_LOG" 2>&1 </dev/null &
            pid=$!
        fi
        for i in $(seq 600); do
            docker info >/dev/null 2>&1 && return 0
            # The daemon we started gave up (e.g. a dying containerd was still there): once more.
            if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then break; fi
            sleep 0.1
        done
        [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null && break
        sleep 2
    done
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within 60 s (log: $DOCKERD_LOG)"
}

# image_lock: serialise image work on this machine (two test binaries, or two people).
image_lock() {
    mkdir -p "$IMAGE_CACHE" 2>/dev/null || { as_root mkdir -p "$IMAGE_CACHE" && as_root chown "$(id -u):$(id -g)" "$IMAGE_CACHE"; }
    exec 9>"$IMAGE_CACHE/.lock"
    flock -w 900 9 || die "another process holds $IMAGE_CACHE/.lock for more than 15 minutes"
}
image_unlock() { exec 9>&-; }

# unmount_under DIR: what debootstrap may leave mounted inside a root file system it did not finish.
unmount_under() {
    local m
    for m in $(awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# ensure_test_base: liteobs-test-base:bookworm (Debian 12 minbase + TEST_BASE_PACKAGES), and
# debian:bookworm-slim pointing at it when that image is not here already.
ensure_test_base() {
    if ! docker image inspect "$TEST_BASE_IMAGE" >/dev/null 2>&1; then
        local tar=$IMAGE_CACHE/bookworm-minbase.tar rootfs
        if [ ! -s "$tar" ]; then
            [ "$(id -u)" = 0 ] || die "making the base image needs root (debootstrap): run as root"
            command -v debootstrap >/dev/null || ensure_packages debootstrap
            rootfs=$(mktemp -d "$IMAGE_CACHE/rootfs.XXXXXX")
            say "debootstrap bookworm minbase + $TEST_BASE_PACKAGES (once per machine, about a minute)"
            if ! timeout 1200 debootstrap --variant=minbase --include="$TEST_BASE_PACKAGES" bookworm "$rootfs" \
                "$DEBIAN_MIRROR" >"$IMAGE_CACHE/debootstrap.log" 2>&1; then
                unmount_under "$rootfs"
                rm -rf --one-file-system "$rootfs"
                tail -n 20 "$IMAGE_CACHE/debootstrap.log" >&2
                die "debootstrap failed (log: $IMAGE_CACHE/debootstrap.log)"
            fi
            unmount_under "$rootfs"
            rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
            tar -C "$rootfs" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
            rm -rf --one-file-system "$rootfs"
        fi
        say "docker import $tar as $TEST_BASE_IMAGE"
        d import --change 'CMD ["bash"]' "$tar" "$TEST_BASE_IMAGE" >/dev/null
    fi
    if ! docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1; then
        say "no $DEBIAN_IMAGE here: tagging $TEST_BASE_IMAGE as $DEBIAN_IMAGE (the Dockerfiles' FROM)"
        d tag "$TEST_BASE_IMAGE" "$DEBIAN_IMAGE"
    fi
}

# ensure_debian_base: debian:bookworm-slim from a registry when one answers, else made here.
ensure_debian_base() {
    docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 && return 0
    d pull -q "$DEBIAN_IMAGE" >/dev/null 2>&1 && return 0
    say "cannot pull $DEBIAN_IMAGE (no registry?): making it with debootstrap"
    ensure_test_base
}

# stage_binary NAME CONTEXT: NAME from IMAGE_BIN_DIR without its debug info (DuckDB's C++ makes
# the server's 1.5 GB), copied again only when the source file changed.
stage_binary() {
    local src=$IMAGE_BIN_DIR/$1 dst=$2/$1 id
    [ -x "$src" ] || die "$src is missing: build first (cargo build --release --locked --workspace --bins)"
    id=$(stat -L -c '%d:%i:%s:%Y' "$src")
    if [ ! -x "$dst" ] || [ "$(cat "$dst.source" 2>/dev/null)" != "$id" ]; then
        objcopy --strip-debug "$src" "$dst.tmp" || die "objcopy --strip-debug $src failed (install binutils)"
        mv "$dst.tmp" "$dst"
        echo "$id" >"$dst.source"
    fi
}

# build_prebuilt_images: liteobs-server and liteobs-agent from the binaries in IMAGE_BIN_DIR
# (built on Debian 12, so they run on the bookworm base), with the legacy builder, which uses
# the local debian:bookworm-slim and never pulls it.
build_prebuilt_images() {
    [ -n "$IMAGE_BIN_DIR" ] || die "no binary directory (set LITEOBS_BIN_DIR)"
    local ctx=$IMAGE_CACHE/context
    mkdir -p "$ctx"
    for b in liteobs-server liteobs-client liteobs-agent; do stage_binary "$b" "$ctx"; done
    # Only the three binaries go to the daemon.
    printf '*\n!liteobs-server\n!liteobs-client\n!liteobs-agent\n' >"$ctx/.dockerignore"
    local what image
    for what in server agent; do
        image=liteobs-$what:$IMAGE_TAG
        DOCKER_BUILDKIT=0 d build -q --force-rm -f "deploy/docker/$what.Dockerfile" --build-arg PREBUILT=1 \
            --build-arg RUST_IMAGE="$DEBIAN_IMAGE" -t "$image" "$ctx" >/dev/null 2>"$IMAGE_CACHE/build-$what.log" \
            || { cat "$IMAGE_CACHE/build-$what.log" >&2; die "docker build of $image failed"; }
        say "built $image"
    done
    # Rebuilds leave the previous images untagged: remove those (ours only).
    d image prune -f --filter label=org.opencontainers.image.vendor=LiteObs >/dev/null || true
}

# build_source_images: the same images built from source in the Dockerfiles' builder stage.
build_source_images() {
    local what
    for what in server agent; do
        d build -f "deploy/docker/$what.Dockerfile" -t "liteobs-$what:$IMAGE_TAG" . \
            || die "docker build of liteobs-$what:$IMAGE_TAG failed"
    done
}

images_main() {
    case "${1:-}" in
        build)
            ensure_dockerd
            image_lock
            ensure_debian_base
            build_prebuilt_images
            image_unlock ;;
        build-source)
            ensure_dockerd
            DOCKER_TIMEOUT=7200 build_source_images ;;
        test)
            ensure_dockerd
            image_lock
            ensure_test_base
            build_prebuilt_images
            image_unlock ;;
        *) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
           die "unknown mode '${1:-}' (use build, build-source or test)" ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cd "$(dirname "$0")/.."
    . scripts/lib.sh
    IMAGE_BIN_DIR=${LITEOBS_BIN_DIR:-$BIN_DIR}
    images_main "$@"
fi
