//! Who calls whom: the contract of `GET /map` and its reference semantics.
//!
//! Every exchange is an edge from its client's node to its server's node. A side's node is its
//! pod when known (`pod:NAMESPACE/NAME`), else its process (`process:IP/COMM`: the same node
//! whether the process calls or serves), else its address (`address:IP` for a client, whose port
//! changes per connection; `address:IP:PORT`, IPv6 in brackets, for a server). Edges carry the
//! figures of [`Group`] over their exchanges (count, 5xx errors, no-response, exact
//! percentiles, bytes, first and last seen); nodes are the edges' ends with their kind.
//! [`reference`] computes the whole answer by brute force; both stores must give the same.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::TrafficLog;
use crate::filter::Filter;
use crate::stats::{Group, GroupKey, SortKey, grouped, sort_groups};

/// The key columns of an edge (the node ids of its two ends), in order.
pub const EDGE_COLUMNS: [&str; 2] = ["client", "server"];

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Pod,
    Process,
    Address,
}

/// One end of one or more edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `pod:shop/checkout-7d9f8`, `process:10.0.0.2/nginx`, `address:[fd00::2]:443`.
    pub id: String,
    pub kind: NodeKind,
    /// The id without its kind: what a picture labels the node with.
    pub name: String,
}

impl Node {
    /// The node an id names (its kind from the prefix; an unknown prefix is an address).
    pub fn of_id(id: &str) -> Node {
        let (kind, name) = match id.split_once(':') {
            Some(("pod", rest)) => (NodeKind::Pod, rest),
            Some(("process", rest)) => (NodeKind::Process, rest),
            Some(("address", rest)) => (NodeKind::Address, rest),
            _ => (NodeKind::Address, id),
        };
        Node { id: id.to_owned(), kind, name: name.to_owned() }
    }
}

/// Calls from one node to another, with their figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// Node ids.
    pub client: String,
    pub server: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// [`Group`]'s figures without its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub count: u64,
    pub rate: f64,
    pub errors: u64,
    pub no_response: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<u64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub last_seen: DateTime<Utc>,
}

/// The answer to `GET /map`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapResponse {
    /// The ends of the edges below, by id.
    pub nodes: Vec<Node>,
    /// At most `limit` edges, busiest first (then by client, then server).
    pub edges: Vec<Edge>,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub since: DateTime<Utc>,
    #[serde(serialize_with = "crate::record::ser_ts", deserialize_with = "crate::record::de_ts")]
    pub until: DateTime<Utc>,
    /// More edges matched than `limit`.
    pub truncated: bool,
}

fn host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The client side's node id.
pub fn client_node(r: &TrafficLog) -> String {
    match (&r.src_pod, &r.src_comm) {
        (Some(pod), _) => format!("pod:{}/{pod}", r.src_namespace.as_deref().unwrap_or("")),
        (None, Some(comm)) => format!("process:{}/{comm}", host(r.src_ip)),
        (None, None) => format!("address:{}", host(r.src_ip)),
    }
}

/// The server side's node id.
pub fn server_node(r: &TrafficLog) -> String {
    match (&r.dst_pod, &r.dst_comm) {
        (Some(pod), _) => format!("pod:{}/{pod}", r.dst_namespace.as_deref().unwrap_or("")),
        (None, Some(comm)) => format!("process:{}/{comm}", host(r.dst_ip)),
        (None, None) => format!("address:{}:{}", host(r.dst_ip), r.dst_port),
    }
}

/// The edge of a group keyed by [`EDGE_COLUMNS`].
pub fn edge_of(g: Group) -> Edge {
    let end = |name: &str| g.key.get(name).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    Edge {
        client: end("client"),
        server: end("server"),
        figures: Figures {
            count: g.count,
            rate: g.rate,
            errors: g.errors,
            no_response: g.no_response,
            p50_us: g.p50_us,
            p95_us: g.p95_us,
            p99_us: g.p99_us,
            max_us: g.max_us,
            req_bytes: g.req_bytes,
            resp_bytes: g.resp_bytes,
            first_seen: g.first_seen,
            last_seen: g.last_seen,
        },
    }
}

/// The answer from edges already sorted and cut: their nodes, sorted by id.
pub fn answer(edges: Vec<Edge>, since: DateTime<Utc>, until: DateTime<Utc>, truncated: bool) -> MapResponse {
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for e in &edges {
        for id in [e.client.as_str(), e.server.as_str()] {
            nodes.entry(id).or_insert_with(|| Node::of_id(id));
        }
    }
    let nodes = nodes.into_values().collect();
    MapResponse { nodes, edges, since, until, truncated }
}

/// The answer by brute force over `records`: `filter` with its window already bounded
/// ([`crate::stats::StatsQuery::bounded_filter`]), `filter.limit` edges.
pub fn reference(
    records: &[TrafficLog],
    filter: &Filter,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> MapResponse {
    let mut groups = grouped(records, filter, since, until, |r| {
        let mut key = GroupKey::new();
        key.insert("client".into(), client_node(r).into());
        key.insert("server".into(), server_node(r).into());
        key
    });
    sort_groups(&mut groups, SortKey::Count, &EDGE_COLUMNS);
    let truncated = groups.len() > filter.limit;
    groups.truncate(filter.limit);
    answer(groups.into_iter().map(edge_of).collect(), since, until, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_pods_then_processes_then_addresses() {
        let mut r: TrafficLog = serde_json::from_str(
            r#"{"ts":"2026-12-01T12:00:00Z","src_ip":"fd00::1","src_port":5,"dst_ip":"10.0.0.2","dst_port":443,
                "method":"GET","path":"/","status":200,"latency_us":1,"req_bytes":0,"resp_bytes":0,"node":"n"}"#,
        )
        .unwrap();
        assert_eq!(
            (client_node(&r), server_node(&r)),
            ("address:[fd00::1]".into(), "address:10.0.0.2:443".into())
        );
        r.src_comm = Some("curl".into());
        r.dst_comm = Some("nginx".into());
        assert_eq!(
            (client_node(&r), server_node(&r)),
            ("process:[fd00::1]/curl".into(), "process:10.0.0.2/nginx".into())
        );
        r.src_pod = Some("web-1".into());
        r.src_namespace = Some("shop".into());
        r.dst_pod = Some("db-0".into());
        assert_eq!((client_node(&r), server_node(&r)), ("pod:shop/web-1".into(), "pod:/db-0".into()));
        let n = Node::of_id("process:10.0.0.2/nginx");
        assert_eq!((n.kind, n.name.as_str()), (NodeKind::Process, "10.0.0.2/nginx"));
    }
}
