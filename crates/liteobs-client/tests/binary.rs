//! The built binary against a stand-in server: a thread that answers one request with canned
//! bytes and hands back the request head, so that exit codes, stderr lines, query encoding
//! and the token header are checked without the real server (an end-to-end test with it lives
//! elsewhere).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::Duration;

const RECORD: &str = r#"{"ts":"2026-11-25T14:02:44.123456Z","src_ip":"10.0.0.1","src_port":51234,"dst_ip":"::1","dst_port":8080,"method":"GET","path":"/api","status":200,"latency_us":1500,"req_bytes":0,"resp_bytes":512,"src_pid":1234,"src_comm":"curl","node":"n"}"#;

/// Serves one connection with `status` and `body`; the handle yields the request head.
fn stand_in(status: &str, body: &str) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let head = read_head(&mut conn);
        conn.write_all(response.as_bytes()).unwrap();
        head
    });
    (url, handle)
}

fn read_head(conn: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "client closed before finishing its request");
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).unwrap()
}

fn client(args: &[&str]) -> Output {
    client_at(100, args)
}

/// [`client`] with a table `columns` wide.
fn client_at(columns: usize, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liteobs-client"))
        .args(args)
        .env_remove("LITEOBS_SERVER")
        .env_remove("LITEOBS_TOKEN")
        .env("COLUMNS", columns.to_string())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn unreachable_server_is_one_clear_line_and_exit_1() {
    let out = client(&["-server", "http://127.0.0.1:1", "-pid", "1234"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("liteobs-client: cannot reach server at http://127.0.0.1:1: "), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn server_comes_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_liteobs-client"))
        .env("LITEOBS_SERVER", "http://127.0.0.1:1/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot reach server at http://127.0.0.1:1: "), "{}", stderr(&out));
}

#[test]
fn bad_values_and_unknown_flags_exit_2_before_any_request() {
    let out = client(&["-server", "http://127.0.0.1:1", "-pid", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(r#"-pid: "abc" is not a process ID"#), "{}", stderr(&out));
    let out = client(&["-pdi", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = client(&["-server", "ftp://example.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(r#"unsupported scheme "ftp""#), "{}", stderr(&out));
}

/// The first line of stderr of a run that must exit 2 before any request.
fn usage_error(args: &[&str]) -> String {
    let out = client(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(stdout(&out).is_empty(), "{args:?}");
    err.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn flag_and_server_mistakes_are_named_as_typed() {
    for (args, want) in [
        (
            &["-bogus-flag"][..],
            "error: unexpected argument '-bogus-flag' found (every flag is listed by -help)",
        ),
        (&["-bogus=1"], "error: unexpected argument '-bogus' found (every flag is listed by -help)"),
        (&["--bogus"], "error: unexpected argument '--bogus' found"),
        // A word that is no flag stands where a command (`stats`) may.
        (&["-"], "error: unrecognized subcommand '-'"),
        (&["--", "-pid"], "error: unrecognized subcommand '-pid'"),
        (&["stat"], "error: unrecognized subcommand 'stat'"),
        (&["-pid"], "error: a value is required for '--pid <PID>' but none was supplied"),
        (&["-server", "http://"], r#"error: -server: "http://": no host; write http://HOST[:PORT]"#),
        (
            &["-server", "localhost:8080"],
            r#"error: -server: "localhost:8080": no scheme; write http://localhost:8080"#,
        ),
        (
            &["-server", "ftp://h"],
            r#"error: -server: "ftp://h": unsupported scheme "ftp"; use http:// or https://"#,
        ),
        (&["-server", "http://[::1"], r#"error: -server: "http://[::1": [::1] is not an IPv6 address"#),
        (
            &["-server", "http://127.0.0.1:1", "-until", "-5"],
            r#"error: -until: "-5" is neither RFC 3339 nor an age like 15m"#,
        ),
    ] {
        assert_eq!(usage_error(args), want, "{args:?}");
    }
}

#[test]
fn filters_are_url_encoded_and_the_token_is_a_bearer_header() {
    let body = format!(r#"{{"records":[{RECORD}],"limit":100,"truncated":false}}"#);
    let (url, server) = stand_in("200 OK", &body);
    let out =
        client(&["-server", &url, "-pid", "1234", "-path", "/a b&c/ü", "-token", "s3cret", "-o", "json"]);
    let head = server.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = head.lines().next().unwrap();
    assert_eq!(first, "GET /query?pid=1234&path=%2Fa+b%26c%2F%C3%BC HTTP/1.1");
    assert!(head.to_lowercase().contains("\r\nauthorization: bearer s3cret\r\n"), "{head}");
    let records: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(records.as_array().map(Vec::len), Some(1));
    assert!(stderr(&out).is_empty());
}

#[test]
fn table_when_piped_is_plain_and_ends_with_the_count() {
    let body = format!(r#"{{"records":[{RECORD},{RECORD}],"limit":2,"truncated":true}}"#);
    let (url, server) = stand_in("200 OK", &body);
    let out = client(&["--server", &url, "--limit", "2"]);
    let head = server.join().unwrap();
    assert!(head.starts_with("GET /query?limit=2 HTTP/1.1\r\n"), "{head}");
    assert!(!head.to_lowercase().contains("authorization"), "{head}");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.starts_with("TIME "), "{text}");
    assert!(!text.contains('\x1b'), "no colour into a pipe");
    // The server has no process: SERVER is its address; a day that is not today is a date.
    let row = text.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("  curl/1234  [::1]:8080  [::1]:8080  GET        200    1.5ms  512B  /api"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("2 exchanges (limit 2 reached; more match — raise -limit)"));
}

#[test]
fn json_output_warns_on_stderr_when_cut() {
    let body = format!(r#"{{"records":[{RECORD}],"limit":1,"truncated":true}}"#);
    let (url, server) = stand_in("200 OK", &body);
    let out = client(&["-server", &url, "-o", "csv"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).lines().count(), 2);
    assert_eq!(stderr(&out), "liteobs-client: 1 exchange (limit 1 reached; more match — raise -limit)\n");
}

#[test]
fn refused_token_quotes_the_server() {
    let (url, server) = stand_in("401 Unauthorized", r#"{"error":"missing or wrong token"}"#);
    let out = client(&["-server", &url, "-token", "nope"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("liteobs-client: server {url} refused the token (401): missing or wrong token\n")
    );
}

#[test]
fn rejected_query_gives_the_servers_words() {
    let (url, server) =
        stand_in("400 Bad Request", r#"{"error":"bad query parameter `pid`: \"x\" is not a process ID"}"#);
    let out = client(&["-server", &url]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "liteobs-client: server rejected the query (400): bad query parameter `pid`: \"x\" is not a process ID\n"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(conn);
    });
    let out = client(&["-server", &url, "-timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("liteobs-client: server at {url} did not answer within 1s (raise -timeout?)\n")
    );
    hold.join().unwrap();
}

#[test]
fn a_non_liteobs_answer_is_named_as_such() {
    let (url, server) = stand_in("200 OK", "<html>hello</html>");
    let out = client(&["-server", &url]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "liteobs-client: unexpected answer from {url}: 200 but not a query result"
        )),
        "{}",
        stderr(&out)
    );
}

/// What main's server stored for `"ts":"9999-12-31T23:59:59-23:59"` and then sent in every
/// newest-first answer: the client prints the other rows, names the bad one, and exits 3.
#[test]
fn an_unreadable_record_is_named_and_the_others_are_printed() {
    let poisoned = RECORD.replace("2026-11-25T14:02:44.123456Z", "+10000-01-01T23:58:59Z");
    let second = RECORD.replace(r#""path":"/api""#, r#""path":"/second""#);
    let body = format!(r#"{{"records":[{poisoned},{RECORD},{second}],"limit":100,"truncated":false}}"#);
    for format in ["table", "json", "csv"] {
        let (url, server) = stand_in("200 OK", &body);
        let out = client(&["-server", &url, "-o", format]);
        server.join().unwrap();
        let (out_text, err) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(3), "{format}: {err}");
        assert!(out_text.contains("/api") && out_text.contains("/second"), "{format}: {out_text}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{format}: {err}");
        assert!(
            lines[0].starts_with("liteobs-client: record 0 of the answer is unreadable, skipped: field `ts`: not an RFC 3339 timestamp"),
            "{err}"
        );
        assert_eq!(
            lines[1],
            "liteobs-client: 1 of 3 records in the answer could not be read; the others are shown"
        );
    }
}

#[test]
fn namespace_and_pod_are_sent_as_the_servers_parameters() {
    let pod = RECORD.replace(
        r#""node":"n""#,
        r#""node":"n","src_namespace":"shop","src_pod":"web-7d9f8b6c4-x2kqz","dst_service_ip":"10.96.0.9","dst_service_port":80"#,
    );
    let body = format!(r#"{{"records":[{pod}],"limit":100,"truncated":false}}"#);
    for args in [["-namespace", "shop", "-pod", "web-"], ["--namespace", "shop", "--pod", "web-"]] {
        let (url, server) = stand_in("200 OK", &body);
        let mut all = vec!["-server", url.as_str()];
        all.extend_from_slice(&args);
        let out = client_at(200, &all);
        // Checked before joining: a client that refuses the flags never connects.
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /query?namespace=shop&pod=web- HTTP/1.1\r\n"), "{args:?}: {head}");
        // The table names the client's pod where it would show its process (both stay in json).
        let row = stdout(&out).lines().nth(1).unwrap_or_default().to_owned();
        assert!(row.contains("  shop/web-7d9f8b6c4-x2kqz  [::1]:8080"), "{row}");
        assert!(!row.contains("1234") && !row.contains("curl"), "{row}");
    }
}

#[test]
fn help_lists_the_pod_filters() {
    let out = client(&["-help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    assert!(help.contains("--namespace <NS>") && help.contains("Kubernetes namespace"), "{help}");
    assert!(help.contains("--pod <PREFIX>") && help.contains("pod name starts with"), "{help}");
}

/// A pipe without `$COLUMNS` gets whole rows (as kubectl: output that is not on a terminal is
/// never cut), and `-o wide` has a column per field.
#[test]
fn a_pipe_without_columns_is_never_cut_and_wide_has_every_field() {
    let long = RECORD.replace(r#""path":"/api""#, &format!(r#""path":"/api/{}""#, "x".repeat(300)));
    let body = format!(r#"{{"records":[{long}],"limit":100,"truncated":false}}"#);
    let (url, server) = stand_in("200 OK", &body);
    let out = Command::new(env!("CARGO_BIN_EXE_liteobs-client"))
        .args(["-server", &url])
        .env_remove("COLUMNS")
        .env_remove("LITEOBS_SERVER")
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("/api/{}", "x".repeat(300))) && !text.contains('…'), "{text}");
    assert!(text.starts_with("TIME "), "{text}");

    let (url, server) = stand_in("200 OK", &body);
    let out = client_at(80, &["-server", &url, "-o", "wide"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let header: Vec<&str> = text.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&header[..4], ["TS", "SRC_IP", "SRC_PORT", "DST_IP"], "{text}");
    assert!(header.contains(&"EXCHANGE_ID") && header.contains(&"SRC_POD"), "{text}");
    assert!(text.contains("2026-11-25T14:02:44.123456Z"), "{text}");
}
