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
