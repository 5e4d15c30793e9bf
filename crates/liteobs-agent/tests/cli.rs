//! The binary as a user meets it: flags, one-line errors, replay to stdout and to a server.

mod support;

use std::process::{Command, Output};

use liteobs_agent::pipeline::PipelineConfig;
use liteobs_agent::run::replay_file;
use support::{Conn, FakeServer, Framing, Reply, SynthCapture};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liteobs-agent"))
        .args(args)
        .env_remove("LITEOBS_SERVER")
        .env_remove("LITEOBS_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("running liteobs-agent")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    support::fixtures_dir().join("pcap").join(name).to_string_lossy().into_owned()
}

#[test]
fn unknown_interface_is_one_clear_line() {
    let o = agent(&["-iface", "nope0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("liteobs-agent: unknown interface \"nope0\" (available: "), "{err}");
    assert!(err.contains("lo"), "{err}");
}

#[test]
fn unreadable_inputs_are_one_clear_line() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for (args, want) in [
        (
            vec!["-read", "/nonexistent/x.pcap"],
            "liteobs-agent: /nonexistent/x.pcap: No such file or directory",
        ),
        (vec!["-read", manifest], "not a pcap or pcapng file (it starts with bytes 5b 70 61 63)"),
        (
            vec!["-read", manifest, "-server", "https://127.0.0.1:1", "-ca-file", "/nonexistent/ca.pem"],
            "liteobs-agent: cannot read the CA file /nonexistent/ca.pem: No such file or directory",
        ),
    ] {
        let o = agent(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn unknown_flags_are_named_as_typed() {
    for (args, want) in [
        (&["-bogus"][..], "error: unexpected argument '-bogus' found (every flag is listed by -help)"),
        (
            &["-iface", "lo", "-bogus-flag=1"],
            "error: unexpected argument '-bogus-flag' found (every flag is listed by -help)",
        ),
        (&["-"], "error: unexpected argument '-' found"),
    ] {
        let o = agent(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().next(), Some(want), "{args:?}");
    }
}

#[test]
fn server_mistakes_say_what_to_write() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for (server, want) in [
        ("http://", r#"liteobs-agent: -server "http://": no host; write http://HOST[:PORT]"#),
        (
            "localhost:8080",
            r#"liteobs-agent: -server "localhost:8080": no scheme; write http://localhost:8080"#,
        ),
        ("ftp://h", r#"liteobs-agent: -server "ftp://h": unsupported scheme "ftp"; use http:// or https://"#),
        (
            "http://h/?batch=1",
            r#"liteobs-agent: -server "http://h/?batch=1": a query string or fragment (? or #) is not allowed; the base URL ends at its path"#,
        ),
        (
            "http://::1:8080",
            r#"liteobs-agent: -server "http://::1:8080": an IPv6 address goes in brackets: http://[::1]:8080"#,
        ),
    ] {
        let o = agent(&["-read", manifest, "-server", server]);
        assert_eq!(o.status.code(), Some(1), "{server}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim_end(), want, "{server}");
    }
}

#[test]
fn bad_flag_values_name_the_flag() {
    let o = agent(&["-ports", "80,http"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--ports"), "{}", stderr(&o));
    let o = agent(&["-help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--iface",
        "--ports",
        "--read",
        "--server",
        "--ca-file",
        "--token",
        "--node",
        "--batch-size",
        "--flush-interval",
        "--buffer ",
        "--buffer-size",
    ] {
        assert!(help.contains(flag), "{flag} missing from -help:\n{help}");
    }
}

#[test]
fn replay_uploads_every_record_through_server_errors() {
    // 503, a dropped connection, then success: nothing lost, nothing sent twice once acked.
    let server = FakeServer::start(vec![Some(503), None, Some(200)]);
    let file = fixture("nginx-status-codes.pcap");
    let o = Command::new(env!("CARGO_BIN_EXE_liteobs-agent"))
        .args(["-read", &file, "-server", &server.url, "-batch-size", "3", "-node", "n1"])
        .env("LITEOBS_TOKEN", "t0ken")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(o.stdout.is_empty(), "with -server nothing goes to stdout");
    let uploads = server.uploads();
    assert!(uploads.iter().all(|u| u.path == "/upload"));
    assert_eq!(uploads[0].header("authorization"), Some("Bearer t0ken"));
    assert_eq!(uploads[0].header("content-encoding"), Some("gzip"));
    assert_eq!(uploads[0].header("content-type"), Some("application/x-ndjson"));
    let acked: Vec<_> = uploads[2..].iter().flat_map(|u| u.records.clone()).collect();
    let cfg = PipelineConfig { node: "n1".into(), ..PipelineConfig::default() };
    let (want, _) = replay_file(std::path::Path::new(&file), cfg).unwrap();
    assert_eq!(acked, want);
    assert_eq!(uploads[2].records.len(), 3, "batches of -batch-size");
    let id = |i: usize| uploads[i].header(liteobs_model::BATCH_ID_HEADER).unwrap_or_default().to_owned();
    assert!(!id(0).is_empty(), "uploads carry a batch id");
    assert_eq!((id(1), id(2)), (id(0), id(0)), "a retried batch keeps its id");
    assert_ne!(id(3), id(0), "another batch, another id");
    assert!(err.contains("upload failed; retrying"), "{err}");
    let line = err.lines().find(|l| l.starts_with("records_acked")).unwrap_or_default();
    assert!(line.ends_with(" 4"), "{err}");
    let line = err.lines().find(|l| l.starts_with("upload_failures")).unwrap_or_default();
    assert!(line.ends_with(" 2"), "{err}");
}

#[test]
fn rejected_batches_are_counted_and_unauthorized_stops() {
    let server = FakeServer::start(vec![Some(400), Some(200)]);
    let o = agent(&["-read", &fixture("nginx-keepalive.pcap"), "-server", &server.url, "-batch-size", "2"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("server rejected a batch; dropped"), "{err}");
    let line = err.lines().find(|l| l.starts_with("records_rejected")).unwrap_or_default();
    assert!(line.ends_with(" 2"), "{err}");
    assert_eq!(server.uploads().len(), 2, "a rejected batch is not retried");

    let server = FakeServer::start(vec![Some(401)]);
    let o = agent(&["-read", &fixture("nginx-keepalive.pcap"), "-server", &server.url]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("liteobs-agent: "), "{err}");
    assert!(last.contains("401 Unauthorized") && last.contains("LITEOBS_TOKEN"), "{err}");
}

#[test]
fn a_spool_dir_that_cannot_be_used_is_one_clear_line_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let spool = file.join("spool");
    let o = agent(&[
        "-read",
        &fixture("nginx-keepalive.pcap"),
        "-server",
        "http://127.0.0.1:9",
        "-spool-dir",
        &spool.to_string_lossy(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("-spool-dir") && err.contains("creating the directory"), "{err}");

    let o = agent(&["-read", &fixture("nginx-keepalive.pcap"), "-spool-dir", &dir.path().to_string_lossy()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("-spool-dir keeps batches for a server"), "{err}");
}

#[test]
fn a_400_naming_one_record_drops_only_that_record() {
    // One batch, one bad record: the good ones must arrive (the issue lost 10 of 11 this way).
    let file = fixture("nginx-status-codes.pcap");
    let cfg = PipelineConfig { node: "n1".into(), ..PipelineConfig::default() };
    let (want, _) = replay_file(std::path::Path::new(&file), cfg).unwrap();
    let bad = r#"{"error": "record 2, field `status`: invalid value", "index": 2, "field": "status"}"#;
    let server = FakeServer::start_replies(vec![Some(Reply::body(400, bad)), Some(Reply::status(200))]);
    let o = agent(&["-read", &file, "-server", &server.url, "-batch-size", "1000", "-node", "n1"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let uploads = server.uploads();
    assert_eq!(uploads.len(), 2, "{err}");
    assert_eq!(uploads[0].records, want);
    let mut rest = want.clone();
    rest.remove(2);
    assert_eq!(uploads[1].records, rest, "the batch is sent again without record 2");
    let line = err.lines().find(|l| l.starts_with("records_rejected")).unwrap_or_default();
    assert!(line.ends_with(" 1"), "{err}");
    let line = err.lines().find(|l| l.starts_with("records_acked")).unwrap_or_default();
    assert!(line.ends_with(&format!(" {}", rest.len())), "{err}");
}

#[test]
fn retry_after_is_honoured_and_the_retry_keeps_the_batch_id() {
    let file = fixture("nginx-keepalive.pcap");
    for (status, retry_after) in [(503, "1"), (429, "1")] {
        let server = FakeServer::start_replies(vec![
            Some(Reply { status, headers: vec![("Retry-After", retry_after)], body: None }),
            Some(Reply::status(200)),
        ]);
        let o = agent(&["-read", &file, "-server", &server.url, "-batch-size", "1000"]);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        let uploads = server.uploads();
        assert_eq!(uploads.len(), 2, "{status}: retried once, not dropped: {err}");
        let gap = uploads[1].at - uploads[0].at;
        assert!(
            gap >= std::time::Duration::from_millis(950),
            "{status}: retried after {gap:?}, Retry-After said 1 s"
        );
        let id = |i: usize| uploads[i].header(liteobs_model::BATCH_ID_HEADER).map(str::to_owned);
        assert!(id(0).is_some(), "{status}: no batch id");
        assert_eq!(id(1), id(0), "{status}: the retry keeps the id");
        assert_eq!(uploads[1].records, uploads[0].records);
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged captures: exit status 3, one warning line naming the file, the byte offset and what
// is wrong, and the records before the damage on stdout.

/// `n` complete exchanges, each on a connection of its own: `GET /0` .. `GET /{n-1}`. The
/// capture of `n` exchanges starts with the bytes of the capture of `n - 1`, in both formats.
fn exchanges(n: u16) -> SynthCapture {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    for i in 0..n {
        let mut c = Conn::new("10.0.0.1", 40_000 + i, "10.0.0.2", 80);
        c.handshake(&mut cap);
        let s = c.client(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        cap.push(&s);
        let s = c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        cap.push(&s);
        c.close(&mut cap);
    }
    cap
}

fn agent_on(path: &std::path::Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_liteobs-agent"));
    cmd.args(["-read", if stdin.is_some() { "-" } else { path.to_str().unwrap() }])
        .env_remove("LITEOBS_SERVER")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("running liteobs-agent");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn paths(o: &Output) -> Vec<String> {
    liteobs_model::decode_ndjson(&o.stdout)
        .expect("records the server accepts")
        .into_iter()
        .map(|r| r.path)
        .collect()
}

/// Checks a damaged replay: status 3, the records before the damage, and exactly one warning
/// line, the last, with the file, the offset and the reason.
fn assert_damaged(o: &Output, file: &str, offset: u64, reason: &str, records: u16) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let want: Vec<String> = (0..records).map(|i| format!("/{i}")).collect();
    assert_eq!(paths(o), want, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    let line = format!(
        "liteobs-agent: warning: {file}: damaged at byte {offset}: {reason}; the records before it were kept"
    );
    assert_eq!(warnings, [line.as_str()], "{err}");
    assert_eq!(err.lines().last(), Some(line.as_str()), "{err}");
    let counter = err.lines().find(|l| l.starts_with("damaged_at_byte")).unwrap_or_default();
    assert!(counter.ends_with(&format!(" {offset}")), "{err}");
}

#[test]
fn damaged_captures_exit_3_with_one_line_and_keep_the_records_before() {
    let dir = tempfile::tempdir().unwrap();
    let pcap3 = exchanges(3).to_pcap();
    let pcap4 = exchanges(4).to_pcap();
    let ng3 = exchanges(3).to_pcapng();
    let ng4 = exchanges(4).to_pcapng();
    // Words appended in the file's byte order (pcap-file writes big-endian files).
    let with = |prefix: &[u8], words: &[u32], pad: usize| {
        let big_endian = prefix[0] == 0xa1 || prefix[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
        let mut b = prefix.to_vec();
        for w in words {
            b.extend_from_slice(&if big_endian { w.to_be_bytes() } else { w.to_le_bytes() });
        }
        b.extend(std::iter::repeat_n(0u8, pad));
        b
    };
    let sixty_mib = 60u32 << 20;
    let cases: Vec<(&str, Vec<u8>, u64, String)> = vec![
        (
            "cut-mid-record.pcap",
            pcap4[..pcap3.len() + 16 + 5].to_vec(),
            pcap3.len() as u64,
            "cut short: the file ends inside a record of 70 bytes (21 present)".into(),
        ),
        (
            "sixty-mib.pcap",
            with(&pcap3, &[2, 0, sixty_mib, sixty_mib], 100),
            pcap3.len() as u64,
            "a record header claims 62914560 captured bytes, more than the file's snap length (262144)"
                .into(),
        ),
        (
            "cut-mid-block.pcapng",
            ng4[..ng3.len() + 30].to_vec(),
            ng3.len() as u64,
            "cut short: the file ends inside a block of 88 bytes (30 present)".into(),
        ),
        (
            "huge-block.pcapng",
            with(&ng3, &[6, 0x7fff_fff0], 100),
            ng3.len() as u64,
            "block length 2147483632 is over the 64 MiB limit".into(),
        ),
        (
            "no-such-interface.pcapng",
            with(&ng3, &[6, 36, 3, 0, 0, 1, 1, 0, 36], 0),
            ng3.len() as u64,
            "a packet names interface 3, but its section describes 1 interface(s)".into(),
        ),
    ];
    for (name, bytes, offset, reason) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let o = agent_on(&path, None);
        assert_damaged(&o, path.to_str().unwrap(), offset, &reason, 3);
        // The same bytes through a pipe: the read-ahead thread (pcap) and the block reader
        // (pcapng) count offsets of a stream too.
        let o = agent_on(&path, Some(&bytes));
        assert_damaged(&o, "stdin", offset, &reason, 3);
    }
}

#[test]
fn a_torn_spool_file_at_start_is_set_aside_and_counted_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("0000000000000000.batch"), b"LITEOBS-SPOOL 1\nid 0123").unwrap();
    std::fs::write(spool.join(".0000000000000001.tmp"), b"half a write").unwrap();
    let server = FakeServer::start(vec![Some(200)]);
    let file = fixture("nginx-keepalive.pcap");
    let o = agent(&["-read", &file, "-server", &server.url, "-spool-dir", &spool.to_string_lossy()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("spool file set aside"), "{err}");
    let line = err.lines().find(|l| l.starts_with("spool_files_set_aside")).unwrap_or_default();
    assert!(line.ends_with(" 2"), "{err}");
    assert_eq!(std::fs::read_dir(spool.join("corrupt")).unwrap().count(), 2);
    let cfg = PipelineConfig::default();
    let (want, _) = replay_file(std::path::Path::new(&file), cfg).unwrap();
    let got: usize = server.uploads().iter().map(|u| u.records.len()).sum();
    assert_eq!(got, want.len(), "the capture itself is still delivered");
}

#[test]
fn damage_before_the_first_packet_exits_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = exchanges(1).to_pcap();
    let mut ng = exchanges(1).to_pcapng();
    ng[8..12].copy_from_slice(&[1, 2, 3, 4]);
    for (name, bytes, want) in [
        (
            "header.pcap",
            pcap[..20].to_vec(),
            "damaged at byte 0: cut short: the file ends inside its 24-byte header (20 bytes present)",
        ),
        (
            "byte-order.pcapng",
            ng,
            "damaged at byte 0: a section header has byte-order magic 0x01020304 (neither 1a2b3c4d nor 4d3c2b1a)",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let o = agent_on(&path, None);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert_eq!(err.trim_end(), format!("liteobs-agent: {}: {want}", path.display()), "{err}");
        assert!(o.stdout.is_empty());
    }
    // Not a capture at all, or nothing: an error (1), not damage.
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let o = agent_on(&empty, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a pcap or pcapng file (it starts with nothing: it is empty)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_lists_the_exit_statuses() {
    let o = agent(&["-help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Exit status: 0 done; 1 error"), "{help}");
    assert!(help.contains("3 damaged capture file"), "{help}");
}

/// The issue's case: one packet of a pcapng stamped in the year 11476 among the requests of
/// 11 exchanges. Its exchange is counted and skipped; the other 10 go out, in records the
/// server's decoder accepts (the fake server decodes each batch with it), and the agent
/// exits 0 (the file is not damaged).
#[test]
fn an_impossible_timestamp_loses_only_its_own_record() {
    let mut cap = SynthCapture::new(Framing::Ethernet);
    for i in 0..11u16 {
        let mut c = Conn::new("10.0.0.1", 41_000 + i, "10.0.0.2", 80);
        c.handshake(&mut cap);
        let s = c.client(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let now = cap.now_us;
        if i == 5 {
            cap.now_us = 299_970_000_000_000_000; // 11476-01-...
        }
        cap.push(&s);
        cap.now_us = now + 100;
        let s = c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        cap.push(&s);
        c.close(&mut cap);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.pcapng");
    std::fs::write(&path, cap.to_pcapng()).unwrap();
    let want: Vec<String> = (0..11).filter(|i| *i != 5).map(|i| format!("/{i}")).collect();

    let o = agent_on(&path, None);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(paths(&o), want, "{err}");
    let line = err.lines().find(|l| l.starts_with("impossible_timestamps")).unwrap_or_default();
    assert!(line.ends_with(" 1"), "{err}");

    let server = FakeServer::start(vec![Some(200)]);
    let o = agent(&["-read", path.to_str().unwrap(), "-server", &server.url, "-batch-size", "11"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let uploaded: Vec<String> =
        server.uploads().into_iter().flat_map(|u| u.records).map(|r| r.path).collect();
    assert_eq!(uploaded, want, "{}", stderr(&o));
}
