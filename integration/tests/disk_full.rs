//! A full disk, for real: the real `liteobs-server` (each backend) keeps its file on a small
//! tmpfs made for the test, a filler file takes the rest of it, and uploads go on until the
//! server refuses one. The refusal must be 503 with `Retry-After` (the agent retries it), every
//! upload acknowledged before must be queryable, queries must keep answering, and once the filler
//! is gone the same server must take uploads again, the refused batch included, exactly once.
//!
//! Root only (mounting); skipped with a reason otherwise, a failure under
//! LITEOBS_REQUIRE_PRIVILEGED=1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use liteobs_integration::{Server, backends, http, privileged};
use liteobs_model::{BATCH_ID_HEADER, TrafficLog};
use serde_json::json;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "liteobs-disk-full"])
            .arg(&mount)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs failed: {st}");
        SmallDisk { _dir: dir, mount }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Writes `path` until the file system is full, then gives `leave` bytes back.
fn fill(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    f.set_len(written.saturating_sub(leave)).expect("truncate filler");
    f.sync_all().expect("sync filler");
}

/// Batch `i`: `n` records whose client PID is `10_000 + i`, so a query by PID finds exactly it.
fn batch(i: u32, n: usize) -> Vec<TrafficLog> {
    (0..n)
        .map(|j| {
            serde_json::from_value(json!({
                "ts": format!("2026-12-01T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, j),
                "src_ip": "10.1.2.3", "src_port": 40000 + (j % 20000), "dst_ip": "10.9.8.7", "dst_port": 8080,
                "method": "GET", "path": format!("/disk/full/{i}/{j}/{}", "x".repeat(40)), "host": "svc.test",
                "status": 200, "latency_us": 1000 + j, "req_bytes": j, "resp_bytes": 10 * j,
                "src_pid": 10_000 + i, "src_comm": "curl", "dst_pid": 2000, "dst_comm": "nginx",
                "node": "node-disk-full"
            }))
            .expect("valid record")
        })
        .collect()
}

/// Uploads `records` with batch id `id`: (status, Retry-After, body).
fn upload(server: &Server, id: &str, records: &[TrafficLog]) -> (u16, Option<String>, String) {
    let body: String = records.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
    let resp = http()
        .post(&format!("{}/upload", server.url))
        .header("Content-Type", "application/x-ndjson")
        .header(BATCH_ID_HEADER, id)
        .send(body.as_bytes())
        .expect("upload request");
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry, resp.into_body().read_to_string().unwrap_or_default())
}

/// Records of client PID `pid`, or the status of a refused query.
fn by_pid(server: &Server, pid: u32) -> Result<Vec<TrafficLog>, u16> {
    let resp =
        http().get(&format!("{}/query?pid={pid}&limit=10000", server.url)).call().expect("query request");
    if resp.status() != 200 {
        return Err(resp.status().as_u16());
    }
    let answer: serde_json::Value = resp.into_body().read_json().expect("JSON answer");
    let mut rows: Vec<TrafficLog> = serde_json::from_value(answer["records"].clone()).expect("records");
    rows.reverse();
    Ok(rows)
}

/// Whether `got` holds `want` as the server stores them (with their routes), in any order.
fn same_records(mut got: Vec<TrafficLog>, want: &[TrafficLog]) -> bool {
    let mut want = liteobs_integration::with_routes(want.to_vec());
    got.sort_by(|a, b| a.path.cmp(&b.path));
    want.sort_by(|a, b| a.path.cmp(&b.path));
    got == want
}

#[test]
fn a_full_disk_refuses_uploads_with_503_keeps_what_was_acknowledged_and_recovers() {
    if !privileged("a_full_disk_refuses_uploads_with_503_keeps_what_was_acknowledged_and_recovers") {
        return;
    }
    for backend in backends() {
        let disk = SmallDisk::new("48m");
        let db = disk.mount.join(format!("full.{backend}"));
        // Retention off: only the disk limits what is kept.
        let server = Server::start_with(backend, &db, &["-retention", "off", "-max-db-size", "off"]);
        let per_batch = 500;
        let mut acknowledged: Vec<(u32, Vec<TrafficLog>)> = Vec::new();
        let first = batch(0, per_batch);
        assert_eq!(upload(&server, "b-0", &first).0, 200, "{backend}: an upload before the disk fills");
        acknowledged.push((0, first));
        let filler = disk.mount.join("filler");
        fill(&filler, 1 << 20);

        let mut refused = None;
        for i in 1..2_000u32 {
            let records = batch(i, per_batch);
            let (status, retry, body) = upload(&server, &format!("b-{i}"), &records);
            match status {
                200 => acknowledged.push((i, records)),
                503 => {
                    assert_eq!(retry.as_deref(), Some("2"), "{backend}: 503 says when to retry: {body}");
                    assert!(body.contains("full"), "{backend}: the answer says the disk is full: {body}");
                    refused = Some((i, records));
                    break;
                }
                other => panic!("{backend}: upload {i} on a full disk got {other}, not 503: {body}"),
            }
        }
        let (refused_i, refused_records) =
            refused.unwrap_or_else(|| panic!("{backend}: the disk never filled"));
        eprintln!(
            "{backend}: {} batches acknowledged, batch {refused_i} refused with 503",
            acknowledged.len()
        );

        // While the disk is full: every acknowledged batch is there, and queries answer.
        for (i, records) in &acknowledged {
            let rows = by_pid(&server, 10_000 + i)
                .unwrap_or_else(|s| panic!("{backend}: query on a full disk got {s}"));
            assert!(same_records(rows, records), "{backend}: acknowledged batch {i} is stored whole");
        }
        assert_eq!(
            by_pid(&server, 10_000 + refused_i),
            Ok(vec![]),
            "{backend}: the refused batch left nothing"
        );
        // Still refused while full (not a crash, not a 500).
        assert_eq!(upload(&server, &format!("b-{refused_i}"), &refused_records).0, 503, "{backend}");

        std::fs::remove_file(&filler).expect("remove filler");
        // The same server, not restarted: the refused batch (same id) goes in, once.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _, body) = upload(&server, &format!("b-{refused_i}"), &refused_records);
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: no recovery within 30 s: {status} {body}");
            assert_eq!(status, 503, "{backend}: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let repeat = upload(&server, &format!("b-{refused_i}"), &refused_records);
        assert_eq!(repeat.0, 200);
        assert!(
            repeat.2.contains("duplicate"),
            "{backend}: a retry after recovery is a repeat: {}",
            repeat.2
        );
        let next = batch(refused_i + 1, per_batch);
        assert_eq!(upload(&server, &format!("b-{}", refused_i + 1), &next).0, 200, "{backend}");
        acknowledged.push((refused_i, refused_records));
        acknowledged.push((refused_i + 1, next));
        for (i, records) in &acknowledged {
            let rows = by_pid(&server, 10_000 + i).unwrap_or_else(|s| panic!("{backend}: query got {s}"));
            assert!(
                same_records(rows, records),
                "{backend}: batch {i} is stored once, whole, after recovery"
            );
        }
        server.stop();
    }
}
