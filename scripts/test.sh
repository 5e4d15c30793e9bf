#!/usr/bin/env bash
# Every check LiteObs has: formatting, clippy, and all tests (unit, conformance, integration,
# root-only capture tests), for the SQLite-only build and the default (DuckDB) build.
# Installs missing system packages and cargo components first. Root-only tests skip when not
# root, and fail instead when LITEOBS_REQUIRE_PRIVILEGED=1 (as .ci/run sets).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages build-essential pkg-config libpcap-dev python3 curl tcpdump tshark nginx-light wrk
ensure_rust
ensure_target_dir
say "target dir $CARGO_TARGET_DIR (one profile: release)"

say "cargo fmt --check"
cargo fmt --all --check

# The SQLite-only server first (it builds in seconds), then the default build, so that the
# binaries left in the target dir at the end are the default ones.
say "SQLite-only build: clippy and tests"
cargo build $CARGO_PROFILE_FLAG --locked -p liteobs-server -p liteobs-client --no-default-features
cargo clippy $CARGO_PROFILE_FLAG --locked -p liteobs-server -p liteobs-integration --no-default-features --all-targets -- -D warnings
cargo test $CARGO_PROFILE_FLAG --locked -p liteobs-server -p liteobs-integration --no-default-features

say "default build (DuckDB + SQLite): clippy and every test"
cargo build $CARGO_PROFILE_FLAG --locked --workspace --all-targets
cargo clippy $CARGO_PROFILE_FLAG --locked --workspace --all-targets -- -D warnings
cargo test $CARGO_PROFILE_FLAG --locked --workspace
say "all checks passed"
