//! Body framing (RFC 9112 §6.3): from the framing headers of a head to how its body ends, and
//! which oddities the head showed on the way. Pure and table-tested; it reads no bytes of the
//! body and knows nothing of connections.
//!
//! The decisions, in the RFC's order:
//! * `Transfer-Encoding` overrides `Content-Length` (counted when both are present). Its final
//!   coding must be `chunked` on a request, else the server answers 400 and closes: the request
//!   is recorded and what follows it is not trusted as messages ([`Body::Unframed`]). On a
//!   response, a final coding other than chunked is read until the connection closes.
//!   `identity` (RFC 2616's "no transformation", since removed) is skipped in the list, as
//!   servers that still accept it do.
//! * `Content-Length` is `1*DIGIT`: leading zeros are valid (`0050` is 50), a sign or any
//!   other byte is not, nor is a value that does not fit in 64 bits. Several values (in one
//!   field or several) must agree. An invalid one makes a request [`Body::Unframed`] and a
//!   response close-delimited (the user agent discards it and closes; the observer records it).

/// The framing-relevant headers of a message, borrowed from the head.
#[derive(Debug, Default)]
pub(super) struct Facts<'b> {
    pub(super) host: Option<&'b [u8]>,
    /// `Some(Err)` when values are invalid or disagree.
    pub(super) content_length: Option<Result<u64, ()>>,
    /// `Some(true)` when the final transfer coding (ignoring `identity`) is chunked,
    /// `Some(false)` for another coding, `None` without a coding.
    pub(super) chunked: Option<bool>,
    pub(super) upgrade: bool,
    /// `Expect: 100-continue`.
    pub(super) expect_continue: bool,
}

impl<'b> Facts<'b> {
    /// Takes one header field into account. Called for every field of every head: the length
    /// test first, since most names are none of the five looked for.
    #[inline]
    pub(super) fn add(&mut self, name: &[u8], value: &'b [u8]) {
        if !matches!(name.len(), 4 | 6 | 7 | 14 | 17) {
            return;
        }
        if name.eq_ignore_ascii_case(b"host") {
            self.host.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let n = parse_decimal(part.trim_ascii()).ok_or(());
                self.content_length = Some(match (self.content_length, n) {
                    (None, n) => n,
                    (Some(Ok(a)), Ok(b)) if a == b => Ok(a),
                    _ => Err(()),
                });
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"));
            if let Some(last) = last {
                self.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
}

/// `1*DIGIT` as a u64: any number of leading zeros, no sign, no overflow.
pub(super) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let first = s.iter().position(|&b| b != b'0').unwrap_or(s.len());
    let digits = &s[first..];
    if digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// How a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    Length(u64),
    Chunked,
    /// At the end of the sender's stream (responses only).
    UntilClose,
    /// Not knowable: a request with invalid framing. The server rejects it (400) and closes;
    /// the bytes after its head are scanned for the next start line, not read as a body.
    Unframed,
}

/// What a head's framing headers showed that RFC 9112 calls wrong or ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Oddity {
    /// Invalid, negative, overflowing or conflicting `Content-Length`.
    BadContentLength,
    /// A request whose final transfer coding is not chunked.
    BadTransferEncoding,
    /// Both `Transfer-Encoding` and `Content-Length` (the first wins).
    LengthWithEncoding,
}

/// A request's body (RFC 9112 §6.3 rules 3–6).
pub(super) fn request_body(facts: &Facts<'_>) -> (Body, Option<Oddity>) {
    match (facts.chunked, facts.content_length) {
        (Some(true), None) => (Body::Chunked, None),
        (Some(true), Some(_)) => (Body::Chunked, Some(Oddity::LengthWithEncoding)),
        (Some(false), _) => (Body::Unframed, Some(Oddity::BadTransferEncoding)),
        (None, Some(Err(()))) => (Body::Unframed, Some(Oddity::BadContentLength)),
        (None, Some(Ok(0)) | None) => (Body::None, None),
        (None, Some(Ok(n))) => (Body::Length(n), None),
    }
}

/// A response's body when its status and request allow one (RFC 9112 §6.3 rules 3–7).
pub(super) fn response_body(facts: &Facts<'_>) -> (Body, Option<Oddity>) {
    match (facts.chunked, facts.content_length) {
        (Some(true), None) => (Body::Chunked, None),
        (Some(true), Some(_)) => (Body::Chunked, Some(Oddity::LengthWithEncoding)),
        (Some(false), None) => (Body::UntilClose, None),
        (Some(false), Some(_)) => (Body::UntilClose, Some(Oddity::LengthWithEncoding)),
        (None, Some(Err(()))) => (Body::UntilClose, Some(Oddity::BadContentLength)),
        (None, Some(Ok(0))) => (Body::None, None),
        (None, Some(Ok(n))) => (Body::Length(n), None),
        (None, None) => (Body::UntilClose, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header fields, and the framing they give.
    type Case = (&'static [(&'static str, &'static str)], (Body, Option<Oddity>));

    fn facts<'b>(headers: &[(&str, &'b str)]) -> Facts<'b> {
        let mut f = Facts::default();
        for (n, v) in headers {
            f.add(n.as_bytes(), v.as_bytes());
        }
        f
    }

    #[test]
    fn content_length_is_one_or_more_digits() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"050"), Some(50));
        assert_eq!(parse_decimal(b"0000000000000000000000050"), Some(50));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"123456789012345678901"), None);
        for bad in [&b""[..], b"-5", b"+5", b"5 5", b"0x10", b"5."] {
            assert_eq!(parse_decimal(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn request_framing_table() {
        use Body::*;
        use Oddity::*;
        let cases: &[Case] = &[
            (&[], (None, Option::None)),
            (&[("Content-Length", "5")], (Length(5), Option::None)),
            (&[("content-length", "005")], (Length(5), Option::None)),
            (&[("Content-Length", "5, 5"), ("Content-Length", "5")], (Length(5), Option::None)),
            (&[("Content-Length", "5"), ("Content-Length", "6")], (Unframed, Some(BadContentLength))),
            (&[("Content-Length", "-1")], (Unframed, Some(BadContentLength))),
            (&[("Content-Length", "123456789012345678901")], (Unframed, Some(BadContentLength))),
            (&[("Transfer-Encoding", "chunked")], (Chunked, Option::None)),
            (&[("Transfer-Encoding", "chunked, identity")], (Chunked, Option::None)),
            (&[("Transfer-Encoding", "identity")], (None, Option::None)),
            (&[("Transfer-Encoding", "gzip")], (Unframed, Some(BadTransferEncoding))),
            (&[("Transfer-Encoding", "chunked, gzip")], (Unframed, Some(BadTransferEncoding))),
            (
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "9")],
                (Chunked, Some(LengthWithEncoding)),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(request_body(&facts(headers)), *want, "{headers:?}");
        }
    }

    #[test]
    fn response_framing_table() {
        use Body::*;
        use Oddity::*;
        let cases: &[Case] = &[
            (&[], (UntilClose, Option::None)),
            (&[("Content-Length", "0")], (None, Option::None)),
            (&[("Content-Length", "000000000000000000000000007")], (Length(7), Option::None)),
            (&[("Content-Length", "123456789012345678901")], (UntilClose, Some(BadContentLength))),
            (&[("Transfer-Encoding", "gzip")], (UntilClose, Option::None)),
            (
                &[("Transfer-Encoding", "gzip, chunked"), ("Content-Length", "3")],
                (Chunked, Some(LengthWithEncoding)),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(response_body(&facts(headers)), *want, "{headers:?}");
        }
    }

    #[test]
    fn expect_and_upgrade() {
        let f = facts(&[("Expect", " 100-Continue "), ("Upgrade", "h2c"), ("Host", "a"), ("Host", "b")]);
        assert!(f.expect_continue && f.upgrade);
        assert_eq!(f.host, Some(&b"a"[..]));
    }
}
