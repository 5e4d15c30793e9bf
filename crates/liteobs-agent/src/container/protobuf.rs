//! The few protobuf messages of containerd's Containers service the agent speaks, encoded and
//! decoded by hand: pure, bounded by the bytes given, no I/O.
//!
//! From `api/services/containers/v1/containers.proto` (containerd 1.x and 2.x alike):
//! `GetContainerRequest { string id = 1; }`, `GetContainerResponse { Container container = 1; }`,
//! `ListContainersRequest { repeated string filters = 1; }`,
//! `ListContainersResponse { repeated Container containers = 1; }`, and of
//! `Container` only `string id = 1; map<string, string> labels = 2;` (a map is a repeated
//! message `{ string key = 1; string value = 2; }`). Every other field (the OCI spec, the
//! image, extensions) is skipped by its wire type, so a newer containerd decodes too.
//! Not for: gRPC framing or transport (`containerd.rs`).

use std::collections::HashMap;

/// A container as the runtime describes it: its ID and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// Why bytes are not the message they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("protobuf message cut short at byte {0}")]
    Truncated(usize),
    #[error("protobuf varint too long at byte {0}")]
    VarintTooLong(usize),
    #[error("protobuf wire type {wire} at byte {at} is not supported")]
    WireType { wire: u64, at: usize },
    #[error("protobuf string field is not UTF-8")]
    NotUtf8,
}

/// `GetContainerRequest { id }`.
pub fn encode_get_request(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 4);
    put_bytes(&mut out, 1, id.as_bytes());
    out
}

/// `ListContainersRequest {}` (no filter: every container of the namespace).
pub fn encode_list_request() -> Vec<u8> {
    Vec::new()
}

/// The container of a `GetContainerResponse` (`None` if the message has none).
pub fn decode_get_response(buf: &[u8]) -> Result<Option<RuntimeContainer>, DecodeError> {
    let mut out = None;
    for f in Fields::new(buf) {
        let f = f?;
        if let (1, Value::Bytes(b)) = (f.number, f.value) {
            out = Some(decode_container(b)?);
        }
    }
    Ok(out)
}

/// The containers of a `ListContainersResponse`.
pub fn decode_list_response(buf: &[u8]) -> Result<Vec<RuntimeContainer>, DecodeError> {
    let mut out = Vec::new();
    for f in Fields::new(buf) {
        let f = f?;
        if let (1, Value::Bytes(b)) = (f.number, f.value) {
            out.push(decode_container(b)?);
        }
    }
    Ok(out)
}

fn decode_container(buf: &[u8]) -> Result<RuntimeContainer, DecodeError> {
    let mut c = RuntimeContainer::default();
    for f in Fields::new(buf) {
        let f = f?;
        match (f.number, f.value) {
            (1, Value::Bytes(b)) => c.id = utf8(b)?,
            (2, Value::Bytes(b)) => {
                let (mut k, mut v) = (String::new(), String::new());
                for e in Fields::new(b) {
                    let e = e?;
                    match (e.number, e.value) {
                        (1, Value::Bytes(b)) => k = utf8(b)?,
                        (2, Value::Bytes(b)) => v = utf8(b)?,
                        _ => {}
                    }
                }
                c.labels.insert(k, v);
            }
            _ => {}
        }
    }
    Ok(c)
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    std::str::from_utf8(b).map(str::to_owned).map_err(|_| DecodeError::NotUtf8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, b: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

enum Value<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

struct Field<'a> {
    number: u64,
    value: Value<'a>,
}

/// The top-level fields of one message, in order; stops at the first error.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0, failed: false }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintTooLong(start))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn field(&mut self) -> Result<Field<'a>, DecodeError> {
        let at = self.pos;
        let key = self.varint()?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated(self.pos))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wire => return Err(DecodeError::WireType { wire, at }),
        };
        Ok(Field { number, value })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let f = self.field();
        self.failed = f.is_err();
        Some(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `Container` as containerd sends it: id, labels, and fields this skips (image = 3,
    /// runtime = 4 (a message), created_at = 8 (a Timestamp), a varint and fixed fields).
    pub(crate) fn encode_container(id: &str, labels: &[(&str, &str)]) -> Vec<u8> {
        let mut c = Vec::new();
        put_bytes(&mut c, 1, id.as_bytes());
        for (k, v) in labels {
            let mut e = Vec::new();
            put_bytes(&mut e, 1, k.as_bytes());
            put_bytes(&mut e, 2, v.as_bytes());
            put_bytes(&mut c, 2, &e);
        }
        put_bytes(&mut c, 3, b"docker.io/library/nginx:1.25");
        let mut runtime = Vec::new();
        put_bytes(&mut runtime, 1, b"io.containerd.runc.v2");
        put_bytes(&mut c, 4, &runtime);
        put_varint(&mut c, 20 << 3); // wire type 0, a varint
        put_varint(&mut c, 300);
        put_varint(&mut c, (21 << 3) | 1);
        c.extend_from_slice(&[0; 8]);
        put_varint(&mut c, (22 << 3) | 5);
        c.extend_from_slice(&[0; 4]);
        c
    }

    #[test]
    fn list_and_get_round_trip() {
        let a = encode_container("aaa", &[("io.kubernetes.pod.name", "web-0"), ("k", "")]);
        let b = encode_container("bbb", &[]);
        let mut list = Vec::new();
        put_bytes(&mut list, 1, &a);
        put_bytes(&mut list, 1, &b);
        let got = decode_list_response(&list).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "aaa");
        assert_eq!(got[0].labels["io.kubernetes.pod.name"], "web-0");
        assert_eq!(got[0].labels["k"], "");
        assert!(got[1].labels.is_empty());
        let mut get = Vec::new();
        put_bytes(&mut get, 1, &b);
        assert_eq!(decode_get_response(&get).unwrap().unwrap().id, "bbb");
        assert_eq!(decode_get_response(&[]).unwrap(), None);
        assert_eq!(encode_get_request("ab"), [0x0a, 2, b'a', b'b']);
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let a = encode_container("aaa", &[("x", "y")]);
        let mut list = Vec::new();
        put_bytes(&mut list, 1, &a);
        // Every cut is an error or a shorter answer, never a panic.
        for cut in 0..list.len() {
            let _ = decode_list_response(&list[..cut]);
        }
        assert_eq!(
            decode_list_response(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(DecodeError::Truncated(6))
        );
        assert_eq!(decode_list_response(&[0x0b]), Err(DecodeError::WireType { wire: 3, at: 0 }));
        assert!(matches!(
            decode_list_response(&[0x08; 11].map(|_| 0xff)),
            Err(DecodeError::VarintTooLong(0))
        ));
        let mut bad = Vec::new();
        put_bytes(&mut bad, 1, &[0x0a, 1, 0xff]);
        assert_eq!(decode_list_response(&bad), Err(DecodeError::NotUtf8));
    }
}
