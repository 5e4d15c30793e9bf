//! Process attribution end to end, as root: the real `liteobs-agent` capturing live on `lo`
//! with `-pidmap ebpf`, uploading to a real `liteobs-server` (SQLite), while real servers and
//! clients the test starts talk over loopback. Every stored exchange must name the exact client
//! process (`src_pid`) and the exact serving process (`dst_pid`), none may be missing, and
//! `liteobs-client -pid N` must list exactly the exchanges of process N.
//!
//! What runs, and which attribution path each part exercises:
//! - `python3 -m http.server` on 127.0.0.1 (started after the agent: the listener's owner is
//!   the first guess, the accept refines it), with curl clients (short-lived: looked up after
//!   they exited), a python client, and three python clients in a row from one local port
//!   (one 4-tuple reused by three processes: nothing learnt about a connection may outlive
//!   it);
//! - a `ThreadingHTTPServer` whose accept loop runs on a non-main thread and whose requests are
//!   handled on per-connection threads (the owner must be the process, never a thread), with
//!   curl and a python client making several requests on one keep-alive connection;
//! - nginx with two workers (master_process on): the response body is the serving worker's
//!   `$pid`, and the record must name that worker, a child of the master, never the master;
//! - `python3 -m http.server` bound to ::1, with curl and a python client (IPv6 keys);
//! - a keep-alive server started *before* the agent, with a python client that connects before
//!   the agent starts and sends its requests after (nothing in the eBPF maps: the /proc
//!   fallback answers), and clients that connect afterwards (the listener predates the program,
//!   so only the accept tracepoints can tell).
//!
//! Every process is stopped when the test ends, also on failure (drop guards; nginx is stopped
//! through its master so that no worker outlives the test).

#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use liteobs_integration::{Server, bin, client, http, privileged};
use liteobs_model::{QueryResponse, TrafficLog};

const TEST: &str = "agent_attributes_every_exchange_to_the_processes_the_test_started";

/// A keep-alive (HTTP/1.1) server: `ThreadingHTTPServer`, its accept loop on a non-main
/// thread, each connection on its own thread. The body says "<thread id> <process id>".
const THREADED_SERVER: &str = r#"
import http.server, os, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("%d %d" % (threading.get_native_id(), os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// A client making `n` requests on one connection, from local port `lport` when not 0.
/// Prints its local address once connected; when given a go file, waits for it before the
/// first request; prints `resp <status> <body>` per response; with a fixed local port, waits
/// for the server to close (so that the server, not this port, keeps the TIME_WAIT); prints
/// `done`; then keeps the connection open until stdin closes.
const PY_CLIENT: &str = r#"
import os, socket, sys, time
host, port, n, tag, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
lport = int(sys.argv[6])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
if lport:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, lport))
s.connect((host, port))
la = s.getsockname()
print(la[0], la[1], flush=True)
if go != "-":
    deadline = time.time() + 30
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.02)
f = s.makefile("rb")
for i in range(n):
    s.sendall(("GET /%s/%d HTTP/1.1\r\nHost: liteobs-test\r\n\r\n" % (tag, i)).encode())
    status = f.readline().split()[1].decode()
    length = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    print("resp", status, f.read(length).decode().strip().replace("\n", " "), flush=True)
if lport:
    f.read()
print("done", flush=True)
sys.stdin.read()
"#;

/// A child process, killed and reaped on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    what: String,
}

impl Proc {
    fn spawn(what: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {what} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Proc { child, stdin, stdout, what: what.to_owned() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of stdout (the python helpers print when ready); panics at EOF.
    fn line(&mut self) -> String {
        let out = self.stdout.as_mut().unwrap_or_else(|| panic!("{}: stdout is not piped", self.what));
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap_or_else(|e| panic!("{}: reading stdout: {e}", self.what));
        assert!(n > 0, "{} ended its output early (exit: {:?})", self.what, self.child.try_wait());
        line.trim_end().to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).expect("binding an ephemeral port").local_addr().expect("local addr").port()
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The python interpreter itself (not a version-manager shim), so that the PID the test spawns
/// is the interpreter's from the first instruction on.
fn python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("running python3");
    assert!(out.status.success(), "python3 -c failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn has_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `python3 -m http.server` (HTTP/1.0: one request per connection) bound to `bind`.
fn http_server(py: &Path, bind: SocketAddr, dir: &Path) -> Proc {
    let p = Proc::spawn(
        &format!("http.server on {bind}"),
        Command::new(py)
            .args(["-m", "http.server", &bind.port().to_string(), "--bind", &bind.ip().to_string()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(bind);
    p
}

fn threaded_server(py: &Path, bind: SocketAddr) -> Proc {
    let mut p = Proc::spawn(
        &format!("threaded server on {bind}"),
        Command::new(py)
            .args(["-c", THREADED_SERVER, &bind.ip().to_string(), &bind.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    assert_eq!(p.line(), "ready");
    p
}

/// A connected [`PY_CLIENT`] and its local address.
struct PyClient {
    proc: Proc,
    local: SocketAddr,
    tag: String,
}

impl PyClient {
    /// Connects to `server`; `go`: a file to wait for before the first request.
    fn connect(py: &Path, server: SocketAddr, n: usize, tag: &str, go: Option<&Path>) -> PyClient {
        PyClient::connect_from(py, 0, server, n, tag, go)
    }

    /// [`PyClient::connect`] from local port `lport` (0: any).
    fn connect_from(
        py: &Path,
        lport: u16,
        server: SocketAddr,
        n: usize,
        tag: &str,
        go: Option<&Path>,
    ) -> PyClient {
        let go = go.map_or_else(|| "-".to_owned(), |p| p.display().to_string());
        let mut proc = Proc::spawn(
            &format!("python client {tag}"),
            Command::new(py)
                .args(["-c", PY_CLIENT, &server.ip().to_string(), &server.port().to_string()])
                .args([&n.to_string(), tag, &go, &lport.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let line = proc.line();
        let (ip, port) = line.split_once(' ').unwrap_or_else(|| panic!("client {tag} said {line:?}"));
        let ip: IpAddr = ip.parse().unwrap_or_else(|_| panic!("client {tag} said {line:?}"));
        let port: u16 = port.parse().unwrap_or_else(|_| panic!("client {tag} said {line:?}"));
        PyClient { proc, local: SocketAddr::new(ip, port), tag: tag.to_owned() }
    }

    /// Lets the client close its connection and exit; waits for that.
    fn finish(mut self) {
        drop(self.proc.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.proc.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "client {} did not exit", self.tag);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for every response: (path, status, body) per request, in order.
    fn responses(&mut self) -> Vec<(String, u16, String)> {
        let mut out = Vec::new();
        loop {
            let line = self.proc.line();
            if line == "done" {
                return out;
            }
            let mut parts = line.splitn(3, ' ');
            assert_eq!(parts.next(), Some("resp"), "client {} said {line:?}", self.tag);
            let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
            let body = parts.next().unwrap_or_default().to_owned();
            out.push((format!("/{}/{}", self.tag, out.len()), status, body));
        }
    }
}

/// One curl run; returns (curl's PID, its local address, status, body).
fn curl(url: &str) -> (u32, SocketAddr, u16, String) {
    let child = Command::new("curl")
        .args(["-sS", "-g", "--max-time", "5", "-w", "\n%{local_ip} %{local_port} %{http_code}", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning curl");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl's output");
    assert!(out.status.success(), "curl {url} failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let f: Vec<&str> = last.split_whitespace().collect();
    fn field<T: std::str::FromStr>(f: &[&str], i: usize, text: &str) -> T {
        f.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("curl printed {text:?}"))
    }
    let ip: IpAddr = field(&f, 0, &text);
    let port: u16 = field(&f, 1, &text);
    let status: u16 = field(&f, 2, &text);
    (pid, SocketAddr::new(ip, port), status, body.trim().to_owned())
}

fn url(server: SocketAddr, path: &str) -> String {
    format!("http://{server}{path}") // SocketAddr's Display brackets IPv6 addresses
}

/// Parent PID and state of a process, from /proc/<pid>/stat (fields after the comm).
fn stat(pid: u32) -> Option<(u32, char, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = s.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((ppid, state, comm))
}

/// Live (not zombie) children of `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if stat(pid).is_some_and(|(ppid, state, _)| ppid == parent && state != 'Z') {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).stderr(Stdio::null()).status();
}

/// nginx, master and two workers. Stopped through the master (SIGTERM: it stops its workers,
/// reaps them and exits); a worker still alive after that is killed, so none outlives the test.
struct Nginx {
    master: Child,
    workers: Vec<u32>,
}

impl Nginx {
    fn start(dir: &Path, addr: SocketAddr) -> Nginx {
        let prefix = dir.display();
        let conf = format!(
            "worker_processes 2;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {addr};
        location / {{ return 200 \"$pid\"; }}
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("writing nginx.conf");
        let master = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("startup.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning nginx");
        let mut nginx = Nginx { master, workers: Vec::new() };
        wait_listening(addr);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            nginx.workers = children(nginx.master.id());
            if nginx.workers.len() >= 2 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(nginx.workers.len(), 2, "workers of nginx {}: {:?}", nginx.master.id(), nginx.workers);
        nginx
    }

    fn master_pid(&self) -> u32 {
        self.master.id()
    }

    /// Workers still running (an exited one may linger as a zombie of init until reaped).
    fn live_workers(&self) -> Vec<u32> {
        self.workers
            .iter()
            .copied()
            .filter(|w| stat(*w).is_some_and(|(_, state, comm)| state != 'Z' && comm == "nginx"))
            .collect()
    }

    /// Stops master and workers; returns the workers that had to be killed (none when nginx
    /// shut down as it should).
    fn shut_down(&mut self) -> Vec<u32> {
        if self.master.try_wait().ok().flatten().is_none() {
            for w in children(self.master.id()) {
                if !self.workers.contains(&w) {
                    self.workers.push(w);
                }
            }
            signal(self.master.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.master.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        let stragglers = self.live_workers();
        for w in &stragglers {
            signal(*w, "-KILL");
        }
        stragglers
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The agent, its stderr collected by a thread; killed on drop.
struct Agent {
    child: Child,
    log: Option<JoinHandle<String>>,
}

impl Agent {
    /// Starts the agent and waits until it captures (the eBPF program is attached before).
    fn start(ports: &[u16], server: &Server) -> Agent {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut child = Command::new(bin("liteobs-agent"))
            .args(["-iface", "lo", "-pidmap", "ebpf", "-ports", &ports.join(",")])
            .args(["-server", &server.url, "-node", "attribution-it"])
            .args(["-batch-size", "8", "-flush-interval", "100ms", "-stats-interval", "2s"])
            .env_remove("LITEOBS_TOKEN")
            .env_remove("LITEOBS_SERVER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting liteobs-agent");
        let stderr = child.stderr.take().expect("agent stderr is piped");
        let (tx, rx) = mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" capturing ") {
                    let _ = tx.send(());
                }
                all.push(line);
            }
            all.join("\n")
        });
        let mut agent = Agent { child, log: Some(log) };
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = agent.child.kill();
            let _ = agent.child.wait();
            let log = agent.log.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
            panic!("the agent did not start capturing within 20 s:\n{log}");
        }
        agent
    }

    /// SIGTERM (stop capturing, drain, deliver what is held), then its exit status and log.
    fn stop(mut self) -> (ExitStatus, String) {
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("waiting for the agent") {
                break st;
            }
            assert!(Instant::now() < deadline, "the agent did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log.take().map(|h| h.join().expect("agent log thread")).unwrap_or_default();
        (status, log)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One exchange as the client that made it saw it.
#[derive(Debug, Clone)]
struct Made {
    scenario: &'static str,
    client: SocketAddr,
    server: SocketAddr,
    path: String,
    status: u16,
    client_pid: u32,
    /// Names the record may carry: the process's threads' (the kernel keeps a name per thread).
    client_comms: Vec<String>,
    server_pid: u32,
    server_comms: Vec<String>,
}

/// The names of a running process's threads (`/proc/<pid>/task/*/comm`).
fn comms(pid: u32) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim_end().to_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out.dedup();
    assert!(!out.is_empty(), "process {pid} is gone");
    out
}

/// Waits for a python client's responses and records its exchanges; the client stays
/// connected (in `keep_open`) until the test lets it go.
fn collect(
    mut c: PyClient,
    scenario: &'static str,
    server: (SocketAddr, &[String]),
    server_pid: &dyn Fn(&str) -> u32,
    made: &mut Vec<Made>,
    keep_open: &mut Vec<PyClient>,
) {
    let client_comms = comms(c.proc.pid());
    for (path, status, body) in c.responses() {
        made.push(Made {
            scenario,
            client: c.local,
            server: server.0,
            path,
            status,
            client_pid: c.proc.pid(),
            client_comms: client_comms.clone(),
            server_pid: server_pid(&body),
            server_comms: server.1.to_vec(),
        });
    }
    keep_open.push(c);
}

fn stored(server: &Server) -> Vec<TrafficLog> {
    let mut resp = http().get(&format!("{}/query?limit=10000", server.url)).call().expect("query");
    assert_eq!(resp.status(), 200);
    let body: QueryResponse = serde_json::from_reader(resp.body_mut().as_reader()).expect("query response");
    body.records
}

/// A value from the agent's last `attribution counters` log line (`name=value`).
fn counter(log: &str, name: &str) -> Option<u64> {
    // The last counters line that has it (the container counters are logged beside them).
    let prefix = format!("{name}=");
    log.lines()
        .rev()
        .filter(|l| l.contains("attribution counters"))
        .find_map(|line| line.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str())?.parse().ok()))
}

/// `liteobs-client -pid N -o json`, as records.
fn client_by_pid(server: &Server, pid: u32) -> Vec<TrafficLog> {
    let (code, out, err) =
        client(&["-server", &server.url, "-pid", &pid.to_string(), "-o", "json", "-limit", "10000"]);
    assert_eq!(code, 0, "liteobs-client -pid {pid} failed: {err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("liteobs-client -o json printed no records ({e}): {out}"))
}

#[test]
fn agent_attributes_every_exchange_to_the_processes_the_test_started() {
    if !privileged(TEST) {
        return;
    }
    for tool in ["python3", "curl", "nginx"] {
        if !has_tool(tool) {
            assert!(
                std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "{TEST} needs {tool} (scripts/test.sh installs it)"
            );
            eprintln!("SKIPPED {TEST}: {tool} is not installed");
            return;
        }
    }
    let started = Instant::now();
    let py = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("mkdir www");
    std::fs::write(www.join("hello.txt"), "hello\n").expect("writing hello.txt");
    let go = dir.path().join("go");
    let v4: IpAddr = "127.0.0.1".parse().expect("v4");
    let v6: IpAddr = "::1".parse().expect("v6");
    let plain4 = SocketAddr::new(v4, free_port(v4));
    let threaded = SocketAddr::new(v4, free_port(v4));
    let nginx_addr = SocketAddr::new(v4, free_port(v4));
    let plain6 = SocketAddr::new(v6, free_port(v6));
    let early = SocketAddr::new(v4, free_port(v4));
    let curl_comm = vec!["curl".to_owned()];

    let server = Server::start("sqlite", &dir.path().join("store.sqlite"), None, None);

    // Before the agent: a keep-alive server, and a client connected to it that holds its
    // requests until the go file appears.
    let early_server = threaded_server(&py, early);
    let early_client = PyClient::connect(&py, early, 4, "early-conn", Some(&go));

    let ports = [plain4, threaded, nginx_addr, plain6, early].map(|a| a.port());
    let agent = Agent::start(&ports, &server);

    let mut made: Vec<Made> = Vec::new();
    let mut keep_open: Vec<PyClient> = Vec::new();
    let curls = |scenario: &'static str,
                 server: (SocketAddr, &[String]),
                 paths: &[String],
                 server_pid: &dyn Fn(&str) -> u32,
                 made: &mut Vec<Made>| {
        for path in paths {
            let (client_pid, client, status, body) = curl(&url(server.0, path));
            made.push(Made {
                scenario,
                client,
                server: server.0,
                path: path.clone(),
                status,
                client_pid,
                client_comms: curl_comm.clone(),
                server_pid: server_pid(&body),
                server_comms: server.1.to_vec(),
            });
        }
    };
    let paths = |prefix: &str, n: usize| -> Vec<String> { (0..n).map(|i| format!("{prefix}{i}")).collect() };

    // 1. python http.server on 127.0.0.1: curl and a python client.
    let plain4_server = http_server(&py, plain4, &www);
    let pid = plain4_server.pid();
    let names = comms(pid);
    curls("http.server v4 / curl", (plain4, &names), &paths("/hello.txt?curl=", 4), &|_| pid, &mut made);
    let c = PyClient::connect(&py, plain4, 1, "plain4-py", None);
    collect(c, "http.server v4 / python", (plain4, &names), &|_| pid, &mut made, &mut keep_open);
    // Three clients in a row from the same local port (http.server closes first, so the port
    // is free again at once): one 4-tuple, three connections, three processes. Each starts
    // once the previous one's exchange is stored, well within the agent's cache lifetime (a
    // tuple reused while the capture has not yet caught up with the old connection, some
    // 100 ms, is beyond what a map keyed by 4-tuple can tell apart).
    let reused = free_port(v4);
    for i in 0..3 {
        let mut c = PyClient::connect_from(&py, reused, plain4, 1, &format!("reused-port-{i}"), None);
        assert_eq!(c.local.port(), reused);
        for (path, status, _) in c.responses() {
            made.push(Made {
                scenario: "http.server v4 / python, one client port",
                client: c.local,
                server: plain4,
                path,
                status,
                client_pid: c.proc.pid(),
                client_comms: comms(c.proc.pid()),
                server_pid: pid,
                server_comms: names.clone(),
            });
        }
        c.finish();
        let path = format!("/reused-port-{i}/0");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stored(&server).iter().any(|r| r.src_port == reused && r.path == path)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // 2. Multi-threaded keep-alive server: curl, and several requests on one connection.
    let threaded_server_proc = threaded_server(&py, threaded);
    let pid = threaded_server_proc.pid();
    let names = comms(pid);
    let handled_by = |body: &str| -> u32 {
        let (tid, p) = body.split_once(' ').unwrap_or_else(|| panic!("threaded server said {body:?}"));
        assert_eq!(p, pid.to_string(), "the threaded server's PID");
        assert_ne!(tid, p, "the request was handled on the main thread, which proves nothing");
        pid
    };
    curls("threaded / curl", (threaded, &names), &paths("/threaded?curl=", 3), &handled_by, &mut made);
    let c = PyClient::connect(&py, threaded, 5, "threaded-keepalive", None);
    collect(c, "threaded / python keep-alive", (threaded, &names), &handled_by, &mut made, &mut keep_open);

    // 3. nginx, master + 2 workers: the worker named in the body served the request.
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir(&nginx_dir).expect("mkdir nginx");
    let mut nginx = Nginx::start(&nginx_dir, nginx_addr);
    let (master, workers) = (nginx.master_pid(), nginx.workers.clone());
    let worker_of = |body: &str| -> u32 {
        let w: u32 = body.trim().parse().unwrap_or_else(|_| panic!("nginx said {body:?}"));
        assert!(workers.contains(&w), "nginx says worker {w}, not one of {workers:?}");
        w
    };
    let names = vec!["nginx".to_owned()];
    curls("nginx / curl", (nginx_addr, &names), &paths("/nginx?curl=", 8), &worker_of, &mut made);
    for k in 0..2 {
        let c = PyClient::connect(&py, nginx_addr, 3, &format!("nginx-keepalive-{k}"), None);
        let before = made.len();
        collect(c, "nginx / python keep-alive", (nginx_addr, &names), &worker_of, &mut made, &mut keep_open);
        let on_this_conn: HashSet<u32> = made[before..].iter().map(|m| m.server_pid).collect();
        assert_eq!(on_this_conn.len(), 1, "one connection, one worker: {on_this_conn:?}");
    }

    // 4. IPv6: python http.server bound to ::1.
    let plain6_server = http_server(&py, plain6, &www);
    let pid = plain6_server.pid();
    let names = comms(pid);
    curls("http.server v6 / curl", (plain6, &names), &paths("/hello.txt?curl6=", 3), &|_| pid, &mut made);
    let c = PyClient::connect(&py, plain6, 1, "plain6-py", None);
    collect(c, "http.server v6 / python", (plain6, &names), &|_| pid, &mut made, &mut keep_open);

    // 5. The connection opened before the agent: go. Then new connections to the server that
    // was listening before the agent.
    let pid = early_server.pid();
    let names = comms(pid);
    let early_check = |body: &str| -> u32 {
        assert!(body.ends_with(&format!(" {pid}")), "the early server said {body:?}");
        pid
    };
    std::fs::write(&go, "go").expect("writing the go file");
    let s = (early, names.as_slice());
    collect(early_client, "opened before the agent / python", s, &early_check, &mut made, &mut keep_open);
    let c = PyClient::connect(&py, early, 2, "early-listener-py", None);
    collect(c, "listener before the agent / python", s, &early_check, &mut made, &mut keep_open);
    curls("listener before the agent / curl", s, &paths("/early?curl=", 2), &early_check, &mut made);

    // Until all is stored (or 20 s), keep the python clients connected: the connection opened
    // before the agent is attributed through /proc, which lists only open sockets.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&server).len() < made.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = agent.stop();
    drop(keep_open);
    assert!(status.success(), "the agent failed:\n{log}");
    assert!(log.contains("eBPF attribution attached"), "the eBPF program was not attached:\n{log}");

    // Every exchange the clients made is stored once, attributed to the processes that made
    // and served it; nothing else is stored.
    let got = stored(&server);
    let mut by_key: HashMap<(SocketAddr, String), Vec<&TrafficLog>> = HashMap::new();
    for r in &got {
        by_key.entry((SocketAddr::new(r.src_ip, r.src_port), r.path.clone())).or_default().push(r);
    }
    let mut problems = Vec::new();
    for m in &made {
        let what = format!("{}: {} → {} {}", m.scenario, m.client, m.server, m.path);
        let Some(recs) = by_key.remove(&(m.client, m.path.clone())) else {
            problems.push(format!("{what}: not stored"));
            continue;
        };
        if recs.len() != 1 {
            problems.push(format!("{what}: stored {} times", recs.len()));
        }
        let r = recs[0];
        let comm_ok = |c: &Option<String>, names: &[String]| c.as_ref().is_some_and(|c| names.contains(c));
        if SocketAddr::new(r.dst_ip, r.dst_port) != m.server
            || r.status != m.status
            || r.src_pid != Some(m.client_pid)
            || r.dst_pid != Some(m.server_pid)
            || !comm_ok(&r.src_comm, &m.client_comms)
            || !comm_ok(&r.dst_comm, &m.server_comms)
        {
            problems.push(format!(
                "{what}: stored server {}:{} status {} src {:?} {:?} dst {:?} {:?}; the test saw status {}, \
                 client {} {:?}, server {} {:?}",
                r.dst_ip,
                r.dst_port,
                r.status,
                r.src_pid,
                r.src_comm,
                r.dst_pid,
                r.dst_comm,
                m.status,
                m.client_pid,
                m.client_comms,
                m.server_pid,
                m.server_comms,
            ));
        }
    }
    for ((client, path), recs) in by_key {
        problems.push(format!("stored but never made: {client} {path} ({} record(s))", recs.len()));
    }
    let mut per_scenario: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &made {
        *per_scenario.entry(m.scenario).or_default() += 1;
    }
    eprintln!("{} exchanges made, {} stored: {per_scenario:#?}", made.len(), got.len());
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n\nagent log:\n{log}",
        problems.len(),
        problems.join("\n")
    );

    // nginx: every record names a worker (a child of the master), never the master.
    let served: HashSet<u32> =
        got.iter().filter(|r| r.dst_port == nginx_addr.port()).filter_map(|r| r.dst_pid).collect();
    assert!(!served.contains(&master) && served.is_subset(&workers.iter().copied().collect()));
    eprintln!("nginx master {master}, workers {workers:?}, served by {served:?}");

    // The connection opened before the agent came from /proc; the rest from the eBPF maps.
    let (ebpf_hits, proc_hits) = (counter(&log, "ebpf_hits"), counter(&log, "proc_hits"));
    eprintln!("agent attribution counters: ebpf_hits {ebpf_hits:?}, proc_hits {proc_hits:?}");
    assert!(ebpf_hits.unwrap_or(0) > 0, "no eBPF hits:\n{log}");
    assert!(proc_hits.unwrap_or(0) >= 2, "the early connection was not resolved through /proc:\n{log}");

    // liteobs-client -pid N lists exactly the exchanges of process N.
    let mut pids: Vec<(u32, &str)> = vec![
        (plain4_server.pid(), "http.server v4"),
        (threaded_server_proc.pid(), "threaded server"),
        (plain6_server.pid(), "http.server v6"),
        (early_server.pid(), "early server"),
    ];
    pids.extend(served.iter().map(|w| (*w, "nginx worker")));
    pids.extend(made.iter().find(|m| m.client_comms == curl_comm).map(|m| (m.client_pid, "a curl client")));
    pids.extend(
        made.iter().find(|m| m.scenario.contains("keep-alive")).map(|m| (m.client_pid, "a python client")),
    );
    for (pid, what) in pids {
        let listed = client_by_pid(&server, pid);
        let mut want: Vec<(SocketAddr, &str)> = made
            .iter()
            .filter(|m| m.server_pid == pid || m.client_pid == pid)
            .map(|m| (m.client, m.path.as_str()))
            .collect();
        let mut have: Vec<(SocketAddr, &str)> =
            listed.iter().map(|r| (SocketAddr::new(r.src_ip, r.src_port), r.path.as_str())).collect();
        want.sort_unstable();
        have.sort_unstable();
        assert!(!want.is_empty(), "no exchange of {what} {pid}");
        assert_eq!(have, want, "liteobs-client -pid {pid} ({what})");
        assert!(listed.iter().all(|r| r.dst_pid == Some(pid) || r.src_pid == Some(pid)));
        eprintln!("liteobs-client -pid {pid} ({what}): {} exchanges", listed.len());
    }

    // nginx stops with its workers.
    let stragglers = nginx.shut_down();
    assert!(stragglers.is_empty(), "nginx workers {stragglers:?} outlived their master");
    let elapsed = started.elapsed();
    eprintln!("took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "the test took {elapsed:?}");
}

/// A Node.js HTTP/1.1 keep-alive server; the body is the serving process's PID. With
/// `cluster` as the third argument: a primary and two workers in round-robin mode (the
/// primary accepts, with a NULL address, and hands each connection to a worker over IPC).
const NODE_SERVER: &str = r#"
const cluster = require("cluster"), http = require("http");
const [host, port, mode] = process.argv.slice(2);
cluster.schedulingPolicy = cluster.SCHED_RR;
if (mode === "cluster" && cluster.isPrimary) {
  let up = 0;
  for (let i = 0; i < 2; i++) cluster.fork().on("listening", () => { if (++up === 2) console.log("ready"); });
} else {
  http.createServer((req, res) => {
    const body = String(process.pid);
    res.writeHead(200, { "Content-Length": body.length });
    res.end(body);
  }).listen(+port, host, () => { if (mode !== "cluster") console.log("ready"); });
}
"#;

/// A `ThreadingHTTPServer` whose accept loop runs on a thread that renamed itself (and so do
/// the per-connection threads it spawns, which inherit the name): the record must still name
/// the process. The body is the process's PID.
const RENAMED_SERVER: &str = r#"
import ctypes, http.server, os, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
def serve():
    ctypes.CDLL(None).prctl(15, b"acceptor-thr", 0, 0, 0)  # PR_SET_NAME
    srv.serve_forever()
threading.Thread(target=serve, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

const BEFORE: &str = "servers_started_before_the_agent_are_attributed_to_the_process_serving";

/// The process name as /proc shows it.
fn proc_comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/comm: {e}"))
        .trim_end()
        .to_owned()
}

/// [`NODE_SERVER`] run from a file in `dir` (cluster workers re-run the primary's script).
fn node_server(dir: &Path, bind: SocketAddr, cluster: bool) -> Proc {
    let mode = if cluster { "cluster" } else { "single" };
    let script = dir.join("server.js");
    std::fs::write(&script, NODE_SERVER).expect("writing server.js");
    let mut p = Proc::spawn(
        &format!("node {mode} server on {bind}"),
        Command::new("/usr/bin/node")
            .arg(&script)
            .args([&bind.ip().to_string(), &bind.port().to_string(), mode])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    assert_eq!(p.line(), "ready");
    p
}

/// Kills the processes (node's cluster workers) when the test ends, also on failure.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal(*pid, "-KILL");
        }
    }
}

/// Node (single process and cluster round-robin) started before the agent, python keep-alive
/// clients and short curl connections after it, and a python server whose accepting thread is
/// renamed: every record names the client and the process that served (the worker whose PID
/// the body carries), by their process names.
#[test]
fn servers_started_before_the_agent_are_attributed_to_the_process_serving() {
    if !privileged(BEFORE) {
        return;
    }
    for tool in ["python3", "curl", "/usr/bin/node"] {
        if !has_tool(tool) {
            assert!(
                std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "{BEFORE} needs {tool}"
            );
            eprintln!("SKIPPED {BEFORE}: {tool} is not installed");
            return;
        }
    }
    let py = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let v4: IpAddr = "127.0.0.1".parse().expect("v4");
    let single = SocketAddr::new(v4, free_port(v4));
    let clustered = SocketAddr::new(v4, free_port(v4));
    let renamed = SocketAddr::new(v4, free_port(v4));
    let server = Server::start("sqlite", &dir.path().join("store.sqlite"), None, None);

    // Before the agent: both node servers.
    let node = node_server(dir.path(), single, false);
    let primary = node_server(dir.path(), clustered, true);
    let workers = children(primary.pid());
    let _workers_guard = KillOnDrop(workers.clone());
    assert_eq!(workers.len(), 2, "cluster workers of {}: {workers:?}", primary.pid());
    let agent = Agent::start(&[single.port(), clustered.port(), renamed.port()], &server);

    // (scenario, client addr, path, client pid, client comm, server pid named by the body)
    let mut made: Vec<(&str, SocketAddr, String, u32, String, u32)> = Vec::new();
    let mut keep_open = Vec::new();
    let mut python_keepalive =
        |scenario: &'static str, to: SocketAddr, n: usize, tag: &str, made: &mut Vec<_>| {
            let mut c = PyClient::connect(&py, to, n, tag, None);
            let comm = proc_comm(c.proc.pid());
            for (path, status, body) in c.responses() {
                assert_eq!(status, 200, "{scenario}");
                let served: u32 = body.parse().unwrap_or_else(|_| panic!("{scenario}: body {body:?}"));
                made.push((scenario, c.local, path, c.proc.pid(), comm.clone(), served));
            }
            keep_open.push(c);
        };
    let curl_close = |scenario: &'static str, to: SocketAddr, n: usize, made: &mut Vec<_>| {
        for i in 0..n {
            let path = format!("/close{i}");
            let child = Command::new("curl")
                .args(["-sS", "--max-time", "5", "-H", "Connection: close"])
                .args(["-w", "\n%{local_ip} %{local_port}", &url(to, &path)])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning curl");
            let pid = child.id();
            let out = child.wait_with_output().expect("curl's output");
            assert!(out.status.success(), "{scenario}: curl failed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, last) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl printed {text:?}"));
            let (ip, port) = last.split_once(' ').unwrap_or_else(|| panic!("curl printed {text:?}"));
            let local = SocketAddr::new(
                ip.parse().unwrap_or_else(|_| panic!("{text:?}")),
                port.parse().unwrap_or_else(|_| panic!("{text:?}")),
            );
            let served: u32 = body.trim().parse().unwrap_or_else(|_| panic!("{scenario}: body {body:?}"));
            made.push((scenario, local, path, pid, "curl".to_owned(), served));
        }
    };

    python_keepalive("node before the agent / python keep-alive", single, 4, "node-ka", &mut made);
    curl_close("node before the agent / curl, Connection: close", single, 3, &mut made);
    python_keepalive("node cluster RR / python keep-alive", clustered, 3, "cluster-ka-0", &mut made);
    python_keepalive("node cluster RR / python keep-alive", clustered, 3, "cluster-ka-1", &mut made);
    curl_close("node cluster RR / curl, Connection: close", clustered, 4, &mut made);
    let renamed_server = {
        let mut p = Proc::spawn(
            "renamed-thread server",
            Command::new(&py)
                .args(["-c", RENAMED_SERVER, &renamed.ip().to_string(), &renamed.port().to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        assert_eq!(p.line(), "ready");
        p
    };
    python_keepalive("renamed accepting thread / python keep-alive", renamed, 3, "renamed-ka", &mut made);
    curl_close("renamed accepting thread / curl", renamed, 2, &mut made);
    assert!(
        comms(renamed_server.pid()).contains(&"acceptor-thr".to_owned()),
        "the server's thread did not rename itself: {:?}",
        comms(renamed_server.pid())
    );

    // The cluster really handed connections to both workers, never served in the primary.
    let served: HashSet<u32> = made.iter().filter(|m| m.0.contains("cluster")).map(|m| m.5).collect();
    assert_eq!(served, workers.iter().copied().collect(), "workers {workers:?} vs bodies {served:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&server).len() < made.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = agent.stop();
    drop(keep_open);
    assert!(status.success(), "the agent failed:\n{log}");
    let got = stored(&server);
    let mut problems = Vec::new();
    for (scenario, client, path, client_pid, client_comm, served) in &made {
        let recs: Vec<&TrafficLog> = got
            .iter()
            .filter(|r| SocketAddr::new(r.src_ip, r.src_port) == *client && r.path == *path)
            .collect();
        let want_comm = proc_comm(*served);
        let ok = recs.len() == 1
            && recs[0].src_pid == Some(*client_pid)
            && recs[0].src_comm.as_deref() == Some(client_comm.as_str())
            && recs[0].dst_pid == Some(*served)
            && recs[0].dst_comm.as_deref() == Some(want_comm.as_str());
        if !ok {
            let seen: Vec<_> =
                recs.iter().map(|r| (r.src_pid, &r.src_comm, r.dst_pid, &r.dst_comm)).collect();
            problems.push(format!(
                "{scenario}: {client} {path}: stored {seen:?}; want src {client_pid} {client_comm:?}, dst {served} \
                 {want_comm:?}"
            ));
        }
    }
    eprintln!("{} exchanges made, {} stored", made.len(), got.len());
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n\nagent log:\n{log}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(proc_comm(node.pid()), "node");
    drop(renamed_server);
}
