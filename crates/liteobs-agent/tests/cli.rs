//! The binary as a user meets it: flags, one-line errors, replay to stdout and to a server.

mod support;

use std::process::{Command, Output};

use liteobs_agent::pipeline::PipelineConfig;
use liteobs_agent::run::replay_file;
use support::FakeServer;

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
