#!/usr/bin/env bash
# `just e2e-cluster`: two Kubernetes nodes on this machine, each a network namespace with its own
# containerd, its pods in containers carrying kubelet's labels, and its own liteobs-agent run as
# the DaemonSet runs it; one liteobs-server for both. It says whether LiteObs is right on a
# cluster (issue 11): every exchange the clients made is recorded exactly once, with both
# processes (the one that served it, e.g. a Node.js cluster worker), both pods, both namespaces,
# both nodes, and the Service address where one was dialled.
#
# The cluster:
#   - nodes: network namespaces node-a and node-b (names unique per run) joined by a veth pair
#     (10.200.0.1 and .2), each routing the other's pod CIDR (10.244.1.0/24 on A, 10.244.2.0/24
#     on B) across it; the host reaches each node over a veth of its own (10.201.1.0/30,
#     10.201.2.0/30) and runs liteobs-server (SQLite) on 10.201.1.1.
#   - pods: a network namespace each, wired as the CNI ptp plugin does (a veth, the pod's /32,
#     every pod's gateway the node's 10.244.N.1, no bridge, so that all pod traffic is routed by
#     the node and kube-proxy's DNAT sees both directions).
#   - containers: per node, a containerd of its own (own root, state, socket; no CRI plugin) and
#     `ctr run --rootfs` containers: the host's root file system bound read-only, a tmpfs on /tmp,
#     the pod's network namespace, a PID namespace of their own, the labels kubelet sets
#     (io.kubernetes.pod.name, .pod.namespace, .container.name, .pod.uid), and kubelet's cgroup
#     paths: node A the cgroupfs driver's /kubepods/besteffort/pod<uid>/<id>, node B the systemd
#     driver's /kubepods.slice/.../kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope
#     (created by runc's cgroupfs manager: no systemd runs here; the path is what the agent sees).
#   - servers, started BEFORE the agents, each on 0.0.0.0:8080 in its pod and answering with the
#     PID (in its container's PID namespace) of the process that served the request: on node A a
#     Node.js single process and a Node.js `cluster` (primary + 2 workers, round robin), on node
#     B nginx (master + 2 workers) and python3's http.server.
#   - Services, DNAT'd in both nodes as kube-proxy's iptables mode does (nat PREROUTING and
#     OUTPUT -> KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*): 10.96.0.10:80 -> the Node.js cluster
#     (node A), 10.96.0.11:80 -> nginx (node B).
#   - the server: reached by the agents through a Service of its own (10.96.0.100:8080, DNAT'd to
#     the host's 10.201.1.1:9080 as kube-proxy does), as the DaemonSet's -server names a Service.
#   - agents: one per node, in the node's network namespace (nsenter: `ip netns exec` would mount
#     a fresh /sys without tracefs), host PID namespace, the DaemonSet's arguments (-iface any
#     -server URL, NODE_NAME, LITEOBS_TOKEN), its capabilities (bounding set = BPF, PERFMON,
#     NET_RAW, NET_ADMIN, SYS_PTRACE, DAC_READ_SEARCH; no new privileges), and the node's
#     containerd socket (-containerd-socket, when the agent has that flag).
#   - clients, after the agents: a client pod on each node calls every server by pod IP and both
#     Services, 3 requests on fresh connections with curl and 3 on one keep-alive connection with
#     python3's http.client, each request a path of its own, and writes down what it got: its
#     own host PID and local port, the status, and the server's PID.
# Then `liteobs-client -o json` must hold each of those exchanges exactly once, with every field
# right; otherwise a diff by field, and the agents' logs.
#
# Unlike a cluster, both nodes share one kernel: each agent's eBPF also sees the other node's
# processes, so an agent may name a process a real node's agent could not see.
#
# Root only (namespaces, containerd, eBPF). Builds the release binaries (SQLite-only server) unless
# `--no-build` (then uses those in $LITEOBS_BIN_DIR, default the target dir). Removes every
# container, containerd, namespace, cgroup and mount it made on exit, failed or not. Traffic goes
# only to the namespaces it creates (and the host's side of its own veths).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/e2e-lib.sh

build=1
case "${1:-}" in
    --no-build) build=0 ;;
    "") ;;
    *) die "usage: bash scripts/e2e-cluster.sh [--no-build]" ;;
esac
[ "$(id -u)" = 0 ] || die "the cluster e2e needs root (namespaces, containerd, eBPF): sudo bash scripts/e2e-cluster.sh"
started=$(date +%s)
ensure_packages containerd runc nodejs nginx-light python3 curl iptables iproute2 util-linux
if [ "$build" = 1 ]; then
    ensure_rust
    ensure_target_dir
    say "building (release, SQLite-only server; a no-op when the binaries are fresh)"
    cargo build --release --locked -p liteobs-agent -p liteobs-client -p liteobs-server --no-default-features
fi
BIN_DIR=${LITEOBS_BIN_DIR:-$BIN_DIR}
for b in liteobs-agent liteobs-client liteobs-server; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing (build it, or set LITEOBS_BIN_DIR)"
done

RUN=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
WORK=$(mktemp -d /tmp/liteobs-cluster.XXXXXX)
ROOTFS=$WORK/rootfs
SERVER_ADDR=10.201.1.1:9080
SERVER_URL=http://$SERVER_ADDR
SERVER_SVC_IP=10.96.0.100     # the server's Service, which the agents upload to (DNAT'd to SERVER_ADDR)
NODES=(a b)
declare -A NETNS CONTAINERD_PID AGENT_PID NODE_NAME POD_CIDR NODE_LINK_IP
NETNS[a]=liteobs-$RUN-node-a
NETNS[b]=liteobs-$RUN-node-b
NODE_NAME[a]=node-a-$RUN
NODE_NAME[b]=node-b-$RUN
POD_CIDR[a]=10.244.1
POD_CIDR[b]=10.244.2
NODE_LINK_IP[a]=10.200.0.1
NODE_LINK_IP[b]=10.200.0.2
SERVER_PID=
PODS=()            # every pod made, by name
CGROUPS=()         # the cgroup paths given to runc (it removes the leaf; the parents are ours)
declare -A POD_NODE POD_IP POD_NS POD_CID POD_UID POD_NETNS

# The addresses this test puts on its namespaces must not be in use here.
for net in 10.200.0. 10.201.1. 10.201.2. 10.244.1. 10.244.2. 10.96.0.; do
    ! ip -4 route | grep -q "^${net}" && ! ip -4 -br addr | grep -q " ${net}" \
        || die "this machine already uses ${net}0/24: refusing to route test traffic there"
done

ctr_of() { ctr -a "$WORK/node-$1/containerd.sock" -n k8s.io "${@:2}"; }
in_node() { nsenter --net="/var/run/netns/${NETNS[$1]}" "${@:2}"; }

dump_logs() {
    local f
    for f in "$WORK"/logs/*.log; do
        [ -s "$f" ] || continue
        case $f in
            */containerd-*) echo "---- $(basename "$f") (errors)" >&2; grep 'level=error' "$f" | tail -n 10 >&2 || true ;;
            *) echo "---- $(basename "$f") (last 40 lines)" >&2; tail -n 40 "$f" >&2 || true ;;
        esac
    done
}
cleanup() {
    local rc=$? n p h cg
    trap - EXIT INT TERM
    [ "$rc" = 0 ] || dump_logs
    for n in "${NODES[@]}"; do
        [ -z "${AGENT_PID[$n]:-}" ] || kill "${AGENT_PID[$n]}" 2>/dev/null || true
    done
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    for p in "${PODS[@]}"; do
        n=${POD_NODE[$p]}
        ctr_of "$n" task kill -s KILL "${POD_CID[$p]}" >/dev/null 2>&1 || true
    done
    for p in "${PODS[@]}"; do
        n=${POD_NODE[$p]}
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            ctr_of "$n" task rm -f "${POD_CID[$p]}" >/dev/null 2>&1 || true
            ctr_of "$n" task ls -q 2>/dev/null | grep -q "${POD_CID[$p]}" || break
            sleep 0.2
        done
        ctr_of "$n" container rm "${POD_CID[$p]}" >/dev/null 2>&1 || true
    done
    for n in "${NODES[@]}"; do
        [ -z "${CONTAINERD_PID[$n]:-}" ] || kill "${CONTAINERD_PID[$n]}" 2>/dev/null || true
    done
    for n in "${NODES[@]}"; do
        [ -z "${AGENT_PID[$n]:-}" ] || wait "${AGENT_PID[$n]}" 2>/dev/null || true
        [ -z "${CONTAINERD_PID[$n]:-}" ] || wait "${CONTAINERD_PID[$n]}" 2>/dev/null || true
    done
    [ -z "$SERVER_PID" ] || wait "$SERVER_PID" 2>/dev/null || true
    mountpoint -q "$ROOTFS" && umount "$ROOTFS" 2>/dev/null || true
    for p in "${PODS[@]}"; do ip netns del "${POD_NETNS[$p]}" 2>/dev/null || true; done
    for n in "${NODES[@]}"; do ip netns del "${NETNS[$n]}" 2>/dev/null || true; done
    # runc removes each container's own cgroup; the pod levels above it are this run's.
    for cg in "${CGROUPS[@]}"; do
        for h in /sys/fs/cgroup/*/; do
            [ -d "$h${cg#/}" ] || [ -d "$(dirname "$h${cg#/}")" ] || continue
            rmdir "$h${cg#/}" 2>/dev/null || true
            rmdir "$(dirname "$h${cg#/}")" 2>/dev/null || true
        done
    done
    [ "$rc" = 0 ] || say "kept $WORK/logs for a look; removing the rest"
    if [ "$rc" = 0 ]; then rm -rf "$WORK"; else find "$WORK" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs" "$WORK/out" "$WORK/programs" "$ROOTFS"

# The node: tracefs mounted (systemd does it at boot on most distributions; not on this VM).
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

# ---- topology -----------------------------------------------------------------------------
say "nodes ${NETNS[a]} and ${NETNS[b]}, linked by a veth; the server's side on the host"
for n in "${NODES[@]}"; do
    ip netns add "${NETNS[$n]}"
    in_node "$n" ip link set lo up
    in_node "$n" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
done
ip link add "na$RUN" netns "${NETNS[a]}" type veth peer name "nb$RUN" netns "${NETNS[b]}"
in_node a ip link set "na$RUN" name eth0
in_node b ip link set "nb$RUN" name eth0
for n in "${NODES[@]}"; do
    in_node "$n" ip addr add "${NODE_LINK_IP[$n]}/24" dev eth0
    in_node "$n" ip link set eth0 up
done
in_node a ip route add "${POD_CIDR[b]}.0/24" via "${NODE_LINK_IP[b]}"
in_node b ip route add "${POD_CIDR[a]}.0/24" via "${NODE_LINK_IP[a]}"
# host <-> node: 10.201.1.0/30 to node A, 10.201.2.0/30 to node B; the server listens on
# 10.201.1.1, which node B reaches through its own link (the host's address, delivered locally).
i=1
for n in "${NODES[@]}"; do
    ip link add "h$n$RUN" type veth peer name "ctl$n$RUN" netns "${NETNS[$n]}"
    ip addr add "10.201.$i.1/30" dev "h$n$RUN"
    ip link set "h$n$RUN" up
    in_node "$n" ip link set "ctl$n$RUN" name ctl0
    in_node "$n" ip addr add "10.201.$i.2/30" dev ctl0
    in_node "$n" ip link set ctl0 up
    in_node "$n" ip route add 10.201.1.1/32 via "10.201.$i.1" 2>/dev/null || true
    # A node's own connections to a Service are DNAT'd in OUTPUT, after the routing decision,
    # so the Service range needs a route (a real node's default route); this one goes nowhere else.
    in_node "$n" ip route add 10.96.0.0/16 via "10.201.$i.1"
    i=$((i + 1))
done

# ---- containerd, one per node -------------------------------------------------------------
mount --bind / "$ROOTFS"
mount -o remount,bind,ro "$ROOTFS"
for n in "${NODES[@]}"; do
    d=$WORK/node-$n
    mkdir -p "$d/root" "$d/state"
    cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
    containerd --config "$d/config.toml" >"$WORK/logs/containerd-node-$n.log" 2>&1 &
    CONTAINERD_PID[$n]=$!
done
for n in "${NODES[@]}"; do
    for _ in $(seq 50); do ctr_of "$n" version >/dev/null 2>&1 && break; sleep 0.2; done
    ctr_of "$n" version >/dev/null 2>&1 || die "containerd of node $n did not answer on $WORK/node-$n/containerd.sock"
done
say "containerd $(containerd --version | awk '{print $3}') per node: $WORK/node-a/containerd.sock, $WORK/node-b/containerd.sock"

# ---- pods ---------------------------------------------------------------------------------
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# add_pod NAME NODE LAST_OCTET NAMESPACE: the pod's network namespace, wired to its node.
add_pod() {
    local p=$1 n=$2 ip=${POD_CIDR[$2]}.$3 ns=$4 veth
    local u
    u=$(rand_hex 16)
    PODS+=("$p")
    POD_NODE[$p]=$n; POD_IP[$p]=$ip; POD_NS[$p]=$ns
    POD_UID[$p]=${u:0:8}-${u:8:4}-${u:12:4}-${u:16:4}-${u:20:12}
    POD_CID[$p]=$(rand_hex 32)
    POD_NETNS[$p]=liteobs-$RUN-$p
    veth=v$3$n$RUN
    ip netns add "${POD_NETNS[$p]}"
    ip netns exec "${POD_NETNS[$p]}" ip link set lo up
    ip link add "$veth" netns "${NETNS[$n]}" type veth peer name eth0 netns "${POD_NETNS[$p]}"
    ip netns exec "${POD_NETNS[$p]}" ip addr add "$ip/32" dev eth0
    ip netns exec "${POD_NETNS[$p]}" ip link set eth0 up
    ip netns exec "${POD_NETNS[$p]}" ip route add "${POD_CIDR[$n]}.1" dev eth0 scope link
    ip netns exec "${POD_NETNS[$p]}" ip route add default via "${POD_CIDR[$n]}.1" dev eth0
    in_node "$n" ip addr add "${POD_CIDR[$n]}.1/32" dev "$veth"
    in_node "$n" ip link set "$veth" up
    in_node "$n" ip route add "$ip/32" dev "$veth" scope link
}
# cgroup_of POD: kubelet's path for the pod's container, cgroupfs driver on node A, systemd
# driver's naming on node B.
cgroup_of() {
    local p=$1
    if [ "${POD_NODE[$p]}" = a ]; then
        echo "/kubepods/besteffort/pod${POD_UID[$p]}/${POD_CID[$p]}"
    else
        echo "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_UID[$p]//-/_}.slice/cri-containerd-${POD_CID[$p]}.scope"
    fi
}
# run_pod POD CONTAINER_NAME COMMAND...: the pod's one container, as kubelet would have had
# containerd make it (labels, cgroup, network namespace), from the host's read-only root.
run_pod() {
    local p=$1 cname=$2 cg
    shift 2
    cg=$(cgroup_of "$p")
    CGROUPS+=("$cg")
    ctr_of "${POD_NODE[$p]}" run -d --rootfs \
        --env PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin --env HOME=/tmp \
        --label io.kubernetes.pod.name="$p" --label io.kubernetes.pod.namespace="${POD_NS[$p]}" \
        --label io.kubernetes.container.name="$cname" --label io.kubernetes.pod.uid="${POD_UID[$p]}" \
        --with-ns "network:/var/run/netns/${POD_NETNS[$p]}" --cgroup "$cg" \
        --mount type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev \
        --mount "type=bind,src=$WORK/programs,dst=/tmp/programs,options=rbind:ro" \
        --mount "type=bind,src=$WORK/out,dst=/tmp/out,options=rbind:rw" \
        --mount "type=bind,src=/proc,dst=/tmp/hostproc,options=rbind:ro" \
        --log-uri "file://$WORK/logs/pod-$p.log" \
        "$ROOTFS" "${POD_CID[$p]}" "$@" >/dev/null
}

# The programs, each answering GET with the PID (in its container) of the process serving it.
cat >"$WORK/programs/node-single.js" <<'EOF'
require('node:http').createServer((req, res) => res.end(`${process.pid}\n`)).listen(8080, '0.0.0.0');
EOF
cat >"$WORK/programs/node-cluster.js" <<'EOF'
// Round robin (Node's default but on Windows), set before fork as pm2 runs apps: the primary
// accepts every connection and hands it to a worker over IPC.
const cluster = require('node:cluster');
cluster.schedulingPolicy = cluster.SCHED_RR;
if (cluster.isPrimary) {
  for (let i = 0; i < 2; i++) cluster.fork();
} else {
  require('node:http').createServer((req, res) => res.end(`${process.pid}\n`)).listen(8080, '0.0.0.0');
}
EOF
cat >"$WORK/programs/nginx.conf" <<'EOF'
daemon off;
master_process on;
worker_processes 2;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server { listen 0.0.0.0:8080; location / { default_type text/plain; return 200 "$pid\n"; } }
}
EOF
cat >"$WORK/programs/python-server.py" <<'EOF'
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = f"{os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        # As HTTP/1.1 servers do (RFC 9112 9.6): the client asked to close, so say so; without
        # it curl reuses the connection the server is closing and sends its next request there.
        if self.headers.get("Connection", "").lower() == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
EOF
# The client: argv[1] its pod name, argv[2] the targets as JSON [[name, host, port], ...]. For
# each target, 3 requests with curl (Connection: close, so a connection each) and 3 on one
# keep-alive connection of its own (python3 http.client), each on a path of its own. It learns
# its own host PIDs (for curl: before exec, while the child waits on a pipe) from the host's
# /proc, bound at /tmp/hostproc, by the NSpid of the processes in its own PID namespace.
cat >"$WORK/programs/client.py" <<'EOF'
import http.client, json, os, sys
pod, targets = sys.argv[1], json.loads(sys.argv[2])
N = 3
my_pidns = os.readlink("/proc/self/ns/pid")

def host_pid(ns_pid):
    for e in os.listdir("/tmp/hostproc"):
        if not e.isdigit():
            continue
        try:
            if os.readlink(f"/tmp/hostproc/{e}/ns/pid") != my_pidns:
                continue
            with open(f"/tmp/hostproc/{e}/status") as f:
                for line in f:
                    if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                        return int(e)
        except (OSError, ValueError):
            continue
    sys.exit(f"{pod}: no host PID for PID {ns_pid} of this container")

me = host_pid(os.getpid())
results = []
for name, host, port in targets:
    base = f"http://{host}:{port}"
    paths = [f"/curl/{pod}/{name}/{i}" for i in range(N)]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        os.read(r, 1)
        out = os.open("/tmp/curl.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.execv("/usr/bin/curl", ["curl", "-sS", "--max-time", "5", "-H", "Connection: close",
                                   "-w", " %{http_code} %{local_port}\n"] + [base + p for p in paths])
    os.close(r)
    curl_pid = host_pid(child)
    os.write(w, b"x")
    os.close(w)
    _, st = os.waitpid(child, 0)
    # Each response: the body (the PID and a newline), then -w's " status port".
    words = open("/tmp/curl.out").read().split()
    for p, (body_pid, status, port_) in zip(paths, zip(words[0::3], words[1::3], words[2::3])):
        results.append(dict(path=p, target=name, dialled=f"{host}:{port}", tool="curl", client_pid=curl_pid,
                            client_comm="curl", client_port=int(port_), status=int(status), server_ns_pid=int(body_pid)))
    if os.waitstatus_to_exitcode(st) != 0:
        print(f"{pod}: curl to {base} exited {os.waitstatus_to_exitcode(st)}", flush=True)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    local_ports = set()
    for i in range(N):
        p = f"/keepalive/{pod}/{name}/{i}"
        conn.request("GET", p)
        resp = conn.getresponse()
        body = resp.read().decode().strip()
        local_ports.add(conn.sock.getsockname()[1])
        results.append(dict(path=p, target=name, dialled=f"{host}:{port}", tool="keepalive", client_pid=me,
                            client_comm="python3", client_port=conn.sock.getsockname()[1], status=resp.status,
                            server_ns_pid=int(body)))
    conn.close()
    if len(local_ports) != 1:
        print(f"{pod}: keep-alive to {base} used {len(local_ports)} connections", flush=True)
json.dump(results, open(f"/tmp/out/{pod}.json.tmp", "w"))
os.rename(f"/tmp/out/{pod}.json.tmp", f"/tmp/out/{pod}.json")
EOF

say "pods: web-node, web-cluster, client-a on node A; web-nginx, web-python, client-b on node B"
add_pod web-node a 10 shop
add_pod web-cluster a 11 shop
add_pod client-a a 50 frontend
add_pod web-nginx b 10 shop
add_pod web-python b 11 payments
add_pod client-b b 50 frontend
SERVERS=(web-node web-cluster web-nginx web-python)

# Services as kube-proxy (iptables mode) writes them, in every node.
declare -A SVC_IP SVC_POD
SVC_IP[svc-cluster]=10.96.0.10; SVC_POD[svc-cluster]=web-cluster
SVC_IP[svc-nginx]=10.96.0.11; SVC_POD[svc-nginx]=web-nginx
for n in "${NODES[@]}"; do
    {
        echo "*nat"
        echo ":KUBE-SERVICES - [0:0]"
        for s in svc-cluster svc-nginx; do
            h=$(printf '%s' "$s" | sha256sum | tr a-f A-F | cut -c1-16)
            echo ":KUBE-SVC-$h - [0:0]"
            echo ":KUBE-SEP-$h - [0:0]"
        done
        echo "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
        echo "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
        for s in svc-cluster svc-nginx; do
            h=$(printf '%s' "$s" | sha256sum | tr a-f A-F | cut -c1-16)
            echo "-A KUBE-SERVICES -d ${SVC_IP[$s]}/32 -p tcp -m comment --comment \"shop/$s cluster IP\" -m tcp --dport 80 -j KUBE-SVC-$h"
            echo "-A KUBE-SVC-$h -m comment --comment \"shop/$s -> ${POD_IP[${SVC_POD[$s]}]}:8080\" -j KUBE-SEP-$h"
            echo "-A KUBE-SEP-$h -p tcp -m comment --comment \"shop/$s\" -m tcp -j DNAT --to-destination ${POD_IP[${SVC_POD[$s]}]}:8080"
        done
        # liteobs-server's own Service, as the DaemonSet's -server names it (liteobs-server.liteobs.svc):
        # the agents reach it through DNAT too, so their uploads carry the server's real address.
        echo ":KUBE-SVC-LITEOBSSERVER - [0:0]"
        echo ":KUBE-SEP-LITEOBSSERVER - [0:0]"
        echo "-A KUBE-SERVICES -d $SERVER_SVC_IP/32 -p tcp -m comment --comment \"liteobs/liteobs-server cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-LITEOBSSERVER"
        echo "-A KUBE-SVC-LITEOBSSERVER -j KUBE-SEP-LITEOBSSERVER"
        echo "-A KUBE-SEP-LITEOBSSERVER -p tcp -m tcp -j DNAT --to-destination $SERVER_ADDR"
        echo "COMMIT"
    } | in_node "$n" iptables-restore --noflush
done

say "servers (before the agents): Node.js, Node.js cluster, nginx with 2 workers, python3 http.server"
run_pod web-node web /usr/bin/node /tmp/programs/node-single.js
run_pod web-cluster web /usr/bin/node /tmp/programs/node-cluster.js
run_pod web-nginx web /usr/sbin/nginx -e stderr -c /tmp/programs/nginx.conf
run_pod web-python web /usr/bin/python3 /tmp/programs/python-server.py
for p in "${SERVERS[@]}"; do
    ok=0
    for _ in $(seq 100); do
        in_node "${POD_NODE[$p]}" curl -fsS -o /dev/null --max-time 1 "http://${POD_IP[$p]}:8080/ready" 2>/dev/null && { ok=1; break; }
        sleep 0.1
    done
    [ "$ok" = 1 ] || die "server $p did not answer on ${POD_IP[$p]}:8080 within 10 s"
done
# nginx's and the cluster's workers are up once they answer; wait for both of each (ctr task ps
# lists the container's processes by host PID).
for p in web-cluster web-nginx; do
    for _ in $(seq 50); do [ "$(ctr_of "${POD_NODE[$p]}" task ps "${POD_CID[$p]}" | tail -n +2 | wc -l)" -ge 3 ] && break; sleep 0.1; done
done

# ---- server and agents --------------------------------------------------------------------
say "liteobs-server (SQLite) on $SERVER_ADDR"
LITEOBS_TOKEN=$TOKEN "$BIN_DIR/liteobs-server" -db-type sqlite -db-path "$WORK/liteobs.sqlite" \
    -listen "$SERVER_ADDR" >"$WORK/logs/server.log" 2>&1 &
SERVER_PID=$!
wait_http "$SERVER_URL/healthz" 30 || die "server did not answer $SERVER_URL/healthz within 30 s"

agent_flags=()
if "$BIN_DIR/liteobs-agent" -help 2>&1 | grep -q -- '-containerd-socket'; then
    has_containerd_flag=1
else
    has_containerd_flag=0
    say "this liteobs-agent has no -containerd-socket flag: the agents run without it (pod fields cannot be right)"
fi
# The DaemonSet's capabilities (deploy/base/agent.yaml): everything else out of the bounding set.
caps=-all,+bpf,+perfmon,+net_raw,+net_admin,+sys_ptrace,+dac_read_search
want_caps=$(( (1 << 39) | (1 << 38) | (1 << 13) | (1 << 12) | (1 << 19) | (1 << 2) ))
for n in "${NODES[@]}"; do
    agent_flags=(-iface any -server "http://$SERVER_SVC_IP:8080")
    [ "$has_containerd_flag" = 0 ] || agent_flags+=(-containerd-socket "$WORK/node-$n/containerd.sock")
    NODE_NAME=${NODE_NAME[$n]} LITEOBS_TOKEN=$TOKEN nsenter --net="/var/run/netns/${NETNS[$n]}" \
        setpriv --bounding-set "$caps" --inh-caps "$caps" --no-new-privs \
        "$BIN_DIR/liteobs-agent" "${agent_flags[@]}" >"$WORK/logs/agent-node-$n.log" 2>&1 &
    AGENT_PID[$n]=$!
done
say "agents: ${agent_flags[*]//$WORK\/node-b/\$WORK/node-<n>} (NODE_NAME ${NODE_NAME[a]}, ${NODE_NAME[b]}; the Service $SERVER_SVC_IP:8080 is the server)"
for n in "${NODES[@]}"; do
    wait_for_log 30 "capturing" cat "$WORK/logs/agent-node-$n.log" || die "agent (node $n) did not start capturing"
    wait_for_log 5 "eBPF attribution attached" cat "$WORK/logs/agent-node-$n.log" \
        || die "agent (node $n) is not using eBPF attribution"
    caps_hex=$(awk '/^CapEff/ { print $2 }' "/proc/${AGENT_PID[$n]}/status")
    [ $((16#$caps_hex)) = "$want_caps" ] \
        || die "agent (node $n) has capabilities 0x$caps_hex, expected $(printf '0x%x' "$want_caps")"
done
# The listener scan and the runtime's first listing happen at start; give them a moment.
sleep 2

# ---- clients ------------------------------------------------------------------------------
targets=$(python3 -c '
import json, sys
a = sys.argv[1:]
print(json.dumps([[a[i], a[i + 1], int(a[i + 2])] for i in range(0, len(a), 3)]))
' web-node "${POD_IP[web-node]}" 8080 web-cluster "${POD_IP[web-cluster]}" 8080 \
  web-nginx "${POD_IP[web-nginx]}" 8080 web-python "${POD_IP[web-python]}" 8080 \
  svc-cluster "${SVC_IP[svc-cluster]}" 80 svc-nginx "${SVC_IP[svc-nginx]}" 80)
say "clients: client-a (node A) and client-b (node B), each to 4 pod IPs and 2 Services, curl and keep-alive"
run_pod client-a client /usr/bin/python3 /tmp/programs/client.py client-a "$targets"
run_pod client-b client /usr/bin/python3 /tmp/programs/client.py client-b "$targets"
for p in client-a client-b; do
    for _ in $(seq 300); do
        [ -e "$WORK/out/$p.json" ] && break
        ctr_of "${POD_NODE[$p]}" task ls 2>/dev/null | grep "${POD_CID[$p]}" | grep -q STOPPED \
            && die "client $p stopped without its account of the requests (its log below)"
        sleep 0.1
    done
    [ -e "$WORK/out/$p.json" ] || die "client $p did not finish within 30 s"
done

# ---- what the test knows --------------------------------------------------------------------
# Each pod as the runtime and kubelet know it, and every process of its container: PID in the
# container (NSpid's last) -> host PID.
{
    echo "{"
    echo "\"nodes\": {\"a\": \"${NODE_NAME[a]}\", \"b\": \"${NODE_NAME[b]}\"},"
    echo "\"server_addr\": \"$SERVER_ADDR\","
    echo "\"services\": {"
    sep=
    for s in svc-cluster svc-nginx; do
        printf '%s"%s": {"ip": "%s", "port": 80, "pod": "%s"}' "$sep" "$s" "${SVC_IP[$s]}" "${SVC_POD[$s]}"; sep=,
    done
    echo "},"
    echo "\"pods\": {"
    sep=
    for p in "${PODS[@]}"; do
        n=${POD_NODE[$p]}
        procs=
        while read -r hp _; do
            nspid=$(awk '/^NSpid:/ { print $NF }' "/proc/$hp/status" 2>/dev/null || true)
            [ -z "$nspid" ] || procs+="${procs:+,}\"$nspid\": $hp"
        done < <(ctr_of "$n" task ps "${POD_CID[$p]}" 2>/dev/null | tail -n +2)
        printf '%s"%s": {"node": "%s", "ip": "%s", "namespace": "%s", "container_id": "%s", "container": "%s", "procs": {%s}}\n' \
            "$sep" "$p" "${NODE_NAME[$n]}" "${POD_IP[$p]}" "${POD_NS[$p]}" "${POD_CID[$p]}" \
            "$(case $p in client-*) echo client ;; *) echo web ;; esac)" "$procs"
        sep=,
    done
    echo "}}"
} >"$WORK/truth.json"

client_cmd=("$BIN_DIR/liteobs-client" -server "$SERVER_URL" -token "$TOKEN")
# Wait until every exchange is there (at least once); then until the store is right (the server
# may merge two nodes' halves after a window) for at most 20 s more; and when it is, once more
# 3 s later, so that a late half stored as a second record is still caught.
query() { "${client_cmd[@]}" -o json -limit 10000 >"$WORK/records.json"; }
deadline=$(($(date +%s) + 45))
until query && check_cluster_exchanges --present "$WORK/truth.json" "$WORK/out" "$WORK/records.json"; do
    [ "$(date +%s)" -lt "$deadline" ] || { say "not every exchange arrived within 45 s"; break; }
    sleep 1
done
deadline=$(($(date +%s) + 20))
until query && check_cluster_exchanges --all "$WORK/truth.json" "$WORK/out" "$WORK/records.json" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 1
done
sleep 3
query
cp "$WORK/records.json" "$WORK/truth.json" "$WORK/logs/" 2>/dev/null || true
cp "$WORK"/out/*.json "$WORK/logs/" 2>/dev/null || true
say "checking $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/records.json") records against what the clients did"
check_cluster_exchanges --all "$WORK/truth.json" "$WORK/out" "$WORK/records.json" \
    || die "the records are not what the clients did (diff above; agents' logs below)"
echo
say "cluster e2e passed in $(($(date +%s) - started)) s"
