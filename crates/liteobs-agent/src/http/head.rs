//! Message heads (start line and header section) → what the exchange and the framing need.
//!
//! The common path is httparse on the whole head, on the stack, borrowing everything. Only
//! when httparse refuses a head does the tolerant reader in [`super::lenient`] get a turn, so
//! odd but real heads (a request line without a target, a space inside a CONNECT target, a
//! truncated version, HTTP/0.9, whitespace before a colon, folded lines in requests) are
//! recorded instead of dropped, and counted. Nothing here keeps state between calls.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

use super::conn::{Kind, Role};
use super::framing::Facts;
use super::lenient;

/// Headers parsed on the stack; heads with more are retried with a heap array.
pub(super) const STACK_HEADERS: usize = 96;

/// What one parse of a head gave.
pub(super) enum HeadParse<T> {
    /// A head of this many bytes.
    Complete(usize, T),
    /// Plausible so far; the head does not end within the bytes given.
    Partial,
    Invalid,
}

pub(super) struct RequestHead<'b> {
    pub(super) method: &'b [u8],
    /// Request-target as sent (empty when the request line has none).
    pub(super) path: &'b [u8],
    pub(super) facts: Facts<'b>,
    /// A simple request (`GET /` with no version and no headers): the answer is the raw body
    /// up to the server's close, without a status line.
    pub(super) http09: bool,
    /// Read by the tolerant parser (httparse refused it).
    pub(super) lenient: bool,
}

pub(super) struct ResponseHead<'b> {
    pub(super) code: u16,
    pub(super) facts: Facts<'b>,
    pub(super) lenient: bool,
}

/// The parser settings: an observer records what servers and clients actually send, so
/// responses get httparse's tolerances (invalid header lines skipped, spaces before the colon,
/// folded lines). Requests get none: a request head httparse refuses goes to the tolerant
/// parser, which honours `Content-Length : 5` (httparse would skip that line silently and lose
/// the body's framing) and counts what it tolerated.
fn parser_config() -> ParserConfig {
    let mut config = ParserConfig::default();
    config
        .ignore_invalid_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    config
}

/// A request head, or what it is so far.
pub(super) fn request(head: &[u8]) -> HeadParse<RequestHead<'_>> {
    match with_headers(head, httparse_request) {
        Ok(Status::Complete((len, req))) => HeadParse::Complete(len, req),
        Ok(Status::Partial) => HeadParse::Partial,
        Err(()) => lenient::request(head),
    }
}

/// A response head, or what it is so far.
pub(super) fn response(head: &[u8]) -> HeadParse<ResponseHead<'_>> {
    match with_headers(head, httparse_response) {
        Ok(Status::Complete((len, resp))) => HeadParse::Complete(len, resp),
        Ok(Status::Partial) => HeadParse::Partial,
        Err(()) => lenient::response(head),
    }
}

/// A parsed head: its length and what it says.
type HeadStatus<T> = Status<(usize, T)>;

fn httparse_request<'b>(
    head: &'b [u8],
    headers: &mut [MaybeUninit<Header<'b>>],
) -> Result<HeadStatus<RequestHead<'b>>, httparse::Error> {
    let mut req = httparse::Request::new(&mut []);
    Ok(match parser_config().parse_request_with_uninit_headers(&mut req, head, headers)? {
        Status::Complete(len) => match (req.method, req.path) {
            (Some(method), Some(path)) => {
                let mut facts = Facts::default();
                for h in req.headers.iter() {
                    facts.add(h.name.as_bytes(), h.value);
                }
                let (method, path) = (method.as_bytes(), path.as_bytes());
                Status::Complete((len, RequestHead { method, path, facts, http09: false, lenient: false }))
            }
            _ => return Err(httparse::Error::Token),
        },
        Status::Partial => Status::Partial,
    })
}

fn httparse_response<'b>(
    head: &'b [u8],
    headers: &mut [MaybeUninit<Header<'b>>],
) -> Result<HeadStatus<ResponseHead<'b>>, httparse::Error> {
    let mut resp = httparse::Response::new(&mut []);
    Ok(match parser_config().parse_response_with_uninit_headers(&mut resp, head, headers)? {
        Status::Complete(len) => match resp.code {
            Some(code) => {
                let mut facts = Facts::default();
                for h in resp.headers.iter() {
                    facts.add(h.name.as_bytes(), h.value);
                }
                Status::Complete((len, ResponseHead { code, facts, lenient: false }))
            }
            None => return Err(httparse::Error::Status),
        },
        Status::Partial => Status::Partial,
    })
}

/// Runs a head parser with an uninitialised stack header array (initialising 96 headers cost
/// more than parsing a typical head), retrying with a heap array sized for the head when there
/// are more headers than that. `Err` means httparse refuses the bytes.
fn with_headers<'b, T>(
    head: &'b [u8],
    parse: impl Fn(&'b [u8], &mut [MaybeUninit<Header<'b>>]) -> Result<HeadStatus<T>, httparse::Error>,
) -> Result<HeadStatus<T>, ()> {
    let mut headers = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    match parse(head, &mut headers) {
        Ok(parsed) => Ok(parsed),
        Err(httparse::Error::TooManyHeaders) => {
            // A header line is at least "a:\n", 3 bytes.
            let mut headers: Vec<MaybeUninit<Header<'b>>> =
                std::iter::repeat_with(MaybeUninit::uninit).take(head.len() / 3 + 1).collect();
            parse(head, &mut headers).map_err(|_| ())
        }
        Err(_) => Err(()),
    }
}

/// Whether a head whose first line is complete (but whose end is not yet seen) still parses.
pub(super) fn plausible_head(buf: &[u8], role: Role) -> bool {
    let request = || !matches!(request(buf), HeadParse::Invalid);
    let response = || !matches!(response(buf), HeadParse::Invalid);
    match role {
        Role::Request => request(),
        Role::Response => response(),
        Role::Unknown => request() || response(),
    }
}

pub(super) fn head_kind(head: &[u8]) -> Option<Kind> {
    let start = head.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    Some(if head[start..].starts_with(b"HTTP/") { Kind::Response } else { Kind::Request })
}

/// Index just past the blank line that ends a head, searching for line ends from `from`.
pub(super) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    memchr::memchr_iter(b'\n', rest).map(|pos| from + pos).find_map(|lf| {
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => Some(lf + 3),
            _ => None,
        }
    })
}

/// Whether the bytes that failed to parse as a first message look like an attempt at HTTP/1
/// (a token and a space, or a status line) rather than another protocol (TLS, SSH, binary):
/// the former is a parse error on an HTTP connection, the latter a connection that is not HTTP.
pub(super) fn looks_like_http(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"HTTP/") {
        return true;
    }
    let token = bytes.iter().take(33).take_while(|&&b| lenient::is_tchar(b)).count();
    token > 0 && matches!(bytes.get(token), Some(b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_search() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(find_head_end(b"a\r\n\r\n", 3), None);
        assert_eq!(find_head_end(b"a\r\n\r\n", 2), Some(5));
    }

    #[test]
    fn http_or_not() {
        assert!(looks_like_http(b"GET HTTP/1.1\r\n"));
        assert!(looks_like_http(b"BREW /pot HTCPCP/1.0\r\n"));
        assert!(looks_like_http(b"HTTP/1.1 200 OK\r\n"));
        assert!(!looks_like_http(b"\x16\x03\x01\x00\xa5\x01"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH_9.6\r\n"));
    }
}
