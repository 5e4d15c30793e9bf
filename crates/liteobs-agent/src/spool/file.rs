//! The bytes of one spool file: a short text header, then the batch's upload body as sent.
//!
//! ```text
//! LITEOBS-SPOOL 1\n
//! id <batch id>\n
//! records <N>\n
//! body <length> <crc32, 8 hex digits>\n
//! \n
//! <length bytes: the gzip NDJSON body>
//! ```
//!
//! Pure: [`encode`] and [`parse`] work on byte slices. A file that does not parse (torn,
//! truncated, bit-flipped, or not ours) is an [`FormatError`] the spool sets aside; the body's
//! CRC is checked so that a damaged body is never sent under an id the server may already have
//! committed with other bytes.

use crate::report::{Batch, BatchId};

const MAGIC: &str = "LITEOBS-SPOOL 1";
/// A header longer than this is not ours.
const MAX_HEADER: usize = 512;

/// Why bytes read back are not a spool file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("no spool header (torn write or not a LiteObs spool file)")]
    NoHeader,
    #[error("header line {0:?} is not what a spool file has there")]
    BadHeader(String),
    #[error("the body has {got} bytes, the header says {want} (torn write)")]
    Length { got: usize, want: usize },
    #[error("the body's CRC32 is {got:08x}, the header says {want:08x} (damaged)")]
    Crc { got: u32, want: u32 },
}

/// The whole file for `batch`.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let header = header(batch);
    let mut out = Vec::with_capacity(header.len() + batch.body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&batch.body);
    out
}

/// The size [`encode`] will make, without making it.
pub fn encoded_len(batch: &Batch) -> u64 {
    (header(batch).len() + batch.body.len()) as u64
}

fn header(batch: &Batch) -> String {
    format!(
        "{MAGIC}\nid {}\nrecords {}\nbody {} {:08x}\n\n",
        batch.id,
        batch.records,
        batch.body.len(),
        crc32(&batch.body)
    )
}

/// The batch a spool file holds, checked.
pub fn parse(bytes: &[u8]) -> Result<Batch, FormatError> {
    let window = &bytes[..bytes.len().min(MAX_HEADER)];
    let end = window.windows(2).position(|w| w == b"\n\n").ok_or(FormatError::NoHeader)?;
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| FormatError::NoHeader)?;
    let body = &bytes[end + 2..];
    let mut lines = header.split('\n');
    let bad = |l: &str| FormatError::BadHeader(l.chars().take(80).collect());
    let mut field = |name: &str| -> Result<String, FormatError> {
        let line = lines.next().unwrap_or_default();
        line.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).map(str::to_owned).ok_or_else(|| bad(line))
    };
    let magic = field(MAGIC.split(' ').next().unwrap_or_default())?;
    if magic != "1" {
        return Err(bad(&magic));
    }
    let id_text = field("id")?;
    let id = BatchId::parse(&id_text).map_err(|_| bad(&id_text))?;
    let records_text = field("records")?;
    let records: usize = records_text.parse().map_err(|_| bad(&records_text))?;
    let body_text = field("body")?;
    let (len, crc) = body_text
        .split_once(' ')
        .and_then(|(l, c)| Some((l.parse::<usize>().ok()?, u32::from_str_radix(c, 16).ok()?)))
        .ok_or_else(|| bad(&body_text))?;
    if lines.next().is_some() {
        return Err(bad(header));
    }
    if body.len() != len {
        return Err(FormatError::Length { got: body.len(), want: len });
    }
    let got = crc32(body);
    if got != crc {
        return Err(FormatError::Crc { got, want: crc });
    }
    Ok(Batch { id, records, body: body.to_vec() })
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::rec;

    #[test]
    fn round_trip() {
        let b = Batch::encode(&[rec(1), rec(2)]).unwrap();
        assert_eq!(parse(&encode(&b)), Ok(b));
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let b = Batch::encode(&[rec(1), rec(2)]).unwrap();
        let good = encode(&b);
        let header_len = good.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        let flip_last = {
            let mut f = good.clone();
            let last = f.len() - 1;
            f[last] ^= 0x40;
            f
        };
        let with = |from: &str, to: &str| {
            String::from_utf8_lossy(&good[..header_len])
                .replacen(from, to, 1)
                .into_bytes()
                .into_iter()
                .chain(good[header_len..].iter().copied())
                .collect::<Vec<u8>>()
        };
        type Expect = fn(&FormatError) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("empty", Vec::new(), |e| *e == FormatError::NoHeader),
            ("torn in the header", good[..20].to_vec(), |e| *e == FormatError::NoHeader),
            ("torn in the body", good[..good.len() - 3].to_vec(), |e| {
                matches!(e, FormatError::Length { .. })
            }),
            ("extra bytes", [&good[..], b"x"].concat(), |e| matches!(e, FormatError::Length { .. })),
            ("flipped body bit", flip_last, |e| matches!(e, FormatError::Crc { .. })),
            ("other magic", with("LITEOBS-SPOOL 1", "LITEOBS-SPOOL 2"), |e| {
                matches!(e, FormatError::BadHeader(_))
            }),
            ("bad id", with("id ", "id zz"), |e| matches!(e, FormatError::BadHeader(_))),
            ("bad count", with("records 2", "records two"), |e| matches!(e, FormatError::BadHeader(_))),
            ("zeros", vec![0u8; 4096], |e| *e == FormatError::NoHeader),
        ];
        for (what, bytes, ok) in cases {
            let e = parse(&bytes).expect_err(what);
            assert!(ok(&e), "{what}: {e}");
        }
    }
}
