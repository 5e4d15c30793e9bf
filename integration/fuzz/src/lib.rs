//! What the fuzz targets share: reading structure out of the fuzzer's bytes, and driving the
//! agent's stages the way the pipeline does, so that each target states only its property.
//!
//! Not for: anything shipped. The targets live in `fuzz_targets/`, one per parser of outside
//! input; `src/bin/seeds.rs` makes their starting corpora from `fixtures/`.

use std::io::{self, Read};

use liteobs_agent::capture::offline::OfflineSource;
use liteobs_agent::capture::{Next, PacketSource};
use liteobs_agent::http::{Exchange, HttpConn, HttpContext, HttpStats};
use liteobs_agent::pipeline::{LinkType, Pipeline, PipelineConfig};
use liteobs_agent::reassemble::{Dir, Event, MemoryBudget};

/// Reads numbers off the front of the fuzzer's input; once it runs dry, every read is 0, so a
/// short input is still a valid (if dull) case rather than a rejected one.
pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { rest: data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// A small deterministic generator (xorshift32) for choices derived from a few input bytes:
/// the split points of a stream must not eat the stream itself.
pub struct Choices(u32);

impl Choices {
    pub fn new(seed: u32) -> Choices {
        Choices(seed | 1)
    }

    pub fn number(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A number in `1..=max` (`max` ≥ 1).
    pub fn size(&mut self, max: usize) -> usize {
        1 + self.number() as usize % max.max(1)
    }

    pub fn coin(&mut self) -> bool {
        self.number() & 1 == 1
    }
}

/// Cuts `bytes` into consecutive pieces of 1..=`max` bytes chosen by `choices`.
pub fn pieces<'a>(bytes: &'a [u8], max: usize, choices: &mut Choices) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(choices.size(max).min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// The limits an [`HttpConn`] runs under in a target.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_header_bytes: usize,
    pub max_conn_buffer: usize,
    pub budget: usize,
}

impl HttpLimits {
    /// Larger than any input the fuzzer makes (`-max_len`), so that no limit is reached and
    /// the segmentation of a stream is the only thing that differs between runs.
    pub const UNREACHED: HttpLimits =
        HttpLimits { max_header_bytes: 1 << 20, max_conn_buffer: 1 << 22, budget: 1 << 24 };
}

/// One [`HttpConn`] with its context, fed events the way the pipeline feeds them.
pub struct HttpRig {
    pub conn: HttpConn,
    pub budget: MemoryBudget,
    pub stats: HttpStats,
    pub out: Vec<Exchange>,
    pub limits: HttpLimits,
    /// The wire sequence number of each direction's next byte (`Dir::AtoB`, `Dir::BtoA`), as
    /// the reassembler numbers what it hands on: however a stream is cut, its bytes keep theirs.
    next_seq: [u32; 2],
}

impl HttpRig {
    pub fn new(limits: HttpLimits, client: Option<Dir>) -> HttpRig {
        let mut conn = HttpConn::new();
        if let Some(c) = client {
            conn.set_client(c);
        }
        HttpRig {
            conn,
            budget: MemoryBudget::new(limits.budget),
            stats: HttpStats::default(),
            out: Vec::new(),
            limits,
            next_seq: [0x1000_0000, 0x2000_0000],
        }
    }

    pub fn event(&mut self, ev: Event<'_>) {
        let mut cx = HttpContext {
            max_header_bytes: self.limits.max_header_bytes,
            max_conn_buffer: self.limits.max_conn_buffer,
            budget: &self.budget,
            stats: &mut self.stats,
            out: &mut self.out,
        };
        self.conn.on_event(ev, &mut cx);
        assert!(self.budget.used() <= self.limits.budget, "HTTP stage went over its budget");
    }

    pub fn data(&mut self, dir: Dir, ts_us: i64, bytes: &[u8]) {
        let slot = &mut self.next_seq[usize::from(dir == Dir::BtoA)];
        let seq = *slot;
        *slot = seq.wrapping_add(bytes.len() as u32);
        self.event(Event::Data { dir, ts_us, seq, bytes });
    }

    /// Ends both directions and the connection; everything charged must have been returned.
    pub fn close(&mut self) {
        self.event(Event::End { dir: Dir::AtoB });
        self.event(Event::End { dir: Dir::BtoA });
        self.event(Event::Closed);
        assert_eq!(self.budget.used(), 0, "HTTP stage kept budget after the connection closed");
    }
}

/// A reader that hands out its bytes in pieces of chosen sizes, as a pipe or a slow file does.
pub struct Trickle {
    data: Vec<u8>,
    pos: usize,
    choices: Choices,
    max: usize,
}

impl Trickle {
    pub fn new(data: Vec<u8>, seed: u32, max: usize) -> Trickle {
        Trickle { data, pos: 0, choices: Choices::new(seed), max }
    }
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.choices.size(self.max).min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What reading a capture gave: each frame (time, link type, bytes), then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay {
    pub frames: Vec<(i64, LinkType, Vec<u8>)>,
    /// Where the file is damaged (cut, an impossible length, ...), if it is.
    pub damaged_at: Option<u64>,
    pub unsupported_link: u64,
    /// The error that ended it (its message), if any.
    pub error: Option<String>,
}

/// At most this many frames are read from one input (a fuzz input is small, but pcapng
/// blocks can be tiny).
const MAX_FRAMES: usize = 100_000;

/// Reads a capture file's bytes, from one buffer or trickled in pieces of 1..=`max_read` bytes,
/// and runs every frame through a pipeline with small limits.
pub fn replay(file: &[u8], trickle: Option<(u32, usize)>) -> Replay {
    let reader: Box<dyn Read + Send> = match trickle {
        None => Box::new(io::Cursor::new(file.to_vec())),
        Some((seed, max_read)) => Box::new(Trickle::new(file.to_vec(), seed, max_read)),
    };
    let mut replay = Replay { frames: Vec::new(), damaged_at: None, unsupported_link: 0, error: None };
    let mut source = match OfflineSource::from_reader("fuzz", reader, Some(file.len() as u64)) {
        Ok(source) => source,
        Err(e) => {
            replay.error = Some(anyhow_like(&e));
            return replay;
        }
    };
    let mut pipeline = Pipeline::new(PipelineConfig {
        max_conn_buffer: 4096,
        max_total_buffer: 16384,
        max_header_bytes: 1024,
        max_flows: 8,
        ..PipelineConfig::default()
    });
    let mut out = Vec::new();
    while replay.frames.len() < MAX_FRAMES {
        match source.next_packet() {
            Ok(Next::Packet(p)) => {
                pipeline.push(p.ts_us, p.link, p.data, &mut out);
                replay.frames.push((p.ts_us, p.link, p.data.to_vec()));
            }
            Ok(Next::Idle) => panic!("a file source never idles"),
            Ok(Next::End) => break,
            Err(e) => {
                replay.error = Some(anyhow_like(&e));
                break;
            }
        }
    }
    pipeline.finish(&mut out);
    assert_eq!(pipeline.buffered_bytes(), 0, "pipeline holds bytes after finish");
    let stats = source.stats();
    replay.damaged_at = stats.damage.as_ref().map(|d| d.offset);
    replay.unsupported_link = stats.unsupported_link;
    replay
}

/// An error with its sources, as the agent's binary prints it.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A seed for choices made about a whole input (FNV-1a), when no bytes can be set aside for it.
pub fn hash(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The capture readers' property, for both formats: reading the file from one buffer or in
/// small pieces (a pipe) gives the same frames and the same ending.
pub fn check_capture(file: &[u8]) {
    let whole = replay(file, None);
    let h = hash(file);
    let max_read = [1, 3, 64, 4096][(h >> 30) as usize];
    let trickled = replay(file, Some((h, max_read)));
    assert_eq!(whole, trickled, "reading in pieces of at most {max_read} bytes changed what was read");
}
