//! Human-readable forms of one record's values, as the table shows them.
//!
//! Times are UTC with milliseconds (`2026-11-25 14:02:44.123`), whatever the local zone, so that
//! a table pasted into a bug report means the same everywhere; `-o json` keeps the microseconds.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::text::{ellipsize, printable};

/// `2026-11-25 14:02:44.123` (UTC, milliseconds truncated).
pub fn time(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// `14:02:44.123`: [`time`] without the date, for narrow terminals.
pub fn time_of_day(ts: &DateTime<Utc>) -> String {
    ts.format("%H:%M:%S%.3f").to_string()
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

/// `1234/curl`, `1234` when the name is unknown, `-` when the PID is unknown (`-/curl` in the
/// unlikely case that only the name is known).
pub fn process(pid: Option<u32>, comm: Option<&str>) -> String {
    let pid = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    match comm.filter(|c| !c.is_empty()) {
        Some(comm) => format!("{pid}/{}", printable(comm)),
        None => pid,
    }
}

/// `shop/checkout-7d9f8b6c4-x2kqz`, or the pod name alone when `namespace` is None (not
/// shown, or unknown). With `max`, the pod name is cut at its end to that many columns with `…`
/// (the namespace is not cut: a layout that cuts pods has dropped namespaces already).
pub fn pod(namespace: Option<&str>, pod: &str, max: Option<usize>) -> String {
    let pod = printable(pod);
    let pod = match max {
        Some(max) => ellipsize(&pod, max).into_owned(),
        None => pod.into_owned(),
    };
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{}/{pod}", printable(ns)),
        None => pod,
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

/// The status code, or `-` for 0 (no response seen).
pub fn status(code: u16) -> String {
    if code == 0 { "-".to_owned() } else { code.to_string() }
}

/// `850µs`, `1.5ms`, `2.10s`, `1m05s`, `2h03m`; `-` when no response was seen (`status == 0`).
pub fn latency(micros: u64, status: u16) -> String {
    if status == 0 {
        return "-".to_owned();
    }
    if micros < 1_000 {
        return format!("{micros}µs");
    }
    let micros = u128::from(micros); // so that rounding up cannot overflow
    // Round first, then pick the unit, so that 999.96ms becomes 1.00s and not 1000.0ms.
    let tenth_ms = (micros + 50) / 100;
    if tenth_ms < 10_000 {
        return format!("{}.{}ms", tenth_ms / 10, tenth_ms % 10);
    }
    let centi_s = (micros + 5_000) / 10_000;
    if centi_s < 6_000 {
        return format!("{}.{:02}s", centi_s / 100, centi_s % 100);
    }
    let secs = (micros + 500_000) / 1_000_000;
    if secs < 3_600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let mins = (secs + 30) / 60;
    format!("{}h{:02}m", mins / 60, mins % 60)
}

/// `512B`, `1.0KiB`, `3.4MiB` ... `EiB` (binary units, one decimal); `-` when no response was
/// seen (`status == 0`).
pub fn size(bytes: u64, status: u16) -> String {
    if status == 0 {
        return "-".to_owned();
    }
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let bytes = u128::from(bytes);
    let mut unit: u128 = 1024;
    for name in ["KiB", "MiB", "GiB", "TiB", "PiB"] {
        let tenths = (bytes * 10 + unit / 2) / unit;
        if tenths < 10_240 {
            return format!("{}.{}{name}", tenths / 10, tenths % 10);
        }
        unit *= 1024;
    }
    let tenths = (bytes * 10 + unit / 2) / unit;
    format!("{}.{}EiB", tenths / 10, tenths % 10)
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
            (999_949, "999.9ms"),
            (999_950, "1.00s"),
            (2_100_000, "2.10s"),
            (59_994_999, "59.99s"),
            (59_995_000, "1m00s"),
            (65_000_000, "1m05s"),
            (3_599_499_999, "59m59s"),
            (3_599_500_000, "1h00m"),
            (7_380_000_000, "2h03m"),
            (u64::MAX, "5124095576h02m"),
        ];
        for (us, want) in cases {
            assert_eq!(latency(us, 200), want, "{us}µs");
        }
        assert_eq!(latency(1_500, 0), "-");
    }

    #[test]
    fn sizes() {
        let cases = [
            (0, "0B"),
            (512, "512B"),
            (1023, "1023B"),
            (1024, "1.0KiB"),
            (1536, "1.5KiB"),
            (1_048_575, "1.0MiB"),
            (3_565_158, "3.4MiB"),
            (5 * (1 << 30), "5.0GiB"),
            (u64::MAX, "16.0EiB"),
        ];
        for (b, want) in cases {
            assert_eq!(size(b, 200), want, "{b}B");
        }
        assert_eq!(size(10, 0), "-");
    }

    #[test]
    fn endpoints_and_processes() {
        assert_eq!(endpoint("10.0.0.1".parse().unwrap(), 80), "10.0.0.1:80");
        assert_eq!(endpoint("::1".parse().unwrap(), 8080), "[::1]:8080");
        assert_eq!(endpoint("::ffff:10.0.0.1".parse().unwrap(), 1), "[::ffff:10.0.0.1]:1");
        assert_eq!(address("::1".parse().unwrap()), "::1");
        assert_eq!(address("10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(process(Some(1234), Some("curl")), "1234/curl");
        assert_eq!(process(Some(1234), None), "1234");
        assert_eq!(process(None, None), "-");
        assert_eq!(process(None, Some("")), "-");
        assert_eq!(process(None, Some("curl")), "-/curl");
        assert_eq!(process(Some(1), Some("evil\u{1b}[2J")), r"1/evil\u{1b}[2J");
    }

    #[test]
    fn pods_and_service_addresses() {
        assert_eq!(pod(Some("shop"), "checkout-7d9f8b6c4-x2kqz", None), "shop/checkout-7d9f8b6c4-x2kqz");
        assert_eq!(pod(None, "checkout-7d9f8b6c4-x2kqz", None), "checkout-7d9f8b6c4-x2kqz");
        assert_eq!(pod(Some(""), "web-0", None), "web-0");
        assert_eq!(pod(None, "checkout-7d9f8b6c4-x2kqz", Some(16)), "checkout-7d9f8b…");
        assert_eq!(pod(None, "web-0", Some(16)), "web-0");
        // Escaped before it is measured and cut: a cut may shorten an escape's text, but never lets
        // a raw control character through.
        assert_eq!(pod(Some("n\u{1b}[2J"), "p\n", None), r"n\u{1b}[2J/p\n");
        assert_eq!(pod(None, "p\u{1b}[2Jxxxxxxxxxxxx", Some(8)), r"p\u{1b}…");
        let svc = "10.96.12.7".parse().unwrap();
        assert_eq!(dialled(svc, Some(80), "10.244.2.9:8080"), "10.96.12.7:80→10.244.2.9:8080");
        assert_eq!(dialled(svc, None, "10.244.2.9:8080"), "10.96.12.7→10.244.2.9:8080");
        assert_eq!(dialled("fd00::1".parse().unwrap(), Some(80), "[::1]:1"), "[fd00::1]:80→[::1]:1");
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let ts = DateTime::parse_from_rfc3339("2026-11-25T15:02:44.123999+01:00").unwrap();
        assert_eq!(time(&ts.with_timezone(&Utc)), "2026-11-25 14:02:44.123");
        assert_eq!(time_of_day(&ts.with_timezone(&Utc)), "14:02:44.123");
    }
}
