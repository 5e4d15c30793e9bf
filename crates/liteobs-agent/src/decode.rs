//! Decode: one captured frame → a borrowed view of its TCP segment.
//!
//! This is the first stage after capture. It strips the link layer (Ethernet with any number of
//! 802.1Q/802.1ad VLAN tags, Linux cooked SLL and SLL2, BSD loopback NULL/LOOP, or raw IP), then the
//! IPv4/IPv6 header (with IPv6 extension headers), and returns the TCP header fields the
//! reassembler needs plus a slice of the payload borrowed from the frame: nothing is copied.
//!
//! What it deliberately does not do:
//! * IP fragment reassembly. HTTP over TCP almost never fragments (PMTU discovery, DF set), so
//!   fragments are reported as [`DecodeError::IpFragment`] and counted rather than rebuilt.
//! * Checksum validation. Captures taken on the sending host carry checksums the NIC fills in
//!   later (offload), so a "bad" checksum says nothing about the data.
//!
//! Frames cut short by the capture snap length are decoded as far as they go: as long as the IP
//! and TCP headers are complete, the captured part of the payload is returned and
//! [`TcpSegment::missing`] says how many payload bytes the IP header announced but the capture
//! dropped, so that the reassembler can account for them as a gap instead of losing its place in
//! the sequence space.

use std::fmt;
use std::net::IpAddr;

use etherparse::err::{ipv4, ipv6, tcp};
use etherparse::{IpNumber, LaxIpPayloadSlice, LaxIpv4Slice, LaxIpv6Slice, TcpSlice};
use thiserror::Error;

/// Link-layer framing of captured frames (from the pcap DLT/LINKTYPE number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1): Ethernet II, optionally VLAN tagged.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): Linux "cooked" capture v1, 16-byte header (the `any` device).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux "cooked" capture v2, 20-byte header.
    LinuxSll2,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): BSD loopback, a 4-byte address family in
    /// either byte order (NULL uses the capturing host's order, LOOP network order).
    Null,
    /// LINKTYPE_RAW (101; also DLT_RAW 12 and 14 on some systems): bare IPv4 or IPv6, told apart by
    /// the version nibble.
    RawIp,
    /// LINKTYPE_IPV4 (228): bare IPv4.
    Ipv4,
    /// LINKTYPE_IPV6 (229): bare IPv6.
    Ipv6,
}

impl LinkType {
    /// Maps a pcap LINKTYPE_/DLT_ number to the framing this agent understands; `None` for
    /// anything else (802.11, PPP, ...).
    pub fn from_linktype(n: u32) -> Option<LinkType> {
        match n {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            0 | 108 => Some(LinkType::Null),
            101 | 12 | 14 => Some(LinkType::RawIp),
            228 => Some(LinkType::Ipv4),
            229 => Some(LinkType::Ipv6),
            _ => None,
        }
    }
}

/// The TCP flags the reassembler acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub ack: bool,
}

/// One TCP segment, borrowed from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// Sequence number of the first byte of the segment (of the SYN when `flags.syn`).
    pub seq: u32,
    /// Acknowledgment number; meaningful only when `flags.ack`.
    pub ack: u32,
    pub flags: TcpFlags,
    /// The captured part of the TCP payload (Ethernet padding already excluded).
    pub payload: &'a [u8],
    /// Payload bytes the IP header says were on the wire after `payload` but that the capture
    /// did not keep (snap length). 0 for complete frames.
    pub missing: u32,
}

/// Why a frame produced no TCP segment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A well-formed frame carrying something other than TCP (ARP, UDP, ICMP, ...).
    #[error("not TCP: {0}")]
    NotTcp(NotTcp),
    /// An IPv4 or IPv6 fragment; fragments are not reassembled.
    #[error("IP fragment (fragmented IP packets are not reassembled)")]
    IpFragment,
    /// The frame ends inside a link-layer header.
    #[error("{layer} header truncated: {len} of {needed} bytes captured")]
    Truncated { layer: Layer, needed: usize, len: usize },
    /// The first nibble of a raw IP frame is neither 4 nor 6.
    #[error("IP version {0} is neither 4 nor 6")]
    IpVersion(u8),
    #[error("bad IPv4 header")]
    Ipv4(#[source] ipv4::HeaderSliceError),
    #[error("bad IPv6 header")]
    Ipv6(#[source] ipv6::HeaderSliceError),
    /// An IPv4 authentication header or IPv6 extension header could not be walked.
    #[error("bad IP extension header")]
    IpExtension,
    #[error("bad TCP header")]
    Tcp(#[source] tcp::HeaderSliceError),
}

/// What a non-TCP frame carried instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTcp {
    /// An EtherType / SLL protocol other than IPv4, IPv6 and VLAN tags.
    EtherType(u16),
    /// A BSD loopback address family other than AF_INET/AF_INET6.
    LoopbackFamily(u32),
    /// An IP payload protocol other than TCP.
    IpProtocol(u8),
}

impl fmt::Display for NotTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotTcp::EtherType(t) => write!(f, "EtherType {t:#06x}"),
            NotTcp::LoopbackFamily(fam) => write!(f, "loopback address family {fam}"),
            NotTcp::IpProtocol(p) => write!(f, "IP protocol {p}"),
        }
    }
}

/// A link-layer header, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Ethernet,
    Vlan,
    LinuxSll,
    LinuxSll2,
    Loopback,
    Ip,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "VLAN",
            Layer::LinuxSll => "Linux SLL",
            Layer::LinuxSll2 => "Linux SLL2",
            Layer::Loopback => "loopback",
            Layer::Ip => "IP",
        })
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Loopback address families: AF_INET everywhere, AF_INET6 on NetBSD/OpenBSD (24), FreeBSD
/// (28) and Darwin (30).
const AF_INET: u32 = 2;
const AF_INET6: [u32; 3] = [24, 28, 30];
/// More stacked tags than this is not a real frame.
const MAX_VLAN_TAGS: usize = 8;

/// Decodes one captured frame. Never panics, whatever the bytes.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, DecodeError> {
    match link {
        LinkType::Ethernet => {
            let (ether_type, rest) = split_header(frame, 14, Layer::Ethernet, 12)?;
            by_ether_type(ether_type, rest)
        }
        LinkType::LinuxSll => {
            let (protocol, rest) = split_header(frame, 16, Layer::LinuxSll, 14)?;
            by_ether_type(protocol, rest)
        }
        LinkType::LinuxSll2 => {
            let (protocol, rest) = split_header(frame, 20, Layer::LinuxSll2, 0)?;
            by_ether_type(protocol, rest)
        }
        LinkType::Null => {
            let Some((family, rest)) = frame.split_first_chunk::<4>() else {
                return Err(truncated(Layer::Loopback, 4, frame.len()));
            };
            let (le, be) = (u32::from_le_bytes(*family), u32::from_be_bytes(*family));
            if le == AF_INET || be == AF_INET {
                ipv4(rest)
            } else if AF_INET6.contains(&le) || AF_INET6.contains(&be) {
                ipv6(rest)
            } else {
                Err(DecodeError::NotTcp(NotTcp::LoopbackFamily(le)))
            }
        }
        LinkType::RawIp => match frame.first().map(|b| b >> 4) {
            Some(4) => ipv4(frame),
            Some(6) => ipv6(frame),
            Some(v) => Err(DecodeError::IpVersion(v)),
            None => Err(truncated(Layer::Ip, 1, 0)),
        },
        LinkType::Ipv4 => ipv4(frame),
        LinkType::Ipv6 => ipv6(frame),
    }
}

fn truncated(layer: Layer, needed: usize, len: usize) -> DecodeError {
    DecodeError::Truncated { layer, needed, len }
}

/// Splits off a fixed-size link header and reads the big-endian protocol field at `proto_at`.
fn split_header(
    frame: &[u8],
    len: usize,
    layer: Layer,
    proto_at: usize,
) -> Result<(u16, &[u8]), DecodeError> {
    match (frame.get(proto_at..proto_at + 2), frame.get(len..)) {
        (Some(p), Some(rest)) => Ok((u16::from_be_bytes([p[0], p[1]]), rest)),
        _ => Err(truncated(layer, len, frame.len())),
    }
}

fn by_ether_type(mut ether_type: u16, mut rest: &[u8]) -> Result<TcpSegment<'_>, DecodeError> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ether_type {
            ETHERTYPE_IPV4 => return ipv4(rest),
            ETHERTYPE_IPV6 => return ipv6(rest),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                // Tag control information (2 bytes), then the next EtherType.
                (ether_type, rest) = split_header(rest, 4, Layer::Vlan, 2)?;
            }
            other => return Err(DecodeError::NotTcp(NotTcp::EtherType(other))),
        }
    }
    Err(DecodeError::NotTcp(NotTcp::EtherType(ether_type)))
}

fn ipv4(packet: &[u8]) -> Result<TcpSegment<'_>, DecodeError> {
    let (ip, ext_err) = LaxIpv4Slice::from_slice(packet).map_err(DecodeError::Ipv4)?;
    if ext_err.is_some() {
        return Err(DecodeError::IpExtension);
    }
    let header = ip.header();
    let declared = usize::from(header.total_len());
    tcp_segment(
        header.source_addr().into(),
        header.destination_addr().into(),
        ip.payload(),
        declared.saturating_sub(packet.len()),
    )
}

fn ipv6(packet: &[u8]) -> Result<TcpSegment<'_>, DecodeError> {
    let (ip, ext_err) = LaxIpv6Slice::from_slice(packet).map_err(DecodeError::Ipv6)?;
    if ext_err.is_some() {
        return Err(DecodeError::IpExtension);
    }
    let header = ip.header();
    let declared = 40 + usize::from(header.payload_length());
    tcp_segment(
        header.source_addr().into(),
        header.destination_addr().into(),
        ip.payload(),
        declared.saturating_sub(packet.len()),
    )
}

/// `cut` is how many bytes of the IP packet the capture dropped (only trusted when etherparse
/// also says the payload is incomplete: a zero length field means "unknown", e.g. TSO).
fn tcp_segment<'a>(
    src_ip: IpAddr,
    dst_ip: IpAddr,
    ip_payload: &LaxIpPayloadSlice<'a>,
    cut: usize,
) -> Result<TcpSegment<'a>, DecodeError> {
    if ip_payload.fragmented {
        return Err(DecodeError::IpFragment);
    }
    if ip_payload.ip_number != IpNumber::TCP {
        return Err(DecodeError::NotTcp(NotTcp::IpProtocol(ip_payload.ip_number.0)));
    }
    let tcp = TcpSlice::from_slice(ip_payload.payload).map_err(DecodeError::Tcp)?;
    let missing = if ip_payload.incomplete { cut } else { 0 };
    Ok(TcpSegment {
        src_ip,
        src_port: tcp.source_port(),
        dst_ip,
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags { syn: tcp.syn(), fin: tcp.fin(), rst: tcp.rst(), ack: tcp.ack() },
        payload: tcp.payload(),
        missing: u32::try_from(missing).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{PacketBuilder, VlanId};
    use proptest::prelude::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn v4_tcp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .psh()
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn v6_tcp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut a = [0u8; 16];
        a[15] = 1;
        let mut b = [0u8; 16];
        b[0] = 0xfe;
        b[1] = 0x80;
        b[15] = 2;
        PacketBuilder::ipv6(a, b, 64).tcp(40000, 8080, 5, 1000).syn().write(&mut out, payload).unwrap();
        out
    }

    fn assert_v4_segment(seg: &TcpSegment<'_>, payload: &[u8]) {
        assert_eq!(seg.src_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(seg.dst_ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((seg.src_port, seg.dst_port), (40000, 80));
        assert_eq!((seg.seq, seg.ack), (1000, 77));
        assert!(seg.flags.ack && !seg.flags.syn && !seg.flags.fin && !seg.flags.rst);
        assert_eq!(seg.payload, payload);
        assert_eq!(seg.missing, 0);
    }

    #[test]
    fn linktype_numbers() {
        assert_eq!(LinkType::from_linktype(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_linktype(113), Some(LinkType::LinuxSll));
        assert_eq!(LinkType::from_linktype(276), Some(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_linktype(0), Some(LinkType::Null));
        assert_eq!(LinkType::from_linktype(108), Some(LinkType::Null));
        for raw in [101, 12, 14] {
            assert_eq!(LinkType::from_linktype(raw), Some(LinkType::RawIp));
        }
        assert_eq!(LinkType::from_linktype(228), Some(LinkType::Ipv4));
        assert_eq!(LinkType::from_linktype(229), Some(LinkType::Ipv6));
        assert_eq!(LinkType::from_linktype(105), None); // 802.11
        assert_eq!(LinkType::from_linktype(9), None); // PPP
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .write(&mut frame, b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let seg = decode(LinkType::Ethernet, &frame).unwrap();
        assert_v4_segment(&seg, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .write(&mut frame, b"")
            .unwrap();
        assert_eq!(frame.len(), 54);
        frame.resize(60, 0); // minimum Ethernet frame size, padded by the NIC
        let seg = decode(LinkType::Ethernet, &frame).unwrap();
        assert_v4_segment(&seg, b"");
    }

    #[test]
    fn ethernet_single_and_double_vlan() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .write(&mut frame, b"abc")
            .unwrap();
        assert_eq!(&frame[12..14], &[0x81, 0x00]);
        assert_v4_segment(&decode(LinkType::Ethernet, &frame).unwrap(), b"abc");

        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .write(&mut frame, b"abc")
            .unwrap();
        assert_v4_segment(&decode(LinkType::Ethernet, &frame).unwrap(), b"abc");

        // Hand-built QinQ with the old 0x9100 outer tag.
        let ip = v4_tcp(b"xyz");
        let mut frame = [MAC_B, MAC_A].concat();
        frame.extend_from_slice(&[0x91, 0x00, 0x00, 0x05, 0x81, 0x00, 0x00, 0x06, 0x08, 0x00]);
        frame.extend_from_slice(&ip);
        assert_v4_segment(&decode(LinkType::Ethernet, &frame).unwrap(), b"xyz");
    }

    #[test]
    fn ethernet_ipv6() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6([0; 16], [1; 16], 64)
            .tcp(1, 2, u32::MAX, 100)
            .fin()
            .write(&mut frame, b"bye")
            .unwrap();
        let seg = decode(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(seg.src_ip, IpAddr::from([0u8; 16]));
        assert_eq!(seg.dst_ip, IpAddr::from([1u8; 16]));
        assert_eq!(seg.seq, u32::MAX);
        assert!(seg.flags.fin && !seg.flags.ack);
        assert_eq!(seg.payload, b"bye");
    }

    #[test]
    fn linux_sll_v1_and_v2() {
        let ip = v4_tcp(b"hello");
        // SLL: packet type, ARPHRD_ETHER, address length, 8-byte address, protocol.
        let mut sll = vec![0, 0, 0, 1, 0, 6];
        sll.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        sll.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(sll.len(), 16);
        sll.extend_from_slice(&ip);
        assert_v4_segment(&decode(LinkType::LinuxSll, &sll).unwrap(), b"hello");

        // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
        let ip6 = v6_tcp(b"v6");
        let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6];
        sll2.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(sll2.len(), 20);
        sll2.extend_from_slice(&ip6);
        let seg = decode(LinkType::LinuxSll2, &sll2).unwrap();
        assert_eq!((seg.src_port, seg.dst_port, seg.seq), (40000, 8080, 5));
        assert!(seg.flags.syn);
        assert_eq!(seg.payload, b"v6");

        // The same bytes read as SLL v1 put the protocol field somewhere else.
        assert!(decode(LinkType::LinuxSll, &sll2).is_err());
    }

    #[test]
    fn null_loopback_in_both_byte_orders() {
        let ip = v4_tcp(b"lo");
        for family in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let frame = [&family[..], &ip].concat();
            assert_v4_segment(&decode(LinkType::Null, &frame).unwrap(), b"lo");
        }
        let ip6 = v6_tcp(b"");
        for fam in [24u32, 28, 30] {
            for family in [fam.to_le_bytes(), fam.to_be_bytes()] {
                let frame = [&family[..], &ip6].concat();
                let seg = decode(LinkType::Null, &frame).unwrap();
                assert_eq!(seg.dst_port, 8080);
            }
        }
        let frame = [&7u32.to_le_bytes()[..], &ip].concat();
        assert_eq!(decode(LinkType::Null, &frame), Err(DecodeError::NotTcp(NotTcp::LoopbackFamily(7))));
        assert!(matches!(
            decode(LinkType::Null, &[2, 0]),
            Err(DecodeError::Truncated { layer: Layer::Loopback, .. })
        ));
    }

    #[test]
    fn raw_ip_and_fixed_version_link_types() {
        let ip = v4_tcp(b"raw");
        assert_v4_segment(&decode(LinkType::RawIp, &ip).unwrap(), b"raw");
        assert_v4_segment(&decode(LinkType::Ipv4, &ip).unwrap(), b"raw");
        assert!(matches!(decode(LinkType::Ipv6, &ip), Err(DecodeError::Ipv6(_))));
        let ip6 = v6_tcp(b"raw6");
        assert_eq!(decode(LinkType::RawIp, &ip6).unwrap().payload, b"raw6");
        assert_eq!(decode(LinkType::Ipv6, &ip6).unwrap().payload, b"raw6");
        assert!(matches!(decode(LinkType::Ipv4, &ip6), Err(DecodeError::Ipv4(_))));
        assert_eq!(decode(LinkType::RawIp, &[0x55, 0, 0]), Err(DecodeError::IpVersion(5)));
        assert!(decode(LinkType::RawIp, &[]).is_err());
    }

    #[test]
    fn non_tcp_is_reported_as_such() {
        let mut udp = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(53, 53)
            .write(&mut udp, b"dns")
            .unwrap();
        assert_eq!(decode(LinkType::Ethernet, &udp), Err(DecodeError::NotTcp(NotTcp::IpProtocol(17))));
        let mut arp = [MAC_B, MAC_A].concat();
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(decode(LinkType::Ethernet, &arp), Err(DecodeError::NotTcp(NotTcp::EtherType(0x0806))));
        let err = decode(LinkType::Ethernet, &arp).unwrap_err();
        assert_eq!(err.to_string(), "not TCP: EtherType 0x0806");
    }

    #[test]
    fn ipv4_fragments_are_refused() {
        let mut ip = v4_tcp(b"0123456789");
        // More-fragments flag, offset 0: the first fragment still carries the TCP header.
        ip[6] = 0x20;
        ip[7] = 0;
        assert_eq!(decode(LinkType::RawIp, &ip), Err(DecodeError::IpFragment));
        // A later fragment (offset 8 units of 8 bytes).
        ip[6] = 0x00;
        ip[7] = 8;
        assert_eq!(decode(LinkType::RawIp, &ip), Err(DecodeError::IpFragment));
    }

    #[test]
    fn ipv6_fragment_header_is_refused() {
        let tcp = v6_tcp(b"frag");
        // Insert a fragment extension header (next header 44) between IPv6 and TCP.
        let mut ip = tcp[..40].to_vec();
        ip[6] = 44;
        let payload_len = (tcp.len() - 40 + 8) as u16;
        ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
        // next header TCP, reserved, offset 0 with M flag set, identification.
        ip.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 9]);
        ip.extend_from_slice(&tcp[40..]);
        assert_eq!(decode(LinkType::Ipv6, &ip), Err(DecodeError::IpFragment));
        // The same header with offset 0 and no M flag is an atomic fragment: a whole packet.
        ip[43] = 0;
        assert_eq!(decode(LinkType::Ipv6, &ip).unwrap().payload, b"frag");
    }

    #[test]
    fn snaplen_truncated_payload_reports_missing_bytes() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .write(&mut frame, &[b'x'; 100])
            .unwrap();
        let cut = &frame[..frame.len() - 60];
        let seg = decode(LinkType::Ethernet, cut).unwrap();
        assert_eq!(seg.payload.len(), 40);
        assert_eq!(seg.missing, 60);

        let ip6 = v6_tcp(&[b'y'; 50]);
        let seg = decode(LinkType::Ipv6, &ip6[..ip6.len() - 10]).unwrap();
        assert_eq!((seg.payload.len(), seg.missing), (40, 10));
    }

    #[test]
    fn truncated_headers_are_errors_not_panics() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .write(&mut frame, b"payload")
            .unwrap();
        let header_end = 14 + 4 + 20 + 20;
        for len in 0..header_end {
            let err = decode(LinkType::Ethernet, &frame[..len]).unwrap_err();
            assert!(
                matches!(err, DecodeError::Truncated { .. } | DecodeError::Ipv4(_) | DecodeError::Tcp(_)),
                "{len}: {err:?}"
            );
        }
        assert_eq!(
            decode(LinkType::Ethernet, &frame[..14 + 2]),
            Err(DecodeError::Truncated { layer: Layer::Vlan, needed: 4, len: 2 })
        );
        let seg = decode(LinkType::Ethernet, &frame[..header_end + 3]).unwrap();
        assert_eq!((seg.payload, seg.missing), (&b"pay"[..], 4));
    }

    #[test]
    fn zero_total_length_uses_the_captured_bytes() {
        // Segmentation offload: the kernel hands the capture a super-packet with total_len 0.
        let mut ip = v4_tcp(b"large");
        ip[2] = 0;
        ip[3] = 0;
        let seg = decode(LinkType::RawIp, &ip).unwrap();
        assert_eq!((seg.payload, seg.missing), (&b"large"[..], 0));
    }

    #[test]
    fn endless_vlan_tags_stop() {
        let mut frame = [MAC_B, MAC_A].concat();
        for _ in 0..20 {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        frame.extend_from_slice(&[0x81, 0x00]);
        assert!(matches!(
            decode(LinkType::Ethernet, &frame),
            Err(DecodeError::NotTcp(NotTcp::EtherType(0x8100)))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for link in ALL_LINKS {
                let _ = decode(link, &bytes);
            }
        }

        #[test]
        fn any_truncation_of_a_valid_frame_never_panics(cut in 0usize..120, flip in any::<(usize, u8)>()) {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6([0; 16], [1; 16], 64)
                .tcp(1, 2, 3, 100)
                .write(&mut frame, b"some payload bytes")
                .unwrap();
            let n = frame.len();
            frame[flip.0 % n] ^= flip.1;
            let _ = decode(LinkType::Ethernet, &frame[..cut.min(n)]);
        }
    }

    pub(crate) const ALL_LINKS: [LinkType; 7] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
    ];
}
