//! Root-only: the container attribution against a real containerd this test starts (its own
//! root, state and socket in a temp dir, CRI plugin disabled), with containers made by `ctr`
//! carrying kubelet's labels.
//!
//! * the client's `List` and `Get` return the labels `ctr` set, and NOT_FOUND is "none";
//! * the cache thread answers a lookup from them;
//! * a real process (python3's http.server) moved into a kubelet-style cgroup
//!   (`kubepods/besteffort/pod<uid>/<id>`, in the cgroup v2 hierarchy or the v1 `pids` and
//!   `name=systemd` ones) gets its pod, namespace and container on a record of a real TCP
//!   connection to it, attributed by the agent's own chain (PidMap through /proc, then
//!   PodAttribution), and on the record the agent binary captures of a real curl to it.
//!
//! Skips when not root or without containerd, ctr or python3; fails then under
//! LITEOBS_REQUIRE_PRIVILEGED=1.

#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use liteobs_agent::attribute::{Attributor, PodAttribution};
use liteobs_agent::container::containerd::ContainerdClient;
use liteobs_agent::container::{
    ContainerIdentity, ContainersConfig, PodIdentity, RuntimeConfig, RuntimeLabels,
};
use liteobs_agent::pidmap::{Mode, PidMap, PidMapConfig};

const WEB_ID: &str = "7e1c0a5d9b3f4e2a8c6d1b0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";
const PLAIN_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const POD_UID: &str = "6a0f3c2e-1b4d-4e5f-8a9b-0c1d2e3f4a5b";

fn can_run(test: &str) -> bool {
    if !support::may_run(support::is_root(), &format!("{test} needs root")) {
        return false;
    }
    ["containerd", "ctr", "python3"]
        .iter()
        .all(|t| support::may_run(support::have_tool(t), &format!("{test} needs {t}")))
}

/// A containerd of the test's own, stopped on drop.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("rootfs")).expect("rootfs");
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{r}/c.sock\"\n[ttrpc]\n  address = \"{r}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            r = d.display()
        );
        std::fs::write(d.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let c = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not start: {}", c.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("running ctr")
    }

    /// A container (no task) with these labels.
    fn create(&self, id: &str, labels: &[(&str, &str)]) {
        let mut args: Vec<String> = vec!["containers".into(), "create".into()];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push("--rootfs".into());
        args.push(self.dir.path().join("rootfs").display().to_string());
        args.push(id.into());
        args.push("/bin/true".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.ctr(&args);
        assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubelet_labels() -> [(&'static str, &'static str); 4] {
    [
        ("io.kubernetes.pod.name", "web-5f7b9"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "server"),
        ("io.kubernetes.pod.uid", POD_UID),
    ]
}

fn want_pod() -> PodIdentity {
    PodIdentity { namespace: "shop".into(), pod: "web-5f7b9".into(), container: Some("server".into()) }
}

#[test]
fn the_client_reads_kubelet_labels_from_a_real_containerd() {
    if !can_run("the_client_reads_kubelet_labels_from_a_real_containerd") {
        return;
    }
    let ctd = Containerd::start();
    ctd.create(WEB_ID, &kubelet_labels());
    ctd.create(PLAIN_ID, &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = ContainerdClient::new(&ctd.socket(), "k8s.io", Duration::from_secs(5));

    let mut listed = rt.block_on(client.list()).expect("List");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [PLAIN_ID, WEB_ID]);
    assert_eq!(listed[1].labels["io.kubernetes.pod.name"], "web-5f7b9");
    assert_eq!(listed[1].labels["io.kubernetes.pod.uid"], POD_UID);

    let got = rt.block_on(client.get(WEB_ID)).expect("Get").expect("known");
    assert_eq!(got.labels["io.kubernetes.container.name"], "server");
    assert_eq!(rt.block_on(client.get(&"f".repeat(64))).expect("Get of an unknown id"), None);
    // Another namespace holds none of them.
    let other = ContainerdClient::new(&ctd.socket(), "default", Duration::from_secs(5));
    assert!(rt.block_on(other.list()).expect("List").is_empty());

    // The cache thread: known from its List, and a container made afterwards from a Get.
    let labels = RuntimeLabels::start(RuntimeConfig { socket: ctd.socket(), ..RuntimeConfig::default() });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = labels.lookup(WEB_ID);
    while found.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        found = labels.lookup(WEB_ID);
    }
    assert_eq!(found.as_deref(), Some(&want_pod()));
    assert_eq!(labels.lookup(PLAIN_ID), None, "a container without kubelet's labels has no pod");
    let late = "ab".repeat(32);
    ctd.create(&late, &kubelet_labels());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = labels.lookup(&late);
    while found.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        found = labels.lookup(&late);
    }
    assert_eq!(found.as_deref(), Some(&want_pod()));
    let c = labels.counters();
    assert!(c.runtime_calls >= 2 && c.runtime_errors == 0, "{c:?}");
}

/// cgroup directories of one container in every hierarchy the parser reads on this host;
/// removed (after the processes left) on drop.
struct KubeletCgroup {
    dirs: Vec<PathBuf>,
}

impl KubeletCgroup {
    /// `pod_uid` differs per test, so that tests running at once do not remove each other's
    /// pod directory.
    fn create(pod_uid: &str, id: &str) -> KubeletCgroup {
        let root = Path::new("/sys/fs/cgroup");
        let hierarchies: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
            vec![root.to_path_buf()]
        } else {
            ["pids", "systemd"]
                .iter()
                .map(|h| root.join(h))
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        };
        assert!(!hierarchies.is_empty(), "no cgroup hierarchy to use under /sys/fs/cgroup");
        let rel = format!("kubepods/besteffort/pod{pod_uid}/{id}");
        let dirs = hierarchies.iter().map(|h| h.join(&rel)).collect::<Vec<_>>();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        KubeletCgroup { dirs }
    }

    fn enter(&self, pid: u32) {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
    }
}

impl Drop for KubeletCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Leaf first, then the pod, QoS and kubepods directories if this made them empty.
            let mut p = d.clone();
            for _ in 0..4 {
                if std::fs::remove_dir(&p).is_err() {
                    break;
                }
                if !p.pop() {
                    break;
                }
            }
        }
    }
}

#[test]
fn a_process_in_a_kubelet_cgroup_gets_its_pod_on_a_real_connection() {
    if !can_run("a_process_in_a_kubelet_cgroup_gets_its_pod_on_a_real_connection") {
        return;
    }
    let ctd = Containerd::start();
    ctd.create(WEB_ID, &kubelet_labels());
    let cgroup = KubeletCgroup::create(POD_UID, WEB_ID);
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut server = support::Guard::new("python3", server);
    let server_pid = server.pid() as u32;
    cgroup.enter(server_pid);
    assert!(support::wait_listening(port, Duration::from_secs(10)), "http.server did not listen");

    // A real connection from another host process to the server, open while it is attributed
    // (not from this process: the attributor takes this process for the agent, whose own
    // connections are never reported).
    let mut conn = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\n\
             s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
             print(s.getsockname()[1], flush=True)\n\
             sys.stdin.read()",
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 client");
    let client_pid = conn.id();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(conn.stdout.take().unwrap()), &mut line)
        .expect("client port");
    let client = SocketAddr::from(([127, 0, 0, 1], line.trim().parse::<u16>().expect("client port")));
    let pids = PidMap::new(&PidMapConfig {
        mode: Mode::Proc,
        proc_scan_interval: Duration::ZERO,
        ..PidMapConfig::default()
    });
    let containers = ContainerIdentity::start(ContainersConfig {
        runtime: RuntimeConfig {
            socket: ctd.socket(),
            miss_wait: Duration::from_secs(2),
            ..RuntimeConfig::default()
        },
        ..ContainersConfig::default()
    });
    let mut attribution = PodAttribution::new(pids, containers);
    let mut rec = liteobs_model::TrafficLog {
        ts: chrono::Utc::now(),
        src_ip: client.ip(),
        src_port: client.port(),
        dst_ip: "127.0.0.1".parse().unwrap(),
        dst_port: port,
        method: "GET".into(),
        path: "/".into(),
        host: None,
        status: 200,
        latency_us: 1,
        req_bytes: 0,
        resp_bytes: 0,
        src_pid: None,
        src_comm: None,
        src_namespace: None,
        src_pod: None,
        src_container: None,
        src_container_id: None,
        src_node: None,
        dst_pid: None,
        dst_comm: None,
        dst_namespace: None,
        dst_pod: None,
        dst_container: None,
        dst_container_id: None,
        dst_node: None,
        dst_service_ip: None,
        dst_service_port: None,
        node: "node-a".into(),
        exchange_id: None,
        route: None,
    };
    attribution.attribute(&mut rec);
    let _ = conn.kill();
    let _ = conn.wait();
    attribution.log_stats();

    assert_eq!(rec.dst_pid, Some(server_pid), "{rec:?}");
    assert_eq!(rec.dst_container_id.as_deref(), Some(WEB_ID), "{rec:?}");
    assert_eq!(rec.dst_namespace.as_deref(), Some("shop"));
    assert_eq!(rec.dst_pod.as_deref(), Some("web-5f7b9"));
    assert_eq!(rec.dst_container.as_deref(), Some("server"));
    assert_eq!(rec.dst_node.as_deref(), Some("node-a"));
    // The client is a host process: a PID and node, no pod fields.
    assert_eq!(rec.src_pid, Some(client_pid));
    assert_eq!(rec.src_node.as_deref(), Some("node-a"));
    assert_eq!((rec.src_container_id, rec.src_pod, rec.src_namespace), (None, None, None));

    if let Some(c) = server.child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(cgroup);
}

#[test]
fn the_agent_binary_names_the_pod_of_a_server_in_a_kubelet_cgroup() {
    if !can_run("the_agent_binary_names_the_pod_of_a_server_in_a_kubelet_cgroup")
        || !support::may_run(support::have_tool("curl"), "needs curl")
    {
        return;
    }
    let ctd = Containerd::start();
    let id = "5b".repeat(32);
    ctd.create(&id, &kubelet_labels());
    let cgroup = KubeletCgroup::create("7b1e2d3c-4a5f-4e6d-9c8b-7a6f5e4d3c2b", &id);
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut server = support::Guard::new("python3", server);
    let server_pid = server.pid() as u32;
    cgroup.enter(server_pid);
    assert!(support::wait_listening(port, Duration::from_secs(10)), "http.server did not listen");

    let socket = ctd.socket().display().to_string();
    let mut agent = support::Guard::new(
        "liteobs-agent",
        Command::new(env!("CARGO_BIN_EXE_liteobs-agent"))
            .args([
                "-iface",
                "lo",
                "-ports",
                &port.to_string(),
                "-node",
                "node-a",
                "-containerd-socket",
                &socket,
            ])
            .env_remove("LITEOBS_SERVER")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("liteobs-agent"),
    );
    let mut stdout = agent.child.as_mut().unwrap().stdout.take().unwrap();
    let stderr = agent.child.as_mut().unwrap().stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = stdout.read_to_string(&mut buf);
        buf
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("capturing") {
                let _ = ready_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    assert!(ready_rx.recv_timeout(Duration::from_secs(10)).is_ok(), "the agent did not start capturing");
    let curl =
        Command::new("curl").args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/")]).status();
    assert!(curl.is_ok_and(|s| s.success()), "curl");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(agent.pid(), libc::SIGINT) };
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    let records: Vec<liteobs_model::TrafficLog> =
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(records.len(), 1, "one exchange: {out}\n{err}");
    let r = &records[0];
    assert_eq!(r.dst_pid, Some(server_pid), "{out}\n{err}");
    assert_eq!(r.dst_container_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        (r.dst_namespace.as_deref(), r.dst_pod.as_deref(), r.dst_container.as_deref()),
        (Some("shop"), Some("web-5f7b9"), Some("server"))
    );
    assert_eq!((r.dst_node.as_deref(), r.src_node.as_deref()), (Some("node-a"), Some("node-a")));
    assert_eq!(r.src_comm.as_deref(), Some("curl"));
    assert_eq!((r.src_pod.as_deref(), r.src_container_id.as_deref()), (None, None), "curl runs on the host");
    assert!(err.contains("container attribution counters"), "{err}");

    if let Some(c) = server.child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(cgroup);
}
