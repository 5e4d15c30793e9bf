//! Routes: the path template of a request, so that `/item/123` and `/item/456?x=1` count as one
//! endpoint, `/item/{id}`.
//!
//! A route is built from the request-target: the query string and fragment are dropped, an
//! absolute-form target (`http://host/p`, as proxies receive) keeps only its path, and each
//! segment between `/` is kept or replaced by a placeholder naming what it is, tried in this
//! order:
//!
//! | segment | becomes |
//! |---|---|
//! | a date: `2026-12-01`, `20261201`, or an RFC 3339 time | `{date}` |
//! | digits only (`123`), or a signed or decimal number | `{id}` |
//! | a UUID (`8-4-4-4-12` hex digits) | `{uuid}` |
//! | 16 or more hex digits with a digit among them (also in `-` groups), or 7 to 15 with two digits and a letter (`5f2b8c0`) | `{hex}` |
//! | an e-mail address (`@` raw or `%40`) | `{email}` |
//! | a token: 16 or more characters with a run of 12 unbroken by `-_.` mixing letters and digits (base64, `a8Kf0zQ…`), or 12 or more letters with under a fifth vowels (`kzqxjvwt…`) | `{token}` |
//! | anything else with a run of 4 or more digits (`INV123456`, `order-000123`) | `{id}` |
//!
//! Everything else (words, `v1`, `api`, `index.html`, `404.html`, short codes such as `en-GB`,
//! slugs of words) is kept as it is. User patterns ([`Patterns`], `-route
//! /users/{name}/repos`) are tried first: the first that matches gives the route, its `{...}`
//! segments matching any one segment and a final `{...*}` any rest. [`CardinalityLimit`]
//! bounds the distinct routes per server and per segment, as OBI's
//! `max_path_segment_cardinality` does: past the bounds, new routes are folded into a wildcard
//! (`/users/*`) and counted.
//!
//! How this compares with what it was modelled on (read in Beyla's `pkg/transform/route` and
//! the OBI and odigos documentation): Beyla's heuristic replaces every segment with a
//! non-letter past its second character, and letter-only segments its bigram model calls
//! gibberish, by `*`, and keeps at most 10 segments. That catches more ids but also merges
//! `index.html` with `app.js` and `http2` with `s3cr3t`; here each kind has its own name, a
//! segment with a few digits in a word stays, and the miss that remains (an id made of plain
//! letters, a user name) is what the per-segment bound catches, as OBI's low-cardinality mode
//! does. The thresholds are ours and pinned by the tests' table.
//!
//! Not for I/O or for shared state: a server keeps one [`CardinalityLimit`] behind its own
//! lock.

use std::collections::HashMap;
use std::hash::Hash;

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

/// The placeholder a segment is replaced by, or `None` to keep it. Allocates nothing: it runs
/// for every segment of every exchange the server stores.
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
    if is_hex(s) {
        return Some("{hex}");
    }
    if is_email(s) {
        return Some("{email}");
    }
    if is_token(s) || is_gibberish(s) {
        return Some("{token}");
    }
    // Last: what a word carries with a serial number (`INV123456`, `order-000123`,
    // `build_20240112_x86_64`) is one endpoint's data, as Beyla's heuristic also takes any
    // segment with digits past its second character to be.
    if longest_digit_run(s) >= 4 {
        return Some("{id}");
    }
    None
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Hex digits only, with digits among them: 16 or more (hashes, trace ids, ObjectIds), or 7 to
/// 15 with at least two digits and a letter (short commit hashes such as `5f2b8c0`). Words
/// spelt in hex letters (`deadbeef`, `facade`) have no digits and stay.
///
/// Groups joined by `-` count as one (`8d3c9f4e-1b2a-4c5d`, an id that is not quite a UUID).
fn is_hex(s: &str) -> bool {
    if s.len() < 7 || s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return false;
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return false;
    }
    let hex = s.bytes().filter(|b| *b != b'-').count();
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if hex >= 16 { digits > 0 } else { hex == s.len() && digits >= 2 && digits < hex }
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

/// `local@domain.tld`, the `@` raw or percent-encoded (`%40`).
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@').or_else(|| s.split_once("%40")) else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// The longest run between the separators words are joined with (`-`, `_`, `.`).
fn longest_run(s: &str) -> usize {
    s.split(['-', '_', '.']).map(str::len).max().unwrap_or(0)
}

/// A long segment that mixes letters and digits the way generated ids and base64 do, rather
/// than words: at least 16 characters of `[A-Za-z0-9_=.-]` with an unbroken run of 12 or more,
/// and either 3 digits and a letter, or (base64url) upper and lower case with a digit and a
/// run of 16.
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
    let longest_run = longest_run(s);
    (digits >= 3 && letters > 0 && longest_run >= 12)
        || (upper >= 2 && lower >= 2 && digits >= 1 && longest_run >= 16)
}

/// Letters that are not words: 12 or more letters in one run with fewer than a fifth of them
/// vowels (`a e i o u`). Words of that length have a third or more (`internationalization`
/// 45%, `xmlhttprequest` 21%); random lowercase ids have about a fifth. Beyla asks a letter
/// bigram model; this cheaper test catches fewer (about half of random 16-letter ids) and
/// leaves words alone, which matters more: a word wrongly replaced merges two endpoints, an id
/// missed is caught by the cardinality bound.
fn is_gibberish(s: &str) -> bool {
    if s.len() < 12 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    let vowels =
        s.bytes().filter(|b| matches!(b.to_ascii_lowercase(), b'a' | b'e' | b'i' | b'o' | b'u')).count();
    vowels * 5 < s.len()
}

fn longest_digit_run(s: &str) -> usize {
    let (mut run, mut max) = (0, 0);
    for b in s.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        max = max.max(run);
    }
    max
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
        if self.patterns.is_empty() || !path.starts_with('/') {
            return None;
        }
        let parts: Vec<&str> = path.split('/').skip(1).collect();
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

/// Bounds the distinct routes of each server, as OBI's `max_path_segment_cardinality` bounds
/// the values seen in one path segment, and folds the excess into a wildcard.
///
/// Each server's routes are remembered as a tree of segments. A route is kept as it is when it
/// is already known, or when it can be added within three bounds: at most
/// [`Bounds::segment_values`] distinct values after any one prefix (so `/users/ann`,
/// `/users/bob`, ... stop at `/users/*` once `/users/` has had that many, however few routes
/// the server has), at most [`Bounds::routes`] routes per server, and at most
/// [`Bounds::total`] routes over all servers (with [`MAX_REMEMBERED_BYTES`] per route, this
/// bounds the memory). Otherwise the route is cut at the first segment that cannot be added
/// and ends in `*` there (`/users/zed/repos` → `/users/*`; `/*` when even its first segment is
/// new): the folded route, which is always admitted (one per prefix, outside the bounds), and
/// [`CardinalityLimit::folded`] counts it.
///
/// Which routes are kept depends on the order they come in: the first ones win. A server
/// feeds it in upload order, and [`CardinalityLimit::learn`] replays what a store already holds
/// at start, so the bound survives a restart.
#[derive(Debug, Clone)]
pub struct CardinalityLimit<K = String> {
    bounds: Bounds,
    servers: HashMap<K, Tree>,
    /// Routes remembered over all servers (folded wildcards not counted).
    total: usize,
    folded: u64,
}

/// The bounds of a [`CardinalityLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Distinct routes per server (`-max-routes`).
    pub routes: usize,
    /// Distinct values of a segment after any one prefix (`-max-route-segment-values`).
    pub segment_values: usize,
    /// Routes over all servers.
    pub total: usize,
}

impl Bounds {
    pub const DEFAULT: Bounds = Bounds { routes: 1000, segment_values: 100, total: 100_000 };
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::DEFAULT
    }
}

/// Longest route remembered: a route longer than this is cut, like one past a bound, at the
/// segment that passes it.
pub const MAX_REMEMBERED_BYTES: usize = 512;

/// The route every route of a server is folded into when even its first segment is new.
pub const FOLDED: &str = "/*";

/// The last segment of a folded route.
const WILDCARD: &str = "*";

#[derive(Debug, Clone, Default)]
struct Tree {
    root: Node,
    routes: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: HashMap<String, Node>,
    /// A remembered route ends here.
    end: bool,
}

impl<K: Hash + Eq + Clone> Default for CardinalityLimit<K> {
    fn default() -> Self {
        CardinalityLimit::new(Bounds::DEFAULT)
    }
}

/// `K` is how a server is named: any stable key (the server uses its `ip:port`).
impl<K: Hash + Eq + Clone> CardinalityLimit<K> {
    pub fn new(bounds: Bounds) -> CardinalityLimit<K> {
        CardinalityLimit { bounds, servers: HashMap::new(), total: 0, folded: 0 }
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// How many times [`CardinalityLimit::admit`] answered a fold (not counting [`learn`]).
    ///
    /// [`learn`]: CardinalityLimit::learn
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Routes remembered over all servers.
    pub fn remembered(&self) -> usize {
        self.total
    }

    /// Remembers a route already stored for `server` (at start, from the store), within the
    /// bounds; not counted as folded when it does not fit.
    pub fn learn(&mut self, server: &K, route: &str) {
        let _ = self.walk(server, route);
    }

    /// `route` for `server`, or its fold when it does not fit the
    /// bounds (see the type's docs). Allocates only for a route it has not seen.
    pub fn admit(&mut self, server: &K, route: String) -> String {
        match self.walk(server, &route) {
            None => route,
            Some(folded) => {
                self.folded += 1;
                folded
            }
        }
    }

    /// Finds or adds `route` under `server`; `Some(fold)` when it does not fit.
    fn walk(&mut self, server: &K, route: &str) -> Option<String> {
        let bounds = self.bounds;
        let room = self.total < bounds.total;
        if !self.servers.contains_key(server) {
            if !room {
                return Some(FOLDED.to_owned());
            }
            self.servers.insert(server.clone(), Tree::default());
        }
        let tree = self.servers.get_mut(server)?;
        let room = room && tree.routes < bounds.routes;
        let mut node = &mut tree.root;
        let mut kept = 0;
        let mut segments = route.split('/').peekable();
        while let Some(segment) = segments.next() {
            let last = segments.peek().is_none();
            if segment == WILDCARD && last {
                // A folded route, learnt or sent as such: outside the bounds.
                node.children.entry(WILDCARD.to_owned()).or_default().end = true;
                return None;
            }
            if !node.children.contains_key(segment) {
                let fits = room
                    && node.children.len() < bounds.segment_values
                    && kept + segment.len() < MAX_REMEMBERED_BYTES;
                if !fits {
                    node.children.entry(WILDCARD.to_owned()).or_default().end = true;
                    return Some(fold(route, kept));
                }
                node.children.insert(segment.to_owned(), Node::default());
            }
            kept += segment.len() + 1;
            node = node.children.get_mut(segment)?;
        }
        if !node.end {
            if !room {
                // Known as a prefix of other routes only: folded at its last segment.
                let cut = route.rfind('/').map_or(0, |i| i + 1);
                return Some(fold(route, cut));
            }
            node.end = true;
            tree.routes += 1;
            self.total += 1;
        }
        None
    }
}

/// `route` cut before byte `at` (the start of a segment) and ended with `*`: `/a/b/c` cut at
/// `/a/` is `/a/*`. A route whose first segment is cut is [`FOLDED`].
fn fold(route: &str, at: usize) -> String {
    match route.get(..at) {
        Some(prefix) if prefix.len() > 1 && prefix.ends_with('/') => format!("{prefix}{WILDCARD}"),
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

    /// One table per kind of segment: what is replaced, and the look-alikes that are kept.
    #[test]
    fn each_kind_of_segment() {
        let table: &[(&str, &str, &str)] = &[
            // numbers
            ("/item/123", "/item/{id}", "digits"),
            ("/price/-12.50", "/price/{id}", "signed decimal"),
            ("/v/1.2.3", "/v/1.2.3", "a version is not one number"),
            ("/orders/ORD-2024-000123", "/orders/{id}", "a serial number in a word"),
            ("/invoices/INV123456", "/invoices/{id}", "letters then digits"),
            ("/dl/build_20240112_x86_64", "/dl/{id}", "a build stamp"),
            ("/api/v1/users", "/api/v1/users", "short versions stay"),
            ("/errors/404.html", "/errors/404.html", "three digits in a word stay"),
            ("/h2/http2", "/h2/http2", ""),
            // UUIDs
            ("/o/8d3c9f4e-1b2a-4c5d-9e8f-0a1b2c3d4e5f/x", "/o/{uuid}/x", ""),
            ("/o/8D3C9F4E-1B2A-4C5D-9E8F-0A1B2C3D4E5F", "/o/{uuid}", "upper case"),
            (
                "/o/8d3c9f4e-1b2a-4c5d-9e8f-0a1b2c3d4e5",
                "/o/{hex}",
                "one digit short of a UUID: hex in groups",
            ),
            ("/o/dead-beef-cafe-babe", "/o/dead-beef-cafe-babe", "hex words without digits"),
            // hex
            ("/commit/5f2b8c0d9e1a3b4c6d7e8f90", "/commit/{hex}", "long hex"),
            ("/commit/5f2b8c0", "/commit/{hex}", "a short commit hash"),
            ("/trace/4bf92f3577b34da6a3ce929d0e0e4736", "/trace/{hex}", "a trace id"),
            ("/blob/deadbeefdeadbeef", "/blob/deadbeefdeadbeef", "no digit: a word-like hex string"),
            ("/c/abc123", "/c/abc123", "short: kept"),
            ("/c/facade", "/c/facade", "a word in hex letters"),
            // dates
            ("/reports/2026-12-01", "/reports/{date}", ""),
            ("/reports/20261201/pdf", "/reports/{date}/pdf", "compact"),
            ("/at/2026-12-01T10:00:00Z", "/at/{date}", "RFC 3339"),
            ("/reports/2026-13-01", "/reports/{id}", "no month 13: then a serial number"),
            // e-mail addresses
            ("/users/ann@example.com", "/users/{email}", ""),
            ("/users/ann%40example.com/x", "/users/{email}/x", "percent-encoded @"),
            ("/users/@ann", "/users/@ann", "a handle is not an address"),
            ("/users/a@b", "/users/a@b", "no dot in the domain"),
            // high-entropy segments
            ("/s/a8Kf0zQ1xY7bN2mP", "/s/{token}", "base62"),
            ("/s/eyJhbGciOiJIUzI1NiJ9", "/s/{token}", "base64url (a JWT header)"),
            ("/s/k3j4h5g6f7d8s9a0", "/s/{token}", ""),
            ("/p/kzqxjvwtplmnbrhd", "/p/{token}", "letters without vowels"),
            ("/docs/how-to-install-rust-2024", "/docs/{id}", "a slug with a year"),
            ("/docs/how-to-install-rust", "/docs/how-to-install-rust", "a slug of words"),
            ("/static/index.html", "/static/index.html", ""),
            ("/en-GB/catalogue", "/en-GB/catalogue", ""),
            ("/internationalization", "/internationalization", "a long word"),
            ("/xmlhttprequest", "/xmlhttprequest", "a long word with few vowels"),
            ("/getUserPreferencesById", "/getUserPreferencesById", "camel case"),
        ];
        for (path, want, why) in table {
            assert_eq!(t(path), *want, "{path} ({why})");
        }
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

    fn limit(routes: usize, segment_values: usize, total: usize) -> CardinalityLimit<&'static str> {
        CardinalityLimit::new(Bounds { routes, segment_values, total })
    }

    #[test]
    fn cardinality_is_bounded_per_server_and_the_excess_folded_and_counted() {
        let mut limit = limit(3, 100, 100);
        for r in ["/a/1", "/a/2", "/b"] {
            assert_eq!(limit.admit(&"s1", r.into()), r);
        }
        assert_eq!(limit.admit(&"s1", "/a/1".into()), "/a/1", "known routes stay");
        assert_eq!(limit.admit(&"s1", "/a/3".into()), "/a/*", "folded under the known prefix");
        assert_eq!(limit.admit(&"s1", "/c/x".into()), FOLDED, "its first segment is new too");
        assert_eq!(limit.admit(&"s1", "/a/*".into()), "/a/*", "a fold is a route like any other");
        assert_eq!(limit.admit(&"s1", "/a".into()), "/*", "a known prefix but not a route");
        assert_eq!(limit.folded(), 3);
        assert_eq!(limit.admit(&"s2", "/c/x".into()), "/c/x", "another server has its own bound");
        assert_eq!(limit.remembered(), 4);
    }

    #[test]
    fn the_values_of_one_segment_are_bounded_whatever_the_server_has() {
        let mut limit = limit(1000, 2, 1000);
        assert_eq!(limit.admit(&"s", "/users/ann/repos".into()), "/users/ann/repos");
        assert_eq!(limit.admit(&"s", "/users/bob/repos".into()), "/users/bob/repos");
        assert_eq!(limit.admit(&"s", "/users/cy/repos".into()), "/users/*");
        assert_eq!(limit.admit(&"s", "/users/ann/stars".into()), "/users/ann/stars", "below ann: room");
        assert_eq!(limit.admit(&"s", "/teams".into()), "/teams");
        assert_eq!(limit.folded(), 1);
    }

    #[test]
    fn the_total_and_the_length_are_bounded() {
        let mut limit = limit(10, 10, 2);
        assert_eq!(limit.admit(&"s1", "/a".into()), "/a");
        assert_eq!(limit.admit(&"s2", "/a".into()), "/a");
        assert_eq!(limit.admit(&"s2", "/b".into()), FOLDED, "the total is reached");
        assert_eq!(limit.admit(&"s3", "/a".into()), FOLDED, "a new server too");
        assert_eq!(limit.folded(), 2);
        let mut limit = CardinalityLimit::default();
        let long = format!("/files/{}", "x".repeat(MAX_REMEMBERED_BYTES));
        assert_eq!(limit.admit(&"s", long), "/files/*");
    }

    #[test]
    fn learnt_routes_count_towards_the_bound_but_not_as_folded() {
        let mut limit = limit(2, 100, 100);
        limit.learn(&"s", "/x/*");
        limit.learn(&"s", "/y");
        limit.learn(&"s", "/z");
        limit.learn(&"s", "/w");
        assert_eq!(limit.folded(), 0);
        assert_eq!(limit.admit(&"s", "/y".into()), "/y");
        assert_eq!(limit.admit(&"s", "/w".into()), "/*", "past the bound when learnt");
        assert_eq!(limit.admit(&"s", "/x/new".into()), "/x/*", "folded into a known wildcard");
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
