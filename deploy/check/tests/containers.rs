//! The liteobs-server image (deploy/docker/server.Dockerfile) run by testcontainers against each
//! store, its data on a host directory mounted as the image's volume: upload, query, restart the
//! container, query, replace the container by a new one on the same data, query — nothing lost.
//!
//! The image is built from the main workspace's release binaries ([`bin_dir`]; scripts/test.sh
//! builds them first) by `scripts/images.sh test`, which starts dockerd when none answers and
//! makes the Debian base image without a registry, once per machine: it is the code under test,
//! packaged. testcontainers only pulls an image
//! the daemon does not have, so nothing is pulled here. Root only (dockerd, and files owned by
//! the image's user): skipped when not root, a failure under LITEOBS_REQUIRE_PRIVILEGED=1.

use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use liteobs_deploy_check::{bin_dir, http, privileged, repo_root, workspace_version};
use serde_json::{Value, json};
use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

const TOKEN: &str = "container-t0ken";
/// The image's user (USER in server.Dockerfile), which must own the data directory.
const IMAGE_UID: u32 = 10001;
const DATA_DIR: &str = "/var/lib/liteobs";

/// Builds the images once per test binary; every test waits for the same result.
fn server_image() -> GenericImage {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new("timeout")
            .args(["1200", "bash", "scripts/images.sh", "test"])
            .current_dir(repo_root())
            .env("LITEOBS_BIN_DIR", bin_dir())
            .output()
            .map_err(|e| format!("running scripts/images.sh: {e}"))?;
        eprintln!("scripts/images.sh test: {:.1} s", started.elapsed().as_secs_f64());
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/images.sh test failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    GenericImage::new("liteobs-server".to_owned(), workspace_version())
        .with_exposed_port(8080.tcp())
        .with_wait_for(WaitFor::message_on_stdout("listening on http://"))
}

/// `n` records starting at second `first`, all from one node, written as the server writes
/// them back: with the route the server gives every stored exchange (it replaces an uploaded
/// one, so reading it back checks the server's templating).
fn records(first: u32, n: u32) -> Vec<Value> {
    (first..first + n)
        .map(|i| {
            json!({
                "ts": format!("2026-11-25T11:{:02}:{:02}.{:06}Z", i / 60, i % 60, i),
                "src_ip": "10.244.1.7", "src_port": 30000 + i,
                "dst_ip": "10.244.2.9", "dst_port": 8080,
                "method": "GET", "path": format!("/orders/{i}"), "route": "/orders/{id}", "host": "orders.svc",
                "status": if i % 7 == 0 { 500 } else { 200 },
                "latency_us": 100 + i, "req_bytes": 0, "resp_bytes": i,
                "src_pid": 4000 + i % 3, "src_comm": "curl", "dst_pid": 5000, "dst_comm": "orders",
                "node": "node-a"
            })
        })
        .collect()
}

/// The server's base URL, as mapped to this host now (a restart may map another port).
fn url(c: &Container<GenericImage>) -> String {
    let host = c.get_host().expect("container host");
    let port = c.get_host_port_ipv4(8080).expect("mapped port of 8080");
    format!("http://{host}:{port}")
}

fn logs(c: &Container<GenericImage>) -> String {
    let out = c.stdout_to_vec().unwrap_or_default();
    let err = c.stderr_to_vec().unwrap_or_default();
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err))
}

/// Waits for /healthz after a restart (testcontainers waits for readiness only on the first start).
fn wait_healthy(c: &Container<GenericImage>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(base) = c.get_host_port_ipv4(8080).map(|_| url(c))
            && let Ok(resp) = http().get(&format!("{base}/healthz")).call()
            && resp.status() == 200
        {
            return base;
        }
        assert!(Instant::now() < deadline, "server not healthy within 60 s of its restart\n{}", logs(c));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn upload(base: &str, batch: &[Value]) {
    let body: String = batch.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).expect("gzip");
    let mut resp = http()
        .post(&format!("{base}/upload"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .send(&gz.finish().expect("gzip"))
        .expect("upload request");
    let status = resp.status().as_u16();
    let answer: serde_json::Value = resp.body_mut().read_json().expect("JSON answer");
    assert_eq!((status, answer), (200, json!({ "accepted": batch.len() })));
}

/// Every stored record, in a stable order.
fn stored(base: &str) -> Vec<Value> {
    let unauthorized = http().get(&format!("{base}/query")).call().expect("query request");
    assert_eq!(unauthorized.status(), 401, "the token from LITEOBS_TOKEN is required");
    let mut resp = http()
        .get(&format!("{base}/query?limit=10000"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("query request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.body_mut().read_json().expect("query answer");
    assert_eq!(body["truncated"], json!(false));
    let mut records = body["records"].as_array().expect("records").clone();
    records.sort_by(|a, b| a["ts"].as_str().cmp(&b["ts"].as_str()));
    records
}

fn image_keeps_data_across_restarts(backend: &str) {
    if !privileged(&format!("server image with {backend}")) {
        return;
    }
    let image = server_image();
    let data = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(data.path(), Some(IMAGE_UID), Some(IMAGE_UID))
        .expect("chown the data directory");
    let host_dir = data.path().to_str().expect("UTF-8 temp path").to_owned();
    let db = format!("{DATA_DIR}/liteobs.{backend}");
    let run = || {
        image
            .clone()
            // The records' fixed timestamps age past the 7-day default retention, which would
            // delete them at the restart's first pass: this test is about the volume.
            .with_cmd([
                "-db-type",
                backend,
                "-db-path",
                db.as_str(),
                "-listen",
                "0.0.0.0:8080",
                "-retention",
                "off",
            ])
            .with_env_var("LITEOBS_TOKEN", TOKEN)
            .with_mount(Mount::bind_mount(host_dir.as_str(), DATA_DIR))
            .with_startup_timeout(Duration::from_secs(60))
            .start()
            .unwrap_or_else(|e| panic!("starting liteobs-server ({backend}): {e}"))
    };
    let first = records(0, 50);
    let second = records(50, 30);

    let started = Instant::now();
    let c = run();
    let base = url(&c);
    upload(&base, &first);
    assert_eq!(stored(&base), first, "{backend}: before the restart");

    // docker stop (SIGTERM, a graceful shutdown), docker start.
    c.stop().expect("docker stop");
    assert_eq!(
        c.exit_code().expect("exit code"),
        Some(0),
        "{backend}: a clean exit on SIGTERM\n{}",
        logs(&c)
    );
    c.start().expect("docker start");
    let base = wait_healthy(&c);
    assert_eq!(stored(&base), first, "{backend}: after the restart");
    upload(&base, &second);

    // A new container on the same data: only the volume carries it over.
    c.rm().expect("docker rm");
    let c = run();
    let base = url(&c);
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    assert_eq!(stored(&base), all, "{backend}: in a new container");
    assert!(
        data.path().join(format!("liteobs.{backend}")).is_file(),
        "{backend}: database on the host directory"
    );
    eprintln!("{backend}: image test {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn server_image_keeps_sqlite_data_across_restarts() {
    image_keeps_data_across_restarts("sqlite");
}

#[test]
fn server_image_keeps_duckdb_data_across_restarts() {
    image_keeps_data_across_restarts("duckdb");
}
