//! pcapng blocks, framed here and decoded by pcap-file's [`PcapNgParser`].
//!
//! The agent frames the blocks itself (type, length, body, trailing length) rather than use
//! pcap-file's reader, for two reasons: every block's byte offset is known, so damage is
//! reported where it is; and a block length is checked before anything is allocated for it (the
//! reader refills an 8 MB buffer and calls any block that does not fit in it "unexpected end of
//! file", so a damaged length of 2 GiB looked like a file cut short, and a real block over 8 MB
//! could not be read). The buffer grows at most twofold per read, so a damaged length in a short
//! file costs memory in proportion to the bytes present.
//!
//! This module is not for turning blocks into packets (interfaces, clocks, link types):
//! [`super::offline`] does that.

use std::io::{self, Read};

use pcap_file::PcapError;
use pcap_file::pcapng::{Block, PcapNgParser};

use super::Damage;
use super::readahead::{MAX_RECORD, READ_CHUNK};

/// The largest block accepted: the largest record plus room for its fields and options.
pub const MAX_BLOCK: usize = MAX_RECORD + (64 << 10);
/// Block type and block length.
const BLOCK_HEAD: usize = 8;
/// ... and for a section header, the byte-order magic that says how to read the length.
const SECTION_HEAD: usize = 12;
const SECTION_HEADER: u32 = 0x0a0d_0d0a;

/// The blocks of a pcapng stream, in order, each with its byte offset.
pub struct PcapNgBlocks<R> {
    framer: Framer<R>,
    parser: PcapNgParser,
}

impl<R: Read> PcapNgBlocks<R> {
    /// Reads the first section header. Damage there (a wrong byte-order magic, a file cut
    /// inside it) is an error of `open`.
    pub fn open(input: R) -> Result<PcapNgBlocks<R>, Damage> {
        let mut framer = Framer {
            input,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            len: 0,
            start: 0,
            eof: false,
            big_endian: false,
        };
        let len = framer.frame()?.ok_or_else(|| Damage { offset: 0, reason: "the file is empty".into() })?;
        let (_, parser) =
            PcapNgParser::new(framer.take(len)).map_err(|e| Damage { offset: 0, reason: block_error(&e) })?;
        Ok(PcapNgBlocks { framer, parser })
    }

    /// The next block and its offset; `None` at a clean end of the stream. After damage, the
    /// caller stops reading.
    pub fn next(&mut self) -> Result<Option<(u64, Block<'_>)>, Damage> {
        let offset = self.framer.offset();
        let Some(len) = self.framer.frame()? else {
            return Ok(None);
        };
        match self.parser.next_block(self.framer.take(len)) {
            Ok((_, block)) => Ok(Some((offset, block))),
            Err(e) => Err(Damage { offset, reason: block_error(&e) }),
        }
    }
}

/// Cuts a byte stream into blocks by their length fields.
struct Framer<R> {
    input: R,
    /// `buf[pos..len]` is read and not yet handed out; `buf[0]` is at byte `start`.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    start: u64,
    eof: bool,
    /// The byte order of the current section (its header's magic says which).
    big_endian: bool,
}

impl<R: Read> Framer<R> {
    /// Bytes handed out so far: the offset of the next block.
    fn offset(&self) -> u64 {
        self.start + self.pos as u64
    }

    /// Hands out the `len` bytes [`Framer::frame`] made available.
    fn take(&mut self, len: usize) -> &[u8] {
        let at = self.pos;
        self.pos += len;
        &self.buf[at..at + len]
    }

    /// Makes the next whole block available at `buf[pos..]` and returns its length, after
    /// checking its length field; `None` at a clean end.
    fn frame(&mut self) -> Result<Option<usize>, Damage> {
        let offset = self.offset();
        let damage = |reason: String| Damage { offset, reason };
        let read_failed = |e: io::Error| Damage { offset, reason: format!("reading failed: {e}") };
        let cut_in_head = |present: usize, of: usize| {
            damage(format!("cut short: the file ends inside a block header ({present} of {of} bytes)"))
        };
        if !self.fill(BLOCK_HEAD).map_err(read_failed)? {
            let present = self.len - self.pos;
            if present == 0 {
                return Ok(None);
            }
            return Err(cut_in_head(present, BLOCK_HEAD));
        }
        // The section header's type reads the same in both byte orders; its magic says which.
        if u32::from_be_bytes(self.word(0)) == SECTION_HEADER {
            if !self.fill(SECTION_HEAD).map_err(read_failed)? {
                return Err(cut_in_head(self.len - self.pos, SECTION_HEAD));
            }
            self.big_endian = match u32::from_be_bytes(self.word(8)) {
                0x1a2b_3c4d => true,
                0x4d3c_2b1a => false,
                other => {
                    return Err(damage(format!(
                        "a section header has byte-order magic {other:#010x} (neither 1a2b3c4d nor 4d3c2b1a)"
                    )));
                }
            };
        }
        let len =
            if self.big_endian { u32::from_be_bytes(self.word(4)) } else { u32::from_le_bytes(self.word(4)) };
        let len = len as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(damage(format!("block length {len} is impossible (at least 12, a multiple of 4)")));
        }
        if len > MAX_BLOCK {
            return Err(damage(format!("block length {len} is over the {} MiB limit", MAX_BLOCK >> 20)));
        }
        if !self.fill(len).map_err(read_failed)? {
            return Err(damage(format!(
                "cut short: the file ends inside a block of {len} bytes ({} present)",
                self.len - self.pos
            )));
        }
        Ok(Some(len))
    }

    /// The 4 bytes at `at` of the block [`Framer::frame`] is looking at (made available before).
    fn word(&self, at: usize) -> [u8; 4] {
        let b = &self.buf[self.pos + at..self.pos + at + 4];
        [b[0], b[1], b[2], b[3]]
    }

    /// Makes at least `n` bytes available at `buf[pos..]`; false if the stream ends before.
    fn fill(&mut self, n: usize) -> Result<bool, io::Error> {
        while self.len - self.pos < n {
            if self.eof {
                return Ok(false);
            }
            if self.buf.len() - self.pos < n && self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.start += self.pos as u64;
                self.len -= self.pos;
                self.pos = 0;
            }
            if self.len == self.buf.len() {
                let grown = n.min(self.buf.len().max(BLOCK_HEAD) * 2);
                self.buf.resize(grown, 0);
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

/// pcap-file's words for a block it could not decode.
fn block_error(e: &PcapError) -> String {
    match e {
        PcapError::InvalidField(what) => format!("invalid block: {what}"),
        PcapError::IncompleteBuffer => "invalid block: its fields run past its length".into(),
        other => format!("invalid block: {other}"),
    }
}
