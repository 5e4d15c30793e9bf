//! The `-server` URL the agent uploads to and the client queries: `SCHEME://HOST[:PORT][/PREFIX]`.
//!
//! One parser for both programs, so that a URL one accepts the other accepts too, and every
//! mistake is named for what it is (`http://` has no host; `localhost:8080` has no scheme). It
//! accepts `https` as a scheme and leaves it to the caller to say whether it can speak TLS.
//!
//! Not a general URL parser: a LiteObs base URL has no user info, query or fragment, and its
//! host is a DNS name, an IPv4 address or a bracketed IPv6 address, in ASCII.

use std::fmt;
use std::net::Ipv6Addr;

/// What the user writes for `HOST[:PORT]` in the messages below.
const FORM: &str = "http://HOST[:PORT]";

/// The URL schemes LiteObs knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A checked server base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    scheme: Scheme,
    /// DNS name or IP address, without brackets.
    host: String,
    port: Option<u16>,
    /// `""` or `/a/b`: never ends in `/`.
    prefix: String,
}

/// Why a `-server` value is not a usable base URL; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerUrlError {
    #[error("empty; write {FORM}")]
    Empty,
    #[error("no scheme; write {0}")]
    NoScheme(String),
    #[error("not a URL; write {FORM}")]
    Malformed,
    #[error("unsupported scheme {0:?}; use http:// or https://")]
    Scheme(String),
    #[error("no host; write {FORM}")]
    NoHost,
    #[error("user info (USER@HOST) is not supported; give the token with -token")]
    UserInfo,
    #[error("a query string or fragment (? or #) is not allowed; the base URL ends at its path")]
    QueryOrFragment,
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    #[error("an IPv6 address goes in brackets: http://[::1]:8080")]
    UnbracketedIpv6,
    #[error("[{0}] is not an IPv6 address")]
    Ipv6(String),
    #[error("host {0:?} may only have ASCII letters, digits, '-', '_' and '.'")]
    Host(String),
    #[error("the path may only have printable ASCII characters (percent-encode the others)")]
    Path,
}

impl ServerUrl {
    /// Parses `raw` (surrounding white space ignored, a trailing `/` dropped).
    pub fn parse(raw: &str) -> Result<ServerUrl, ServerUrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ServerUrlError::Empty);
        }
        let (scheme, rest) = match raw.split_once("://") {
            Some((scheme, rest)) if is_scheme(scheme) => (scheme.to_ascii_lowercase(), rest),
            _ => {
                let lower = raw.to_ascii_lowercase();
                if lower.starts_with("http:") || lower.starts_with("https:") {
                    return Err(ServerUrlError::Malformed);
                }
                return Err(ServerUrlError::NoScheme(format!("http://{raw}")));
            }
        };
        let scheme = match scheme.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(ServerUrlError::Scheme(scheme)),
        };
        if rest.contains(['?', '#']) {
            return Err(ServerUrlError::QueryOrFragment);
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.contains('@') {
            return Err(ServerUrlError::UserInfo);
        }
        let (host, port) = split_authority(authority)?;
        if !path.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ServerUrlError::Path);
        }
        Ok(ServerUrl { scheme, host, port, prefix: path.trim_end_matches('/').to_owned() })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host without brackets: what a resolver takes.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port given, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }
}

/// `http://host[:port][/prefix]`, normalized: scheme in lower case, no trailing `/`. Request
/// paths (`/upload`, `/query`) are appended to it.
impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(&self.prefix)
    }
}

fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn split_authority(authority: &str) -> Result<(String, Option<u16>), ServerUrlError> {
    if authority.is_empty() {
        return Err(ServerUrlError::NoHost);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (v6, after) =
            bracketed.split_once(']').ok_or_else(|| ServerUrlError::Ipv6(bracketed.to_owned()))?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(ServerUrlError::Ipv6(v6.to_owned()));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(ServerUrlError::Malformed)?),
        };
        (v6, port)
    } else {
        match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(ServerUrlError::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(ServerUrlError::NoHost);
    }
    if !authority.starts_with('[')
        && !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ServerUrlError::Host(host.to_owned()));
    }
    let port = port
        .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| ServerUrlError::Port(p.to_owned())))
        .transpose()?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        ServerUrl::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}")).to_string()
    }

    fn err(raw: &str) -> String {
        ServerUrl::parse(raw).expect_err(raw).to_string()
    }

    #[test]
    fn good_urls_are_normalized() {
        assert_eq!(ok("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(ok(" HTTP://Server.Local "), "http://Server.Local");
        assert_eq!(ok("http://h/liteobs/"), "http://h/liteobs");
        assert_eq!(ok("http://h:1//"), "http://h:1");
        assert_eq!(ok("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(ok("http://[fe80::1]"), "http://[fe80::1]");
        assert_eq!(ok("https://liteobs-server.liteobs.svc"), "https://liteobs-server.liteobs.svc");
        let url = ServerUrl::parse("http://[::1]").unwrap();
        assert_eq!((url.host(), url.port(), url.scheme()), ("::1", 80, Scheme::Http));
        assert_eq!(ServerUrl::parse("https://h").unwrap().port(), 443);
    }

    #[test]
    fn each_mistake_is_named() {
        for (raw, want) in [
            ("", "empty; write http://HOST[:PORT]"),
            ("http://", "no host; write http://HOST[:PORT]"),
            ("http:///x", "no host; write http://HOST[:PORT]"),
            ("http://:8080", "no host; write http://HOST[:PORT]"),
            ("localhost:8080", "no scheme; write http://localhost:8080"),
            ("127.0.0.1:8080", "no scheme; write http://127.0.0.1:8080"),
            ("[::1]:7", "no scheme; write http://[::1]:7"),
            ("http:", "not a URL; write http://HOST[:PORT]"),
            ("http:/h", "not a URL; write http://HOST[:PORT]"),
            ("ftp://h", r#"unsupported scheme "ftp"; use http:// or https://"#),
            ("http://u:p@h", "user info (USER@HOST) is not supported; give the token with -token"),
            (
                "http://h/?x=1",
                "a query string or fragment (? or #) is not allowed; the base URL ends at its path",
            ),
            (
                "http://h#top",
                "a query string or fragment (? or #) is not allowed; the base URL ends at its path",
            ),
            ("http://h:", r#"port "" is not a number from 1 to 65535"#),
            ("http://h:0", r#"port "0" is not a number from 1 to 65535"#),
            ("http://h:65536", r#"port "65536" is not a number from 1 to 65535"#),
            ("http://h:http", r#"port "http" is not a number from 1 to 65535"#),
            ("http://::1:8080", "an IPv6 address goes in brackets: http://[::1]:8080"),
            ("http://[::1", "[::1] is not an IPv6 address"),
            ("http://[1.2.3.4]", "[1.2.3.4] is not an IPv6 address"),
            ("http://[::1]x", "not a URL; write http://HOST[:PORT]"),
            ("http://a b", r#"host "a b" may only have ASCII letters, digits, '-', '_' and '.'"#),
            (
                "http://bücher.example",
                r#"host "bücher.example" may only have ASCII letters, digits, '-', '_' and '.'"#,
            ),
            ("http://h/a b", "the path may only have printable ASCII characters (percent-encode the others)"),
        ] {
            assert_eq!(err(raw), want, "{raw:?}");
        }
    }
}
