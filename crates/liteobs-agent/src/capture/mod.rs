//! Where packets come from: a live interface (Linux only, through libpcap) or a capture file
//! (.pcap or .pcapng, on any platform).
//!
//! Both hide behind [`PacketSource`], a lending reader: each call hands out one frame that
//! borrows the source's own buffer (no copy per packet), with its timestamp in microseconds
//! since the Unix epoch and the link type that says how to decode it. A source never parses
//! beyond the link type; decoding is [`crate::decode`]'s job.
//!
//! This module is not for: choosing which packets matter beyond the kernel filter (the pipeline
//! does that), or timing (the driver in [`crate::run`] decides when flows expire).

use serde::Serialize;

use crate::pipeline::LinkType;

#[cfg(target_os = "linux")]
pub mod live;
pub mod offline;
mod pcapng;
mod readahead;

/// One captured frame, borrowed from the source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, microseconds since the Unix epoch (UTC).
    pub ts_us: i64,
    /// Framing of `data`.
    pub link: LinkType,
    /// The frame from its link-layer header on, possibly cut at the snapshot length.
    pub data: &'a [u8],
}

/// What a [`PacketSource`] has to say next.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(Packet<'a>),
    /// Nothing arrived within the read timeout (live sources only): a chance to expire flows,
    /// flush records and look at the stop flag.
    Idle,
    /// The file ended, or a draining live source holds nothing more.
    End,
}

/// The kernel's view of a live capture, cumulative since it was opened (libpcap's
/// `pcap_stats`: `ps_recv`, `ps_drop`, `ps_ifdrop`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelStats {
    /// Packets that passed the filter.
    pub received: u64,
    /// Packets dropped because the capture buffer was full: the agent read too slowly.
    pub dropped: u64,
    /// Packets dropped by the interface or its driver.
    pub if_dropped: u64,
}

/// Where a capture file stops making sense, and why. Reading stops there; everything before it
/// was handed out. The agent then exits with status 3 (see `main.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Bytes from the start of the file (or stream) to the record or block that is damaged.
    pub offset: u64,
    /// What is wrong there, for one line of text.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "damaged at byte {}: {}", self.offset, self.reason)
    }
}

/// A source's own counters, beyond what the pipeline counts.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStats {
    /// Live sources only.
    pub kernel: Option<KernelStats>,
    /// Frames skipped because their link type is one the decoder does not know (a pcapng
    /// interface of an unsupported type, for example).
    pub unsupported_link: u64,
    /// The file is damaged (cut off inside a record, an impossible length, ...): reading
    /// stopped there, what came before it was read.
    pub damage: Option<Damage>,
}

/// A reader of captured frames.
///
/// Lending: the frame in [`Next::Packet`] borrows the source, so a caller hands it to the
/// pipeline before asking for the next one.
pub trait PacketSource {
    /// Blocks until a frame, a read timeout ([`Next::Idle`]) or the end.
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError>;

    /// A stop was requested: from now on, hand out only what is already captured and then
    /// [`Next::End`] instead of waiting for more. Files simply end.
    fn begin_drain(&mut self) -> Result<(), CaptureError>;

    /// Counters so far (for live sources this asks the kernel).
    fn stats(&mut self) -> SourceStats;

    /// (bytes consumed, total bytes) for a file of known size, for progress reporting.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }

    /// What is being read, for messages: the interface or the file name.
    fn describe(&self) -> String;
}

/// Why packets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("unknown interface {name:?} (available: {available})")]
    UnknownInterface { name: String, available: String },
    #[error("cannot capture on {iface}: {message}")]
    Open { iface: String, message: String },
    #[error("capture filter {filter:?} rejected: {message}")]
    Filter { filter: String, message: String },
    #[error("reading from {iface}: {message}")]
    Read { iface: String, message: String },
    #[error(
        "{path}: link type {linktype} is not supported (supported: Ethernet, Linux cooked v1/v2, BSD loopback, raw IP)"
    )]
    UnsupportedLink { path: String, linktype: u32 },
    /// The cause is the source, not part of this message (so a chain prints it once).
    #[error("{path}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a pcap or pcapng file (it starts with {magic})")]
    NotACapture { path: String, magic: String },
    /// The file is a capture but damaged before its first packet (its header, its first
    /// section). Damage after that ends the file instead, as [`SourceStats::damage`].
    #[error("{path}: {damage}")]
    Damaged { path: String, damage: Damage },
    #[error("live capture is only available on Linux; use -read FILE")]
    LiveUnsupported,
}

/// The kernel filter for the watched ports: `tcp` when `ports` is empty, else
/// `tcp and (port A or port B ...)`. `exclude` names endpoints (the agent's own server, for
/// example) whose traffic must not be captured, so that uploads do not observe themselves.
pub fn bpf_filter(ports: &[u16], exclude: &[std::net::SocketAddr]) -> String {
    let mut f = String::from("tcp");
    if !ports.is_empty() {
        let alternatives: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
        f.push_str(&format!(" and ({})", alternatives.join(" or ")));
    }
    for addr in exclude {
        f.push_str(&format!(" and not (host {} and port {})", addr.ip(), addr.port()));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_from_ports() {
        assert_eq!(bpf_filter(&[], &[]), "tcp");
        assert_eq!(bpf_filter(&[80], &[]), "tcp and (port 80)");
        assert_eq!(bpf_filter(&[80, 8080], &[]), "tcp and (port 80 or port 8080)");
        let server: std::net::SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(
            bpf_filter(&[80], &[server, "127.0.0.1:9000".parse().unwrap()]),
            "tcp and (port 80) and not (host ::1 and port 9000) and not (host 127.0.0.1 and port 9000)"
        );
    }
}
