//! Harness for the cross-program tests in `integration/tests/` and the benchmarks in
//! `integration/src/bin/`: finds the built binaries, runs a real `liteobs-server` on an ephemeral
//! port, and decides when a privileged test may skip.
//!
//! The binaries are the ones `cargo build --release --workspace` put in the target directory of
//! the running test or benchmark (scripts/test.sh builds them first); a missing one is a clear
//! failure, not a skip. Tests use the panicking forms ([`bin`], [`Server::start`],
//! [`Server::stop`]); programs use the fallible ones (`try_*`).

pub mod browser;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Path of a workspace binary in the same target directory as the running test.
pub fn bin(name: &str) -> PathBuf {
    try_bin(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Path of a workspace binary in the target directory of the running executable: a test runs
/// from `target/<profile>/deps/`, a binary such as `bench-store` from `target/<profile>/`.
pub fn try_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().with_context(|| format!("{} has no parent directory", exe.display()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().with_context(|| format!("{} has no parent directory", dir.display()))?;
    }
    let path = dir.join(name);
    ensure!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        path.display()
    );
    Ok(path)
}

/// True when the test may use root-only facilities. When not root: prints why the test is
/// skipped and returns false, unless LITEOBS_REQUIRE_PRIVILEGED=1, where it fails instead.
pub fn privileged(test: &str) -> bool {
    // Effective UID from /proc: no libc call, readable by everyone.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
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
    /// `http://ADDR/metrics` when started with `-metrics-listen`.
    pub metrics_url: Option<String>,
}

impl Server {
    /// Starts a server with `backend` on `db_path`, listening on an ephemeral loopback port
    /// (or `listen` when given, to restart on the same port).
    pub fn start(backend: &str, db_path: &Path, token: Option<&str>, listen: Option<&str>) -> Server {
        Server::try_start(backend, db_path, token, listen).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Server::start`], with an error instead of a panic.
    pub fn try_start(
        backend: &str,
        db_path: &Path,
        token: Option<&str>,
        listen: Option<&str>,
    ) -> anyhow::Result<Server> {
        Server::try_start_with(backend, db_path, token, listen, &[])
    }

    /// [`Server::start`] with more flags (limits, deadlines) after the usual ones. Servers
    /// started here keep rows of any age (`-retention off`) unless `flags` says otherwise.
    pub fn start_with(backend: &str, db_path: &Path, flags: &[&str]) -> Server {
        Server::try_start_with(backend, db_path, None, None, flags).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Server::start_with`], with an error instead of a panic.
    pub fn try_start_with(
        backend: &str,
        db_path: &Path,
        token: Option<&str>,
        listen: Option<&str>,
        flags: &[&str],
    ) -> anyhow::Result<Server> {
        let mut cmd = Command::new(try_bin("liteobs-server")?);
        cmd.args(["-db-type", backend, "-db-path"])
            .arg(db_path)
            .args(["-listen", listen.unwrap_or("127.0.0.1:0")])
            .env_remove("LITEOBS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = token {
            cmd.args(["-token", t]);
        }
        // The tests' records carry fixed dates, most of them older than the default retention
        // (7 days), which the server's first pass would delete; a test of retention gives its
        // own `-retention` in `flags`, which wins (the last of a repeated flag does).
        if !flags.iter().any(|f| f.trim_start_matches('-').starts_with("retention")) {
            cmd.args(["-retention", "off"]);
        }
        cmd.args(flags);
        let mut child = cmd.spawn().context("spawning liteobs-server")?;
        let stdout = child.stdout.take().context("liteobs-server has no stdout pipe")?;
        // From here on, dropping `server` kills the child, so every early return cleans up.
        let mut server = Server {
            child,
            url: String::new(),
            db_path: db_path.to_owned(),
            backend: backend.to_owned(),
            metrics_url: None,
        };
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reader = BufReader::new(stdout);
        while !line.starts_with("listening on ") {
            line.clear();
            let n = reader.read_line(&mut line).context("reading liteobs-server's stdout")?;
            if n == 0 {
                bail!("liteobs-server ({backend}, {}) exited before listening", db_path.display());
            }
            if let Some(url) = line.trim().strip_prefix("metrics on ") {
                server.metrics_url = Some(url.to_owned());
            }
            ensure!(Instant::now() < deadline, "liteobs-server did not listen within 60 s");
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        server.url = line.trim().trim_start_matches("listening on ").to_owned();
        // The line is printed before the server installs its signal handlers; once it answers a
        // request, a SIGTERM from `stop` is a graceful shutdown rather than a kill.
        let agent = http();
        loop {
            match agent.get(&format!("{}/healthz", server.url)).call() {
                Ok(resp) if resp.status() == 200 => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(resp) => bail!("liteobs-server answers /healthz with {}", resp.status()),
                Err(e) => return Err(e).context("liteobs-server does not answer /healthz"),
            }
        }
        Ok(server)
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Sends SIGTERM and waits for a clean exit (graceful shutdown).
    pub fn stop(self) -> std::process::ExitStatus {
        self.try_stop().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Server::stop`], with an error instead of a panic (a non-zero exit is not an error here:
    /// the caller decides).
    pub fn try_stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(st) = self.child.try_wait().context("waiting for liteobs-server")? {
                return Ok(st);
            }
            ensure!(Instant::now() < deadline, "liteobs-server did not stop within 40 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the server process from /proc/PID/status (`VmRSS`, `VmHWM`, ...), in
    /// KiB.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
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

/// What the agent makes of a capture file, printed instead of uploaded (`-read FILE -node
/// NODE`): the records an upload of the same file must store, exactly once each.
pub fn replayed(capture: &Path, node: &str) -> Vec<liteobs_model::TrafficLog> {
    let out = Command::new(bin("liteobs-agent"))
        .arg("-read")
        .arg(capture)
        .args(["-node", node])
        .env_remove("LITEOBS_SERVER")
        .output()
        .expect("liteobs-agent -read");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    liteobs_model::decode_ndjson(&out.stdout).expect("NDJSON")
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

/// `records` with the route the server gives each when no bound is reached and no `-route`
/// pattern is set ([`liteobs_model::route::route`]): what a query answers for them.
pub fn with_routes(records: Vec<liteobs_model::TrafficLog>) -> Vec<liteobs_model::TrafficLog> {
    let patterns = liteobs_model::route::Patterns::default();
    records
        .into_iter()
        .map(|r| liteobs_model::TrafficLog {
            route: Some(liteobs_model::route::route(&r.path, &patterns)),
            ..r
        })
        .collect()
}

/// Uploads `records` as one gzip NDJSON body (with `token` as the bearer token when given), as
/// the agent does; returns the status and the JSON answer.
pub fn upload_gzip_ndjson(
    server: &Server,
    token: Option<&str>,
    records: &[liteobs_model::TrafficLog],
) -> (u16, serde_json::Value) {
    use std::io::Write;
    let body: String = records.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).expect("gzip");
    let mut req = http()
        .post(&format!("{}/upload", server.url))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req.send(&gz.finish().expect("gzip")).expect("upload request");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_json().expect("JSON answer"))
}

/// `python3 -m http.server` on a free loopback port, serving `dir`; killed on drop. The root-only
/// live-capture tests make their traffic with curl against it.
pub struct WebServer {
    child: Child,
    pub port: u16,
}

impl WebServer {
    /// Starts it and waits (up to 10 s) until it accepts connections.
    pub fn start(dir: &Path) -> WebServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let web = WebServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        web
    }

    /// `curl` of `path` on it (a new connection each time); panics unless it succeeds.
    pub fn get(&self, path: &str) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let st = Command::new("curl").args(["-s", "-o", "/dev/null", "--max-time", "5", &url]).status();
        assert!(st.is_ok_and(|s| s.success()), "curl {url}");
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `liteobs-agent` capturing live (root only) with `args`; its stderr collected. Started by
/// [`LiveAgent::start`], which returns once the agent says it is capturing.
pub struct LiveAgent {
    child: Child,
    log: Option<std::thread::JoinHandle<String>>,
}

impl LiveAgent {
    pub fn start(args: &[&str]) -> LiveAgent {
        let mut child = Command::new(bin("liteobs-agent"))
            .args(args)
            .env_remove("LITEOBS_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting liteobs-agent");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, capturing) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("capturing") {
                    let _ = tx.send(());
                }
                all.push(line);
            }
            all.join("\n")
        });
        let agent = LiveAgent { child, log: Some(log) };
        assert!(capturing.recv_timeout(Duration::from_secs(10)).is_ok(), "the agent did not start capturing");
        agent
    }

    /// SIGINT, then its exit status and log (within 30 s).
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("waiting for liteobs-agent") {
                break st;
            }
            assert!(Instant::now() < deadline, "the agent did not stop within 30 s of SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log.take().map(|l| l.join().unwrap_or_default()).unwrap_or_default();
        (status, log)
    }
}

impl Drop for LiveAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
