//! Routes: the path template of a request, so that `/item/123` and `/item/456?x=1` count as one
//! endpoint, `/item/{id}`.
//!
//! A route is built from the request-target: the query string and fragment are dropped, an
//! absolute-form target (`http://host/p`, as proxies receive) keeps only its path, and each
//! segment between `/` is kept or replaced by a placeholder naming what it is:
//!
//! | segment | becomes |
//! |---|---|
//! | digits only (`123`), or a signed or decimal number | `{id}` |
//! | a UUID (`8-4-4-4-12` hex digits) | `{uuid}` |
//! | 16 or more hex digits with at least one digit (`5f2b…`) | `{hex}` |
//! | a date: `2026-12-01`, `20261201`, or an RFC 3339 time | `{date}` |
//! | an e-mail address | `{email}` |
//! | a token: 16 or more characters mixing letters and digits with no vowel-like run of words (base64, ids like `a8Kf0zQ…`) | `{token}` |
//!
//! Everything else (words, `v1`, `api`, `index.html`, short codes such as `en-GB`) is kept as
//! it is. User patterns ([`Patterns`], `-route /users/{name}/repos`) are tried first: the first
//! that matches gives the route, its `{...}` segments matching any one segment and a final
//! `{...*}` any rest. [`CardinalityLimit`] bounds the number of distinct routes per server, as
//! Beyla/OBI bound path cardinality: past the bound, new routes are folded into a wildcard and
//! counted.
//!
//! The heuristic was written for this project after reading how Beyla's route heuristic and
//! odigos' URL templating classify segments; the thresholds are ours and pinned by the tests.

use std::collections::{HashMap, HashSet};

/// The route of a request-target under `patterns`: the first matching pattern, else the
/// heuristic template ([`template`]).
pub fn route(target: &str, patterns: &Patterns) -> String {
    let path = path_of(target);
    patterns.matching(path).unwrap_or_else(|| template(path))
}

/// The path of a request-target: without query string or fragment, and without scheme and
/// authority for an absolute-form target. `*` (OPTIONS) and authority-form (CONNECT) targets,
/// which have no path, are kept whole.
pub fn path_of(target: &str) -> &str {
    let mut path = target.split(['?', '#']).next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("http://").or_else(|| path.strip_prefix("https://")) {
        path = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    path
}

/// The heuristic template of a path (already without its query string: [`path_of`]).
pub fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(classify(segment).unwrap_or(segment));
    }
    out
}

/// The placeholder a segment is replaced by, or `None` to keep it.
fn classify(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return None;
    }
    // Before numbers: `20261201` is a date.
    if is_date(s) {
        return Some("{date}");
    }
    if is_number(s) {
        return Some("{id}");
    }
    if is_uuid(s) {
        return Some("{uuid}");
    }
    if s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b.is_ascii_digit()) {
        return Some("{hex}");
    }
    if is_email(s) {
        return Some("{email}");
    }
    if is_token(s) {
        return Some("{token}");
    }
    None
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `YYYY-MM-DD` (optionally followed by `T` and a time), or `YYYYMMDD`, with a plausible month
/// and day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let plausible = |y: Option<u32>, m: Option<u32>, d: Option<u32>| {
        matches!((y, m, d), (Some(1900..=2999), Some(1..=12), Some(1..=31)))
    };
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && plausible(num(0..4), num(5..7), num(8..10)) {
        return b.len() == 10 || (b[10] == b'T' || b[10] == b't');
    }
    b.len() == 8 && plausible(num(0..4), num(4..6), num(6..8))
}

fn is_email(s: &str) -> bool {
    let s = s.replace("%40", "@");
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// A long segment that mixes letters and digits the way generated ids and base64 do, rather
/// than words: at least 16 characters of `[A-Za-z0-9_=-]`, with at least 3 digits and a letter,
/// or (base64url) upper and lower case with a digit and long runs of neither words nor
/// separators.
fn is_token(s: &str) -> bool {
    if s.len() < 16 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'.'))
    {
        return false;
    }
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let letters = s.bytes().filter(u8::is_ascii_alphabetic).count();
    let upper = s.bytes().filter(u8::is_ascii_uppercase).count();
    let lower = s.bytes().filter(u8::is_ascii_lowercase).count();
    // Words are separated: a slug such as `how-to-install-rust-2024` has separators every few
    // letters; a token has long unbroken runs.
    let longest_run = s.split(['-', '_', '.']).map(str::len).max().unwrap_or(0);
    (digits >= 3 && letters > 0 && longest_run >= 12)
        || (upper >= 2 && lower >= 2 && digits >= 1 && longest_run >= 16)
}

/// User route patterns, tried in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    segments: Vec<PatternSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Any,
    /// `{name*}` at the end: the rest, one segment or more.
    Rest,
}

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("route pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("route pattern {0:?} has a '{{...*}}' segment before its end")]
    RestNotLast(String),
    #[error(
        "route pattern {0:?} has an unclosed or misplaced '{{' or '}}' (a placeholder is a whole segment: /users/{{name}})"
    )]
    Brace(String),
    #[error("route pattern {0:?} has a query string; routes are paths")]
    Query(String),
}

impl Patterns {
    /// Parses patterns such as `/users/{name}/repos` and `/static/{path*}`.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Patterns, PatternError> {
        let mut patterns = Vec::new();
        for text in texts {
            let err = |f: fn(String) -> PatternError| f(text.to_owned());
            if !text.starts_with('/') {
                return Err(err(PatternError::NotAbsolute));
            }
            if text.contains(['?', '#']) {
                return Err(err(PatternError::Query));
            }
            let parts: Vec<&str> = text.split('/').skip(1).collect();
            let mut segments = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if name.contains(['{', '}']) || name.trim_end_matches('*').is_empty() => {
                        return Err(err(PatternError::Brace));
                    }
                    Some(name) if name.ends_with('*') => {
                        if i + 1 != parts.len() {
                            return Err(err(PatternError::RestNotLast));
                        }
                        PatternSegment::Rest
                    }
                    Some(_) => PatternSegment::Any,
                    None if part.contains(['{', '}']) => return Err(err(PatternError::Brace)),
                    None => PatternSegment::Literal((*part).to_owned()),
                };
                segments.push(segment);
            }
            patterns.push(Pattern { text: text.to_owned(), segments });
        }
        Ok(Patterns { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first pattern `path` matches, as its text.
    pub fn matching(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        if !path.starts_with('/') {
            return None;
        }
        self.patterns.iter().find(|p| p.matches(&parts)).map(|p| p.text.clone())
    }
}

impl Pattern {
    fn matches(&self, parts: &[&str]) -> bool {
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                PatternSegment::Rest => return parts.len() > i && parts[i..].iter().any(|p| !p.is_empty()),
                PatternSegment::Any => {
                    if parts.get(i).is_none_or(|p| p.is_empty()) {
                        return false;
                    }
                }
                PatternSegment::Literal(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == parts.len()
    }
}

/// Bounds the distinct routes of each server: the first `max_routes` distinct routes a server
/// shows are kept; a new one past the bound is folded into its first segment followed by `/*`
/// (`/a/b/c` → `/a/*`; `/*` when even that would be new) and counted. The bound on servers
/// (`max_servers`) keeps the whole in bounded memory: a server past it gets the routes folded
/// the same way.
#[derive(Debug, Clone)]
pub struct CardinalityLimit {
    max_routes: usize,
    max_servers: usize,
    seen: HashMap<String, HashSet<String>>,
    folded: u64,
}

/// The route every folded route of a server whose first segment is also past the bound gets.
pub const FOLDED: &str = "/*";

impl CardinalityLimit {
    pub fn new(max_routes: usize, max_servers: usize) -> CardinalityLimit {
        CardinalityLimit { max_routes, max_servers, seen: HashMap::new(), folded: 0 }
    }

    /// Routes folded so far.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Remembers a route already stored for `server` (at start, from the store), within the bound.
    pub fn learn(&mut self, server: &str, route: &str) {
        if self.seen.len() >= self.max_servers && !self.seen.contains_key(server) {
            return;
        }
        let routes = self.seen.entry(server.to_owned()).or_default();
        if routes.len() < self.max_routes {
            routes.insert(route.to_owned());
        }
    }

    /// `route` for `server` (any stable key: `ip:port`), or its fold when the server already
    /// has `max_routes` others.
    pub fn admit(&mut self, server: &str, route: String) -> String {
        if !self.seen.contains_key(server) && self.seen.len() >= self.max_servers {
            self.folded += 1;
            return fold(&route);
        }
        let routes = self.seen.entry(server.to_owned()).or_default();
        if routes.contains(&route) {
            return route;
        }
        if routes.len() < self.max_routes {
            routes.insert(route.clone());
            return route;
        }
        self.folded += 1;
        let folded = fold(&route);
        if routes.contains(&folded) { folded } else { FOLDED.to_owned() }
    }
}

/// `/a/b/c` → `/a/*`; a route of one segment → `/*`.
fn fold(route: &str) -> String {
    let mut parts = route.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(""), Some(first), Some(_)) if !first.is_empty() => format!("/{first}/*"),
        _ => FOLDED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str) -> String {
        route(path, &Patterns::default())
    }

    #[test]
    fn ids_and_query_strings_go() {
        assert_eq!(t("/item/123"), "/item/{id}");
        assert_eq!(t("/item/456?x=1"), "/item/{id}");
        assert_eq!(t("/item/456#top"), "/item/{id}");
        assert_eq!(t("/price/-12.50"), "/price/{id}");
        assert_eq!(t("/users/42/orders/7"), "/users/{id}/orders/{id}");
        assert_eq!(t("/"), "/");
        assert_eq!(t(""), "");
        assert_eq!(t("/a//b/"), "/a//b/");
        assert_eq!(t("http://example.test/item/9?q"), "/item/{id}");
        assert_eq!(t("http://example.test"), "/");
        assert_eq!(t("*"), "*");
        assert_eq!(t("example.test:443"), "example.test:443");
    }

    #[test]
    fn uuids_hex_dates_and_emails() {
        assert_eq!(t("/o/8d3c9f4e-1b2a-4c5d-9e8f-0a1b2c3d4e5f/x"), "/o/{uuid}/x");
        assert_eq!(t("/o/8D3C9F4E-1B2A-4C5D-9E8F-0A1B2C3D4E5F"), "/o/{uuid}");
        assert_eq!(t("/commit/5f2b8c0d9e1a3b4c6d7e8f90"), "/commit/{hex}");
        assert_eq!(t("/blob/deadbeefdeadbeef"), "/blob/deadbeefdeadbeef", "no digit: a word-like hex string");
        assert_eq!(t("/c/abc123"), "/c/abc123", "short: kept");
        assert_eq!(t("/reports/2026-12-01"), "/reports/{date}");
        assert_eq!(t("/reports/20261201/pdf"), "/reports/{date}/pdf");
        assert_eq!(t("/at/2026-12-01T10:00:00Z"), "/at/{date}");
        assert_eq!(t("/reports/2026-13-01"), "/reports/2026-13-01", "no month 13");
        assert_eq!(t("/users/ann@example.com"), "/users/{email}");
        assert_eq!(t("/users/ann%40example.com/x"), "/users/{email}/x");
    }

    #[test]
    fn tokens_go_but_words_versions_and_slugs_stay() {
        assert_eq!(t("/s/a8Kf0zQ1xY7bN2mP"), "/s/{token}");
        assert_eq!(t("/s/eyJhbGciOiJIUzI1NiJ9"), "/s/{token}");
        assert_eq!(t("/s/k3j4h5g6f7d8s9a0"), "/s/{token}");
        assert_eq!(t("/dl/build_20240112_x86_64"), "/dl/build_20240112_x86_64", "words between separators");
        assert_eq!(t("/api/v1/users"), "/api/v1/users");
        assert_eq!(t("/docs/how-to-install-rust-2024"), "/docs/how-to-install-rust-2024");
        assert_eq!(t("/static/index.html"), "/static/index.html");
        assert_eq!(t("/en-GB/catalogue"), "/en-GB/catalogue");
        assert_eq!(t("/internationalization"), "/internationalization");
        assert_eq!(t("/h2/http2"), "/h2/http2");
    }

    #[test]
    fn user_patterns_win_in_their_order() {
        let p = Patterns::parse(["/users/{name}/repos", "/static/{path*}", "/users/{name}/{rest*}"]).unwrap();
        assert_eq!(route("/users/ann/repos?page=2", &p), "/users/{name}/repos");
        assert_eq!(route("/users/ann/stars", &p), "/users/{name}/{rest*}");
        assert_eq!(route("/static/css/site.css", &p), "/static/{path*}");
        assert_eq!(route("/static/", &p), "/static/", "a rest needs a segment");
        assert_eq!(route("/users//repos", &p), "/users//repos", "a placeholder needs a segment");
        assert_eq!(route("/users/42", &p), "/users/{id}", "no pattern: the heuristic");
    }

    #[test]
    fn bad_patterns_are_named() {
        assert_eq!(Patterns::parse(["users"]).unwrap_err(), PatternError::NotAbsolute("users".into()));
        assert!(matches!(Patterns::parse(["/a/{x*}/b"]), Err(PatternError::RestNotLast(_))));
        assert!(matches!(Patterns::parse(["/a/{x"]), Err(PatternError::Brace(_))));
        assert!(matches!(Patterns::parse(["/a/x{y}"]), Err(PatternError::Brace(_))));
        assert!(matches!(Patterns::parse(["/a/{}"]), Err(PatternError::Brace(_))));
        assert!(matches!(Patterns::parse(["/a?b"]), Err(PatternError::Query(_))));
    }

    #[test]
    fn cardinality_is_bounded_per_server_and_the_excess_counted() {
        let mut limit = CardinalityLimit::new(3, 2);
        for r in ["/a/1", "/a/2", "/b"] {
            assert_eq!(limit.admit("s1", r.into()), r);
        }
        assert_eq!(limit.admit("s1", "/a/1".into()), "/a/1", "known routes stay");
        assert_eq!(limit.admit("s1", "/c/x".into()), FOLDED, "its fold /c/* is not known either");
        assert_eq!(limit.folded(), 1);
        assert_eq!(limit.admit("s2", "/c/x".into()), "/c/x", "another server has its own bound");
        assert_eq!(limit.admit("s3", "/c/x".into()), "/c/*", "past the server bound: folded");
        assert_eq!(limit.folded(), 2);
        let mut limit = CardinalityLimit::new(2, 10);
        limit.learn("s", "/x/*");
        limit.learn("s", "/y");
        assert_eq!(limit.admit("s", "/x/new".into()), "/x/*", "folded into a known wildcard");
    }

    proptest::proptest! {
        /// Any target, however odd: no panic, as many segments as its path, and a template of a
        /// template is itself.
        #[test]
        fn templates_are_total_and_stable(target in "\\PC{0,40}|(/[a-zA-Z0-9@%._-]{0,20}){0,5}") {
            let once = t(&target);
            proptest::prop_assert_eq!(once.split('/').count(), path_of(&target).split('/').count());
            proptest::prop_assert_eq!(t(&once), once.clone());
        }
    }
}
