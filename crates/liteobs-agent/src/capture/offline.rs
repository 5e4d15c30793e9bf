//! Reading capture files: classic pcap (micro- or nanosecond, either byte order) and pcapng
//! (several sections and interfaces, each interface with its own link type and timestamp
//! resolution), told apart by their first four bytes.
//!
//! Timestamps: pcap records carry unsigned 32-bit seconds and a micro- or nanosecond fraction
//! (by magic), so they always lie in 1970..2107 (a fraction of a second or more, which no
//! capturing program writes, is carried into the seconds as libpcap's readers do); pcapng
//! Enhanced Packet Blocks carry a 64-bit count of units whose size the interface's `if_tsresol`
//! option sets (10^-6 s when absent), plus the interface's signed `if_tsoffset` seconds, so they
//! can lie anywhere (saturated to `i64`). Both are turned into microseconds since the epoch
//! here, truncating below 1 µs; the pipeline skips records outside the range the server
//! accepts.
//!
//! Damage (a file cut off inside a record or block, a length no capturing program writes, a
//! packet naming an interface that was never described, a section header in no byte order, a
//! read error) ends the file at that point: what came before it is handed out, and
//! [`SourceStats::damage`] says where and what. Damage before the first packet can be (the file
//! header, the first section header) is a [`CaptureError::Damaged`] of `open`.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pcap_file::TsResolution;
use pcap_file::pcapng::Block;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;

use super::pcapng::PcapNgBlocks;
use super::readahead::PcapRecords;
use super::{CaptureError, Damage, Next, Packet, PacketSource, SourceStats};
use crate::pipeline::LinkType;

const PCAP_MAGICS: [u32; 4] = [0xa1b2_c3d4, 0xd4c3_b2a1, 0xa1b2_3c4d, 0x4d3c_b2a1];
const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;

/// A capture file being read front to back.
pub struct OfflineSource {
    name: String,
    total: Option<u64>,
    consumed: Arc<AtomicU64>,
    format: Format,
    /// Set at the end, after damage, or by a stop.
    done: bool,
    stats: SourceStats,
    /// pcapng Simple Packet Blocks carry no time; they get the last time seen.
    last_ts_us: i64,
    /// pcapng frames are copied here: the block reader's buffer cannot be lent out of the loop
    /// that skips non-packet blocks.
    frame: Vec<u8>,
}

enum Format {
    Pcap { records: Box<PcapRecords>, link: LinkType, nanos: bool },
    PcapNg { blocks: Box<PcapNgBlocks<Counting>>, ifaces: Vec<Interface> },
}

/// What a pcapng Interface Description Block says about the packets that name it.
#[derive(Debug, Clone, Copy)]
struct Interface {
    /// None when the decoder does not know this link type: its packets are skipped.
    link: Option<LinkType>,
    clock: TsClock,
    /// Most bytes captured of a packet; 0: no limit.
    snaplen: u32,
}

/// How to turn a pcapng timestamp (a count of units) into microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TsClock {
    /// `if_tsresol`: high bit clear → units are 10^-n s; set → 2^-n s.
    resol: u8,
    /// `if_tsoffset`, seconds added to every timestamp (signed: before 1970 is possible).
    offset_s: i64,
}

impl Default for TsClock {
    fn default() -> Self {
        TsClock { resol: 6, offset_s: 0 }
    }
}

impl TsClock {
    fn micros(self, units: u64) -> i64 {
        let units = units as u128;
        let n = u32::from(self.resol & 0x7f);
        let us: u128 = if self.resol & 0x80 == 0 {
            match n.cmp(&6) {
                std::cmp::Ordering::Equal => units,
                std::cmp::Ordering::Greater => units / 10u128.pow((n - 6).min(38)),
                std::cmp::Ordering::Less => units * 10u128.pow(6 - n),
            }
        } else if n >= 127 {
            0
        } else {
            (units * 1_000_000) >> n
        };
        i64::try_from(us).unwrap_or(i64::MAX).saturating_add(self.offset_s.saturating_mul(1_000_000))
    }
}

/// A reader that counts the bytes it hands out, for progress reporting from another thread.
struct Counting {
    inner: Box<dyn Read + Send>,
    consumed: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl OfflineSource {
    /// Opens a capture file; `-` reads standard input.
    pub fn open(path: &str) -> Result<OfflineSource, CaptureError> {
        let io_err = |source| CaptureError::Io { path: path.to_owned(), source };
        if path == "-" {
            return OfflineSource::from_reader("stdin", Box::new(io::stdin()), None);
        }
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(io_err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory")));
        }
        OfflineSource::from_reader(path, Box::new(file), Some(meta.len()))
    }

    /// Reads a capture from any byte stream (`total` is its length when known, for progress).
    pub fn from_reader(
        name: &str,
        mut reader: Box<dyn Read + Send>,
        total: Option<u64>,
    ) -> Result<OfflineSource, CaptureError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match reader.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(CaptureError::Io { path: name.to_owned(), source }),
            }
        }
        if got < 4 {
            return Err(CaptureError::NotACapture {
                path: name.to_owned(),
                magic: if got == 0 { "nothing: it is empty".into() } else { hex(&magic[..got]) },
            });
        }
        let consumed = Arc::new(AtomicU64::new(0));
        let counting =
            Counting { inner: Box::new(Cursor::new(magic).chain(reader)), consumed: consumed.clone() };
        let damaged = |damage: Damage| CaptureError::Damaged { path: name.to_owned(), damage };
        let magic_be = u32::from_be_bytes(magic);
        let format = if PCAP_MAGICS.contains(&magic_be) {
            let records = PcapRecords::open(counting).map_err(damaged)?;
            let header = records.parser().header();
            let linktype = u32::from(header.datalink);
            let link = LinkType::from_linktype(linktype)
                .ok_or_else(|| CaptureError::UnsupportedLink { path: name.to_owned(), linktype })?;
            Format::Pcap {
                records: Box::new(records),
                link,
                nanos: header.ts_resolution == TsResolution::NanoSecond,
            }
        } else if magic_be == PCAPNG_MAGIC {
            let blocks = PcapNgBlocks::open(counting).map_err(damaged)?;
            Format::PcapNg { blocks: Box::new(blocks), ifaces: Vec::new() }
        } else {
            return Err(CaptureError::NotACapture { path: name.to_owned(), magic: hex(&magic) });
        };
        Ok(OfflineSource {
            name: name.to_owned(),
            total,
            consumed,
            format,
            done: false,
            stats: SourceStats::default(),
            last_ts_us: 0,
            frame: Vec::new(),
        })
    }
}

/// Reading stops here: the file is damaged (fields, not `self`: the format is borrowed).
fn stop_damaged(name: &str, stats: &mut SourceStats, done: &mut bool, damage: Damage) -> Next<'static> {
    tracing::debug!(file = %name, %damage, "capture damaged; reading stops");
    stats.damage = Some(damage);
    *done = true;
    Next::End
}

fn hex(bytes: &[u8]) -> String {
    let body: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("bytes {}", body.join(" "))
}

fn borrowed_or_copied<'a>(data: Cow<'a, [u8]>, frame: &'a mut Vec<u8>) -> &'a [u8] {
    match data {
        Cow::Borrowed(d) => d,
        Cow::Owned(d) => {
            *frame = d;
            frame
        }
    }
}

/// A packet of a pcapng interface, as the block says it: which interface, its time in the
/// interface's units (None for a Simple Packet Block), its length on the wire and its bytes.
struct BlockPacket<'a> {
    iface: u32,
    units: Option<u64>,
    original_len: u32,
    data: Cow<'a, [u8]>,
}

/// The capture lengths of a packet that no capturing program writes: more than the interface
/// keeps, or more than the packet had.
fn impossible_lengths(captured: usize, original_len: u32, snaplen: u32) -> Option<String> {
    let captured = u64::try_from(captured).unwrap_or(u64::MAX);
    if snaplen > 0 && captured > u64::from(snaplen) {
        return Some(format!(
            "a packet block claims {captured} captured bytes, more than its interface's snap length ({snaplen})"
        ));
    }
    if captured > u64::from(original_len) {
        return Some(format!(
            "a packet block claims {captured} captured bytes of a {original_len}-byte packet"
        ));
    }
    None
}

impl PacketSource for OfflineSource {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.done {
            return Ok(Next::End);
        }
        match &mut self.format {
            Format::Pcap { records, link, nanos } => {
                let (link, nanos) = (*link, *nanos);
                match records.next() {
                    Ok(None) => {
                        self.done = true;
                        Ok(Next::End)
                    }
                    Err(damage) => Ok(stop_damaged(&self.name, &mut self.stats, &mut self.done, damage)),
                    Ok(Some(raw)) => {
                        let frac_us = if nanos { raw.ts_frac / 1000 } else { raw.ts_frac };
                        let ts_us = i64::from(raw.ts_sec) * 1_000_000 + i64::from(frac_us);
                        let data = borrowed_or_copied(raw.data, &mut self.frame);
                        Ok(Next::Packet(Packet { ts_us, link, data }))
                    }
                }
            }
            Format::PcapNg { blocks, ifaces } => {
                // Copy the frame out of the block, so that the reader is free again for the next
                // iteration when the block turns out not to be a packet.
                let found: Result<Option<(i64, LinkType)>, Damage> = loop {
                    let (offset, block) = match blocks.next() {
                        Ok(None) => break Ok(None),
                        Ok(Some(b)) => b,
                        Err(damage) => break Err(damage),
                    };
                    let packet = match block {
                        Block::SectionHeader(_) => {
                            ifaces.clear();
                            continue;
                        }
                        Block::InterfaceDescription(idb) => {
                            let linktype = u32::from(idb.linktype);
                            let link = LinkType::from_linktype(linktype);
                            if link.is_none() {
                                tracing::warn!(
                                    file = %self.name,
                                    offset,
                                    interface = ifaces.len(),
                                    linktype,
                                    "skipping the packets of an interface whose link type is not supported"
                                );
                            }
                            let mut clock = TsClock::default();
                            for opt in &idb.options {
                                match opt {
                                    InterfaceDescriptionOption::IfTsResol(r) => clock.resol = *r,
                                    // pcap-file reads the option unsigned; pcapng says signed.
                                    InterfaceDescriptionOption::IfTsOffset(o) => {
                                        clock.offset_s = i64::from_ne_bytes(o.to_ne_bytes())
                                    }
                                    _ => {}
                                }
                            }
                            ifaces.push(Interface { link, clock, snaplen: idb.snaplen });
                            continue;
                        }
                        Block::EnhancedPacket(epb) => BlockPacket {
                            iface: epb.interface_id,
                            // pcap-file hands the raw 64-bit unit count over as nanoseconds.
                            units: Some(u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX)),
                            original_len: epb.original_len,
                            data: epb.data,
                        },
                        Block::Packet(pb) => BlockPacket {
                            iface: u32::from(pb.interface_id),
                            units: Some(pb.timestamp),
                            original_len: pb.original_len,
                            data: pb.data,
                        },
                        Block::SimplePacket(spb) => BlockPacket {
                            iface: 0,
                            units: None,
                            original_len: spb.original_len,
                            data: spb.data,
                        },
                        _ => continue,
                    };
                    let Some(iface) = ifaces.get(packet.iface as usize) else {
                        break Err(Damage {
                            offset,
                            reason: format!(
                                "a packet names interface {}, but its section describes {} interface(s)",
                                packet.iface,
                                ifaces.len()
                            ),
                        });
                    };
                    // A Simple Packet Block holds the packet cut to the snap length, padded to
                    // 4 bytes: its length on the wire says how much of the body is packet.
                    let data: &[u8] = match packet.units {
                        None => {
                            let keep = packet.data.len().min(packet.original_len as usize);
                            let keep =
                                if iface.snaplen > 0 { keep.min(iface.snaplen as usize) } else { keep };
                            &packet.data[..keep]
                        }
                        Some(_) => &packet.data,
                    };
                    if let Some(reason) = impossible_lengths(data.len(), packet.original_len, iface.snaplen) {
                        break Err(Damage { offset, reason });
                    }
                    let Some(link) = iface.link else {
                        self.stats.unsupported_link += 1;
                        continue;
                    };
                    let ts_us = packet.units.map_or(self.last_ts_us, |u| iface.clock.micros(u));
                    self.frame.clear();
                    self.frame.extend_from_slice(data);
                    break Ok(Some((ts_us, link)));
                };
                match found {
                    Ok(None) => {
                        self.done = true;
                        Ok(Next::End)
                    }
                    Err(damage) => Ok(stop_damaged(&self.name, &mut self.stats, &mut self.done, damage)),
                    Ok(Some((ts_us, link))) => {
                        self.last_ts_us = ts_us;
                        Ok(Next::Packet(Packet { ts_us, link, data: &self.frame }))
                    }
                }
            }
        }
    }

    fn begin_drain(&mut self) -> Result<(), CaptureError> {
        self.done = true;
        Ok(())
    }

    fn stats(&mut self) -> SourceStats {
        self.stats.clone()
    }

    fn progress(&self) -> Option<(u64, u64)> {
        self.total.map(|t| (self.consumed.load(Ordering::Relaxed).min(t), t))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pcap_file::DataLink;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

    use super::*;
    use crate::capture::readahead::READ_CHUNK;

    fn source(bytes: Vec<u8>) -> Result<OfflineSource, CaptureError> {
        let len = bytes.len() as u64;
        OfflineSource::from_reader("test", Box::new(Cursor::new(bytes)), Some(len))
    }

    fn drain(src: &mut OfflineSource) -> Vec<(i64, LinkType, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            match src.next_packet().unwrap() {
                Next::Packet(p) => out.push((p.ts_us, p.link, p.data.to_vec())),
                Next::Idle => panic!("files are never idle"),
                Next::End => return out,
            }
        }
    }

    fn pcap_bytes(datalink: DataLink, ts_resolution: TsResolution, packets: &[(Duration, &[u8])]) -> Vec<u8> {
        let header = PcapHeader { datalink, ts_resolution, ..PcapHeader::default() };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (ts, data) in packets {
            w.write_packet(&PcapPacket::new(*ts, data.len() as u32, data)).unwrap();
        }
        w.into_writer()
    }

    #[test]
    fn pcap_micro_and_nano_timestamps() {
        let ts = Duration::new(1_764_000_000, 123_456_789);
        for (res, want_us) in [
            (TsResolution::MicroSecond, 1_764_000_000_123_456),
            (TsResolution::NanoSecond, 1_764_000_000_123_456),
        ] {
            let mut src = source(pcap_bytes(DataLink::ETHERNET, res, &[(ts, b"abc")])).unwrap();
            let got = drain(&mut src);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, want_us, "{res:?}");
            assert!(matches!(got[0].1, LinkType::Ethernet));
            assert_eq!(got[0].2, b"abc");
            assert_eq!(src.progress(), Some((src.total.unwrap(), src.total.unwrap())));
        }
    }

    #[test]
    fn truncated_pcap_ends_early_and_says_so() {
        let mut bytes = pcap_bytes(
            DataLink::LINUX_SLL2,
            TsResolution::MicroSecond,
            &[(Duration::from_secs(1), b"first"), (Duration::from_secs(2), b"second")],
        );
        bytes.truncate(bytes.len() - 3);
        let mut src = source(bytes).unwrap();
        let got = drain(&mut src);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0].1, LinkType::LinuxSll2));
        let damage = src.stats().damage.unwrap();
        assert_eq!(damage.offset, 24 + 16 + 5, "the second record's header");
        assert_eq!(damage.reason, "cut short: the file ends inside a record of 22 bytes (19 present)");
    }

    /// A reader that hands out at most `step` bytes per call, like a pipe.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn records_larger_than_a_read_and_reads_smaller_than_a_record() {
        let sizes = [10, READ_CHUNK + 12_345, 0, 5, 3 * READ_CHUNK, 1, READ_CHUNK - 16, READ_CHUNK, 7];
        let frames: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect()).collect();
        let packets: Vec<(Duration, &[u8])> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (Duration::from_secs(i as u64 + 1), f.as_slice()))
            .collect();
        let header = PcapHeader { snaplen: 4 * READ_CHUNK as u32, ..PcapHeader::default() };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (ts, data) in &packets {
            w.write_packet(&PcapPacket::new(*ts, data.len() as u32, data)).unwrap();
        }
        let bytes = w.into_writer();
        for step in [7, 4096, READ_CHUNK + 1, usize::MAX] {
            let reader = Trickle { bytes: bytes.clone(), at: 0, step };
            let mut src = OfflineSource::from_reader("test", Box::new(reader), None).unwrap();
            let got = drain(&mut src);
            assert_eq!(got.len(), frames.len(), "step {step}");
            for (i, (ts, _, data)) in got.iter().enumerate() {
                assert_eq!(*ts, (i as i64 + 1) * 1_000_000);
                assert!(*data == frames[i], "step {step}: frame {i} differs");
            }
            assert_eq!(src.stats().damage, None);
        }
    }

    /// A reader fed piece by piece, blocking in between, like a pipe from a live tcpdump.
    struct Pipe(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(piece) => self.1 = piece,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn records_of_a_pipe_come_out_before_the_pipe_is_full() {
        let frames: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
        let packets: Vec<(Duration, &[u8])> =
            frames.iter().enumerate().map(|(i, f)| (Duration::from_secs(i as u64 + 1), *f)).collect();
        let bytes = pcap_bytes(DataLink::ETHERNET, TsResolution::MicroSecond, &packets);
        // The first three records and half of the fourth, then nothing until the test says so.
        let cut = bytes.len() - 10;
        let (feed, pipe) = std::sync::mpsc::channel();
        feed.send(bytes[..cut].to_vec()).unwrap();
        let (got_tx, got) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut src = OfflineSource::from_reader("pipe", Box::new(Pipe(pipe, Vec::new())), None).unwrap();
            loop {
                match src.next_packet().unwrap() {
                    Next::Packet(p) => got_tx.send(p.data.to_vec()).unwrap(),
                    Next::Idle => panic!("files are never idle"),
                    Next::End => return src.stats().damage.is_some(),
                }
            }
        });
        let timeout = Duration::from_secs(10);
        for frame in &frames[..3] {
            assert_eq!(got.recv_timeout(timeout).expect("a record held back"), *frame);
        }
        feed.send(bytes[cut..].to_vec()).unwrap();
        assert_eq!(got.recv_timeout(timeout).unwrap(), frames[3]);
        drop(feed);
        assert!(!reader.join().unwrap(), "not damaged");
    }

    #[test]
    fn a_damaged_record_length_is_malformed_not_allocated() {
        let mut bytes =
            pcap_bytes(DataLink::ETHERNET, TsResolution::MicroSecond, &[(Duration::from_secs(1), b"ok")]);
        // A second record header claiming 3 GiB of data, in the file's byte order.
        let big_endian = bytes[0] == 0xa1;
        for word in [2u32, 0, 3 << 30, 3 << 30] {
            bytes.extend_from_slice(&if big_endian { word.to_be_bytes() } else { word.to_le_bytes() });
        }
        let mut src = source(bytes).unwrap();
        assert!(matches!(src.next_packet(), Ok(Next::Packet(_))));
        assert!(matches!(src.next_packet(), Ok(Next::End)));
        let damage = src.stats().damage.unwrap();
        assert_eq!(damage.offset, 24 + 16 + 2);
        assert_eq!(damage.reason, "a record header claims 3221225472 captured bytes, over the 64 MiB limit");
        assert!(matches!(src.next_packet(), Ok(Next::End)));
    }

    /// Appends a record header (seconds 2, fraction 0) in the file's byte order.
    fn push_record_header(bytes: &mut Vec<u8>, captured: u32, original: u32) {
        let big_endian = bytes[0] == 0xa1;
        for word in [2u32, 0, captured, original] {
            bytes.extend_from_slice(&if big_endian { word.to_be_bytes() } else { word.to_le_bytes() });
        }
    }

    /// Record headers no capturing program writes, each after one good record: the good one
    /// is read, and reading stops at the bad one's offset with what is wrong.
    #[test]
    fn impossible_record_lengths_are_damage_at_their_offset() {
        let good =
            pcap_bytes(DataLink::ETHERNET, TsResolution::MicroSecond, &[(Duration::from_secs(1), b"ok")]);
        let at = good.len() as u64;
        let sixty_mib = 60 << 20;
        let no_snaplen = |mut b: Vec<u8>| {
            b[16..20].copy_from_slice(&0u32.to_le_bytes());
            b
        };
        for (bytes, captured, original, want) in [
            // 60 MiB in a 140-byte file, against the snap length of 65535.
            (
                good.clone(),
                sixty_mib,
                sixty_mib,
                "a record header claims 62914560 captured bytes, more than the file's snap length (65535)"
                    .to_owned(),
            ),
            (good.clone(), 10, 4, "a record header claims 10 captured bytes of a 4-byte packet".to_owned()),
            // Without a snap length, 60 MiB is possible, so the file is merely cut short, and
            // the reader grows its buffer only as far as the bytes present need.
            (
                no_snaplen(good.clone()),
                sixty_mib,
                sixty_mib,
                format!("cut short: the file ends inside a record of {} bytes (98 present)", sixty_mib + 16),
            ),
        ] {
            let mut bytes = bytes;
            push_record_header(&mut bytes, captured, original);
            bytes.resize(140, 0);
            let mut src = source(bytes).unwrap();
            assert_eq!(drain(&mut src).len(), 1, "{want}");
            assert_eq!(src.stats().damage, Some(Damage { offset: at, reason: want }));
        }
    }

    #[test]
    fn classic_pcap_timestamps_stay_in_the_servers_range() {
        // Unsigned seconds: 0xffffffff is 2106 (a reader taking them as signed would say 1969);
        // a nanosecond fraction over a second is carried into the seconds.
        let mut bytes = pcap_bytes(DataLink::ETHERNET, TsResolution::NanoSecond, &[]);
        for (sec, frac) in [(u32::MAX, u32::MAX), (0, 0)] {
            let (captured, original) = (1, 1);
            let big_endian = bytes[0] == 0xa1;
            for word in [sec, frac, captured, original] {
                bytes.extend_from_slice(&if big_endian { word.to_be_bytes() } else { word.to_le_bytes() });
            }
            bytes.push(0);
        }
        let mut src = source(bytes).unwrap();
        let got = drain(&mut src);
        assert_eq!(src.stats().damage, None);
        let ts: Vec<i64> = got.iter().map(|p| p.0).collect();
        assert_eq!(ts, [i64::from(u32::MAX) * 1_000_000 + 4_294_967, 0]);
        assert!(ts.iter().all(|t| (liteobs_model::TS_MIN_MICROS..=liteobs_model::TS_MAX_MICROS).contains(t)));
    }

    #[test]
    fn a_file_shorter_than_its_header_is_damaged_at_byte_0() {
        let bytes = pcap_bytes(DataLink::ETHERNET, TsResolution::MicroSecond, &[]);
        let e = source(bytes[..20].to_vec()).err().unwrap().to_string();
        assert_eq!(
            e,
            "test: damaged at byte 0: cut short: the file ends inside its 24-byte header (20 bytes present)"
        );
    }

    #[test]
    fn not_a_capture_and_unsupported_link_are_clear_errors() {
        let e = source(b"GET / HTTP/1.1\r\n".to_vec()).err().unwrap();
        assert_eq!(e.to_string(), "test: not a pcap or pcapng file (it starts with bytes 47 45 54 20)");
        let e = source(Vec::new()).err().unwrap();
        assert!(e.to_string().contains("it is empty"), "{e}");
        let e = source(pcap_bytes(DataLink::IEEE802_11, TsResolution::MicroSecond, &[])).err().unwrap();
        assert!(e.to_string().contains("link type 105 is not supported"), "{e}");
    }

    /// Two interfaces with different link types and resolutions, plus an unsupported one.
    #[test]
    fn pcapng_interfaces_keep_their_own_link_type_and_clock() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let mut eth = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535);
        eth.options.push(InterfaceDescriptionOption::IfTsResol(9)); // nanoseconds
        let mut sll = InterfaceDescriptionBlock::new(DataLink::LINUX_SLL, 65535);
        sll.options.push(InterfaceDescriptionOption::IfTsResol(0x80 | 10)); // 1/1024 s
        sll.options.push(InterfaceDescriptionOption::IfTsOffset(100));
        let wifi = InterfaceDescriptionBlock::new(DataLink::IEEE802_11, 65535);
        let raw6 = InterfaceDescriptionBlock::new(DataLink::RAW, 65535); // default µs
        for idb in [eth, sll, wifi, raw6] {
            w.write_pcapng_block(idb).unwrap();
        }
        let epb = |interface_id: u32, units: u64, data: &'static [u8]| EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(units),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        w.write_pcapng_block(epb(0, 1_500_000_000_123_456_789, b"eth")).unwrap();
        w.write_pcapng_block(epb(1, 2048 + 512, b"sll")).unwrap();
        w.write_pcapng_block(epb(2, 1, b"wifi")).unwrap();
        w.write_pcapng_block(epb(3, 7_000_001, b"raw")).unwrap();
        let mut src = source(w.into_inner()).unwrap();
        let got = drain(&mut src);
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, got[0].2.as_slice()), (1_500_000_000_123_456, &b"eth"[..]));
        assert!(matches!(got[0].1, LinkType::Ethernet));
        assert_eq!((got[1].0, got[1].2.as_slice()), (102_500_000, &b"sll"[..]));
        assert!(matches!(got[1].1, LinkType::LinuxSll));
        assert_eq!((got[2].0, got[2].2.as_slice()), (7_000_001, &b"raw"[..]));
        assert!(matches!(got[2].1, LinkType::RawIp));
        assert_eq!(src.stats().unsupported_link, 1);
    }

    #[test]
    fn pcapng_packet_naming_a_missing_interface_is_malformed() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535)).unwrap();
        // The writer refuses such a block, so append it by hand: type 6, length 36, interface
        // 4, time 0, captured 1, original 1, data padded to 4, length again.
        let mut bytes = w.into_inner();
        for word in [6u32, 36, 4, 0, 0, 1, 1] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(b"x\0\0\0");
        bytes.extend_from_slice(&36u32.to_le_bytes());
        let at = bytes.len() as u64 - 36;
        let mut src = source(bytes).unwrap();
        assert!(matches!(src.next_packet(), Ok(Next::End)));
        let damage = src.stats().damage.unwrap();
        assert_eq!(damage.offset, at);
        assert_eq!(damage.reason, "a packet names interface 4, but its section describes 1 interface(s)");
    }

    fn one_packet_pcapng() -> Vec<u8> {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 100)).unwrap();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(1_000_000),
            original_len: 3,
            data: Cow::Borrowed(b"one"),
            options: vec![],
        })
        .unwrap();
        w.into_inner()
    }

    /// Block-level damage after one good packet: the packet is read, then reading stops at the
    /// damaged block's offset with what is wrong.
    #[test]
    fn pcapng_damage_is_reported_at_its_offset() {
        let good = one_packet_pcapng();
        let at = good.len() as u64;
        let block = |words: &[u32], len: usize| {
            let mut b = good.clone();
            for w in words {
                b.extend_from_slice(&w.to_le_bytes());
            }
            b.resize(b.len().max(len), 0);
            b
        };
        let epb = |captured: u32, original: u32| {
            // type 6, length, interface 0, time, captured, original, data (padded), length.
            let data_len = (captured as usize).div_ceil(4) * 4;
            let len = 32 + data_len as u32;
            let mut words = vec![6, len, 0, 0, 2_000_000, captured, original];
            words.extend(std::iter::repeat_n(0, data_len / 4));
            words.push(len);
            words
        };
        for (bytes, want) in [
            (block(&[6, 0x7fff_fff0], 0), "block length 2147483632 is over the 64 MiB limit".to_owned()),
            (block(&[6, 0], 0), "block length 0 is impossible (at least 12, a multiple of 4)".to_owned()),
            (block(&[6, 30], 0), "block length 30 is impossible (at least 12, a multiple of 4)".to_owned()),
            (
                block(&[6, 1000, 0, 0], 0),
                "cut short: the file ends inside a block of 1000 bytes (16 present)".to_owned(),
            ),
            (block(&[6], 0), "cut short: the file ends inside a block header (4 of 8 bytes)".to_owned()),
            (
                block(&[0x0a0d_0d0a, 28, 0x1234_5678], 0),
                "a section header has byte-order magic 0x78563412 (neither 1a2b3c4d nor 4d3c2b1a)".to_owned(),
            ),
            (
                block(&epb(200, 200), 0),
                "a packet block claims 200 captured bytes, more than its interface's snap length (100)"
                    .to_owned(),
            ),
            (block(&epb(8, 4), 0), "a packet block claims 8 captured bytes of a 4-byte packet".to_owned()),
            (
                block(&[6, 16, 0, 16], 0),
                "invalid block: EnhancedPacketBlock: block length length < 20".to_owned(),
            ),
        ] {
            let mut src = source(bytes).unwrap();
            let got = drain(&mut src);
            assert_eq!(got.len(), 1, "{want}");
            assert_eq!(src.stats().damage, Some(Damage { offset: at, reason: want }));
        }
    }

    #[test]
    fn pcapng_damaged_first_section_is_an_error_of_open() {
        let mut bytes = one_packet_pcapng();
        bytes[8..12].copy_from_slice(&[1, 2, 3, 4]);
        let e = source(bytes).err().unwrap().to_string();
        assert_eq!(
            e,
            "test: damaged at byte 0: a section header has byte-order magic 0x01020304 (neither 1a2b3c4d nor 4d3c2b1a)"
        );
        let e = source(one_packet_pcapng()[..20].to_vec()).err().unwrap().to_string();
        assert_eq!(
            e,
            "test: damaged at byte 0: cut short: the file ends inside a block of 28 bytes (20 present)"
        );
    }

    /// pcapng's `if_tsoffset` is signed: a negative one puts packets before 1970 (which the
    /// pipeline then skips), rather than being ignored.
    #[test]
    fn pcapng_negative_ts_offset_is_honoured() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
        idb.options.push(InterfaceDescriptionOption::IfTsOffset(u64::from_ne_bytes((-10i64).to_ne_bytes())));
        w.write_pcapng_block(idb).unwrap();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(1_000_000),
            original_len: 1,
            data: Cow::Borrowed(b"x"),
            options: vec![],
        })
        .unwrap();
        let got = drain(&mut source(w.into_inner()).unwrap());
        assert_eq!(got[0].0, -9_000_000);
    }

    #[test]
    fn ts_clock_units() {
        let c = |resol, offset_s| TsClock { resol, offset_s };
        assert_eq!(c(6, 0).micros(5), 5);
        assert_eq!(c(3, 0).micros(5), 5000);
        assert_eq!(c(9, 0).micros(5_999), 5);
        assert_eq!(c(0x80 | 1, 0).micros(3), 1_500_000);
        assert_eq!(c(0, 0).micros(u64::MAX), i64::MAX);
        assert_eq!(c(6, 2).micros(1), 2_000_001);
    }
}
