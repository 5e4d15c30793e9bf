# LiteObs tasks. One cargo profile (release) and one target dir outside the clone, as in scripts/lib.sh.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/cache/liteobs/target")

# list recipes
default:
    @just --list

# build every binary (release)
build:
    cargo build --release --locked --workspace --bins

# fmt, clippy and every test, exactly as CI runs them
test:
    bash scripts/test.sh

# server + client (and agent as root) on this machine, real traffic, then the table
local *ARGS:
    bash scripts/start.sh local {{ARGS}}

# liteobs-client against $LITEOBS_SERVER
query *ARGS:
    bash scripts/start.sh query {{ARGS}}

# store ingest and query benchmark through the real server (see BENCHMARKS.md)
bench-store *ARGS:
    cargo build --release --locked -p liteobs-server
    cargo run --release --locked -p liteobs-integration --bin bench-store -- {{ARGS}}
