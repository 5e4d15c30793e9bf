//! The tolerant head reader: what real servers still answer although httparse (strictly RFC
//! 9112) refuses it. It runs only after httparse said no, so it costs the common path nothing.
//!
//! Request line: `method SP* target SP* version`, split at the first and the last run of
//! whitespace as Zeek's analyzer does, so a target may contain spaces (`CONNECT a b:443
//! HTTP/1.1`) or be missing (`GET HTTP/1.1`, path recorded empty). The version is any word
//! starting with `HTTP/` whose digits are 0 or 1 (`HTTP/1.`, `HTTP/1` and `HTTP/` included; `HTTP/2.0`
//! is the h2 preface, not HTTP/1). Without a version, a known method and one target word make
//! an HTTP/0.9 simple request: the head is that line, nothing follows it.
//!
//! Status line: `HTTP/` version, whitespace, three digits, anything.
//!
//! Header lines: `name: value` with whitespace allowed before the colon (honoured, so
//! `Content-Length : 5` still frames the body, as proxies that accept it do); a line starting
//! with whitespace continues the previous field (obs-fold; the continuation is not added to a
//! value the framing reads); a line without a colon, or with a name that is not a token, is
//! skipped. Bare LF line ends are accepted everywhere (RFC 9112 §2.2 allows it).
//!
//! Bounded by its input: the caller hands at most `max_header_bytes`.

use super::framing::Facts;
use super::head::{HeadParse, RequestHead, ResponseHead};
use super::resync::RESYNC_METHODS;

/// RFC 9110 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// The line starting at `from`, without its line end, and the index just past it.
fn line_at(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let lf = memchr::memchr(b'\n', rest)?;
    let line = &rest[..lf];
    Some((line.strip_suffix(b"\r").unwrap_or(line), from + lf + 1))
}

/// `HTTP/` followed by nothing but digits and dots, major version 0 or 1 when given.
fn is_http1_version(word: &[u8]) -> bool {
    let Some(rest) = word.get(..5).filter(|p| p.eq_ignore_ascii_case(b"HTTP/")).map(|_| &word[5..]) else {
        return false;
    };
    rest.len() <= 8
        && rest.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && rest.first().is_none_or(|&b| b == b'0' || b == b'1' || b == b'.')
}

pub(super) fn request(head: &[u8]) -> HeadParse<RequestHead<'_>> {
    let Some((line, after)) = line_at(head, 0) else {
        return HeadParse::Invalid;
    };
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return HeadParse::Invalid;
    }
    let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == 0 || method_len > 32 || !line.get(method_len).is_some_and(|&b| is_ws(b)) {
        return HeadParse::Invalid;
    }
    let method = &line[..method_len];
    let rest = trim_ws(&line[method_len..]);
    let last_start = rest.iter().rposition(|&b| is_ws(b)).map_or(0, |p| p + 1);
    let last = &rest[last_start..];
    if is_http1_version(last) {
        let path = trim_ws(&rest[..last_start]);
        return match headers(head, after) {
            Some((len, facts)) => {
                HeadParse::Complete(len, RequestHead { method, path, facts, http09: false, lenient: true })
            }
            None => HeadParse::Partial,
        };
    }
    // HTTP/0.9: `GET /` and nothing else on the line.
    if last_start == 0 && !rest.is_empty() && RESYNC_METHODS.contains(&method) {
        let facts = Facts::default();
        return HeadParse::Complete(
            after,
            RequestHead { method, path: rest, facts, http09: true, lenient: true },
        );
    }
    HeadParse::Invalid
}

/// The length of an HTTP/0.9 simple request line at the start of `buf`, once it is complete.
pub(super) fn simple_request_len(buf: &[u8]) -> Option<usize> {
    match request(buf) {
        HeadParse::Complete(len, r) if r.http09 => Some(len),
        _ => None,
    }
}

pub(super) fn response(head: &[u8]) -> HeadParse<ResponseHead<'_>> {
    let Some((line, after)) = line_at(head, 0) else {
        return HeadParse::Invalid;
    };
    let version_len = line.iter().take_while(|&&b| !is_ws(b)).count();
    if !is_http1_version(&line[..version_len]) {
        return HeadParse::Invalid;
    }
    let rest = &line[version_len..];
    let digits = &rest[rest.iter().take_while(|&&b| is_ws(b)).count()..];
    let code = match digits.get(..3) {
        Some(d) if d.iter().all(u8::is_ascii_digit) && !digits.get(3).is_some_and(u8::is_ascii_digit) => {
            d.iter().fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'))
        }
        _ => return HeadParse::Invalid,
    };
    if rest.len() == digits.len() {
        return HeadParse::Invalid; // no whitespace between version and code
    }
    match headers(head, after) {
        Some((len, facts)) => HeadParse::Complete(len, ResponseHead { code, facts, lenient: true }),
        None => HeadParse::Partial,
    }
}

/// The header section starting at `from`: its end and its framing facts; `None` when it does
/// not end within `buf`.
fn headers(buf: &[u8], mut from: usize) -> Option<(usize, Facts<'_>)> {
    let mut facts = Facts::default();
    loop {
        let (line, next) = line_at(buf, from)?;
        from = next;
        if line.is_empty() {
            return Some((from, facts));
        }
        if is_ws(line[0]) {
            continue; // obs-fold continuation
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim_ws(&line[..colon]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            continue;
        }
        facts.add(name, trim_ws(&line[colon + 1..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Head length, method, path, HTTP/0.9, Content-Length.
    type Read = (usize, String, String, bool, Option<Result<u64, ()>>);

    fn req(s: &[u8]) -> Option<Read> {
        match request(s) {
            HeadParse::Complete(len, r) => Some((
                len,
                String::from_utf8_lossy(r.method).into(),
                String::from_utf8_lossy(r.path).into(),
                r.http09,
                r.facts.content_length,
            )),
            _ => None,
        }
    }

    #[test]
    fn request_lines_servers_still_answer() {
        assert_eq!(req(b"GET HTTP/1.1\r\n\r\n"), Some((16, "GET".into(), "".into(), false, None)));
        assert_eq!(
            req(b"CONNECT a b:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some((37, "CONNECT".into(), "a b:443".into(), false, None))
        );
        assert_eq!(req(b"GET / HTTP/1.\r\n\r\n"), Some((17, "GET".into(), "/".into(), false, None)));
        assert_eq!(req(b"GET  /x  HTTP/1\n\n"), Some((17, "GET".into(), "/x".into(), false, None)));
        assert_eq!(req(b"GET /\r\n"), Some((7, "GET".into(), "/".into(), true, None)));
        assert_eq!(req(b"GET /\r\nHost: x\r\n\r\n").map(|r| (r.0, r.3)), Some((7, true)));
        assert_eq!(
            req(b"POST /p HTTP/1.1\r\nContent-Length : 5\r\nBad Header: x\r\nX: a\r\n folded\r\n\r\n"),
            Some((70, "POST".into(), "/p".into(), false, Some(Ok(5))))
        );
    }

    #[test]
    fn not_requests() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"FETCH /x\r\n",
            b"GET /a b\r\n",
            b"G\x01T / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1",
        ] {
            assert!(req(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(request(b"GET HTTP/1.1\r\nHost: x\r\n"), HeadParse::Partial));
    }

    #[test]
    fn status_lines() {
        let code = |s: &[u8]| match response(s) {
            HeadParse::Complete(_, r) => Some(r.code),
            _ => None,
        };
        assert_eq!(code(b"HTTP/1.1 200\r\n\r\n"), Some(200));
        assert_eq!(code(b"HTTP/1. 404 Not Found\r\n\r\n"), Some(404));
        assert_eq!(code(b"http/1.0\t302 Found\r\nLocation : /\r\n\r\n"), Some(302));
        assert_eq!(code(b"HTTP/1.1 2000\r\n\r\n"), None);
        assert_eq!(code(b"HTTP/1.1200\r\n\r\n"), None);
        assert_eq!(code(b"HTTP/2 200\r\n\r\n"), None);
    }
}
