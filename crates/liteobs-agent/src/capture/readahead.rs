//! Classic pcap records, read ahead by a thread of their own.
//!
//! A replay's capture thread is its bottleneck (decode, reassembly, HTTP), so reading the file
//! is moved off it. A reader thread reads [`READ_CHUNK`] bytes at a time (small enough to stay
//! in a core's L2 cache until parsed; pcap-file's own reader refills an 8 MB buffer, which has
//! left the caches by the time its packets are parsed), cuts each read at the last whole
//! record and sends the whole records over a bounded channel; the part of a record that did not
//! fit is carried into the next chunk. The capture thread then parses records in place with
//! pcap-file's [`PcapParser`]: no system call and no copy on its side.
//!
//! Used chunks go back to the reader to be filled again, so a replay allocates a handful of
//! buffers in all.

use std::io::{self, Read};
use std::mem;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use pcap_file::Endianness;
use pcap_file::pcap::{PcapParser, RawPcapPacket};

use super::Damage;

/// Bytes asked of the file per read.
pub const READ_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the capture thread.
const AHEAD: usize = 4;
/// The largest record accepted. libpcap's snap length is at most 256 KiB; anything much larger
/// is a damaged length field, refused rather than allocated (whatever the file's snap length
/// claims).
pub const MAX_RECORD: usize = 64 << 20;
/// A pcap record header: seconds, fraction, captured length, original length.
const RECORD_HEADER: usize = 16;
/// The pcap file header.
const FILE_HEADER: usize = 24;

/// What the reader thread sends. A closed channel after `Records` means a clean end of file.
enum Chunk {
    /// Whole records, back to back, in `buf[..len]` (the buffer keeps its full length so that
    /// it is never zeroed again when reused); `buf[0]` is at byte `start` of the file.
    Records { buf: Vec<u8>, len: usize, start: u64 },
    /// The file is damaged (cut off inside a record, an impossible length) or could not be
    /// read further; nothing follows.
    Damaged(Damage),
}

/// The capture thread's end: hands out the records in file order.
pub struct PcapRecords {
    parser: PcapParser,
    chunks: Receiver<Chunk>,
    used: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    /// The records in `chunk` end here.
    chunk_len: usize,
    /// File offset of `chunk[0]`.
    chunk_start: u64,
    pos: usize,
    /// Set once the reader has said its last word.
    end: Option<Result<(), Damage>>,
}

impl PcapRecords {
    /// Reads the file header from `input` (on the calling thread, so that a bad header is an
    /// error of `open`) and starts the reader thread on the rest.
    pub fn open(input: impl Read + Send + 'static) -> Result<PcapRecords, Damage> {
        let mut bytes = Buffered { input, buf: vec![0; READ_CHUNK], len: 0, eof: false, start: 0 };
        let header_damage = |reason: String| Damage { offset: 0, reason };
        if !bytes.fill(FILE_HEADER).map_err(|e| header_damage(read_failed(&e)))? {
            return Err(header_damage(format!(
                "cut short: the file ends inside its {FILE_HEADER}-byte header ({} bytes present)",
                bytes.len
            )));
        }
        let (rest, parser) = PcapParser::new(&bytes.buf[..bytes.len])
            .map_err(|e| header_damage(format!("the file header is invalid: {e}")))?;
        // The reader thread keeps the unsent bytes at the front of the buffer.
        let header_len = bytes.len - rest.len();
        bytes.buf.copy_within(header_len..bytes.len, 0);
        bytes.len -= header_len;
        bytes.start = header_len as u64;
        let header = parser.header();
        let limits = Limits { endianness: header.endianness, snaplen: header.snaplen };
        let (chunk_tx, chunks) = sync_channel(AHEAD);
        let (used, used_rx) = channel();
        std::thread::Builder::new()
            .name("liteobs-read".into())
            .spawn(move || read_records(bytes, limits, &chunk_tx, &used_rx))
            .map_err(|e| header_damage(format!("starting the reader thread: {e}")))?;
        Ok(PcapRecords {
            parser,
            chunks,
            used,
            chunk: Vec::new(),
            chunk_len: 0,
            chunk_start: 0,
            pos: 0,
            end: None,
        })
    }

    pub fn parser(&self) -> &PcapParser {
        &self.parser
    }

    /// The next record; `None` at a clean end of file. After damage, `None`.
    pub fn next(&mut self) -> Result<Option<RawPcapPacket<'_>>, Damage> {
        while self.pos >= self.chunk_len {
            if let Some(end) = self.end.take() {
                self.end = Some(Ok(()));
                return end.map(|()| None);
            }
            let used = mem::take(&mut self.chunk);
            if used.capacity() > 0 {
                // The reader may be gone already (end of file): then the buffer is just freed.
                let _ = self.used.send(used);
            }
            (self.pos, self.chunk_len) = (0, 0);
            match self.chunks.recv() {
                Ok(Chunk::Records { buf, len, start }) => {
                    (self.chunk, self.chunk_len, self.chunk_start) = (buf, len, start)
                }
                Ok(Chunk::Damaged(d)) => self.end = Some(Err(d)),
                Err(_) => self.end = Some(Ok(())),
            }
        }
        // The reader sends whole, checked records only, so this cannot fail; if it did, it is
        // damage at this record like any other.
        let offset = self.chunk_start + self.pos as u64;
        match self.parser.next_raw_packet(&self.chunk[self.pos..self.chunk_len]) {
            Ok((rest, raw)) => {
                self.pos = self.chunk_len - rest.len();
                Ok(Some(raw))
            }
            Err(e) => {
                self.pos = self.chunk_len;
                self.end = Some(Ok(()));
                Err(Damage { offset, reason: e.to_string() })
            }
        }
    }
}

/// What the reader thread checks of each record header.
#[derive(Debug, Clone, Copy)]
struct Limits {
    endianness: Endianness,
    /// The file header's snap length; 0 (written by some tools) means none.
    snaplen: u32,
}

impl Limits {
    /// The record's captured length, or why the header is damaged. A captured length larger
    /// than the snap length or than the packet's length on the wire is impossible for a
    /// capturing program, so it is a damaged header, not a large packet.
    fn captured_len(self, header: &[u8]) -> Result<usize, String> {
        let word = |at: usize| {
            let field = [header[at], header[at + 1], header[at + 2], header[at + 3]];
            match self.endianness {
                Endianness::Big => u32::from_be_bytes(field),
                Endianness::Little => u32::from_le_bytes(field),
            }
        };
        let (captured, original) = (word(8), word(12));
        if captured as usize > MAX_RECORD {
            return Err(format!(
                "a record header claims {captured} captured bytes, over the {} MiB limit",
                MAX_RECORD >> 20
            ));
        }
        if self.snaplen > 0 && captured > self.snaplen {
            return Err(format!(
                "a record header claims {captured} captured bytes, more than the file's snap length ({})",
                self.snaplen
            ));
        }
        if captured > original {
            return Err(format!(
                "a record header claims {captured} captured bytes of a {original}-byte packet"
            ));
        }
        Ok(captured as usize)
    }
}

fn read_failed(e: &io::Error) -> String {
    format!("reading failed: {e}")
}

/// The reader thread: sends chunks of whole records until the end of the file, damage, or
/// the capture thread hanging up.
fn read_records<R: Read>(
    mut bytes: Buffered<R>,
    limits: Limits,
    chunks: &SyncSender<Chunk>,
    used: &Receiver<Vec<u8>>,
) {
    // `buf[..len]` holds what was read and not sent. Each round sends it up to the last whole
    // record, carries the rest over to a recycled buffer (only that rest is copied), and reads
    // once more: a file fills the buffer, a pipe gives what it has, so that a live feed such as
    // `tcpdump -w - | liteobs-agent -read -` is never held back waiting for a full buffer.
    let mut failed: Option<io::Error> = None;
    loop {
        let mut end = 0;
        let mut damaged = None;
        // The record that does not fit yet: its total length.
        let mut pending = None;
        while let Some(header) = bytes.buf.get(end..bytes.len).and_then(|b| b.get(..RECORD_HEADER)) {
            let captured = match limits.captured_len(header) {
                Ok(c) => c,
                Err(reason) => {
                    damaged = Some(Damage { offset: bytes.start + end as u64, reason });
                    break;
                }
            };
            if bytes.len - end < RECORD_HEADER + captured {
                pending = Some(RECORD_HEADER + captured);
                break;
            }
            end += RECORD_HEADER + captured;
        }
        if end > 0 {
            let size = bytes.buf.len();
            let mut next = used.try_recv().unwrap_or_default();
            if next.len() < size {
                next.resize(size, 0);
            }
            let rest = bytes.len - end;
            next[..rest].copy_from_slice(&bytes.buf[end..bytes.len]);
            let full = mem::replace(&mut bytes.buf, next);
            bytes.len = rest;
            let start = bytes.start;
            bytes.start += end as u64;
            if chunks.send(Chunk::Records { buf: full, len: end, start }).is_err() {
                return; // the capture thread stopped reading
            }
        }
        if let Some(need) = pending
            && bytes.buf.len() < need
        {
            // A record larger than the buffer: grow it, at most doubling per round so that a
            // damaged length in a short file costs memory in proportion to the bytes present.
            let grown = need.min(bytes.buf.len().max(bytes.len) * 2);
            bytes.buf.resize(grown, 0);
        }
        let last = if let Some(d) = damaged {
            d
        } else if let Some(e) = failed {
            Damage { offset: bytes.start, reason: read_failed(&e) }
        } else if bytes.eof && bytes.len > 0 {
            let reason = match pending {
                Some(need) => format!(
                    "cut short: the file ends inside a record of {need} bytes ({} present)",
                    bytes.len
                ),
                None => format!(
                    "cut short: the file ends inside a record header ({} of {RECORD_HEADER} bytes)",
                    bytes.len
                ),
            };
            Damage { offset: bytes.start, reason }
        } else if bytes.eof {
            return; // a clean end: the channel closes
        } else {
            failed = bytes.read_once().err();
            continue;
        };
        let _ = chunks.send(Chunk::Damaged(last));
        return;
    }
}

/// A byte stream read into a reusable buffer; `buf[..len]` holds what is not sent yet.
struct Buffered<R> {
    input: R,
    buf: Vec<u8>,
    len: usize,
    eof: bool,
    /// File offset of `buf[0]`.
    start: u64,
}

impl<R: Read> Buffered<R> {
    /// One read into the free end of the buffer (none once the stream ended).
    fn read_once(&mut self) -> Result<(), io::Error> {
        while !self.eof && self.len < self.buf.len() {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.len += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            break;
        }
        Ok(())
    }

    /// Makes at least `n` bytes available, growing the buffer if needed; false if the stream
    /// ends before.
    fn fill(&mut self, n: usize) -> Result<bool, io::Error> {
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.len < n {
            if self.eof {
                return Ok(false);
            }
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.len += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
