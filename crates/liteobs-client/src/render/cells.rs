//! Human-readable forms of one record's values, as the tables show them: compact, so that a
//! row fits 80 columns (times: [`super::clock`]).

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::text::printable;

/// `2026-11-25T14:02:44.123456Z`: the wire form (UTC, microseconds), for `-o wide`.
pub fn wire_time(ts: &DateTime<Utc>) -> String {
    liteobs_model::format_ts(ts)
}

/// `10.0.0.1` or `::1`: an address without its port, for narrow terminals.
pub fn address(ip: IpAddr) -> String {
    ip.to_string()
}

/// `10.0.0.1:8080`, or `[::1]:8080` for IPv6.
pub fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// `curl/1234`: the command, then the PID; `1234` when the name is unknown, `curl` when the
/// PID is; `None` when neither is known.
pub fn process(pid: Option<u32>, comm: Option<&str>) -> Option<String> {
    match (comm.filter(|c| !c.is_empty()), pid) {
        (Some(comm), Some(pid)) => Some(format!("{}/{pid}", printable(comm))),
        (Some(comm), None) => Some(printable(comm).into_owned()),
        (None, Some(pid)) => Some(pid.to_string()),
        (None, None) => None,
    }
}

/// `shop/checkout-7d9f8b6c4-x2kqz`, or the pod name alone when the namespace is unknown.
pub fn pod(namespace: Option<&str>, pod: &str) -> String {
    let pod = printable(pod);
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{}/{pod}", printable(ns)),
        None => pod.into_owned(),
    }
}

/// `10.96.12.7:80→10.244.2.9:8080`: the address the client dialled (a Service, before DNAT),
/// then the server's own. The dialled port is left out when the record does not have it.
pub fn dialled(service_ip: IpAddr, service_port: Option<u16>, server: &str) -> String {
    let service = match service_port {
        Some(port) => endpoint(service_ip, port),
        None => address(service_ip),
    };
    format!("{service}→{server}")
}

/// What STATUS shows for an exchange that got no answer at all (status 0, nothing received).
pub const NO_RESPONSE: &str = "none";

/// The status code; [`NO_RESPONSE`] when nothing was answered. (`0` with an answer is HTTP/0.9,
/// which has no status line.)
pub fn status(code: u16, answered: bool) -> String {
    if code == 0 && !answered { NO_RESPONSE.to_owned() } else { code.to_string() }
}

/// `850µs`, `1.5ms`, `12ms`, `1.3s`, `12s`, `1m05s`, `2h03m`: two or three digits, at most 6
/// columns (up to 99 hours), rounded to the nearest.
pub fn latency(micros: u64) -> String {
    if micros < 1_000 {
        return format!("{micros}µs");
    }
    let micros = u128::from(micros); // so that rounding up cannot overflow
    // Round first, then pick the unit, so that 999.6ms becomes 1.0s and not 1000ms.
    let round = |unit: u128| (micros + unit / 2) / unit;
    let tenth_ms = round(100);
    if tenth_ms < 100 {
        return format!("{}.{}ms", tenth_ms / 10, tenth_ms % 10);
    }
    let ms = round(1_000);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let tenth_s = round(100_000);
    if tenth_s < 100 {
        return format!("{}.{}s", tenth_s / 10, tenth_s % 10);
    }
    let secs = round(1_000_000);
    if secs < 60 {
        return format!("{secs}s");
    }
    if secs < 3_600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let mins = round(60_000_000);
    format!("{}h{:02}m", mins / 60, mins % 60)
}

/// `512B`, `1.5K`, `47K`, `3.4M` ... `16E`: binary units as `ls -h` writes them (K = 1024
/// bytes), one decimal under 10, at most 5 columns.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let bytes = u128::from(bytes);
    let mut unit: u128 = 1;
    for name in ["K", "M", "G", "T", "P", "E"] {
        unit *= 1024;
        let tenths = (bytes * 10 + unit / 2) / unit;
        if tenths < 100 {
            return format!("{}.{}{name}", tenths / 10, tenths % 10);
        }
        let whole = (bytes + unit / 2) / unit;
        if whole < 1024 || name == "E" {
            return format!("{whole}{name}");
        }
    }
    unreachable!("a u64 is under 16E")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies() {
        let cases = [
            (0, "0µs"),
            (850, "850µs"),
            (999, "999µs"),
            (1_000, "1.0ms"),
            (1_500, "1.5ms"),
            (9_949, "9.9ms"),
            (9_950, "10ms"),
            (12_000, "12ms"),
            (999_499, "999ms"),
            (999_500, "1.0s"),
            (1_300_000, "1.3s"),
            (9_949_999, "9.9s"),
            (9_950_000, "10s"),
            (59_499_999, "59s"),
            (59_500_000, "1m00s"),
            (65_000_000, "1m05s"),
            (3_599_499_999, "59m59s"),
            (3_599_500_000, "1h00m"),
            (7_380_000_000, "2h03m"),
            (u64::MAX, "5124095576h02m"),
        ];
        for (us, want) in cases {
            assert_eq!(latency(us), want, "{us}µs");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            (0, "0B"),
            (512, "512B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (1536, "1.5K"),
            (10_188, "9.9K"),
            (10_189, "10K"),
            (48_213, "47K"),
            (1_048_063, "1023K"),
            (1_048_064, "1.0M"),
            (3_565_158, "3.4M"),
            (5 * (1 << 30), "5.0G"),
            (u64::MAX, "16E"),
        ];
        for (b, want) in cases {
            assert_eq!(size(b), want, "{b}B");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(status(200, true), "200");
        assert_eq!(status(0, false), NO_RESPONSE);
        assert_eq!(status(0, true), "0", "HTTP/0.9");
    }

    #[test]
    fn endpoints_and_processes() {
        assert_eq!(endpoint("10.0.0.1".parse().unwrap(), 80), "10.0.0.1:80");
        assert_eq!(endpoint("::1".parse().unwrap(), 8080), "[::1]:8080");
        assert_eq!(endpoint("::ffff:10.0.0.1".parse().unwrap(), 1), "[::ffff:10.0.0.1]:1");
        assert_eq!(address("::1".parse().unwrap()), "::1");
        assert_eq!(address("10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(process(Some(1234), Some("curl")).as_deref(), Some("curl/1234"));
        assert_eq!(process(Some(1234), None).as_deref(), Some("1234"));
        assert_eq!(process(None, None), None);
        assert_eq!(process(None, Some("")), None);
        assert_eq!(process(None, Some("curl")).as_deref(), Some("curl"));
        assert_eq!(process(Some(1), Some("evil\u{1b}[2J")).as_deref(), Some(r"evil\u{1b}[2J/1"));
    }

    #[test]
    fn pods_and_service_addresses() {
        assert_eq!(pod(Some("shop"), "checkout-7d9f8b6c4-x2kqz"), "shop/checkout-7d9f8b6c4-x2kqz");
        assert_eq!(pod(None, "checkout-7d9f8b6c4-x2kqz"), "checkout-7d9f8b6c4-x2kqz");
        assert_eq!(pod(Some(""), "web-0"), "web-0");
        assert_eq!(pod(Some("n\u{1b}[2J"), "p\n"), r"n\u{1b}[2J/p\n");
        let svc = "10.96.12.7".parse().unwrap();
        assert_eq!(dialled(svc, Some(80), "10.244.2.9:8080"), "10.96.12.7:80→10.244.2.9:8080");
        assert_eq!(dialled(svc, None, "10.244.2.9:8080"), "10.96.12.7→10.244.2.9:8080");
        assert_eq!(dialled("fd00::1".parse().unwrap(), Some(80), "[::1]:1"), "[fd00::1]:80→[::1]:1");
    }
}
