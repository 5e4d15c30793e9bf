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
        route: None,
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

/// A call from a pod on node-a to a pod on node-b through a ClusterIP Service, as the server
/// keeps it once both agents' halves are merged: both pods, both processes, both nodes, and
/// the Service address the client dialled.
pub fn across_nodes() -> TrafficLog {
    TrafficLog {
        host: Some("payments.shop.svc".into()),
        status: 201,
        latency_us: 4_200,
        req_bytes: 180,
        resp_bytes: 96,
        src_pid: Some(40211),
        src_comm: Some("node".into()),
        src_namespace: Some("shop".into()),
        src_pod: Some("checkout-7d9f8b6c4-x2kqz".into()),
        src_container: Some("app".into()),
        src_container_id: Some("3f9a".repeat(16)),
        src_node: Some("node-a".into()),
        dst_pid: Some(7781),
        dst_comm: Some("python3".into()),
        dst_namespace: Some("shop".into()),
        dst_pod: Some("payments-5c8d7f9b4-q7wzt".into()),
        dst_container: Some("api".into()),
        dst_container_id: Some("a1b2".repeat(16)),
        dst_node: Some("node-b".into()),
        dst_service_ip: Some("10.96.12.7".parse().unwrap()),
        dst_service_port: Some(80),
        exchange_id: Some(0x1234_5678_9abc_def0),
        route: Some("/api/v1/charge".into()),
        ..record(
            "2026-11-25T14:02:45.000500Z",
            ("10.244.1.17", 51234),
            ("10.244.2.9", 8080),
            "POST",
            "/api/v1/charge",
        )
    }
}

/// Newest first, one of each kind of side: pods on both sides through a Service
/// ([`across_nodes`]); a pod scraping a host process; a host process calling a pod; host
/// processes only ([`plain`]); and a pod whose names carry terminal escapes.
pub fn pods() -> QueryResponse {
    let records = vec![
        across_nodes(),
        TrafficLog {
            latency_us: 12_000,
            resp_bytes: 48_213,
            src_pid: Some(5120),
            src_comm: Some("prometheus".into()),
            src_namespace: Some("monitoring".into()),
            src_pod: Some("prometheus-k8s-0".into()),
            src_container: Some("prometheus".into()),
            src_node: Some("node-a".into()),
            dst_pid: Some(812),
            dst_comm: Some("node_exporter".into()),
            dst_node: Some("node-a".into()),
            ..record(
                "2026-11-25T14:02:44.900000Z",
                ("10.244.1.5", 41800),
                ("10.0.0.5", 9100),
                "GET",
                "/metrics",
            )
        },
        TrafficLog {
            latency_us: 310,
            resp_bytes: 2,
            src_pid: Some(1234),
            src_comm: Some("curl".into()),
            src_node: Some("node-b".into()),
            dst_namespace: Some("shop".into()),
            dst_pod: Some("payments-5c8d7f9b4-q7wzt".into()),
            dst_node: Some("node-b".into()),
            ..record(
                "2026-11-25T14:02:44.500000Z",
                ("10.0.0.6", 60001),
                ("10.244.2.9", 8080),
                "GET",
                "/healthz",
            )
        },
        plain(),
        TrafficLog {
            status: 0,
            src_namespace: Some("evil\x1b[2J".into()),
            src_pod: Some("pod\nname".into()),
            ..record("2026-11-25T14:02:40.000000Z", ("10.244.1.66", 1), ("10.0.0.2", 80), "GET", "/")
        },
    ];
    QueryResponse { records, limit: 100, truncated: false }
}

/// Just [`plain`].
pub fn single() -> QueryResponse {
    QueryResponse { records: vec![plain()], limit: 100, truncated: false }
}

/// "Now" for the render tests: an hour after [`plain`], in UTC, so that the fixtures' records
/// of 2026-11-25 are today and the one of 2026-11-24 is not.
pub fn clock() -> crate::render::Clock {
    crate::render::Clock { now: at("2026-11-25T15:00:00Z"), zone: crate::render::Zone::utc() }
}

/// A view of `width` columns (`None`: a pipe), without colour, at [`clock`].
pub fn view(width: Option<usize>) -> crate::render::View {
    crate::render::View { width, colour: false, clock: clock() }
}

/// A view of `width` columns without colour, at `now` (RFC 3339) in UTC.
pub fn view_at(now: &str, width: Option<usize>) -> crate::render::View {
    crate::render::View {
        width,
        colour: false,
        clock: crate::render::Clock { now: at(now), zone: crate::render::Zone::utc() },
    }
}

/// `table(wide, view)` at 80, 120 and 200 columns, then with `-o wide`, each under a line
/// naming it: one snapshot for every width a user is likely to have.
pub fn at_80_120_200(now: &str, table: impl Fn(bool, &crate::render::View) -> String) -> String {
    let mut all = String::new();
    for width in [80, 120, 200] {
        let view = view_at(now, Some(width));
        all.push_str(&format!("--- width {width}\n{}", table(false, &view)));
        all.push_str(&format!("--- width {width}, -o wide\n{}", table(true, &view)));
    }
    all
}

/// Checks that every line of `table(view)` fits every width from 20 to 250.
pub fn fits_every_width(now: &str, table: impl Fn(&crate::render::View) -> String) {
    for width in 20..=250 {
        for line in table(&view_at(now, Some(width))).lines() {
            assert!(crate::render::text::width(line) <= width, "{width}: {line}");
        }
    }
}
