#!/usr/bin/env bash
# `just e2e-kind`: the scenario of scripts/e2e.sh on a kind cluster, with the real manifests:
# `kubectl apply -k deploy/` (agent DaemonSet, server Deployment), then a python3 http.server pod
# and a python3 client pod looping requests to it; `liteobs-client -pid <PID of the web server>`
# through a port-forward must show their exchanges with both PIDs and the node name right.
#
# Needs docker, kind and kubectl, and a registry for kind's node image (kindest/node); the LiteObs
# images and the workload image (liteobs-test-base, Debian with python3) are built here and put
# on the node with `kind load`, so nothing else is pulled. Uses the cluster $LITEOBS_KIND_CLUSTER
# (default liteobs-e2e), creating it when missing and deleting it afterwards if it made it
# (LITEOBS_KIND_KEEP=1 keeps it). Root, or a user in the docker group.
#
# Not run by scripts/test.sh, and never run on this project's build machines: they have no
# registry and cannot run a kind node. Written to run as is where kind works; unverified here.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/images.sh
. scripts/e2e-lib.sh

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || die "e2e-kind needs $tool: install it (kind: https://kind.sigs.k8s.io/docs/user/quick-start/)"
done
CLUSTER=${LITEOBS_KIND_CLUSTER:-liteobs-e2e}
CTX=kind-$CLUSTER
NODE=$CLUSTER-control-plane
NS=liteobs-e2e
k() { timeout 300 kubectl --context "$CTX" "$@"; }

ensure_rust
ensure_target_dir
cargo build --release --locked --workspace --bins
IMAGE_BIN_DIR=$BIN_DIR
ensure_dockerd
image_lock
ensure_test_base
build_prebuilt_images
image_unlock

created=0
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --wait 180s
    created=1
fi
WORK=$(mktemp -d /tmp/liteobs-e2e-kind.XXXXXX)
PF_PID=
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        k -n liteobs logs ds/liteobs-agent --tail 30 >&2 2>&1 || true
        k -n liteobs logs deploy/liteobs-server --tail 30 >&2 2>&1 || true
    fi
    [ -z "$PF_PID" ] || kill "$PF_PID" 2>/dev/null || true
    k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    if [ "$created" = 1 ] && [ "${LITEOBS_KIND_KEEP:-0}" != 1 ]; then
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "loading images into $CLUSTER"
kind load docker-image --name "$CLUSTER" "$SERVER_IMAGE" "$AGENT_IMAGE" "$TEST_BASE_IMAGE"

# The node's tracefs, which the DaemonSet mounts from the host (systemd mounts it on real nodes;
# a kind node is a container and may not have it).
docker exec "$NODE" sh -c 'mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing'

say "deploying LiteObs (kubectl apply -k deploy/)"
k apply -f deploy/namespace.yaml >/dev/null
if ! k -n liteobs get secret liteobs-token >/dev/null 2>&1; then
    k -n liteobs create secret generic liteobs-token --from-literal=token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >/dev/null
fi
TOKEN=$(k -n liteobs get secret liteobs-token -o jsonpath='{.data.token}' | base64 -d)
k apply -k deploy/ >/dev/null
k -n liteobs rollout status deploy/liteobs-server --timeout=180s
k -n liteobs rollout status ds/liteobs-agent --timeout=180s
wait_for_log 30 "eBPF attribution attached" k -n liteobs logs ds/liteobs-agent \
    || die "the agent is not using eBPF attribution"

say "workloads in namespace $NS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
# pod NAME ARGS...: a pod running the test image's python3 with ARGS, on the node's own image.
pod() {
    local name=$1; shift
    k -n "$NS" run "$name" --image="$TEST_BASE_IMAGE" --image-pull-policy=Never --restart=Never \
        --labels="app=$name" --command -- python3 "$@" >/dev/null
}
pod web -m http.server "$E2E_WEB_PORT"
k -n "$NS" wait pod/web --for=condition=Ready --timeout=120s >/dev/null
web_ip=$(k -n "$NS" get pod web -o jsonpath='{.status.podIP}')
# The pod's address, not a Service: through a ClusterIP, kube-proxy rewrites the destination
# between the two veths, and the two halves of each connection no longer share a tuple.
pod client -c "$E2E_CLIENT_PY" "http://$web_ip:$E2E_WEB_PORT"
k -n "$NS" wait pod/client --for=condition=Ready --timeout=120s >/dev/null
client_ip=$(k -n "$NS" get pod client -o jsonpath='{.status.podIP}')

# host_pid POD: the PID, in this machine's initial PID namespace, of the pod's main process. The
# agent's eBPF programs report those (bpf_get_current_pid_tgid); a kind node is a container with
# its own PID namespace, so the node's numbers (crictl's) differ here, unlike on a real node.
host_pid() {
    local id pid
    id=$(k -n "$NS" get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
    id=${id#*://}
    for pid in $(grep -l "$id" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3); do
        # The container's main process is PID 1 in its own namespace (last NSpid field).
        [ "$(awk '/^NSpid:/ { print $NF }' "/proc/$pid/status" 2>/dev/null)" = 1 ] && { echo "$pid"; return 0; }
    done
    die "no process of pod $1 (container $id) found in /proc"
}
web_pid=$(host_pid web)
client_pid=$(host_pid client)
say "web: PID $web_pid at $web_ip; client: PID $client_pid at $client_ip; node $NODE"

port=$(free_port)
k -n liteobs port-forward svc/liteobs-server "$port:8080" >"$WORK/port-forward.log" 2>&1 &
PF_PID=$!
wait_http "http://127.0.0.1:$port/healthz" 30 || die "port-forward to liteobs-server did not answer"
client_cmd=("$BIN_DIR/liteobs-client" -server "http://127.0.0.1:$port" -token "$TOKEN")
deadline=$(($(date +%s) + 90))
until "${client_cmd[@]}" -pid "$web_pid" -o json -limit 1000 >"$WORK/records.json" \
    && check_exchanges "$WORK/records.json" "$NODE" "$web_pid" "$client_pid" "$web_ip" "$client_ip" >"$WORK/check.txt" 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$WORK/check.txt" >&2; die "exchanges not recorded right within 90 s"; }
    sleep 2
done
say "$(cat "$WORK/check.txt")"
echo
NO_COLOR=1 "${client_cmd[@]}" -pid "$web_pid" -limit 6
say "e2e-kind passed"
