#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets of integration/fuzz (nightly toolchain, AddressSanitizer,
# debug assertions), makes their seed corpora from fixtures/, and runs each target for a bounded
# time; any crash, panic, failed property or timeout fails the script and leaves the input in
# $LITEOBS_FUZZ_DIR/artifacts/TARGET/.
#
#   scripts/fuzz.sh [TARGET...]        every target (default) or the ones named
#   LITEOBS_FUZZ_SECONDS=N             fuzzing time per target (default 10)
#   LITEOBS_FUZZ_JOBS=N                targets fuzzed at once (default 1)
#   LITEOBS_FUZZ_FLAGS="..."           more libFuzzer flags (the long run in BENCHMARKS.md uses
#                                      -fork=1 -ignore_crashes=1 to go on after a failure)
#   LITEOBS_FUZZ_DIR=DIR               corpora and crash inputs (default /var/cache/liteobs/fuzz,
#                                      outside the clone: a fresh clone starts from the corpus
#                                      earlier runs grew)
#   LITEOBS_FUZZ_LOGS=DIR              libFuzzer's output, one log per target (default
#                                      $LITEOBS_FUZZ_DIR/logs)
#
# Without a nightly toolchain (or cargo-fuzz, when it cannot be installed) it says SKIPPED and
# exits 0, or fails when LITEOBS_REQUIRE_PRIVILEGED=1 (as .ci/run sets).
# To reproduce a crash: cargo +nightly fuzz run --fuzz-dir integration/fuzz TARGET FILE
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TARGETS=(http_stream reassembler decode pcap pcapng upload query_filter)
SECONDS_EACH=${LITEOBS_FUZZ_SECONDS:-10}
FUZZ_DIR=${LITEOBS_FUZZ_DIR:-/var/cache/liteobs/fuzz}
LOG_DIR=${LITEOBS_FUZZ_LOGS:-$FUZZ_DIR/logs}
JOBS=${LITEOBS_FUZZ_JOBS:-1}
# Its own target dir: sanitizer flags would otherwise rebuild the main target dir's crates.
export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/cargo-fuzz
FUZZ_BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release

skip_or_die() {
    if [ "${LITEOBS_REQUIRE_PRIVILEGED:-}" = 1 ]; then
        die "fuzzing needs $1, and LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping it"
    fi
    say "SKIPPED fuzzing (scripts/fuzz.sh): needs $1 (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)"
    exit 0
}

ensure_rust
cargo +nightly --version >/dev/null 2>&1 || skip_or_die "the nightly toolchain (rustup toolchain install nightly)"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked >/dev/null 2>&1 || skip_or_die "cargo-fuzz (cargo install cargo-fuzz --locked failed)"
fi
[ $# -gt 0 ] && TARGETS=("$@")

say "fuzz: cargo fmt --check (integration/fuzz)"
cargo fmt --manifest-path integration/fuzz/Cargo.toml --check

say "fuzz: building ${TARGETS[*]} and the seed maker (target dir $CARGO_TARGET_DIR)"
mkdir -p "$CARGO_TARGET_DIR" "$FUZZ_DIR"
# No target named: every bin of the crate, the seed maker too.
cargo +nightly fuzz build --fuzz-dir integration/fuzz

rm -rf "$FUZZ_DIR/seeds"
"$FUZZ_BIN/seeds" fixtures "$FUZZ_DIR/seeds" >&2

# fuzz_one TARGET: fuzz it for SECONDS_EACH; on failure print the end of its log and the input.
fuzz_one() {
    local t=$1 log=$LOG_DIR/$1.log
    mkdir -p "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/artifacts/$t" "$FUZZ_DIR/seeds/$t"
    say "fuzz: $t for ${SECONDS_EACH}s (log $log)"
    # New inputs go into the first directory (kept between runs); the seeds are only read.
    # -timeout: one input taking over 30 s is a hang, and a failure (under ASan, on a loaded
    # machine, a 64 MiB record or a crash report can take 10 s). The outer timeout covers
    # loading a large corpus, plus a margin.
    if ! timeout $((SECONDS_EACH * 2 + 300)) "$FUZZ_BIN/$t" \
        "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/seeds/$t" \
        -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -max_len=16400 \
        -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/$t/" ${LITEOBS_FUZZ_FLAGS:-} >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        say "fuzz target $t FAILED; input(s) in $FUZZ_DIR/artifacts/$t/ (reproduce: cargo +nightly fuzz run --fuzz-dir integration/fuzz $t FILE)"
        return 1
    fi
    # Executions: libFuzzer's final stats, or (with -fork) its last progress line.
    local runs
    runs=$(grep -oE '^(stat::number_of_executed_units: *|#)[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$' || true)
    say "fuzz: $t: ${runs:-?} executions, corpus $(find "$FUZZ_DIR/corpus/$t" -type f | wc -l) files"
}

for t in "${TARGETS[@]}"; do
    [ -x "$FUZZ_BIN/$t" ] || die "no fuzz target $t (known: $(cargo +nightly fuzz list --fuzz-dir integration/fuzz | tr '\n' ' '))"
done
mkdir -p "$LOG_DIR"
failed=0
running=0
for t in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    fuzz_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
[ "$failed" = 0 ] || die "fuzzing found a failure (see above)"
say "fuzz: no crash in ${TARGETS[*]}"
