//! Helpers shared by the unit tests of several modules.

use std::net::SocketAddr;

use liteobs_model::TrafficLog;

/// An exchange `client` → `server` (`GET /`, 200) with no process known.
pub fn record(client: SocketAddr, server: SocketAddr) -> TrafficLog {
    TrafficLog {
        ts: chrono::DateTime::UNIX_EPOCH,
        src_ip: client.ip(),
        src_port: client.port(),
        dst_ip: server.ip(),
        dst_port: server.port(),
        method: "GET".into(),
        path: "/".into(),
        host: None,
        status: 200,
        latency_us: 1,
        req_bytes: 0,
        resp_bytes: 0,
        src_pid: None,
        src_comm: None,
        dst_pid: None,
        dst_comm: None,
        src_namespace: None,
        src_pod: None,
        src_container: None,
        src_container_id: None,
        src_node: None,
        dst_namespace: None,
        dst_pod: None,
        dst_container: None,
        dst_container_id: None,
        dst_node: None,
        dst_service_ip: None,
        dst_service_port: None,
        exchange_id: None,
        route: None,
        node: "n".into(),
    }
}
