#!/usr/bin/env bash
# Every check LiteObs has: formatting, clippy, and all tests (unit, conformance, integration,
# root-only capture tests), for the SQLite-only build and the default (DuckDB) build; then the
# deployment's (deploy/check: manifests, the server image under testcontainers, the Nix flake) and
# the container e2e (scripts/e2e.sh) and the two-node cluster e2e (scripts/e2e-cluster.sh).
# Installs missing system packages and cargo components first. Root-only tests skip when not
# root, and fail instead when LITEOBS_REQUIRE_PRIVILEGED=1 (as .ci/run sets).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages build-essential pkg-config libpcap-dev python3 curl tcpdump tshark nginx-light wrk \
    docker.io debootstrap nix-bin containerd runc nodejs iptables \
    zsh fish man-db \
    chromium chromium-driver  # the completions and man page by real shells and man; the web page in a real browser
# deploy/check runs `kubectl kustomize`; Debian 12 and Ubuntu LTS have no kubectl package (Debian
# 12's kubernetes-client is 1.20, from 2021), so it is installed only where an apt source has it.
command -v kubectl >/dev/null || ensure_packaged_if_any kubectl
# The ClickHouse backend's tests start real servers: Debian 12 packages ClickHouse 18.16 (the
# oldest release LiteObs supports); where no apt source has it, those tests say SKIPPED.
ensure_packaged_if_any clickhouse-server
ensure_rust
ensure_target_dir

# deploy/check and the e2e start dockerd when none answers; a daemon this run started is stopped
# when it ends (also on failure), so the machine is left as it was found.
docker_was_up=0
docker info >/dev/null 2>&1 && docker_was_up=1
stop_started_dockerd() {
    local pid
    [ "$docker_was_up" = 0 ] || return 0
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    say "stopping the dockerd this run started (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
trap stop_started_dockerd EXIT
say "target dir $CARGO_TARGET_DIR (one profile: release)"
forget_other_checkout

say "cargo fmt --check"
cargo fmt --all --check
cargo fmt --manifest-path deploy/check/Cargo.toml --check

# The SQLite-only server first (it builds in seconds), then the default build, so that the
# binaries left in the target dir at the end are the default ones. Every binary the integration
# tests run is built here, the agent included: a warm target dir would otherwise hand them the
# binaries of an earlier build.
say "SQLite-only build: clippy and tests"
cargo build $CARGO_PROFILE_FLAG --locked -p liteobs-server -p liteobs-client -p liteobs-agent --no-default-features
cargo clippy $CARGO_PROFILE_FLAG --locked -p liteobs-server -p liteobs-integration --no-default-features --all-targets -- -D warnings
cargo test $CARGO_PROFILE_FLAG --locked -p liteobs-server -p liteobs-integration --no-default-features

say "default build (DuckDB + SQLite): clippy and every test"
cargo build $CARGO_PROFILE_FLAG --locked --workspace --all-targets
cargo clippy $CARGO_PROFILE_FLAG --locked --workspace --all-targets -- -D warnings
cargo test $CARGO_PROFILE_FLAG --locked --workspace

# The cargo-fuzz targets (integration/fuzz, nightly): built, seeded from fixtures/, each run
# for a short bounded time; scripts/fuzz.sh says when it skips.
say "fuzz targets, ${LITEOBS_FUZZ_SECONDS:-10}s each (scripts/fuzz.sh)"
bash scripts/fuzz.sh

# A workspace of its own (deploy/check/Cargo.toml says why) with its own target dir; it tests the
# binaries just built, packaged in images.
say "deploy/: manifests, server image under testcontainers, Nix flake"
(
    cd deploy/check
    export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/deploy-check LITEOBS_BIN_DIR=$BIN_DIR
    cargo clippy $CARGO_PROFILE_FLAG --locked --all-targets -- -D warnings
    cargo test $CARGO_PROFILE_FLAG --locked
)

if [ "$(id -u)" = 0 ]; then
    say "e2e: this machine as a Kubernetes node, with containers (scripts/e2e.sh)"
    timeout 1200 bash scripts/e2e.sh --no-build
    # About 10 s of setup and traffic, up to 25 s more waiting for late records; the timeout leaves room for a slow machine, and its SIGTERM still cleans up.
    say "e2e: two nodes, a containerd each, pods, Services, one agent per node (scripts/e2e-cluster.sh)"
    timeout 240 bash scripts/e2e-cluster.sh --no-build
elif [ "${LITEOBS_REQUIRE_PRIVILEGED:-}" = 1 ]; then
    die "the e2es (scripts/e2e.sh, scripts/e2e-cluster.sh) need root, and LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping them"
else
    say "SKIPPED e2es (scripts/e2e.sh, scripts/e2e-cluster.sh): need root (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)"
fi
say "all checks passed"
