//! Incremental decoding of a chunked body (RFC 9112 §7.1): chunk sizes, extensions, data and
//! the trailer section, fed any split of the bytes. It counts decoded data bytes and says where
//! the body ends; it is not for keeping the data (an observer needs only its size).

/// Incremental decoder of a chunked body (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// Reading a chunk-size line: the value so far, digits seen, and whether the hex digits are
    /// over (extensions or whitespace follow).
    Size {
        value: u64,
        digits: u8,
        rest: bool,
    },
    Data {
        remaining: u64,
    },
    /// The line end after chunk data.
    DataEnd,
    /// Trailer section: bytes on the current line and in the whole section.
    Trailer {
        line: usize,
        total: usize,
    },
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked::Size { value: 0, digits: 0, rest: false }
    }
}

pub(super) enum ChunkOutcome {
    More,
    Done,
    Error,
}

pub(super) struct ChunkStep {
    pub(super) consumed: usize,
    pub(super) body: u64,
    pub(super) outcome: ChunkOutcome,
}

impl Chunked {
    /// Consumes bytes until the body ends, the input ends or the framing is broken (at least
    /// one byte is consumed when `bytes` is not empty).
    pub(super) fn step(&mut self, bytes: &[u8], max_trailer: usize) -> ChunkStep {
        let mut i = 0;
        let mut body = 0;
        let stop = |i, body, outcome| ChunkStep { consumed: i, body, outcome };
        while i < bytes.len() {
            match self {
                Chunked::Data { remaining } => {
                    let n = (*remaining).min((bytes.len() - i) as u64);
                    body += n;
                    i += n as usize;
                    *remaining -= n;
                    if *remaining == 0 {
                        *self = Chunked::DataEnd;
                    }
                    continue;
                }
                Chunked::Size { value, digits, rest } => {
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'\n' if *digits == 0 => return stop(i, body, ChunkOutcome::Error),
                        b'\n' if *value == 0 => *self = Chunked::Trailer { line: 0, total: 0 },
                        b'\n' => *self = Chunked::Data { remaining: *value },
                        _ if *rest => {}
                        b';' | b' ' | b'\t' | b'\r' if *digits > 0 => *rest = true,
                        _ => match (b as char).to_digit(16) {
                            Some(h) if *digits < 16 => {
                                *value = *value * 16 + u64::from(h);
                                *digits += 1;
                            }
                            _ => return stop(i, body, ChunkOutcome::Error),
                        },
                    }
                }
                Chunked::DataEnd => {
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'\r' => {}
                        b'\n' => *self = Chunked::default(),
                        _ => return stop(i, body, ChunkOutcome::Error),
                    }
                }
                Chunked::Trailer { line, total } => {
                    let b = bytes[i];
                    i += 1;
                    *total += 1;
                    if *total > max_trailer {
                        return stop(i, body, ChunkOutcome::Error);
                    }
                    match b {
                        b'\n' if *line == 0 => return stop(i, body, ChunkOutcome::Done),
                        b'\n' => *line = 0,
                        b'\r' => {}
                        _ => *line += 1,
                    }
                }
            }
        }
        stop(i, body, ChunkOutcome::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_decoder_rejects_bad_sizes() {
        for bad in [&b"\r\n"[..], b"xyz\r\n", b"11111111111111111\r\n", b"5\r\nhelloX"] {
            let mut c = Chunked::default();
            assert!(
                matches!(c.step(bad, 100).outcome, ChunkOutcome::Error),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut c = Chunked::default();
        let step = c.step(b"0\r\nA: b\r\n", 5);
        assert!(matches!(step.outcome, ChunkOutcome::Error), "trailer too long");
    }
}
