//! Every committed capture, recorded (fixtures/pcap/) and generated (fixtures/pcap/generated/),
//! replayed through the same loop the binary runs, with its records pinned as NDJSON snapshots
//! (tests/snapshots/) together with the pipeline's counters.
//!
//! Replays are deterministic: timestamps come from the files, flows expire on packet time, and
//! the node name is fixed here. After re-recording or changing the parser, review the changes
//! with `cargo insta review` (or accept with INSTA_UPDATE=always).

mod support;

use std::path::Path;

use liteobs_agent::pipeline::PipelineConfig;
use liteobs_agent::report::NdjsonWriter;
use liteobs_agent::run::replay_file;

fn snapshot_of(path: &Path) -> String {
    let cfg = PipelineConfig { node: "fixture-node".into(), ..PipelineConfig::default() };
    let (records, summary) = replay_file(path, cfg).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = NdjsonWriter::new(Vec::new());
    w.write(&records).unwrap();
    let ndjson = String::from_utf8(w.into_inner()).unwrap();
    let counters = serde_json::to_string_pretty(&summary.snapshot.pipeline).unwrap();
    format!("{ndjson}--- counters\n{counters}")
}

fn check_all(files: Vec<std::path::PathBuf>, prefix: &str) {
    assert!(!files.is_empty(), "no {prefix} fixtures found");
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for f in &files {
            let name = format!("{prefix}__{}", f.file_name().unwrap().to_string_lossy().replace('.', "_"));
            settings_snapshot(&name, &snapshot_of(f));
        }
    });
}

fn settings_snapshot(name: &str, text: &str) {
    insta::assert_snapshot!(name.to_owned(), text);
}

#[test]
fn recorded_fixtures() {
    check_all(support::recorded_fixtures(), "recorded");
}

#[test]
fn generated_fixtures() {
    check_all(support::generated_fixtures(), "generated");
}

/// The binary prints exactly what the library replay produces.
#[test]
fn binary_replay_prints_the_same_ndjson() {
    let file = support::fixtures_dir().join("pcap/nginx-keepalive.pcap");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liteobs-agent"))
        .args(["-read", &file.to_string_lossy(), "-node", "fixture-node"])
        .env_remove("LITEOBS_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = PipelineConfig { node: "fixture-node".into(), ..PipelineConfig::default() };
    let (records, _) = replay_file(&file, cfg).unwrap();
    let printed = liteobs_model::decode_ndjson(&out.stdout).unwrap();
    assert_eq!(printed, records);
    assert_eq!(records.len(), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replayed") && stderr.contains("exchanges"), "{stderr}");
}

/// Replays `file` with the binary to stdout; returns its records and its stderr.
fn binary_replay(file: &Path, flags: &[&str]) -> (Vec<liteobs_model::TrafficLog>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liteobs-agent"))
        .args(["-read", &file.to_string_lossy(), "-node", "fixture-node"])
        .args(flags)
        .env_remove("LITEOBS_SERVER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (liteobs_model::decode_ndjson(&out.stdout).unwrap(), stderr)
}

/// A node's `any` capture of real traffic (scripts/record-fixtures.sh `any-dnat-service`):
/// two GETs on one connection to a Service address, DNAT'd to the server pod, each seen
/// before DNAT on the client's veth and after it on the server's (two 4-tuples, the same TCP
/// sequence numbers), and a GET to the pod itself seen on both veths (one 4-tuple, every
/// packet twice). The binary's replay to stdout shows each exchange once: the Service calls
/// with the pod's address and the Service's kept, the direct call with no Service; each
/// with the client's view (the capture before DNAT).
#[test]
fn a_service_call_seen_before_and_after_dnat_is_printed_once() {
    const POD: &str = "10.77.2.2:18084";
    const SERVICE: &str = "10.96.0.10:18085";
    let file = support::fixtures_dir().join("pcap/any-dnat-service.pcap");
    let addr = |ip: std::net::IpAddr, port: u16| format!("{}", std::net::SocketAddr::new(ip, port));
    let (records, stderr) = binary_replay(&file, &[]);
    let got: Vec<(String, String, Option<String>, u16)> = records
        .iter()
        .map(|r| {
            let service = r.dst_service_ip.zip(r.dst_service_port).map(|(ip, port)| addr(ip, port));
            (r.path.clone(), addr(r.dst_ip, r.dst_port), service, r.status)
        })
        .collect();
    let want = [
        ("/hello.txt", POD, Some(SERVICE), 200),
        ("/missing", POD, Some(SERVICE), 404),
        ("/hello.txt", POD, None, 200),
    ]
    .map(|(path, dst, service, status)| {
        (path.to_owned(), dst.to_owned(), service.map(str::to_owned), status)
    });
    assert_eq!(got, want, "{stderr}");
    let merged = stderr.lines().find(|l| l.starts_with("merged_on_node")).unwrap_or_default();
    assert!(merged.ends_with(" 2"), "{stderr}");

    // Every capture, unmerged: the two Service calls twice, the direct call once.
    let (captures, _) = binary_replay(&file, &["-merge-hold", "0"]);
    assert_eq!(captures.len(), 5, "{captures:#?}");
    for r in &records[..2] {
        let before: Vec<_> = captures
            .iter()
            .filter(|c| c.exchange_id == r.exchange_id && addr(c.dst_ip, c.dst_port) == SERVICE)
            .collect();
        assert_eq!(before.len(), 1, "{captures:#?}");
        assert_eq!((r.ts, r.latency_us), (before[0].ts, before[0].latency_us), "the client's view");
    }
}
