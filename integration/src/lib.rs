//! Harness for the cross-program tests in `integration/tests/`: finds the built binaries, runs
//! a real `liteobs-server` on an ephemeral port, and decides when a privileged test may skip.
//!
//! The binaries are the ones `cargo build --release --workspace` put next to the test executable
//! (scripts/test.sh builds them first); a missing one is a clear failure, not a skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary in the same target directory as the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        path.display()
    );
    path
}

/// True when the test may use root-only facilities. When not root: prints why the test is
/// skipped and returns false, unless LITEOBS_REQUIRE_PRIVILEGED=1, where it fails instead.
pub fn privileged(test: &str) -> bool {
    // Effective UID from /proc: no libc call, readable by everyone.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    if root {
        return true;
    }
    assert!(
        std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "{test} needs root, and LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping it"
    );
    eprintln!("SKIPPED {test}: needs root (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)");
    false
}

/// The store backends this build can test.
pub fn backends() -> Vec<&'static str> {
    if cfg!(feature = "duckdb") { vec!["sqlite", "duckdb"] } else { vec!["sqlite"] }
}

/// A running `liteobs-server`; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub db_path: PathBuf,
    pub backend: String,
}

impl Server {
    /// Starts a server with `backend` on `db_path`, listening on an ephemeral loopback port
    /// (or `listen` when given, to restart on the same port).
    pub fn start(backend: &str, db_path: &Path, token: Option<&str>, listen: Option<&str>) -> Server {
        let mut cmd = Command::new(bin("liteobs-server"));
        cmd.args(["-db-type", backend, "-db-path"])
            .arg(db_path)
            .args(["-listen", listen.unwrap_or("127.0.0.1:0")])
            .env_remove("LITEOBS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = token {
            cmd.args(["-token", t]);
        }
        let mut child = cmd.spawn().expect("spawn liteobs-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reader = BufReader::new(stdout);
        while !line.starts_with("listening on ") {
            line.clear();
            let n = reader.read_line(&mut line).expect("read server stdout");
            assert!(n > 0 && Instant::now() < deadline, "liteobs-server exited before listening");
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        let url = line.trim().trim_start_matches("listening on ").to_owned();
        Server { child, url, db_path: db_path.to_owned(), backend: backend.to_owned() }
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Sends SIGTERM and waits for a clean exit (graceful shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent for tests: no proxy, errors as values (a 4xx is an answer, not an Err).
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Runs `liteobs-client` with `args`; returns (exit code, stdout, stderr).
pub fn client(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("liteobs-client"))
        .args(args)
        .env_remove("LITEOBS_SERVER")
        .env_remove("LITEOBS_TOKEN")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .output()
        .expect("run liteobs-client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
