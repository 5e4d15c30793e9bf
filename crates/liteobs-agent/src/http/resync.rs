//! Finding the next message start in a stream that lost step (after a gap, a parse error or
//! when the capture joined a connection midway): a strict check of start lines, stricter than
//! the head parsers, because a false positive inside a body costs a parse error. It decides
//! nothing about framing.

use super::conn::{Kind, Role};

/// Longest start line considered while resynchronising.
pub(super) const MAX_START_LINE: usize = 16 * 1024;
/// Methods accepted as a message start while resynchronising (any token is accepted when the
/// parser is in step with the stream).
pub(super) const RESYNC_METHODS: [&[u8]; 18] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"PURGE",
];

pub(super) enum Scan {
    /// A start line of this kind begins here.
    Found(usize, Kind),
    /// A candidate begins here but the bytes end before it can be judged.
    Partial(usize),
    None,
}

pub(super) fn find_start(bytes: &[u8], role: Role, max_line: usize) -> Scan {
    for (p, b) in bytes.iter().enumerate() {
        if !b.is_ascii_uppercase() {
            continue;
        }
        match check_start(&bytes[p..], role, max_line) {
            Verdict::Valid(kind) => return Scan::Found(p, kind),
            Verdict::Incomplete => return Scan::Partial(p),
            Verdict::Invalid => {}
        }
    }
    Scan::None
}

pub(super) enum Verdict {
    Valid(Kind),
    Incomplete,
    Invalid,
}

/// Is `s` the start of an HTTP/1.x message? Stricter than the head parser (known methods, a
/// full request line), because a false positive inside a body costs a parse error.
pub(super) fn check_start(s: &[u8], role: Role, max_line: usize) -> Verdict {
    if role != Role::Request {
        match match_template(s, b"HTTP/1.V DDD ") {
            Some(false) => {}
            Some(true) => return Verdict::Valid(Kind::Response),
            None => return Verdict::Incomplete,
        }
    }
    if role == Role::Response {
        return Verdict::Invalid;
    }
    let Some(sp) = s.iter().take(12).position(|&b| b == b' ') else {
        let prefix_of_method = RESYNC_METHODS.iter().any(|m| m.starts_with(s));
        return if s.len() < 12 && prefix_of_method { Verdict::Incomplete } else { Verdict::Invalid };
    };
    if !RESYNC_METHODS.contains(&&s[..sp]) {
        return Verdict::Invalid;
    }
    let target = &s[sp + 1..];
    let target_len = target.iter().take(max_line).position(|&b| !(0x21..0x7f).contains(&b) && b < 0x80);
    let Some(target_len) = target_len else {
        return if target.len() < max_line { Verdict::Incomplete } else { Verdict::Invalid };
    };
    if target_len == 0 || target[target_len] != b' ' {
        return Verdict::Invalid;
    }
    match match_template(&target[target_len + 1..], b"HTTP/1.VE") {
        Some(true) => Verdict::Valid(Kind::Request),
        Some(false) => Verdict::Invalid,
        None => Verdict::Incomplete,
    }
}

/// Matches `s` against a template where `V` is `0` or `1`, `D` a digit, ` ` (at the end of a
/// status line template) a space or line end, and `E` a line end (`\r\n` or `\n`).
/// `None` when `s` ends before the template could be decided.
fn match_template(s: &[u8], template: &[u8]) -> Option<bool> {
    for (i, &t) in template.iter().enumerate() {
        let b = *s.get(i)?;
        let ok = match t {
            b'V' => b == b'0' || b == b'1',
            b'D' => b.is_ascii_digit(),
            b' ' if i > 0 && i + 1 == template.len() => matches!(b, b' ' | b'\r' | b'\n'),
            b'E' if b == b'\r' => *s.get(i + 1)? == b'\n',
            b'E' => b == b'\n',
            t => b == t,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn start_line_checks() {
        let req = |s: &[u8]| matches!(check_start(s, Role::Request, 100), Verdict::Valid(Kind::Request));
        let resp = |s: &[u8]| matches!(check_start(s, Role::Response, 100), Verdict::Valid(Kind::Response));
        let incomplete = |s: &[u8]| matches!(check_start(s, Role::Unknown, 100), Verdict::Incomplete);
        assert!(req(b"GET / HTTP/1.1\r\n"));
        assert!(req(b"OPTIONS * HTTP/1.0\n"));
        assert!(!req(b"GET / HTTP/2.0\r\n"));
        assert!(!req(b"GET  / HTTP/1.1\r\n"));
        assert!(!req(b"FETCH / HTTP/1.1\r\n"));
        assert!(!req(b"HTTP/1.1 200 OK\r\n"));
        assert!(resp(b"HTTP/1.1 200 OK"));
        assert!(resp(b"HTTP/1.0 404\r\n"));
        assert!(!resp(b"HTTP/1.1 20x"));
        assert!(!resp(b"GET / HTTP/1.1\r\n"));
        assert!(incomplete(b"GE"));
        assert!(incomplete(b"GET /abc"));
        assert!(incomplete(b"GET /abc HTTP/1.1\r"));
        assert!(incomplete(b"HTTP/1.1 2"));
        assert!(matches!(check_start(b"GET /x HTTP/1.1\r\n", Role::Response, 100), Verdict::Invalid));
        // A target longer than the line limit is not a start line.
        let long = [&b"GET /"[..], &[b'a'; 200]].concat();
        assert!(matches!(check_start(&long, Role::Request, 100), Verdict::Invalid));
    }
}
