//! Real ClickHouse servers for the tests: `clickhouse-server` (Debian's package, 18.16, which
//! `scripts/test.sh` installs) started on free ports with a data directory of its own, and
//! stopped when the test process ends (a shell beside it watches the process). Without the
//! binary the tests skip with the reason, and fail under `LITEOBS_REQUIRE_PRIVILEGED=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::ClickhouseConfig;

pub struct Node {
    pub http: u16,
    /// The shell that runs the server and stops it when `running` is gone.
    watcher: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.path().join("running"));
        let _ = self.watcher.wait();
    }
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

fn binary() -> Option<PathBuf> {
    ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Whether the tests may skip (no ClickHouse here); panics under CI's rule.
pub fn unavailable(test: &str) -> bool {
    if binary().is_some() {
        return false;
    }
    let reason =
        "clickhouse-server is not installed (apt-get install clickhouse-server; scripts/test.sh does)";
    assert!(
        std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "{test}: LITEOBS_REQUIRE_PRIVILEGED=1 but {reason}"
    );
    eprintln!("SKIPPED {test}: {reason} (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)");
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `remote_servers` entry of a cluster named `name`: one shard per TCP port.
pub fn cluster_xml(name: &str, shards: &[u16]) -> String {
    let shards: String = shards
        .iter()
        .map(|p| format!("<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>"))
        .collect();
    format!("<remote_servers><{name}>{shards}</{name}></remote_servers>")
}

/// Starts a server with `extra` inside its configuration; answers once it does.
pub fn start_with(tcp: u16, extra: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let http = free_port();
    let config = format!(
        "<yandex>\
         <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>\
         <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port><listen_host>127.0.0.1</listen_host>\
         <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/user_files/</user_files_path>\
         <format_schema_path>{d}/format_schemas/</format_schema_path><users_config>{d}/users.xml</users_config>\
         <default_profile>default</default_profile><default_database>default</default_database>\
         <mark_cache_size>67108864</mark_cache_size><uncompressed_cache_size>67108864</uncompressed_cache_size>\
         {extra}</yandex>",
        d = d.display()
    );
    let users = "<yandex><profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>\
         <users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile>\
         <quota>default</quota></default></users><quotas><default><interval><duration>3600</duration>\
         <queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows>\
         <execution_time>0</execution_time></interval></default></quotas></yandex>";
    std::fs::write(d.join("config.xml"), config).expect("config");
    std::fs::write(d.join("users.xml"), users).expect("users");
    let bin = binary().expect("clickhouse-server");
    let server = if bin.ends_with("clickhouse") {
        format!("{} server", bin.display())
    } else {
        bin.display().to_string()
    };
    // The shell stops the server when this test process is gone (tests end without dropping
    // statics) or the node is dropped (its `running` file removed); `exec` would lose that.
    std::fs::write(d.join("running"), "").expect("marker");
    let script = format!(
        "{server} --config-file={d}/config.xml >{d}/stdout 2>&1 & ch=$!; \
         while kill -0 {} 2>/dev/null && kill -0 $ch 2>/dev/null && [ -e {d}/running ]; do sleep 0.2; done; \
         kill $ch 2>/dev/null; wait",
        std::process::id(),
        d = d.display(),
    );
    let watcher = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clickhouse-server");
    let node = Node { http, watcher, dir };
    wait_for(node.dir.path(), http);
    node
}

fn wait_for(dir: &Path, http: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", http)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.ends_with("Ok.\n") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    panic!("clickhouse-server on port {http} did not answer within 60 s; its error log:\n{log}");
}

/// The one single-node server of this test process.
pub fn single() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| start_with(free_port(), ""))
}

/// A new, empty database on `node` (each test gets its own).
pub fn fresh_database(node: &Node) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("liteobs_t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    run(node, &format!("CREATE DATABASE {name}"));
    name
}

/// Runs `sql` on `node` (test setup), panicking with ClickHouse's answer if it fails.
pub fn run(node: &Node, sql: &str) -> String {
    let http = super::http::Http::new("default", "default", None, Duration::from_secs(30));
    http.text(&node.url(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A store's configuration for `database` on `node`.
pub fn config(node: &Node, database: &str) -> ClickhouseConfig {
    ClickhouseConfig { urls: vec![node.url()], database: database.to_owned(), ..Default::default() }
}
