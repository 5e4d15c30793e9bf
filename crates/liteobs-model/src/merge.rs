//! One record per exchange: combining the halves of an exchange captured more than once.
//!
//! An exchange can be captured several times. A call from a pod on node A to a pod on node B
//! is seen by both nodes' agents; each knows the process and pod of its own side only. On one
//! node, an agent capturing on several interfaces sees a call through a Kubernetes Service
//! twice: on the client's interface addressed to the Service (before DNAT) and on the way to
//! the server addressed to the server's pod (after DNAT). Every capture carries the same
//! [`TrafficLog::exchange_id`] (TCP sequence numbers do not change on the way), and
//! [`same_exchange`] says when two records are halves of one exchange; [`merge`] makes one
//! record of them. The agent merges the halves it sees itself; the server merges what several
//! agents upload, whichever arrives first.
//!
//! What the merged record holds:
//! - what the client experienced (`ts`, `latency_us`, `node`, the client's address): from the
//!   half captured on the client's side, the one that identified the client (its pod, else its
//!   process), else the first;
//! - each side's identity (pid, comm, namespace, pod, container, its ID, node) whole from the
//!   half that knows it best (pod > process > nothing; a tie keeps the client's half), never a
//!   mix of two halves;
//! - `dst_ip`/`dst_port`: the server's real address; when the halves disagree, the other one
//!   is the address the client dialled (`dst_service_ip`/`dst_service_port`). Which is which:
//!   a half that already names the other's address as its Service says so; otherwise the
//!   dialled address is the one of the half whose client socket was found (its `src_pid`:
//!   the client's socket is connected to the address it dialled) and whose server was not
//!   (no socket has a Service address as its own); a tie goes to the half captured first (the
//!   packet is seen before it is translated), then to the client's half;
//! - `route` (set by the server): from the half addressed to the real server, whose bound on
//!   distinct routes it was made under, else from the client's half.
//!
//! The result does not depend on the order in which halves arrive (tested on every order of
//! three halves), so the server may merge them one at a time.

use std::net::IpAddr;

use chrono::Duration;

use crate::TrafficLog;

/// Whether `a` and `b` are captures of one exchange: the same [`TrafficLog::exchange_id`], the
/// same request line and status (every capture of an exchange sees the same bytes), and
/// request times at most `window` apart (the nodes' clocks differ, and a capture before and
/// after a NAT differs by microseconds). The request line and the window keep apart exchanges
/// that share sequence numbers without being one: captures made by programs with fixed
/// initial sequence numbers (test generators), and replays of one capture file shifted in time.
pub fn same_exchange(a: &TrafficLog, b: &TrafficLog, window: Duration) -> bool {
    match (a.exchange_id, b.exchange_id) {
        (Some(x), Some(y)) if x == y => {
            a.method == b.method && a.path == b.path && a.status == b.status && (a.ts - b.ts).abs() <= window
        }
        _ => false,
    }
}

/// One record of two halves of one exchange (see the module docs for what comes from where).
pub fn merge(a: TrafficLog, b: TrafficLog) -> TrafficLog {
    // The client's half is the base: what the client experienced.
    let (mut base, other) = if src_score(&b) > src_score(&a) { (b, a) } else { (a, b) };

    let (real, dialled) = server_addresses(&base, &other);

    // The server's identity, whole, from the half that knows it best; a tie keeps the half
    // that was addressed to the real server.
    let other_dst_better = dst_score(&other) > dst_score(&base)
        || (dst_score(&other) == dst_score(&base)
            && (other.dst_ip, other.dst_port) == real
            && (base.dst_ip, base.dst_port) != real);
    if other_dst_better {
        base.dst_pid = other.dst_pid;
        base.dst_comm = other.dst_comm;
        base.dst_namespace = other.dst_namespace;
        base.dst_pod = other.dst_pod;
        base.dst_container = other.dst_container;
        base.dst_container_id = other.dst_container_id;
        base.dst_node = other.dst_node;
    }
    // The route was bounded per server address: keep the one made for the real server.
    let other_is_real = (base.dst_ip, base.dst_port) != real && (other.dst_ip, other.dst_port) == real;
    if base.route.is_none() || (other_is_real && other.route.is_some()) {
        base.route = other.route;
    }
    (base.dst_ip, base.dst_port) = real;
    (base.dst_service_ip, base.dst_service_port) = match dialled {
        Some((ip, port)) => (Some(ip), Some(port)),
        None => (None, None),
    };
    if base.host.is_none() {
        base.host = other.host;
    }
    base
}

/// How well a half knows the client: 2 for its pod, 1 for its process, 0 for neither.
fn src_score(r: &TrafficLog) -> u8 {
    if r.src_pod.is_some() { 2 } else { u8::from(r.src_pid.is_some()) }
}

/// How well a half knows the server, as [`src_score`].
fn dst_score(r: &TrafficLog) -> u8 {
    if r.dst_pod.is_some() { 2 } else { u8::from(r.dst_pid.is_some()) }
}

type Endpoint = (IpAddr, u16);

fn service(r: &TrafficLog) -> Option<Endpoint> {
    Some((r.dst_service_ip?, r.dst_service_port?))
}

/// The server's real address and, when it differs, the one the client dialled.
fn server_addresses(base: &TrafficLog, other: &TrafficLog) -> (Endpoint, Option<Endpoint>) {
    let a = (base.dst_ip, base.dst_port);
    let b = (other.dst_ip, other.dst_port);
    if a == b {
        return (a, service(base).or(service(other)));
    }
    if service(base) == Some(b) {
        return (a, Some(b));
    }
    if service(other) == Some(a) {
        return (b, Some(a));
    }
    // +1 for a client socket found (connected to the dialled address), -1 for a server socket
    // found (bound to the real one).
    let dialled = |r: &TrafficLog| i8::from(r.src_pid.is_some()) - i8::from(r.dst_pid.is_some());
    let base_dialled = match dialled(base).cmp(&dialled(other)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => base.ts <= other.ts,
    };
    if base_dialled { (b, Some(a)) } else { (a, Some(b)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "10.244.1.5";
    const SERVICE: &str = "10.96.0.10";
    const SERVER: &str = "10.244.2.7";

    fn half(node: &str, dst: &str, dst_port: u16, ts_us: i64) -> TrafficLog {
        TrafficLog {
            ts: chrono::DateTime::from_timestamp_micros(ts_us).unwrap(),
            src_ip: CLIENT.parse().unwrap(),
            src_port: 40000,
            dst_ip: dst.parse().unwrap(),
            dst_port,
            node: node.into(),
            exchange_id: Some(0x1234_5678_9abc_def0),
            route: None,
            src_pid: None,
            src_comm: None,
            ..crate::record::tests::sample()
        }
    }

    fn client_side(mut r: TrafficLog, node: &str) -> TrafficLog {
        r.src_pid = Some(100);
        r.src_comm = Some("curl".into());
        r.src_namespace = Some("shop".into());
        r.src_pod = Some("client-0".into());
        r.src_container = Some("curl".into());
        r.src_container_id = Some("a".repeat(64));
        r.src_node = Some(node.into());
        r
    }

    fn server_side(mut r: TrafficLog, node: &str) -> TrafficLog {
        r.dst_pid = Some(200);
        r.dst_comm = Some("node".into());
        r.dst_namespace = Some("shop".into());
        r.dst_pod = Some("web-0".into());
        r.dst_container = Some("web".into());
        r.dst_container_id = Some("b".repeat(64));
        r.dst_node = Some(node.into());
        r
    }

    /// A call through a Service from a pod on node A to a pod on node B: A sees it before
    /// (knowing the client) and after DNAT (knowing nobody), B after (knowing the server).
    fn three_halves() -> [TrafficLog; 3] {
        let a_before = client_side(half("node-a", SERVICE, 80, 1_000_000), "node-a");
        let a_after = half("node-a", SERVER, 8080, 1_000_010);
        let mut b_after = server_side(half("node-b", SERVER, 8080, 1_000_900), "node-b");
        b_after.latency_us = 700; // seen nearer the server
        [a_before, a_after, b_after]
    }

    fn expected() -> TrafficLog {
        let [a_before, _, b_after] = three_halves();
        let mut want = client_side(half("node-a", SERVER, 8080, 1_000_000), "node-a");
        want.latency_us = a_before.latency_us;
        want.dst_pid = b_after.dst_pid;
        want.dst_comm = b_after.dst_comm;
        want.dst_namespace = b_after.dst_namespace;
        want.dst_pod = b_after.dst_pod;
        want.dst_container = b_after.dst_container;
        want.dst_container_id = b_after.dst_container_id;
        want.dst_node = b_after.dst_node;
        want.dst_service_ip = Some(SERVICE.parse().unwrap());
        want.dst_service_port = Some(80);
        want
    }

    #[test]
    fn three_halves_across_nodes_and_a_service_make_the_same_record_in_every_order() {
        let h = three_halves();
        for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let [x, y, z] = order.map(|i| h[i].clone());
            // Left to right, and the last two first: the server merges one upload at a time.
            assert_eq!(merge(merge(x.clone(), y.clone()), z.clone()), expected(), "{order:?} left first");
            assert_eq!(merge(x, merge(y, z)), expected(), "{order:?} right first");
        }
    }

    #[test]
    fn two_nodes_without_a_service_each_give_their_side() {
        let a = client_side(half("node-a", SERVER, 8080, 5), "node-a");
        let b = server_side(half("node-b", SERVER, 8080, 9), "node-b");
        for m in [merge(a.clone(), b.clone()), merge(b, a)] {
            assert_eq!((m.src_pod.as_deref(), m.src_node.as_deref()), (Some("client-0"), Some("node-a")));
            assert_eq!((m.dst_pod.as_deref(), m.dst_node.as_deref()), (Some("web-0"), Some("node-b")));
            assert_eq!((m.node.as_str(), m.ts.timestamp_micros()), ("node-a", 5), "the client's view");
            assert_eq!(m.dst_service_ip, None);
        }
    }

    #[test]
    fn on_one_node_the_socket_owners_tell_the_dialled_address() {
        // The same node saw both copies; its eBPF found the client's socket on the copy to the
        // Service and the server's socket on the copy to the pod, and no pods (host processes).
        let mut before = half("n", SERVICE, 80, 10);
        before.src_pid = Some(1);
        let mut after = half("n", SERVER, 8080, 10);
        after.dst_pid = Some(2);
        for m in [merge(before.clone(), after.clone()), merge(after, before)] {
            assert_eq!((m.dst_ip, m.dst_port), (SERVER.parse().unwrap(), 8080));
            assert_eq!((m.dst_service_ip, m.dst_service_port), (Some(SERVICE.parse().unwrap()), Some(80)));
            assert_eq!((m.src_pid, m.dst_pid), (Some(1), Some(2)));
        }
    }

    #[test]
    fn with_nothing_known_the_first_capture_is_the_dialled_one() {
        let before = half("n", SERVICE, 80, 10);
        let after = half("n", SERVER, 8080, 11);
        for m in [merge(before.clone(), after.clone()), merge(after, before)] {
            assert_eq!(
                (m.dst_ip, m.dst_service_ip),
                (SERVER.parse().unwrap(), Some(SERVICE.parse().unwrap()))
            );
        }
    }

    #[test]
    fn a_side_is_never_mixed_from_two_halves() {
        // Both halves name a server process (one kernel seen by two agents, as in a test); the
        // one that also knows the pod gives the whole side.
        let mut a = client_side(half("node-a", SERVER, 8080, 1), "node-a");
        a.dst_pid = Some(200);
        a.dst_comm = Some("node".into());
        a.dst_node = Some("node-a".into());
        let b = server_side(half("node-b", SERVER, 8080, 2), "node-b");
        let m = merge(a, b);
        assert_eq!((m.dst_pod.as_deref(), m.dst_node.as_deref()), (Some("web-0"), Some("node-b")));
    }

    #[test]
    fn same_exchange_needs_the_id_and_the_window() {
        let a = half("a", SERVER, 8080, 0);
        let mut b = half("b", SERVER, 8080, 60_000_000);
        assert!(same_exchange(&a, &b, Duration::seconds(60)));
        assert!(!same_exchange(&a, &b, Duration::seconds(59)));
        let mut other_path = b.clone();
        other_path.path = "/other".into();
        assert!(!same_exchange(&a, &other_path, Duration::seconds(60)), "another request line");
        let mut other_status = b.clone();
        other_status.status = 503;
        assert!(!same_exchange(&a, &other_status, Duration::seconds(60)), "another answer");
        b.exchange_id = Some(1);
        assert!(!same_exchange(&a, &b, Duration::seconds(60)));
        let (mut x, mut y) = (a.clone(), a);
        x.exchange_id = None;
        y.exchange_id = None;
        assert!(!same_exchange(&x, &y, Duration::seconds(60)), "records without an id are never merged");
    }
}
