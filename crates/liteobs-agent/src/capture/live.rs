//! Live capture through libpcap (Linux: AF_PACKET with a memory-mapped ring).
//!
//! Two ring layouts, chosen by [`LiveConfig::immediate`]:
//! * default (TPACKET_V3): packets of any size packed into blocks that the kernel hands over
//!   when full or after the read timeout. A 64 MiB buffer then holds some 200 000 small packets
//!   (seconds of traffic), at the price of up to one read timeout of delay.
//! * immediate mode (TPACKET_V2): each packet is handed over at once, but every ring frame is
//!   as large as the interface's largest packet, so on `lo` (MTU 65536) a 64 MiB buffer holds
//!   only about a thousand packets: a few milliseconds of heavy traffic. Measured on loopback
//!   (BENCHMARKS.md), immediate mode drops packets from about 12 000 requests/s on, which is
//!   why it is not the default.
//!
//! Either way the handle is non-blocking and the source waits with poll(2) on its descriptor,
//! for at most [`LiveConfig::read_timeout`] (libpcap 1.10's own read timeout does not fire in
//! immediate mode when no packet comes, which would leave the caller unable to expire flows or
//! notice a stop on a quiet interface).
//!
//! Stopping: after [`PacketSource::begin_drain`] the source hands out what the ring holds and
//! waits for anything still on its way in (a block the kernel has not handed over yet) until
//! nothing has come for a grace period longer than the read timeout; then it reports
//! [`Next::End`]. Nothing the kernel captured before the stop is lost.

use std::os::fd::AsRawFd;
use std::time::Duration;

use pcap::{Active, Capture, Device};

use super::{CaptureError, KernelStats, Next, Packet, PacketSource, SourceStats};
use crate::pipeline::LinkType;

/// How to open a live capture.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Interface name; `any` captures on all of them (Linux cooked framing).
    pub iface: String,
    /// Kernel BPF filter, in pcap-filter(7) syntax (see [`super::bpf_filter`]).
    pub filter: String,
    /// Kernel capture buffer, bytes.
    pub buffer_size: usize,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// The longest a read blocks before reporting [`Next::Idle`]; also the longest a packet
    /// waits in a partly filled block (TPACKET_V3).
    pub read_timeout: Duration,
    /// Hand each packet over at once (TPACKET_V2) instead of in blocks; see the module docs.
    pub immediate: bool,
    /// Promiscuous mode (see the agent's `-promisc`).
    pub promisc: bool,
}

/// How long a draining source waits for more, beyond the read timeout, before it reports the
/// end.
const DRAIN_GRACE: Duration = Duration::from_millis(150);

/// A live capture handle.
pub struct LiveSource {
    cap: Capture<Active>,
    link: LinkType,
    iface: String,
    read_timeout: Duration,
    draining: bool,
    /// The last read returned a packet, so the ring may hold more: read before polling.
    maybe_ready: bool,
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
fn wait_readable(fd: i32, timeout: Duration) -> Result<bool, std::io::Error> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(rc > 0)
}

/// DLT_RAW is 12 (or 14 on some BSDs) in libpcap's API but LINKTYPE_RAW (101) in files.
fn linktype_from_dlt(dlt: i32) -> Option<LinkType> {
    let n = match dlt {
        12 | 14 => 101,
        n => u32::try_from(n).ok()?,
    };
    LinkType::from_linktype(n)
}

impl LiveSource {
    /// Opens the interface, checks that it exists first so that a typo gets one clear line.
    pub fn open(cfg: &LiveConfig) -> Result<LiveSource, CaptureError> {
        let open_err = |e: pcap::Error| {
            let mut message = e.to_string();
            if message.contains("not permitted") || message.contains("ermission") {
                message.push_str(" (live capture needs root or CAP_NET_RAW)");
            }
            CaptureError::Open { iface: cfg.iface.clone(), message }
        };
        if let Ok(devices) = Device::list()
            && !devices.iter().any(|d| d.name == cfg.iface)
        {
            let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
            return Err(CaptureError::UnknownInterface {
                name: cfg.iface.clone(),
                available: if names.is_empty() { "none visible".into() } else { names.join(", ") },
            });
        }
        let timeout_ms = i32::try_from(cfg.read_timeout.as_millis()).unwrap_or(i32::MAX).max(1);
        let cap = Capture::from_device(cfg.iface.as_str())
            .map_err(open_err)?
            .promisc(cfg.promisc)
            .snaplen(i32::try_from(cfg.snaplen).unwrap_or(i32::MAX))
            .buffer_size(i32::try_from(cfg.buffer_size).unwrap_or(i32::MAX))
            .immediate_mode(cfg.immediate)
            .timeout(timeout_ms)
            .open()
            .map_err(open_err)?;
        let mut cap = cap.setnonblock().map_err(open_err)?;
        cap.filter(&cfg.filter, true)
            .map_err(|e| CaptureError::Filter { filter: cfg.filter.clone(), message: e.to_string() })?;
        let dlt = cap.get_datalink();
        let link = linktype_from_dlt(dlt.0).ok_or_else(|| CaptureError::UnsupportedLink {
            path: cfg.iface.clone(),
            linktype: u32::try_from(dlt.0).unwrap_or(0),
        })?;
        Ok(LiveSource {
            cap,
            link,
            iface: cfg.iface.clone(),
            read_timeout: cfg.read_timeout,
            draining: false,
            maybe_ready: true,
        })
    }
}

impl PacketSource for LiveSource {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        let read_err = |iface: &str, message: String| CaptureError::Read { iface: iface.to_owned(), message };
        if !self.maybe_ready {
            let wait = if self.draining { self.read_timeout + DRAIN_GRACE } else { self.read_timeout };
            let ready = wait_readable(self.cap.as_raw_fd(), wait)
                .map_err(|e| read_err(&self.iface, e.to_string()))?;
            if !ready {
                return Ok(if self.draining { Next::End } else { Next::Idle });
            }
        }
        match self.cap.next_packet() {
            Ok(p) => {
                self.maybe_ready = true;
                // time_t and suseconds_t are i64 on 64-bit Linux. Saturating: a clock far off
                // gives a timestamp the pipeline counts and skips, not an overflow.
                let ts = p.header.ts;
                #[allow(clippy::useless_conversion)]
                let ts_us =
                    i64::from(ts.tv_sec).saturating_mul(1_000_000).saturating_add(i64::from(ts.tv_usec));
                Ok(Next::Packet(Packet { ts_us, link: self.link, data: p.data }))
            }
            // Non-blocking: the ring is empty for now.
            Err(pcap::Error::TimeoutExpired) => {
                self.maybe_ready = false;
                Ok(Next::Idle)
            }
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(e) => Err(read_err(&self.iface, e.to_string())),
        }
    }

    fn begin_drain(&mut self) -> Result<(), CaptureError> {
        self.draining = true;
        Ok(())
    }

    fn stats(&mut self) -> SourceStats {
        let kernel = self.cap.stats().ok().map(|s| KernelStats {
            received: u64::from(s.received),
            dropped: u64::from(s.dropped),
            if_dropped: u64::from(s.if_dropped),
        });
        SourceStats { kernel, ..SourceStats::default() }
    }

    fn describe(&self) -> String {
        format!("interface {}", self.iface)
    }
}
