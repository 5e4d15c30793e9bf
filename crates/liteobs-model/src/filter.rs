//! The query contract between client and server.
//!
//! A [`Filter`] travels as URL query parameters (`ip`, `pid`, `method`, `status`, `path`,
//! `namespace`, `pod`, `route`, `client`, `server`, `since`, `until`, `limit`); the server answers with a [`QueryResponse`]. Parsing lives here so that the
//! client can reject a bad flag before it calls the server, with the same words the server uses.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::TrafficLog;

/// Rows returned when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most rows one query may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// Which exchanges a query selects. Every set field must match; results are newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Either side's address (client or server).
    pub ip: Option<IpAddr>,
    /// Either side's process ID.
    pub pid: Option<u32>,
    /// Exact method, upper-cased.
    pub method: Option<String>,
    pub status: Option<StatusMatch>,
    /// Prefix of the request-target.
    pub path_prefix: Option<String>,
    /// Exact Kubernetes namespace of either side's pod.
    pub namespace: Option<String>,
    /// Prefix of either side's pod name. With `namespace` too, both hold for the same side.
    pub pod_prefix: Option<String>,
    /// Exact route (the path template the server stored: `/item/{id}`).
    pub route: Option<String>,
    /// Exact node id of the client side, as `/map` names it ([`crate::map::client_node`]:
    /// `pod:shop/web-1`, `process:10.0.0.2/curl`, `address:10.0.0.2`): one end of a map edge.
    pub client: Option<String>,
    /// Exact node id of the server side ([`crate::map::server_node`]).
    pub server: Option<String>,
    /// Inclusive lower bound on `ts`.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `ts`.
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows (1..=[`MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            ip: None,
            pid: None,
            method: None,
            status: None,
            path_prefix: None,
            namespace: None,
            pod_prefix: None,
            route: None,
            client: None,
            server: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl Filter {
    /// `namespace` and `pod`: some side of `r` is in the namespace and its pod name starts with
    /// the prefix (either condition absent holds for every side).
    fn matches_pod(&self, r: &TrafficLog) -> bool {
        if self.namespace.is_none() && self.pod_prefix.is_none() {
            return true;
        }
        let side = |ns: &Option<String>, pod: &Option<String>| {
            self.namespace.as_ref().is_none_or(|want| ns.as_ref() == Some(want))
                && self
                    .pod_prefix
                    .as_deref()
                    .is_none_or(|p| pod.as_deref().is_some_and(|pod| pod.starts_with(p)))
        };
        side(&r.src_namespace, &r.src_pod) || side(&r.dst_namespace, &r.dst_pod)
    }
}

/// A status condition: one code, or a class such as `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Exact(u16),
    /// The hundreds digit: `Class(5)` is 500..=599. `Class(0)` is "no response" (status 0).
    Class(u16),
}

impl StatusMatch {
    /// The inclusive range of codes this matches.
    pub fn range(self) -> (u16, u16) {
        match self {
            StatusMatch::Exact(c) => (c, c),
            StatusMatch::Class(0) => (0, 0),
            StatusMatch::Class(d) => (d * 100, d * 100 + 99),
        }
    }

    pub fn matches(self, status: u16) -> bool {
        let (lo, hi) = self.range();
        (lo..=hi).contains(&status)
    }
}

/// A query parameter that could not be understood; `param` names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad query parameter `{param}`: {reason}")]
pub struct FilterError {
    pub param: String,
    pub reason: String,
}

pub(crate) fn bad(param: &str, reason: impl Into<String>) -> FilterError {
    FilterError { param: param.to_owned(), reason: reason.into() }
}

impl Filter {
    /// Builds a filter from query parameters. `now` anchors relative ages such as `15m`.
    /// Unknown parameter names are rejected, so a typo is not silently ignored.
    pub fn from_params<'a, I>(params: I, now: DateTime<Utc>) -> Result<Filter, FilterError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut f = Filter::default();
        for (key, value) in params {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match key {
                "ip" => {
                    f.ip = Some(
                        value
                            .parse()
                            .map_err(|_| bad(key, format!("{value:?} is not an IPv4 or IPv6 address")))?,
                    )
                }
                "pid" => {
                    f.pid =
                        Some(value.parse().map_err(|_| bad(key, format!("{value:?} is not a process ID")))?)
                }
                "method" => {
                    if !value.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_') {
                        return Err(bad(key, format!("{value:?} is not an HTTP method")));
                    }
                    f.method = Some(value.to_ascii_uppercase())
                }
                "status" => f.status = Some(parse_status(value).map_err(|r| bad(key, r))?),
                "path" => f.path_prefix = Some(value.to_owned()),
                "namespace" => f.namespace = Some(value.to_owned()),
                "pod" => f.pod_prefix = Some(value.to_owned()),
                "route" => f.route = Some(value.to_owned()),
                "client" => f.client = Some(value.to_owned()),
                "server" => f.server = Some(value.to_owned()),
                "since" => f.since = Some(parse_time(value, now).map_err(|r| bad(key, r))?),
                "until" => f.until = Some(parse_time(value, now).map_err(|r| bad(key, r))?),
                "limit" => {
                    let n: usize =
                        value.parse().map_err(|_| bad(key, format!("{value:?} is not a whole number")))?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(bad(key, format!("must be between 1 and {MAX_LIMIT}, got {n}")));
                    }
                    f.limit = n;
                }
                other => {
                    return Err(bad(
                        other,
                        "unknown parameter (known: ip, pid, method, status, path, namespace, pod, route, client, server, since, until, limit)",
                    ));
                }
            }
        }
        if let (Some(s), Some(u)) = (f.since, f.until)
            && s >= u
        {
            return Err(bad("since", "must be earlier than `until`"));
        }
        Ok(f)
    }

    /// True when `r` satisfies every condition (the reference semantics both stores implement).
    pub fn matches(&self, r: &TrafficLog) -> bool {
        self.ip.is_none_or(|ip| r.src_ip == ip || r.dst_ip == ip)
            && self.pid.is_none_or(|p| r.src_pid == Some(p) || r.dst_pid == Some(p))
            && self.method.as_deref().is_none_or(|m| r.method == m)
            && self.status.is_none_or(|s| s.matches(r.status))
            && self.path_prefix.as_deref().is_none_or(|p| r.path.starts_with(p))
            && self.matches_pod(r)
            && self.route.as_deref().is_none_or(|want| r.route.as_deref() == Some(want))
            && self.client.as_deref().is_none_or(|want| crate::map::client_node(r) == want)
            && self.server.as_deref().is_none_or(|want| crate::map::server_node(r) == want)
            && self.since.is_none_or(|s| r.ts >= s)
            && self.until.is_none_or(|u| r.ts < u)
    }
}

/// `200`, or a class `2xx` (any case). `0` and `0xx` select exchanges with no response.
pub fn parse_status(s: &str) -> Result<StatusMatch, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(d) = lower.strip_suffix("xx") {
        let digit_count = d.len();
        return match d.parse::<u16>() {
            Ok(d) if d <= 9 && digit_count == 1 => Ok(StatusMatch::Class(d)),
            _ => Err(format!("{s:?} is not a status code or class like 5xx")),
        };
    }
    match s.parse::<u16>() {
        Ok(c) if c <= 999 => Ok(StatusMatch::Exact(c)),
        _ => Err(format!("{s:?} is not a status code (0-999) or class like 5xx")),
    }
}

/// RFC 3339 (`2026-11-25T14:00:00Z`) or a relative age before `now`: a number and a unit,
/// `s`, `m`, `h`, `d` or `w` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: i64 = n.parse().map_err(|_| format!("{s:?} is neither RFC 3339 nor an age like 15m"))?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?}: the unit must be s, m, h, d or w (and the number sane)"))?;
    now.checked_sub_signed(age).ok_or_else(|| format!("{s:?} reaches too far back"))
}

/// The server's answer to `GET /query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Matching exchanges, newest first.
    pub records: Vec<TrafficLog>,
    /// The limit that was applied.
    pub limit: usize,
    /// True when more rows matched than `limit` allowed.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_every_parameter() {
        let f = Filter::from_params(
            [
                ("ip", "::1"),
                ("pid", "1234"),
                ("method", "post"),
                ("status", "5XX"),
                ("path", "/api"),
                ("namespace", "shop"),
                ("pod", "web-"),
                ("since", "15m"),
                ("until", "2026-11-25T12:00:00Z"),
                ("limit", "10000"),
            ],
            now(),
        )
        .unwrap();
        assert_eq!(f.ip, Some("::1".parse().unwrap()));
        assert_eq!(f.pid, Some(1234));
        assert_eq!(f.method.as_deref(), Some("POST"));
        assert_eq!(f.status, Some(StatusMatch::Class(5)));
        assert_eq!(f.path_prefix.as_deref(), Some("/api"));
        assert_eq!((f.namespace.as_deref(), f.pod_prefix.as_deref()), (Some("shop"), Some("web-")));
        assert_eq!(f.since, Some(now() - Duration::minutes(15)));
        assert_eq!(f.until, Some(now()));
        assert_eq!(f.limit, 10_000);
        assert_eq!(Filter::from_params([], now()).unwrap(), Filter::default());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (k, v) in [
            ("ip", "1.2.3"),
            ("pid", "-1"),
            ("pid", "abc"),
            ("method", "GET /"),
            ("status", "5x"),
            ("status", "1000"),
            ("status", "10xx"),
            ("since", "yesterday"),
            ("since", "15y"),
            ("until", "99999999999999w"),
            ("limit", "0"),
            ("limit", "10001"),
            ("limit", "ten"),
            ("pdi", "1"),
        ] {
            let e = Filter::from_params([(k, v)], now()).unwrap_err();
            assert_eq!(e.param, k, "{k}={v}: {e}");
        }
        let e = Filter::from_params([("since", "1m"), ("until", "2m")], now()).unwrap_err();
        assert_eq!(e.param, "since");
    }

    #[test]
    fn namespace_and_pod_hold_for_one_side() {
        let mut r = crate::record::tests::sample();
        r.src_namespace = Some("shop".into());
        r.src_pod = Some("client-7d9".into());
        r.dst_namespace = Some("db".into());
        r.dst_pod = Some("web-0".into());
        let f = |params: &[(&str, &str)]| Filter::from_params(params.iter().copied(), now()).unwrap();
        assert!(f(&[]).matches(&r));
        assert!(f(&[("namespace", "shop")]).matches(&r));
        assert!(f(&[("namespace", "db")]).matches(&r));
        assert!(!f(&[("namespace", "sho")]).matches(&r), "namespace is exact");
        assert!(f(&[("pod", "web")]).matches(&r), "pod is a prefix");
        assert!(f(&[("pod", "client-7d9")]).matches(&r));
        assert!(!f(&[("pod", "eb")]).matches(&r));
        assert!(f(&[("namespace", "db"), ("pod", "web")]).matches(&r));
        assert!(!f(&[("namespace", "shop"), ("pod", "web")]).matches(&r), "one side must hold both");
        let host = crate::record::tests::sample();
        assert_eq!(f(&[("pod", "")]).pod_prefix, None, "an empty value is no condition");
        assert!(!f(&[("namespace", "shop")]).matches(&host), "host processes have no namespace");
    }

    #[test]
    fn status_classes() {
        assert!(StatusMatch::Class(5).matches(503));
        assert!(!StatusMatch::Class(5).matches(600));
        assert!(StatusMatch::Class(0).matches(0));
        assert!(!StatusMatch::Class(0).matches(99));
        assert!(StatusMatch::Exact(404).matches(404));
    }
}
