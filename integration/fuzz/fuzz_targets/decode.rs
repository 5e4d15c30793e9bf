//! Frame decoding over every link type the agent reads.
//!
//! Input: one byte choosing the link type (by its pcap LINKTYPE number, so the numbers that
//! share a framing are all taken), one byte choosing a snap-length cut, then the frame.
//!
//! Properties: no panic; a decoded payload lies inside the frame; and cutting the frame short,
//! as a snap length does, keeps what the headers say and the payload's place: the cut frame's
//! payload is a prefix of the whole frame's, and the bytes it lacks are counted as missing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use liteobs_agent::decode::{LinkType, decode};
use liteobs_fuzz::Bytes;

const LINKTYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let linktype = LINKTYPES[usize::from(input.u8()) % LINKTYPES.len()];
    let cut = usize::from(input.u8());
    let frame = input.rest();
    let Some(link) = LinkType::from_linktype(linktype) else {
        panic!("LINKTYPE {linktype} is documented as supported");
    };
    let whole = match decode(link, frame) {
        Ok(seg) => seg,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let range = frame.as_ptr_range();
    let payload = whole.payload.as_ptr_range();
    assert!(range.start <= payload.start && payload.end <= range.end, "payload outside the frame");

    let snap = frame.len().saturating_sub(cut);
    if let Ok(seg) = decode(link, &frame[..snap]) {
        assert_eq!(
            (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port, seg.seq, seg.ack, seg.flags),
            (whole.src_ip, whole.src_port, whole.dst_ip, whole.dst_port, whole.seq, whole.ack, whole.flags),
            "a shorter snap length changed the headers"
        );
        assert!(whole.payload.starts_with(seg.payload), "a shorter snap length changed the payload");
        // Only a length field that covers the headers says how much was cut: zero means
        // "unknown" (TSO, jumbograms), and a shorter one is damage.
        let headers = whole.payload.as_ptr() as usize - frame.as_ptr() as usize;
        let length_known =
            ip_length(link, frame).is_some_and(|(start, len)| len > 0 && start + len >= headers);
        assert!(
            !length_known
                || seg.payload.len() as u64 + u64::from(seg.missing)
                    == whole.payload.len() as u64 + u64::from(whole.missing),
            "payload lost by the cut is not counted as missing"
        );
    }
});

/// Where the IP packet of a frame that decoded starts, and the length its header gives it
/// (IPv4 total length; IPv6 payload length plus the fixed header, or 0 when the field is 0),
/// found again by walking the link header (VLAN tags included).
fn ip_length(link: LinkType, frame: &[u8]) -> Option<(usize, usize)> {
    let be16 = |at: usize| frame.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    // (where the IP header starts, where the EtherType that names it is)
    let (mut ip, mut proto) = match link {
        LinkType::Ethernet => (14, Some(12)),
        LinkType::LinuxSll => (16, Some(14)),
        LinkType::LinuxSll2 => (20, Some(0)),
        LinkType::Null => (4, None),
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => (0, None),
    };
    while let Some(at) = proto
        && matches!(be16(at)?, 0x8100 | 0x88a8 | 0x9100)
    {
        // A VLAN tag: its control information, then the next EtherType.
        (proto, ip) = (Some(ip + 2), ip + 4);
    }
    let len = match frame.get(ip)? >> 4 {
        4 => usize::from(be16(ip + 2)?),
        _ => match be16(ip + 4)? {
            0 => 0,
            n => 40 + usize::from(n),
        },
    };
    Some((ip, len))
}
