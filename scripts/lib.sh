# Shared by scripts/*.sh: the one cargo profile and target dir, and installing what is missing.
# shellcheck shell=bash

# DuckDB's bundled C++ takes ~20 minutes per cargo profile on 2 cores: every script uses the
# release profile and a target dir outside the clone, so it is compiled once per machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/liteobs/target}
CARGO_PROFILE_FLAG=--release
BIN_DIR=$CARGO_TARGET_DIR/release

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root for: $* (run as root or install sudo)"; fi
}

# root_exec CMD...: CMD as root, in place of the calling shell (exec, or exec sudo). Run it in the
# background as `root_exec CMD &` and $! is CMD itself (or sudo, which passes signals on), so that
# killing $! stops CMD; `as_root CMD &` forks a subshell, and killing $! would stop only that.
root_exec() {
    if [ "$(id -u)" = 0 ]; then exec "$@"
    elif command -v sudo >/dev/null; then exec sudo "$@"
    else die "need root for: $* (run as root or install sudo)"; fi
}

# ensure_target_dir: create CARGO_TARGET_DIR, owned by the caller, even when /var/cache needs root.
ensure_target_dir() {
    mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || {
        as_root mkdir -p "$CARGO_TARGET_DIR" && as_root chown "$(id -u):$(id -g)" "$CARGO_TARGET_DIR"
    }
}

# forget_other_checkout: when the shared target dir was last used from another checkout (CI
# clones main afresh, elsewhere), clean this workspace's own packages so that they are rebuilt
# here. Cargo does not see a moved package as changed, but tests embed their checkout's path
# when compiled (env!("CARGO_MANIFEST_DIR"): fixtures, snapshots, scripts/images.sh), and would
# read another checkout's files, or fail once it is gone. Dependencies (DuckDB) stay cached.
forget_other_checkout() {
    local stamp=$CARGO_TARGET_DIR/.liteobs-checkout here
    here=$(pwd -P)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$here" ]; then
        say "target dir last used from $(cat "$stamp" 2>/dev/null || echo 'an unknown checkout'): rebuilding this checkout's packages"
        cargo clean $CARGO_PROFILE_FLAG -p liteobs-model -p liteobs-goflags -p liteobs-server -p liteobs-client \
            -p liteobs-agent -p liteobs-ebpf -p liteobs-integration
        (cd deploy/check && CARGO_TARGET_DIR=$CARGO_TARGET_DIR/deploy-check \
            cargo clean $CARGO_PROFILE_FLAG -p liteobs-deploy-check)
        printf '%s\n' "$here" >"$stamp"
    fi
}

# write_nginx_conf DIR PORT WORKERS: a static nginx for benchmarks in DIR (serving DIR/www/hello.txt
# on 127.0.0.1:PORT, keep-alive without limit, no access log), all its files inside DIR. One
# worker runs without a master process; more run under one.
write_nginx_conf() {
    local dir=$1 port=$2 workers=$3 master=on
    [ "$workers" -gt 1 ] || master=off
    mkdir -p "$dir/www" "$dir/tmp" "$dir/logs"
    printf 'hello, world\n' >"$dir/www/hello.txt"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process $master;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server { listen 127.0.0.1:$port; root $dir/www; }
}
EOF
}

# ensure_packages PKG...: apt-get install the Debian packages that are not installed yet.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_packaged_if_any PKG...: ensure_packages for those of PKG that this machine's apt sources
# have (a version from a repository, not only the local dpkg status), and one line naming the
# others. For tools that a fresh Debian 12 / Ubuntu LTS does not package (kubectl): the tests
# that need them say SKIPPED and why.
ensure_packaged_if_any() {
    local p have=() lack=()
    for p in "$@"; do
        if apt-cache policy "$p" 2>/dev/null \
            | awk '$1 ~ /^[0-9]+$/ && $2 !~ /^[0-9]+$/ && $2 != "/var/lib/dpkg/status" { found = 1 } END { exit !found }'; then
            have+=("$p")
        else
            lack+=("$p")
        fi
    done
    [ ${#have[@]} -eq 0 ] || ensure_packages "${have[@]}"
    [ ${#lack[@]} -eq 0 ] || say "not installing ${lack[*]}: no apt source here has it (the tests that need it are skipped)"
}

# ensure_rust: cargo with rustfmt and clippy.
ensure_rust() {
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || die "cargo not found: install Rust 1.95 with rustup (https://rustup.rs)"
    if command -v rustup >/dev/null; then
        for c in rustfmt clippy; do
            rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
        done
    fi
}

# free_port: a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL [SECONDS]: wait until URL answers.
wait_http() {
    local url=$1 secs=${2:-60} i=0
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -gt $((secs * 10)) ] && return 1; sleep 0.1
    done
}
