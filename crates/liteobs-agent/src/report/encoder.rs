//! The upload body: records as NDJSON (one compact JSON object per line), gzip-compressed.
//!
//! Pure byte work, no I/O beyond the writer it is given. The reporter encodes a batch once and
//! sends the same bytes on every retry; [`ndjson_lines`] undoes the encoding when a batch must
//! be cut (a 413 split, a 400 that names one bad record), so that cutting works on what was
//! sent, even for a batch read back from the spool that this agent version could not decode as
//! records.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use liteobs_model::{NdjsonEncoder, TrafficLog};

/// Writes records as NDJSON: one compact JSON object per line, the bytes serde_json would
/// write (see [`NdjsonEncoder`], which is several times faster).
pub struct NdjsonWriter<W: Write> {
    out: W,
    encoder: NdjsonEncoder,
    lines: Vec<u8>,
}

impl<W: Write> NdjsonWriter<W> {
    pub fn new(out: W) -> Self {
        NdjsonWriter { out, encoder: NdjsonEncoder::new(), lines: Vec::new() }
    }

    /// Encodes all of `records` into one buffer and writes it at once.
    pub fn write(&mut self, records: &[TrafficLog]) -> io::Result<()> {
        self.lines.clear();
        for r in records {
            self.encoder.encode(r, &mut self.lines);
        }
        self.out.write_all(&self.lines)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// NDJSON, gzip-compressed: the upload body.
pub fn encode_batch(records: &[TrafficLog]) -> io::Result<Vec<u8>> {
    let mut w =
        NdjsonWriter::new(GzEncoder::new(Vec::with_capacity(records.len() * 64), Compression::fast()));
    w.write(records)?;
    w.into_inner().finish()
}

/// Gzip-compresses NDJSON lines (each without its `\n`) into an upload body.
pub fn encode_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    for line in lines {
        gz.write_all(line)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// The most a body may inflate to when it is cut: a spooled file is outside input, and a gzip
/// bomb must not take the agent's memory.
pub const MAX_DECODED_BODY: u64 = 256 << 20;

/// The non-empty NDJSON lines of an upload body (gzip checked to its CRC), without their `\n`.
pub fn ndjson_lines(body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let mut text = Vec::new();
    GzDecoder::new(body).take(MAX_DECODED_BODY + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_DECODED_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the batch inflates to more than {MAX_DECODED_BODY} bytes"),
        ));
    }
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::rec;

    #[test]
    fn upload_body_is_gzipped_ndjson() {
        let body = encode_batch(&[rec(1), rec(2)]).unwrap();
        let mut text = String::new();
        GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        let back = liteobs_model::decode_ndjson(text.as_bytes()).unwrap();
        assert_eq!(back, vec![rec(1), rec(2)]);
    }

    #[test]
    fn lines_round_trip() {
        let body = encode_batch(&[rec(1), rec(2), rec(3)]).unwrap();
        let lines = ndjson_lines(&body).unwrap();
        assert_eq!(lines.len(), 3);
        let again = encode_lines(lines.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(ndjson_lines(&again).unwrap(), lines);
        let mut cut = body.clone();
        cut.truncate(body.len() - 4);
        assert!(ndjson_lines(&cut).is_err(), "a torn gzip stream is an error");
    }

    #[test]
    fn ndjson_writer_lines() {
        let mut w = NdjsonWriter::new(Vec::new());
        w.write(&[rec(1), rec(2)]).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("\"node\":\"n\"}\n"), "{text}");
    }
}
