//! ClickHouse's HTTP interface, as the store uses it: one statement per request, the SQL in the
//! body (or, for an insert, in the URL with the rows as the body), the answer's bytes back.
//! Parameters are written into the statement by [`bind`] on this side: server-side `{name:Type}`
//! parameters do not exist on 18.16.

use std::time::Duration;

use super::super::sql::Param;
use super::ChError;

/// Where a node's HTTP interface is and who the store is there.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    database: String,
    user: String,
    password: Option<String>,
}

/// Answers larger than this are refused (a query's rows are bounded by its limit well below).
const MAX_ANSWER: u64 = 512 << 20;

impl Http {
    pub fn new(database: &str, user: &str, password: Option<&str>, timeout: Duration) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(16)
            .build()
            .into();
        Http {
            agent,
            database: database.to_owned(),
            user: user.to_owned(),
            password: password.map(str::to_owned),
        }
    }

    /// Runs `sql` on the node at `url`; with `rows`, `sql` is an `INSERT ... FORMAT RowBinary`
    /// whose rows are `rows`. `settings` are ClickHouse settings for this statement only.
    pub fn run(
        &self,
        url: &str,
        sql: &str,
        rows: Option<&[u8]>,
        settings: &[(&str, &str)],
    ) -> Result<Vec<u8>, ChError> {
        // The store's statements carry the filter's values inline: a long path prefix can pass
        // the default 256 KiB.
        let mut query: Vec<(&str, &str)> = vec![("database", &self.database), ("max_query_size", "16777216")];
        query.extend_from_slice(settings);
        if rows.is_some() {
            query.push(("query", sql));
        }
        let encoded = serde_urlencoded::to_string(&query).map_err(|e| ChError::Request(e.to_string()))?;
        let target = format!("{}/?{encoded}", url.trim_end_matches('/'));
        let mut request = self.agent.post(&target).header("X-ClickHouse-User", &self.user);
        if let Some(p) = &self.password {
            request = request.header("X-ClickHouse-Key", p);
        }
        let sent = match rows {
            Some(body) => request.send(body),
            None => request.send(sql.as_bytes()),
        };
        let mut response = sent.map_err(|e| ChError::Unreachable(format!("{url}: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| ChError::Unreachable(format!("{url}: reading the answer: {e}")))?;
        if status == 200 {
            Ok(body)
        } else {
            Err(ChError::Server { status, message: String::from_utf8_lossy(&body).trim().to_owned() })
        }
    }

    /// [`Http::run`] of a statement whose answer is text (one value, or tab-separated rows).
    pub fn text(&self, url: &str, sql: &str) -> Result<String, ChError> {
        let bytes = self.run(url, sql, None, &[])?;
        String::from_utf8(bytes).map_err(|e| ChError::Answer(format!("not UTF-8: {e}")))
    }
}

/// A ClickHouse string literal of `bytes`: printable ASCII as itself (quote and backslash
/// escaped), every other byte as `\xNN`, so that any byte string round-trips.
pub fn literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('\'');
    for &b in bytes {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out.push('\'');
    out
}

/// `sql` with each `?` replaced by the next of `params` as a literal. The statements are the
/// store's own, whose only `?`s are placeholders (their literals hold none).
pub fn bind(sql: &str, params: &[Param]) -> Result<String, ChError> {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut next = params.iter();
    for part in sql.split_inclusive('?') {
        match part.strip_suffix('?') {
            Some(before) => {
                out.push_str(before);
                match next.next() {
                    Some(Param::Int(n)) => out.push_str(&n.to_string()),
                    Some(Param::Text(s)) => out.push_str(&literal(s.as_bytes())),
                    Some(Param::Blob(b)) => out.push_str(&literal(b)),
                    None => return Err(ChError::Request("more placeholders than parameters".into())),
                }
            }
            None => out.push_str(part),
        }
    }
    if next.next().is_some() {
        return Err(ChError::Request("more parameters than placeholders".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_every_byte_that_could_end_them() {
        assert_eq!(literal(b"a'b\\c"), r"'a\'b\\c'");
        assert_eq!(literal(b"\x00\n\xff"), r"'\x00\x0A\xFF'");
        assert_eq!(literal("é".as_bytes()), r"'\xC3\xA9'");
    }

    #[test]
    fn placeholders_take_the_parameters_in_order() {
        let sql = bind(
            "a = ? AND b = ? AND c = ?",
            &[Param::Int(-3), Param::Text("x'?".into()), Param::Blob(vec![0])],
        );
        assert_eq!(sql.ok().as_deref(), Some(r"a = -3 AND b = 'x\'?' AND c = '\x00'"));
        assert!(bind("?", &[]).is_err());
        assert!(bind("", &[Param::Int(1)]).is_err());
    }
}
