//! Root-only, end to end: the eBPF attribution against real processes this test starts.
//!
//! Servers: `python3 -m http.server` on 127.0.0.1 and on ::1, a `ThreadingHTTPServer` whose
//! accept loop runs on a non-main thread, and nginx with two workers (whose responses carry
//! the serving worker's PID). Clients: curl (short-lived; looked up after it exited) and a
//! python client that holds its connection open. Every lookup is compared with PIDs the test
//! spawned; one test opens its connection before the program is loaded and must be resolved
//! through /proc.
//!
//! Other network namespaces (created with `ip netns`, a veth pair each, as pods have): servers
//! that listened on `0.0.0.0` and one port in two namespaces before the map was built, never
//! accepting (only the listener scan can tell who serves them, by each namespace's own
//! address), and a keep-alive connection to a namespace's server opened before the map was
//! built (only that namespace's `tcp` table lists its server end).
//!
//! Skips with a message when not root or when a tool (python3, curl, nginx, ip) is missing;
//! both are failures under LITEOBS_REQUIRE_PRIVILEGED=1 (CI installs python3, curl and
//! nginx-light first).

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use liteobs_agent::pidmap::ebpf::{EbpfConfig, EbpfOwners};
use liteobs_agent::pidmap::{Mode, PidMap, PidMapConfig, ProcessInfo};
use liteobs_ebpf::layout::Stat;

fn required() -> bool {
    std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() == Ok("1")
}

/// True when the test can run: root, and every tool in `tools` on PATH.
fn can_run(test: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(!required(), "{test} needs root, and LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping it");
        eprintln!("SKIPPED {test}: needs root (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)");
        return false;
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(!required(), "{test} needs {tool} (scripts/test.sh installs it)");
            eprintln!("SKIPPED {test}: {tool} is not installed");
            return false;
        }
    }
    true
}

/// A child process, killed and reaped on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        Proc { child, stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// First line of stdout (the python helpers print one when ready).
    fn line(&mut self) -> String {
        let out = self.child.stdout.take().expect("stdout piped");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read child stdout");
        line.trim().to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections at `addr`.
fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `python3 -m http.server` bound to `bind`, ready once `connect` accepts connections.
fn python_http_server(bind: &str, connect: std::net::IpAddr, port: u16, dir: &Path) -> Proc {
    let p = Proc::spawn(
        Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", bind])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(SocketAddr::new(connect, port));
    p
}

/// A python client that connects, makes one request, prints its local address, and holds the
/// connection until its stdin closes (when the `Proc` drops).
const PY_CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.connect((host, port))
s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
s.recv(65536)
la = s.getsockname()
print(la[0], la[1], flush=True)
sys.stdin.read()
"#;

fn python_client(server: SocketAddr) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        Command::new("python3")
            .args(["-c", PY_CLIENT, &server.ip().to_string(), &server.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let line = p.line();
    let mut parts = line.split_whitespace();
    let ip: std::net::IpAddr =
        parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("client said {line:?}"));
    let port: u16 =
        parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("client said {line:?}"));
    (p, SocketAddr::new(ip, port))
}

/// Runs curl once; returns (curl's PID, its local address, the response body).
fn curl(url: &str) -> (u32, SocketAddr, String) {
    let child = Command::new("curl")
        .args(["-sS", "-g", "-w", "\n%{local_ip} %{local_port}", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn curl");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl output");
    assert!(out.status.success(), "curl {url} failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = last.split_whitespace();
    let ip: std::net::IpAddr =
        parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("curl said {text:?}"));
    let port: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("curl said {text:?}"));
    (pid, SocketAddr::new(ip, port), body.to_owned())
}

fn pidmap() -> PidMap {
    let cfg = PidMapConfig { mode: Mode::Ebpf, cache_ttl: Duration::ZERO, ..PidMapConfig::default() };
    let m = PidMap::new(&cfg);
    assert_eq!(m.effective_mode(), Mode::Ebpf, "the eBPF program must load as root");
    m
}

fn pid_of(o: &Option<ProcessInfo>) -> Option<u32> {
    o.as_ref().map(|p| p.pid)
}

/// (parent PID, state, comm) of a process, from /proc/<pid>/stat.
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
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if stat(pid).is_some_and(|(ppid, state, _)| ppid == parent && state != 'Z') {
            out.push(pid);
        }
    }
    out
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; a stale PID only yields ESRCH.
        unsafe { libc::kill(pid, sig) };
    }
}

/// An nginx master and its workers, stopped through the master: SIGTERM makes it stop its
/// workers, reap them and exit. Killing the master outright (what dropping a plain child does)
/// leaves the workers running, reparented to init. A worker still alive after the master
/// exited is killed, so none outlives the test.
struct Nginx {
    master: Child,
    workers: Vec<u32>,
}

impl Nginx {
    fn pid(&self) -> u32 {
        self.master.id()
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
            signal(self.master.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.master.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        let stragglers: Vec<u32> = self
            .workers
            .iter()
            .copied()
            .filter(|w| stat(*w).is_some_and(|(_, state, comm)| state != 'Z' && comm == "nginx"))
            .collect();
        for w in &stragglers {
            signal(*w, libc::SIGKILL);
        }
        stragglers
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[test]
fn python_servers_on_ipv4_and_ipv6_with_curl_and_python_clients() {
    if !can_run("python_servers_on_ipv4_and_ipv6_with_curl_and_python_clients", &["python3", "curl"]) {
        return;
    }
    let mut map = pidmap();
    let dir = tempfile::tempdir().unwrap();
    // IPv4, IPv6, and IPv4 clients of a dual-stack listener (the server's socket is AF_INET6
    // with mapped addresses; packets and keys are plain IPv4).
    for (bind, connect) in [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("::", "127.0.0.1")] {
        let port = free_port();
        let ip: std::net::IpAddr = connect.parse().unwrap();
        let server = python_http_server(bind, ip, port, dir.path());
        let server_addr = SocketAddr::new(ip, port);

        // curl: short-lived, looked up after it exited and its connection closed.
        let host = if ip.is_ipv6() { format!("[{connect}]") } else { connect.to_owned() };
        let (curl_pid, curl_addr, _) = curl(&format!("http://{host}:{port}/"));
        let (c, s) = map.ends(curl_addr, server_addr);
        assert_eq!(pid_of(&c), Some(curl_pid), "{bind}: curl's side");
        assert_eq!(c.map(|c| c.comm).as_deref(), Some("curl"));
        assert_eq!(pid_of(&s), Some(server.pid()), "{bind}: http.server's side of curl's connection");

        // python client: connection held open.
        let (client, client_addr) = python_client(server_addr);
        let (c, s) = map.ends(client_addr, server_addr);
        assert_eq!(pid_of(&c), Some(client.pid()), "{bind}: python client's side");
        assert_eq!(pid_of(&s), Some(server.pid()), "{bind}: http.server's side of the python client");
        assert!(s.is_some_and(|s| s.comm.starts_with("python")));
    }
    let n = map.counters();
    eprintln!("counters {n:?}, kernel {:?}", map.kernel_stats());
    assert_eq!(n.proc_fallbacks, 0, "all answered by eBPF: {n:?}");
    assert!(n.map_entries.unwrap_or(0) >= 8, "{n:?}");
}

/// A multi-threaded HTTP/1.1 (keep-alive) server whose accept loop runs on a non-main thread;
/// responses say which thread handled them, and in which process.
const THREADED_SERVER: &str = r#"
import http.server, sys, threading
class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("%d %d" % (threading.get_native_id(), __import__("os").getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Quiet)
t = threading.Thread(target=srv.serve_forever, daemon=True)
t.start()
print("ready", flush=True)
sys.stdin.read()
"#;

fn threaded_server() -> (Proc, SocketAddr) {
    let port = free_port();
    let mut server = Proc::spawn(
        Command::new("python3")
            .args(["-c", THREADED_SERVER, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    assert_eq!(server.line(), "ready");
    (server, format!("127.0.0.1:{port}").parse().unwrap())
}

/// The owner must be the process, not the thread that accepted or served.
#[test]
fn multi_threaded_server_is_attributed_to_its_process() {
    if !can_run("multi_threaded_server_is_attributed_to_its_process", &["python3", "curl"]) {
        return;
    }
    let mut map = pidmap();
    let (server, server_addr) = threaded_server();
    for _ in 0..3 {
        let (curl_pid, curl_addr, body) = curl(&format!("http://{server_addr}/"));
        let (handler_tid, pid) = body.split_once(' ').unwrap_or_else(|| panic!("server said {body:?}"));
        assert_eq!(pid, server.pid().to_string());
        assert_ne!(handler_tid, pid, "the request was handled on another thread");
        let (c, s) = map.ends(curl_addr, server_addr);
        assert_eq!(pid_of(&c), Some(curl_pid));
        assert_eq!(pid_of(&s), Some(server.pid()), "tgid, never a thread id");
    }
}

#[test]
fn nginx_connections_belong_to_the_worker_that_accepted_them() {
    if !can_run("nginx_connections_belong_to_the_worker_that_accepted_them", &["nginx", "curl", "python3"]) {
        return;
    }
    let mut map = pidmap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let prefix = dir.path().display();
    let conf = format!(
        "worker_processes 2;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 \"$pid\"; }}
    }}
}}
"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let master = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("startup.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning nginx");
    let mut master = Nginx { master, workers: Vec::new() };
    let server_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(server_addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut workers = children(master.pid());
    while workers.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        workers = children(master.pid());
    }
    master.workers.clone_from(&workers);
    assert_eq!(workers.len(), 2, "nginx workers of {}: {workers:?}", master.pid());

    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        let (curl_pid, curl_addr, body) = curl(&format!("http://{server_addr}/"));
        let worker: u32 = body.trim().parse().unwrap_or_else(|_| panic!("nginx said {body:?}"));
        assert!(workers.contains(&worker), "{worker} is not one of {workers:?}");
        let (c, s) = map.ends(curl_addr, server_addr);
        assert_eq!(pid_of(&c), Some(curl_pid));
        assert_eq!(pid_of(&s), Some(worker), "the accepting worker, not the master {}", master.pid());
        assert_eq!(s.map(|s| s.comm).as_deref(), Some("nginx"));
        seen.insert(worker);
    }
    // A python client on a kept-open connection, too.
    let (client, client_addr) = python_client(server_addr);
    let (c, s) = map.ends(client_addr, server_addr);
    assert_eq!(pid_of(&c), Some(client.pid()));
    assert!(pid_of(&s).is_some_and(|w| workers.contains(&w)), "{s:?} not a worker of {workers:?}");
    eprintln!("workers {workers:?}, served by {seen:?}");
    drop(client);
    let stragglers = master.shut_down();
    assert!(stragglers.is_empty(), "nginx workers {stragglers:?} outlived their master");
}

#[test]
fn connection_opened_before_loading_is_resolved_through_proc() {
    if !can_run("connection_opened_before_loading_is_resolved_through_proc", &["python3"]) {
        return;
    }
    // Keep-alive server: both ends of the connection stay open for /proc to list.
    let (server, server_addr) = threaded_server();
    let (client, client_addr) = python_client(server_addr);

    let mut map = pidmap(); // loaded after the connection exists
    let (c, s) = map.ends(client_addr, server_addr);
    assert_eq!(pid_of(&c), Some(client.pid()));
    assert_eq!(pid_of(&s), Some(server.pid()));
    let n = map.counters();
    assert_eq!((n.ebpf_hits, n.proc_hits), (0, 2), "{n:?}");
}

#[test]
fn port_filter_is_applied_in_the_kernel() {
    if !can_run("port_filter_is_applied_in_the_kernel", &[]) {
        return;
    }
    let watched = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (wa, oa) = (watched.local_addr().unwrap(), other.local_addr().unwrap());
    let cfg = EbpfConfig {
        ports: vec![wa.port()],
        map_entries: 1024,
        tracefs: "/sys/kernel/tracing".into(),
        btf: "/sys/kernel/btf/vmlinux".into(),
    };
    let owners = EbpfOwners::load(&cfg).unwrap_or_else(|e| panic!("load: {e:?}"));
    assert_eq!(owners.programs().len(), 7);
    let c1 = TcpStream::connect(wa).unwrap();
    let (_s1, _) = watched.accept().unwrap();
    let c2 = TcpStream::connect(oa).unwrap();
    let (_s2, _) = other.accept().unwrap();
    let me = std::process::id();
    assert_eq!(owners.lookup(c1.local_addr().unwrap(), wa).map(|o| o.tgid), Some(me));
    assert_eq!(owners.lookup(wa, c1.local_addr().unwrap()).map(|o| o.tgid), Some(me));
    assert_eq!(owners.lookup(c2.local_addr().unwrap(), oa), None, "port {} is not watched", oa.port());
    assert_eq!(owners.lookup(oa, c2.local_addr().unwrap()), None);
    let stats = owners.kernel_stats();
    let filtered = stats.iter().find(|(s, _)| *s == Stat::Filtered).map(|(_, n)| *n);
    assert!(filtered.unwrap_or(0) >= 1, "{stats:?}");
    drop(owners); // detaches
}

/// A network namespace with a veth pair to the test's own: `host` on this side, `inner` in
/// the namespace (a /30 each). Deleted on drop (which removes the pair too).
struct NetNs {
    name: String,
    inner: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl NetNs {
    /// Namespace `tag` (a letter) with addresses 198.18.<pid % 250>.<4·n + 1> (here) and
    /// .<4·n + 2> (inside): names and addresses carry the test's PID, so parallel runs and
    /// other tests do not collide.
    fn new(tag: char, n: u8) -> NetNs {
        let id = std::process::id();
        let name = format!("liteobs-lst-{id}-{tag}");
        let (host_if, inner_if) = (format!("lv{}{tag}h", id % 100_000), format!("lv{}{tag}i", id % 100_000));
        let net = (id % 250) as u8;
        let host = format!("198.18.{net}.{}/30", 4 * n + 1);
        let inner = std::net::Ipv4Addr::new(198, 18, net, 4 * n + 2);
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = NetNs { name: name.clone(), inner };
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &inner_if, "netns", &name]);
        ip(&["addr", "add", &host, "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{inner}/30"), "dev", &inner_if]);
        ip(&["-n", &name, "link", "set", &inner_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A server that binds 0.0.0.0:PORT, listens, says "ready" and never accepts, reads or
/// writes: nothing it does after `listen()` reaches a tracepoint.
const SILENT_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
sys.stdin.read()
"#;

/// [`SILENT_SERVER`] inside `ns` (`ip netns exec` execs it: the child's PID is python's).
fn silent_server(ns: &NetNs, port: u16) -> Proc {
    let mut p = Proc::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", SILENT_SERVER, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    assert_eq!(p.line(), "ready", "server in {}", ns.name);
    p
}

/// Connects to `server`, sends a request and closes without waiting for an answer (the
/// server never gives one); returns the client's address.
fn request_and_close(server: SocketAddr) -> SocketAddr {
    use std::io::Write;
    let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
    c.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let local = c.local_addr().unwrap();
    drop(c);
    local
}

/// Two servers started before the agent, each in its own network namespace and both on
/// 0.0.0.0 and the same port, which never accept: the server end of a request sent to each
/// (the client closes without an answer) is known only from the listener scan of every
/// namespace, keyed by that namespace's own address. Each exchange names its own
/// namespace's server, with eBPF loaded (as the agent runs) and with /proc alone; a server
/// started after a /proc-only map was built is found by its next periodic scan.
#[test]
fn servers_listening_before_the_agent_in_other_namespaces_are_attributed() {
    if !can_run("servers_listening_before_the_agent_in_other_namespaces_are_attributed", &["python3", "ip"]) {
        return;
    }
    let (a, b, late) = (NetNs::new('a', 0), NetNs::new('b', 1), NetNs::new('c', 2));
    let port = free_port();
    let (server_a, server_b) = (silent_server(&a, port), silent_server(&b, port));
    let addr = |ns: &NetNs| SocketAddr::new(ns.inner.into(), port);
    let me = std::process::id();

    let ebpf = pidmap(); // after the servers listened
    let proc_cfg = PidMapConfig { mode: Mode::Proc, cache_ttl: Duration::ZERO, ..PidMapConfig::default() };
    let _ = &late;
    let proc = PidMap::new(&proc_cfg);
    for (mode, mut map) in [("ebpf", ebpf), ("proc", proc)] {
        for (ns, server) in [(&a, &server_a), (&b, &server_b)] {
            let client = request_and_close(addr(ns));
            std::thread::sleep(Duration::from_millis(50));
            let (c, s) = map.ends(client, addr(ns));
            if mode == "ebpf" {
                assert_eq!(pid_of(&c), Some(me), "{mode}: the client is this test");
            }
            assert_eq!(pid_of(&s), Some(server.pid()), "{mode}: the server in {}", ns.name);
            assert!(s.is_some_and(|s| s.comm.starts_with("python")));
        }
    }
}

/// A server that accepts every connection and holds it open, never answering.
const HOLDING_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
held = []
def serve():
    while True:
        held.append(s.accept()[0])
threading.Thread(target=serve, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// A keep-alive connection to a server in another network namespace, opened before the map
/// was built: its server end is only in that namespace's `tcp` table, which the /proc scan
/// reads through one of the namespace's processes (not the listener: the connection's own
/// socket answers).
#[test]
fn connections_opened_before_the_agent_in_other_namespaces_are_found_in_proc() {
    if !can_run(
        "connections_opened_before_the_agent_in_other_namespaces_are_found_in_proc",
        &["python3", "ip"],
    ) {
        return;
    }
    use std::io::Write;
    let ns = NetNs::new('k', 3);
    let port = free_port();
    let mut server = Proc::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", HOLDING_SERVER, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    assert_eq!(server.line(), "ready");
    let server_addr = SocketAddr::new(ns.inner.into(), port);
    let mut conn = TcpStream::connect_timeout(&server_addr, Duration::from_secs(5)).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let client_addr = conn.local_addr().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // accepted

    let cfg = PidMapConfig { mode: Mode::Proc, cache_ttl: Duration::ZERO, ..PidMapConfig::default() };
    let mut map = PidMap::new(&cfg);
    let (c, s) = map.ends(client_addr, server_addr);
    assert_eq!(pid_of(&c), Some(std::process::id()));
    assert_eq!(pid_of(&s), Some(server.pid()), "the server in {}", ns.name);
    let n = map.counters();
    assert_eq!((n.proc_hits, n.listener_hits), (2, 0), "{n:?}");
    drop(conn);
}

/// A listener that existed before the program, told to the source by a scan
/// (`seed_listeners`): the passive side of a new connection to it gets that owner as its
/// first guess (nothing accepts here, so nothing refines it).
#[test]
fn seeded_listeners_give_the_passive_side_of_new_connections() {
    if !can_run("seeded_listeners_give_the_passive_side_of_new_connections", &[]) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let la = listener.local_addr().unwrap();
    let cfg = EbpfConfig {
        ports: vec![la.port()],
        map_entries: 1024,
        tracefs: "/sys/kernel/tracing".into(),
        btf: "/sys/kernel/btf/vmlinux".into(),
    };
    let mut owners = EbpfOwners::load(&cfg).unwrap_or_else(|e| panic!("load: {e:?}"));
    let seeded = liteobs_agent::pidmap::Listener {
        addr: la.ip(),
        port: la.port(),
        owner: liteobs_agent::pidmap::ProcessInfo::new(4242, "seeded-server"),
    };
    use liteobs_agent::pidmap::OwnerLookup;
    assert_eq!(owners.seed_listeners(std::slice::from_ref(&seeded)), 1);
    let got = owners.listener(la).expect("in listen_owner");
    assert_eq!((got.tgid, got.comm_str().as_str()), (4242, "seeded-server"));
    let c = TcpStream::connect(la).unwrap();
    let ca = c.local_addr().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let server = loop {
        if let Some(o) = owners.lookup(la, ca) {
            break Some(o);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let server = server.expect("server side recorded from the seeded listener");
    assert_eq!((server.tgid, server.comm_str().as_str()), (4242, "seeded-server"));
}

/// A cgroup directory this test makes under the cgroup2 hierarchy, named as a container's
/// (`/liteobs-test-<pid>/<64 hex digits>`), removed on drop (after its processes exited).
struct TestCgroup {
    parent: std::path::PathBuf,
    dir: std::path::PathBuf,
    id: String,
}

impl TestCgroup {
    fn new(mount: &Path) -> TestCgroup {
        let parent = mount.join(format!("liteobs-test-{}", std::process::id()));
        let id = format!("{:016x}", 0x11ee_cafe_u64 + u64::from(std::process::id())).repeat(4);
        let dir = parent.join(&id);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("making {}: {e}", dir.display()));
        TestCgroup { parent, dir, id }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// A client in a cgroup of its own (a container's, as far as its path tells) connects and
/// exits before its connection is attributed, as curl does: its /proc entry is gone, but the
/// owner eBPF recorded carries the cgroup id it connected from (the inode of the cgroup's
/// directory), and the walk of the cgroup2 hierarchy maps that id to the cgroup's path, so
/// the container is still named.
#[test]
fn an_exited_client_keeps_the_cgroup_it_connected_from() {
    use std::os::unix::fs::MetadataExt;

    use liteobs_agent::container::cgroup_dirs::{
        CgroupDirs, CgroupDirsConfig, CgroupLookup, cgroup2_mount, walk,
    };
    use liteobs_agent::container::{ContainerIdentity, ContainersConfig, RuntimeConfig};

    if !can_run("an_exited_client_keeps_the_cgroup_it_connected_from", &["python3"]) {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(mount) = cgroup2_mount(&mountinfo) else {
        assert!(!required(), "no cgroup2 mount on this machine, and LITEOBS_REQUIRE_PRIVILEGED=1");
        eprintln!("SKIPPED an_exited_client_keeps_the_cgroup_it_connected_from: no cgroup2 mount");
        return;
    };
    let cg = TestCgroup::new(&mount);
    let cg_inode = std::fs::metadata(&cg.dir).unwrap().ino();
    let mut map = pidmap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    // The shell moves itself into the cgroup, then becomes the client: one connection, its
    // local port on stdout, exit.
    let script = format!(
        "echo $$ > '{}/cgroup.procs' && exec python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', {})); print(s.getsockname()[1])\"",
        cg.dir.display(),
        server.port()
    );
    let out = Command::new("sh").args(["-c", &script]).output().expect("run the client");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("client port");
    let client = SocketAddr::from(([127, 0, 0, 1], port));
    let _ = listener.accept();

    let owner = map.owner_at(client, server, Instant::now()).expect("the client's socket is in flow_owner");
    assert!(!Path::new(&format!("/proc/{}", owner.pid)).exists(), "the client has exited");
    assert_eq!(owner.comm, "python3");
    assert_eq!(owner.cgroup, Some(cg_inode), "the cgroup id recorded at connect is the directory's inode");

    // The user-space side: the id → the cgroup's path (a walk) → the container its path names.
    let rel = format!("/liteobs-test-{}/{}", std::process::id(), cg.id);
    assert!(walk(&mount, 1_000_000).iter().any(|d| d.id == cg_inode && d.path == rel), "walk finds {rel}");
    let mut dirs =
        CgroupDirs::new(CgroupDirsConfig { mount: Some(mount.clone()), ..CgroupDirsConfig::default() });
    match dirs.lookup(cg_inode, Instant::now()) {
        CgroupLookup::Container(c) => assert_eq!(c.container_id, cg.id),
        other => panic!("cgroup {cg_inode} ({rel}): {other:?}"),
    }
    let gone = tempfile::tempdir().unwrap();
    let mut containers = ContainerIdentity::start(ContainersConfig {
        runtime: RuntimeConfig { socket: gone.path().join("no.sock"), ..RuntimeConfig::default() },
        ..ContainersConfig::default()
    });
    assert_eq!(containers.of_pid(owner.pid), None, "/proc can no longer tell");
    let of = containers.of_process(owner.pid, owner.cgroup).expect("the container, by the cgroup id");
    assert_eq!(of.container_id, cg.id);
}
