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

# the web page in headless Chromium (integration/tests/web_page.rs), writing docs/web-*.png
screenshots: build
    LITEOBS_UPDATE_SCREENSHOTS=1 cargo test --release --locked --workspace --test web_page

# the cargo-fuzz targets (nightly), LITEOBS_FUZZ_SECONDS each (default 10); see README
fuzz *TARGETS:
    bash scripts/fuzz.sh {{TARGETS}}

# server + client (and agent as root) on this machine, real traffic, then the table
local *ARGS:
    bash scripts/start.sh local {{ARGS}}

# liteobs-client against the deployed server (port-forward in a cluster), else $LITEOBS_SERVER
query *ARGS:
    bash scripts/start.sh query {{ARGS}}

# images, deploy to the current kubectl context (kind, minikube or $LITEOBS_REGISTRY), query
full *ARGS:
    bash scripts/start.sh full {{ARGS}}

# liteobs-server and liteobs-agent images from the release binaries (deploy/docker/)
images:
    bash scripts/images.sh build

# this machine as a Kubernetes node: server, agents as the DaemonSet runs them, workloads (root)
e2e:
    bash scripts/e2e.sh

# two nodes (network namespaces), a containerd each, labelled pods, Services, one agent per node (root)
e2e-cluster:
    bash scripts/e2e-cluster.sh

# the same scenario on a kind cluster with deploy/ (needs kind, kubectl, a registry; see README)
e2e-kind:
    bash scripts/e2e-kind.sh

# store ingest and query benchmark through the real server (see BENCHMARKS.md)
# (built with the whole workspace: a `-p liteobs-integration` build resolves features differently
# and would compile DuckDB's C++ once more)
bench-store *ARGS:
    cargo build --release --locked --workspace --all-targets
    "$CARGO_TARGET_DIR/release/bench-store" {{ARGS}}
