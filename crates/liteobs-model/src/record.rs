//! The exchange record and its JSON form.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One HTTP/1.x request and its response, as seen on the wire by one agent.
///
/// "Source" is always the client side of the TCP connection (the side that sent the request),
/// "destination" the server side, whatever the capture direction was.
///
/// JSON: field names are snake_case and stable. Unknown fields are ignored when decoding so that a
/// newer agent can upload to an older server; every `Option` field may be absent (and is omitted
/// when unknown); every other field is required.
///
/// Decoding accepts only what every program can carry exactly, so nothing is changed on the
/// way into a store: integers are JSON integers in the field's range (no fraction, exponent or
/// sign where none fits; the counters at most [`COUNTER_MAX`]), `ts` lies in
/// [`TS_MIN_MICROS`]..=[`TS_MAX_MICROS`] with at most microsecond precision and no leap second,
/// a field appears once, and strings are valid Unicode (serde_json refuses lone surrogates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficLog {
    /// Time of the request's first packet, UTC. Serialized as RFC 3339 with microseconds.
    #[serde(serialize_with = "ser_ts", deserialize_with = "de_ts")]
    pub ts: DateTime<Utc>,
    /// Client address (IPv4 or IPv6).
    pub src_ip: IpAddr,
    /// Client port.
    pub src_port: u16,
    /// Server address.
    pub dst_ip: IpAddr,
    /// Server port.
    pub dst_port: u16,
    /// Request method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request-target as sent, query string included.
    pub path: String,
    /// `Host` header, when the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Response status code; 0 when no response was seen.
    pub status: u16,
    /// First packet of the response minus first packet of the request, in microseconds
    /// (0 when no response was seen).
    #[serde(deserialize_with = "de_counter")]
    pub latency_us: u64,
    /// Request body bytes (after de-chunking; headers not counted).
    #[serde(deserialize_with = "de_counter")]
    pub req_bytes: u64,
    /// Response body bytes (after de-chunking; headers not counted).
    #[serde(deserialize_with = "de_counter")]
    pub resp_bytes: u64,
    /// Process ID (tgid) of the client process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_pid: Option<u32>,
    /// Command name of the client process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_comm: Option<String>,
    /// Kubernetes namespace of the client's pod, when the client is a container on a node whose
    /// agent saw the exchange (from the container runtime's `io.kubernetes.pod.namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_namespace: Option<String>,
    /// Name of the client's pod (`io.kubernetes.pod.name`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_pod: Option<String>,
    /// Name of the client's container within its pod (`io.kubernetes.container.name`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_container: Option<String>,
    /// The container runtime's ID of the client's container (64 hex digits), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_container_id: Option<String>,
    /// The node on which the client's process and pod were identified: set with `src_pid` or
    /// `src_pod`, by the agent of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_node: Option<String>,
    /// Process ID (tgid) of the server process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_pid: Option<u32>,
    /// Command name of the server process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_comm: Option<String>,
    /// Kubernetes namespace of the server's pod, when the server is a container on a node whose
    /// agent saw the exchange (from the container runtime's `io.kubernetes.pod.namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_namespace: Option<String>,
    /// Name of the server's pod (`io.kubernetes.pod.name`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_pod: Option<String>,
    /// Name of the server's container within its pod (`io.kubernetes.container.name`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_container: Option<String>,
    /// The container runtime's ID of the server's container (64 hex digits), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_container_id: Option<String>,
    /// The node on which the server's process and pod were identified: set with `dst_pid` or
    /// `dst_pod`, by the agent of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_node: Option<String>,
    /// The address the client dialled when it was not the server's own: a Kubernetes Service
    /// (ClusterIP, NodePort) that was translated (DNAT) to `dst_ip`/`dst_port` on the way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_service_ip: Option<IpAddr>,
    /// The port of `dst_service_ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_service_port: Option<u16>,
    /// Name of the node (agent) that saw the exchange; in a record merged from several agents'
    /// halves ([`crate::merge`]), the node that saw it on the client's side when one did.
    pub node: String,
    /// An identity of the exchange that every capture of it shares, on any node and on either
    /// side of a NAT: the TCP sequence numbers of the request's first byte (high 32 bits) and
    /// of the response's first byte (low 32 bits; 0 without a response), as an `i64`. Records
    /// with the same id and timestamps close together are halves of one exchange, which the
    /// server stores once ([`crate::merge`]). Absent from records that were not captured from
    /// TCP (uploaded by other tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_id: Option<i64>,
    /// The path template of the request (`/item/{id}` for `/item/123?x=1`: [`crate::route`]),
    /// set by the server when it stores the record, from `path` and the server's `-route`
    /// patterns and bounds; the agent leaves it out, and the server replaces whatever an upload
    /// carries here, so that its bound on distinct routes per server holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

impl TrafficLog {
    /// The timestamp as microseconds since the Unix epoch: the form both stores keep, so
    /// that ordering and range filters are plain integer comparisons.
    pub fn ts_micros(&self) -> i64 {
        self.ts.timestamp_micros()
    }
}

/// The earliest timestamp LiteObs carries: 1970-01-01T00:00:00Z (µs since the Unix epoch).
/// Every program holds to one range, so that what the agent emits the server accepts, and what
/// the server stores every client can print.
pub const TS_MIN_MICROS: i64 = 0;
/// The latest timestamp LiteObs carries: 9999-12-31T23:59:59.999999Z (µs since the Unix epoch).
pub const TS_MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Whether `ts` lies in the range every LiteObs program carries ([`TS_MIN_MICROS`] ..=
/// [`TS_MAX_MICROS`]): the agent counts and skips records outside it, the server refuses them.
pub fn ts_in_range(ts: &DateTime<Utc>) -> bool {
    (TS_MIN_MICROS..=TS_MAX_MICROS).contains(&ts.timestamp_micros())
}

/// The largest counter (`latency_us`, `req_bytes`, `resp_bytes`) a record may carry: the stores
/// keep them as signed 64-bit integers (SQL BIGINT), so a larger value could not be stored
/// exactly and is refused when decoding.
pub const COUNTER_MAX: u64 = i64::MAX as u64;

fn de_counter<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v > COUNTER_MAX {
        return Err(serde::de::Error::custom(format!(
            "{v} does not fit a signed 64-bit column (at most {COUNTER_MAX})"
        )));
    }
    Ok(v)
}

/// Formats a timestamp the way every LiteObs program writes it: RFC 3339, UTC, microseconds.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn ser_ts<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(ts))
}

pub(crate) fn de_ts<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let ts = DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 timestamp ({e}): {s:?}")))?;
    if !ts_in_range(&ts) {
        return Err(serde::de::Error::custom(format!(
            "timestamp {s:?} is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59.999999Z"
        )));
    }
    // chrono keeps a leap second (`:60`) as a nanosecond count past one second; the stores keep
    // microseconds since the epoch, where it would silently become the next second.
    let nanos = ts.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        return Err(serde::de::Error::custom(format!(
            "timestamp {s:?} is a leap second, which LiteObs cannot store"
        )));
    }
    if nanos % 1_000 != 0 {
        return Err(serde::de::Error::custom(format!(
            "timestamp {s:?} is finer than a microsecond, which LiteObs cannot store"
        )));
    }
    Ok(ts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> TrafficLog {
        TrafficLog {
            ts: DateTime::parse_from_rfc3339("2026-11-25T14:02:44.123456Z").unwrap().with_timezone(&Utc),
            src_ip: "10.0.0.1".parse().unwrap(),
            src_port: 51234,
            dst_ip: "::1".parse().unwrap(),
            dst_port: 8080,
            method: "GET".into(),
            path: "/api/v1/items?id=7".into(),
            host: Some("example.test".into()),
            status: 200,
            latency_us: 1500,
            req_bytes: 0,
            resp_bytes: 512,
            src_pid: Some(1234),
            src_comm: Some("curl".into()),
            src_namespace: None,
            src_pod: None,
            src_container: None,
            src_container_id: None,
            src_node: None,
            dst_pid: None,
            dst_comm: None,
            dst_namespace: None,
            dst_pod: None,
            dst_container: None,
            dst_container_id: None,
            dst_node: None,
            dst_service_ip: None,
            dst_service_port: None,
            node: "node-a".into(),
            exchange_id: None,
            route: None,
        }
    }

    #[test]
    fn json_form_is_stable() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&sample()).unwrap());
    }

    #[test]
    fn round_trips_and_keeps_microseconds() {
        let r = sample();
        let back: TrafficLog = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.ts_micros() % 1_000_000, 123_456);
    }

    #[test]
    fn unknown_fields_are_ignored_and_optional_fields_may_be_absent() {
        let json = r#"{"ts":"2026-11-25T14:02:44.5+01:00","src_ip":"127.0.0.1","src_port":1,
            "dst_ip":"127.0.0.1","dst_port":80,"method":"GET","path":"/","status":0,
            "latency_us":0,"req_bytes":0,"resp_bytes":0,"node":"n","tls_version":"1.3"}"#;
        let r: TrafficLog = serde_json::from_str(json).unwrap();
        assert_eq!(r.host, None);
        assert_eq!(r.src_pid, None);
        assert_eq!(format_ts(&r.ts), "2026-11-25T13:02:44.500000Z");
    }

    #[test]
    fn wrong_types_and_bad_timestamps_are_rejected() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["status"] = serde_json::json!("200");
        assert!(serde_json::from_value::<TrafficLog>(v).is_err());
        let mut v = serde_json::to_value(sample()).unwrap();
        v["ts"] = serde_json::json!("yesterday");
        let err = serde_json::from_value::<TrafficLog>(v).unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["src_port"] = serde_json::json!(70000);
        assert!(serde_json::from_value::<TrafficLog>(v).is_err());
    }
}
