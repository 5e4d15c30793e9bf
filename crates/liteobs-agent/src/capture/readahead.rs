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

use pcap_file::pcap::{PcapParser, RawPcapPacket};
use pcap_file::{Endianness, PcapError};

/// Bytes asked of the file per read.
pub const READ_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the capture thread.
const AHEAD: usize = 4;
/// The largest record accepted. libpcap's snap length is at most 256 KiB; anything much larger
/// is a damaged length field, refused rather than allocated.
pub const MAX_RECORD: usize = 64 << 20;
/// A pcap record header: seconds, fraction, captured length, original length.
const RECORD_HEADER: usize = 16;
/// The pcap file header.
const FILE_HEADER: usize = 24;

/// What the reader thread sends. A closed channel after `Records` means a clean end of file.
enum Chunk {
    /// Whole records, back to back, in `buf[..len]` (the buffer keeps its full length so that
    /// it is never zeroed again when reused).
    Records { buf: Vec<u8>, len: usize },
    /// The file ended inside a record.
    Truncated,
    /// Reading failed, or a record header is damaged; nothing follows.
    Failed(PcapError),
}

/// The capture thread's end: hands out the records in file order.
pub struct PcapRecords {
    parser: PcapParser,
    chunks: Receiver<Chunk>,
    used: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    /// The records in `chunk` end here.
    chunk_len: usize,
    pos: usize,
    /// Set once the reader has said its last word.
    end: Option<Result<(), PcapError>>,
}

impl PcapRecords {
    /// Reads the file header from `input` (on the calling thread, so that a bad header is an
    /// error of `open`) and starts the reader thread on the rest.
    pub fn open(input: impl Read + Send + 'static) -> Result<PcapRecords, PcapError> {
        let mut bytes = Buffered { input, buf: vec![0; READ_CHUNK], len: 0, eof: false };
        if !bytes.fill(FILE_HEADER)? {
            return Err(PcapError::IncompleteBuffer);
        }
        let (rest, parser) = PcapParser::new(&bytes.buf[..bytes.len])?;
        // The reader thread keeps the unsent bytes at the front of the buffer.
        let header_len = bytes.len - rest.len();
        bytes.buf.copy_within(header_len..bytes.len, 0);
        bytes.len -= header_len;
        let endianness = parser.header().endianness;
        let (chunk_tx, chunks) = sync_channel(AHEAD);
        let (used, used_rx) = channel();
        std::thread::Builder::new()
            .name("liteobs-read".into())
            .spawn(move || read_records(bytes, endianness, &chunk_tx, &used_rx))
            .map_err(PcapError::IoError)?;
        Ok(PcapRecords { parser, chunks, used, chunk: Vec::new(), chunk_len: 0, pos: 0, end: None })
    }

    pub fn parser(&self) -> &PcapParser {
        &self.parser
    }

    /// The next record; `None` at a clean end of file, [`PcapError::IncompleteBuffer`] when the
    /// file ends inside a record. After an error, `None`.
    pub fn next(&mut self) -> Result<Option<RawPcapPacket<'_>>, PcapError> {
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
                Ok(Chunk::Records { buf, len }) => (self.chunk, self.chunk_len) = (buf, len),
                Ok(Chunk::Truncated) => self.end = Some(Err(PcapError::IncompleteBuffer)),
                Ok(Chunk::Failed(e)) => self.end = Some(Err(e)),
                Err(_) => self.end = Some(Ok(())),
            }
        }
        // The reader sends whole records only, so this cannot be incomplete.
        let (rest, raw) = self.parser.next_raw_packet(&self.chunk[self.pos..self.chunk_len])?;
        self.pos = self.chunk_len - rest.len();
        Ok(Some(raw))
    }
}

/// The reader thread: sends chunks of whole records until the end of the file, an error, or
/// the capture thread hanging up.
fn read_records<R: Read>(
    mut bytes: Buffered<R>,
    endianness: Endianness,
    chunks: &SyncSender<Chunk>,
    used: &Receiver<Vec<u8>>,
) {
    // `buf[..len]` holds what was read and not sent. Each round sends it up to the last whole
    // record, carries the rest over to a recycled buffer (only that rest is copied), and reads
    // once more: a file fills the buffer, a pipe gives what it has, so that a live feed such as
    // `tcpdump -w - | liteobs-agent -read -` is never held back waiting for a full buffer.
    let mut failed = None;
    loop {
        let mut end = 0;
        let mut damaged = false;
        while let Some(header) = bytes.buf.get(end..bytes.len).and_then(|b| b.get(..RECORD_HEADER)) {
            let field = [header[8], header[9], header[10], header[11]];
            let captured = match endianness {
                Endianness::Big => u32::from_be_bytes(field),
                Endianness::Little => u32::from_le_bytes(field),
            } as usize;
            if captured > MAX_RECORD {
                damaged = true;
                break;
            }
            if bytes.len - end < RECORD_HEADER + captured {
                if bytes.buf.len() < RECORD_HEADER + captured {
                    // A record larger than the buffer: grow it so that the next fill holds it.
                    bytes.buf.resize(RECORD_HEADER + captured, 0);
                }
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
            if chunks.send(Chunk::Records { buf: full, len: end }).is_err() {
                return; // the capture thread stopped reading
            }
        }
        let last = if damaged {
            Chunk::Failed(PcapError::InvalidField("record length over 64 MiB (a damaged record header)"))
        } else if let Some(e) = failed {
            Chunk::Failed(e)
        } else if bytes.eof && bytes.len > 0 {
            Chunk::Truncated
        } else if bytes.eof {
            return; // a clean end: the channel closes
        } else {
            failed = bytes.read_once().err();
            continue;
        };
        let _ = chunks.send(last);
        return;
    }
}

/// A byte stream read into a reusable buffer; `buf[..len]` holds what is not sent yet.
struct Buffered<R> {
    input: R,
    buf: Vec<u8>,
    len: usize,
    eof: bool,
}

impl<R: Read> Buffered<R> {
    /// One read into the free end of the buffer (none once the stream ended).
    fn read_once(&mut self) -> Result<(), PcapError> {
        while !self.eof && self.len < self.buf.len() {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.len += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PcapError::IoError(e)),
            }
            break;
        }
        Ok(())
    }

    /// Makes at least `n` bytes available, growing the buffer if needed; false if the stream
    /// ends before.
    fn fill(&mut self, n: usize) -> Result<bool, PcapError> {
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
                Err(e) => return Err(PcapError::IoError(e)),
            }
        }
        Ok(true)
    }
}
