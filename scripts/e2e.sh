#!/usr/bin/env bash
# `just e2e`: this machine plays a Kubernetes node, with containers instead of pods.
#   - liteobs-server in a container (image deploy/docker/server.Dockerfile, DuckDB on its volume,
#     read-only root file system, token from the environment as the Secret gives it);
#   - liteobs-agent in containers run as the DaemonSet (deploy/base/agent.yaml) runs it: host network,
#     host PID namespace, every capability dropped but BPF, PERFMON, NET_RAW, NET_ADMIN,
#     SYS_PTRACE, DAC_READ_SEARCH, seccomp unconfined, no new privileges, read-only root, tracefs
#     and bpffs mounted read-only from the host, NODE_NAME in the environment, its resource
#     limits. Two of them: one with the DaemonSet's `-iface any`, one on the bridge of the test's
#     own network;
#   - two workloads on a user-defined bridge network made for this run, each in its own network
#     and PID namespace: python3 http.server, and a python3 client looping requests to it.
# Then `liteobs-client -pid <host PID of the web server>` must show, for each agent's node name,
# the exchanges with the client's and the server's host PIDs, commands and addresses right, and
# the client's PID must be a process of the client container (its cgroup names the container).
#
# Root only. Builds the release binaries (`--no-build`: uses those in $LITEOBS_BIN_DIR, default
# the target dir, as scripts/test.sh does right after its own build), starts dockerd when needed,
# makes the images from the binaries (scripts/images.sh test). Removes every container and network
# it made on exit, failed or not. Traffic goes only to the addresses of the network it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/images.sh
. scripts/e2e-lib.sh

build=1
case "${1:-}" in
    --no-build) build=0 ;;
    "") ;;
    *) die "usage: bash scripts/e2e.sh [--no-build]" ;;
esac
[ "$(id -u)" = 0 ] || die "the e2e needs root (dockerd, host namespaces, capabilities): sudo bash scripts/e2e.sh"
started=$(date +%s)
ensure_packages docker.io debootstrap binutils python3 curl
if [ "$build" = 1 ]; then
    ensure_rust
    ensure_target_dir
    say "building (release; a no-op when the binaries are fresh)"
    cargo build --release --locked --workspace --bins
fi
BIN_DIR=${LITEOBS_BIN_DIR:-$BIN_DIR}
IMAGE_BIN_DIR=$BIN_DIR
ensure_dockerd
image_lock
ensure_test_base
build_prebuilt_images
image_unlock

RUN=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
NAME=liteobs-e2e-$RUN
NET=$NAME
BRIDGE=lobs$RUN          # interface names have at most 15 characters
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
WORK=$(mktemp -d /tmp/liteobs-e2e.XXXXXX)

dump_logs() {
    local c
    for c in $(docker ps -aq --filter "label=io.liteobs.e2e=$RUN" 2>/dev/null); do
        echo "---- $(docker inspect -f '{{.Name}}' "$c" 2>/dev/null) (last 30 lines)" >&2
        docker logs --tail 30 "$c" >&2 2>&1 || true
    done
}
cleanup() {
    local rc=$? ids
    [ "$rc" = 0 ] || dump_logs
    ids=$(docker ps -aq --filter "label=io.liteobs.e2e=$RUN" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || d rm -fv $ids >/dev/null 2>&1 || true
    d network rm "$NET" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }
pid_of() { docker inspect -f '{{.State.Pid}}' "$1"; }

# The node: tracefs mounted (systemd does it at boot on most distributions; not on this VM).
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

say "network $NET (bridge $BRIDGE)"
d network create --driver bridge --label "io.liteobs.e2e=$RUN" \
    -o com.docker.network.bridge.name="$BRIDGE" "$NET" >/dev/null
subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NET")
case $subnet in
    10.*|172.1[6-9].*|172.2[0-9].*|172.3[01].*|192.168.*) ;;
    *) die "network $NET got $subnet, not a private range: refusing to send traffic there" ;;
esac

say "server: $SERVER_IMAGE (DuckDB on its volume)"
d run -d --name "$NAME-server" --label "io.liteobs.e2e=$RUN" --network "$NET" --read-only \
    -e LITEOBS_TOKEN="$TOKEN" "$SERVER_IMAGE" >/dev/null
SERVER_URL=http://$(ip_of "$NAME-server"):8080
wait_http "$SERVER_URL/healthz" 60 || die "server did not answer $SERVER_URL/healthz within 60 s"

# Capabilities as in deploy/base/agent.yaml. Docker before 23 (Debian 12 has 20.10) does not know the
# names BPF and PERFMON; there SYS_ADMIN, which the kernel accepts in place of both, stands in.
caps=(--cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH)
want_caps=$(( (1 << 13) | (1 << 12) | (1 << 19) | (1 << 2) ))
if d run --rm --cap-drop ALL --cap-add BPF --cap-add PERFMON "$TEST_BASE_IMAGE" true >/dev/null 2>&1; then
    caps+=(--cap-add BPF --cap-add PERFMON); want_caps=$(( want_caps | (1 << 39) | (1 << 38) ))
else
    say "Docker $(docker version -f '{{.Server.Version}}') does not know CAP_BPF/CAP_PERFMON: CAP_SYS_ADMIN stands in for both"
    caps+=(--cap-add SYS_ADMIN); want_caps=$(( want_caps | (1 << 21) ))
fi

# run_agent KIND IFACE: an agent as the DaemonSet runs it, capturing IFACE, with node name e2e-KIND.
run_agent() {
    d run -d --name "$NAME-agent-$1" --label "io.liteobs.e2e=$RUN" \
        --network host --pid host --user 0 "${caps[@]}" \
        --security-opt seccomp=unconfined --security-opt no-new-privileges --read-only \
        --memory 768m --cpus 1 \
        -v /sys/kernel/tracing:/sys/kernel/tracing:ro -v /sys/fs/bpf:/sys/fs/bpf:ro \
        -e NODE_NAME="e2e-$1-$RUN" -e LITEOBS_TOKEN="$TOKEN" \
        "$AGENT_IMAGE" -iface "$2" -server "$SERVER_URL" -ports "$E2E_WEB_PORT" -flush-interval 200ms >/dev/null
}
# The agent opens libpcap non-promiscuously; a Linux bridge hands the frames it forwards between
# two of its ports to its own packet taps only in promiscuous mode, so the node sets it here.
ip link set "$BRIDGE" promisc on
say "agents: -iface any (the DaemonSet's) and -iface $BRIDGE"
run_agent any any
run_agent bridge "$BRIDGE"
for kind in any bridge; do
    wait_for_log 30 "capturing" docker logs "$NAME-agent-$kind" || die "agent ($kind) did not start capturing"
    wait_for_log 1 "eBPF attribution attached" docker logs "$NAME-agent-$kind" \
        || die "agent ($kind) is not using eBPF attribution"
    caps_hex=$(awk '/^CapEff/ { print $2 }' "/proc/$(pid_of "$NAME-agent-$kind")/status")
    [ $((16#$caps_hex)) = "$want_caps" ] \
        || die "agent ($kind) has capabilities 0x$caps_hex, expected $(printf '0x%x' "$want_caps")"
done

say "workloads: python3 http.server and a python3 client loop, on $NET ($subnet)"
d run -d --name "$NAME-web" --label "io.liteobs.e2e=$RUN" --network "$NET" --network-alias web \
    "$TEST_BASE_IMAGE" python3 -m http.server "$E2E_WEB_PORT" >/dev/null
d run -d --name "$NAME-client" --label "io.liteobs.e2e=$RUN" --network "$NET" \
    "$TEST_BASE_IMAGE" python3 -c "$E2E_CLIENT_PY" "http://web:$E2E_WEB_PORT" >/dev/null
web_pid=$(pid_of "$NAME-web")
client_pid=$(pid_of "$NAME-client")
web_ip=$(ip_of "$NAME-web")
client_ip=$(ip_of "$NAME-client")
say "web: host PID $web_pid at $web_ip; client: host PID $client_pid at $client_ip"

client_cmd=("$BIN_DIR/liteobs-client" -server "$SERVER_URL" -token "$TOKEN")
deadline=$(($(date +%s) + 60))
for kind in any bridge; do
    until "${client_cmd[@]}" -pid "$web_pid" -o json -limit 1000 >"$WORK/records.json" \
        && check_exchanges "$WORK/records.json" "e2e-$kind-$RUN" "$web_pid" "$client_pid" "$web_ip" "$client_ip" \
            >"$WORK/check.txt" 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { cat "$WORK/check.txt" >&2; die "agent ($kind): exchanges not recorded right within 60 s"; }
        sleep 1
    done
    say "$(cat "$WORK/check.txt")"
done

# The client PID the agents reported is a process of the client container.
client_id=$(docker inspect -f '{{.Id}}' "$NAME-client")
grep -q "$client_id" "/proc/$client_pid/cgroup" \
    || die "PID $client_pid is not in the client container's cgroup: $(cat "/proc/$client_pid/cgroup")"

echo
say "liteobs-client -pid $web_pid (each exchange twice: both agents saw it)"
NO_COLOR=1 "${client_cmd[@]}" -pid "$web_pid" -limit 6
echo
say "e2e passed in $(($(date +%s) - started)) s"
