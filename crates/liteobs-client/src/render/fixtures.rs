//! Records for the render tests: one of each awkward case a real capture produces.

use chrono::{DateTime, Utc};
use liteobs_model::{QueryResponse, TrafficLog};

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn record(ts: &str, src: (&str, u16), dst: (&str, u16), method: &str, path: &str) -> TrafficLog {
    TrafficLog {
        ts: at(ts),
        src_ip: src.0.parse().unwrap(),
        src_port: src.1,
        dst_ip: dst.0.parse().unwrap(),
        dst_port: dst.1,
        method: method.into(),
        path: path.into(),
        host: None,
        status: 200,
        latency_us: 0,
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
        node: "node-a".into(),
    }
}

/// A plain IPv4 exchange with both processes known.
pub fn plain() -> TrafficLog {
    TrafficLog {
        host: Some("api.example.test".into()),
        latency_us: 1_500,
        resp_bytes: 512,
        src_pid: Some(1234),
        src_comm: Some("curl".into()),
        dst_pid: Some(88),
        dst_comm: Some("nginx".into()),
        ..record(
            "2026-11-25T14:02:44.123456Z",
            ("10.0.0.1", 51234),
            ("10.0.0.2", 8080),
            "GET",
            "/api/v1/items?id=7",
        )
    }
}

/// Newest first: IPv4 with PIDs, IPv6 with the client PID unknown and a long path, a long
/// Japanese path with no server PID, a path carrying a terminal escape and no response at all.
pub fn response() -> QueryResponse {
    let records = vec![
        plain(),
        TrafficLog {
            status: 503,
            latency_us: 2_100_000,
            req_bytes: 2_048,
            resp_bytes: 3_565_158,
            dst_pid: Some(4242),
            dst_comm: Some("python3".into()),
            ..record(
                "2026-11-25T14:02:43.900001Z",
                ("2001:db8::17", 40022),
                ("::1", 8080),
                "POST",
                "/api/v1/orders/2026/11/25/batch-import?source=warehouse-eu-west&dry_run=false",
            )
        },
        TrafficLog {
            status: 404,
            latency_us: 850,
            src_pid: Some(7),
            ..record(
                "2026-11-25T14:02:40.000999Z",
                ("127.0.0.1", 33000),
                ("127.0.0.1", 9000),
                "DELETE",
                "/ユーザー/プロフィール/写真/アルバム/2026年11月/とても長いファイル名.jpg",
            )
        },
        TrafficLog {
            status: 0,
            src_pid: Some(31337),
            src_comm: Some("evil".into()),
            ..record(
                "2026-11-24T23:59:59.999999Z",
                ("10.0.0.3", 1),
                ("10.0.0.2", 80),
                "GET",
                "/health\x1b[2J\n",
            )
        },
    ];
    QueryResponse { records, limit: 100, truncated: false }
}

/// Just [`plain`].
pub fn single() -> QueryResponse {
    QueryResponse { records: vec![plain()], limit: 100, truncated: false }
}
