//! The agent never records its own uploads, even when the packets do not carry the address
//! `-server` names, as root: in a network namespace the test creates, the real
//! `liteobs-agent` (`-pidmap ebpf`, capturing on the namespace's `lo`) uploads to
//! `http://127.0.0.2:P`, which an iptables DNAT rule sends to the real `liteobs-server` on
//! 127.0.0.1:Q, the way kube-proxy sends a Service address to a pod. The capture filter
//! excludes 127.0.0.2:P, so every upload's packets (127.0.0.1 → 127.0.0.1:Q) are captured;
//! the agent must recognise them as its own (its process made the connection) and drop them.
//! Real curl calls to a python server in the same namespace must all be stored, and nothing
//! addressed to the server.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use liteobs_integration::{bin, privileged};
use liteobs_model::{QueryResponse, TrafficLog};

const TEST: &str = "agent_never_records_its_own_uploads_sent_through_a_dnat_address";
/// The address the agent is told to upload to (excluded from capture), and where DNAT sends it.
const SERVICE: &str = "127.0.0.2:18080";
const SERVER: &str = "127.0.0.1:18081";
const WORKLOAD_PORT: u16 = 18000;

fn has_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace with `lo` up, deleted on drop (with its iptables rules).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("liteobs-own-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ns = Netns(name);
        ns.run(&["ip", "netns", "add", &ns.0], false);
        ns.run(&["ip", "link", "set", "lo", "up"], true);
        ns
    }

    /// Runs `args` (inside the namespace when `inside`) and asserts it succeeded.
    fn run(&self, args: &[&str], inside: bool) -> String {
        let out = self.command(args, inside).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn command(&self, args: &[&str], inside: bool) -> Command {
        let mut cmd = if inside {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.0]);
            c.args(args);
            c
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        cmd.stdin(Stdio::null());
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's stream, as they come.
fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `what`; returns every line read so far.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str, log: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(what);
                log.push(line);
                if done {
                    return;
                }
            }
            Err(_) => panic!("no line with {what:?} within 30 s; got:\n{}", log.join("\n")),
        }
    }
}

/// A value from the agent's last `attribution counters` log line (`name=value`).
fn counter(log: &[String], name: &str) -> Option<u64> {
    // The last counters line that has it (the container counters are logged beside them).
    let prefix = format!("{name}=");
    log.iter()
        .rev()
        .filter(|l| l.contains("attribution counters"))
        .find_map(|line| line.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str())?.parse().ok()))
}

#[test]
fn agent_never_records_its_own_uploads_sent_through_a_dnat_address() {
    if !privileged(TEST) {
        return;
    }
    for tool in ["ip", "iptables", "python3", "curl"] {
        if !has_tool(tool) {
            assert!(
                std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "{TEST} needs {tool} (scripts/test.sh installs it)"
            );
            eprintln!("SKIPPED {TEST}: {tool} is not installed");
            return;
        }
    }
    let ns = Netns::new();
    let (service_ip, service_port) = SERVICE.split_once(':').unwrap_or_default();
    ns.run(
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            service_ip,
            "--dport",
            service_port,
            "-j",
            "DNAT",
            "--to-destination",
            SERVER,
        ],
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let server_bin = bin("liteobs-server").display().to_string();
    let db = dir.path().join("db.sqlite").display().to_string();
    let mut server =
        ns.command(&[&server_bin, "-db-type", "sqlite", "-db-path", &db, "-listen", SERVER], true);
    let mut server = Proc(server.stdout(Stdio::piped()).spawn().expect("spawning liteobs-server"));
    let server_out = lines(server.0.stdout.take().expect("piped"));
    wait_for(&server_out, "listening on", &mut Vec::new());

    let port = WORKLOAD_PORT.to_string();
    let mut workload = ns.command(&["python3", "-m", "http.server", &port, "--bind", "127.0.0.1"], true);
    let _workload =
        Proc(workload.current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    let workload_url = format!("http://127.0.0.1:{port}/");
    let ready = Instant::now() + Duration::from_secs(15);
    while !ns
        .command(&["curl", "-s", "-o", "/dev/null", &workload_url], true)
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < ready, "python3 -m http.server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let agent_bin = bin("liteobs-agent").display().to_string();
    let url = format!("http://{SERVICE}");
    let mut agent = ns.command(
        &[
            &agent_bin,
            "-iface",
            "lo",
            "-server",
            &url,
            "-pidmap",
            "ebpf",
            "-node",
            "own-uploads",
            "-flush-interval",
            "200ms",
            "-stats-interval",
            "1s",
        ],
        true,
    );
    let mut agent = Proc(
        agent
            .env_remove("RUST_LOG")
            .env_remove("LITEOBS_SERVER")
            .env_remove("LITEOBS_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning liteobs-agent"),
    );
    let agent_err = lines(agent.0.stderr.take().expect("piped"));
    let mut log = Vec::new();
    wait_for(&agent_err, "capturing", &mut log);

    // Records to upload, in several batches: each upload is itself captured (and, before the
    // fix, recorded and uploaded in the next batch).
    let made = 6;
    for _ in 0..made {
        ns.run(&["curl", "-sS", "-o", "/dev/null", &workload_url], true);
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").args(["-INT", &agent.0.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the agent did not stop within 30 s of SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    while let Ok(line) = agent_err.recv_timeout(Duration::from_millis(500)) {
        log.push(line);
    }

    let body = ns.run(&["curl", "-sS", &format!("http://{SERVER}/query?limit=10000")], true);
    let stored: Vec<TrafficLog> = serde_json::from_str::<QueryResponse>(&body)
        .unwrap_or_else(|e| panic!("query said {body:?}: {e}"))
        .records;
    let server_port: u16 = SERVER.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_default();
    let own: Vec<&TrafficLog> =
        stored.iter().filter(|r| r.dst_port == server_port || r.path.starts_with("/upload")).collect();
    let workload_records = stored.iter().filter(|r| r.dst_port == WORKLOAD_PORT).count();
    let log = log.join("\n");
    assert_eq!(
        workload_records, made,
        "every curl call is stored once; stored {stored:#?}\nagent log:\n{log}"
    );
    assert!(own.is_empty(), "the agent's own uploads were recorded: {own:#?}\nagent log:\n{log}");
    let dropped = counter(&log.lines().map(str::to_owned).collect::<Vec<_>>(), "own_uploads");
    assert!(dropped.unwrap_or(0) >= 1, "own_uploads={dropped:?}: were the uploads captured at all?\n{log}");
    drop(server);
}
