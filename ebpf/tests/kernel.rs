//! Root-only: the generated object passes the kernel verifier through aya, attaches to its
//! tracepoints, and records this test process as the owner of both ends of a loopback
//! connection it makes (accepting on another thread, so the tgid, not the thread ID, must be
//! recorded) and names by its process name (`/proc/self/comm`, not the test thread's name), with
//! the socket I/O programs seeing the accepted side's reads and writes. Skips with a message when not root, fails under LITEOBS_REQUIRE_PRIVILEGED=1.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData};
use aya::programs::TracePoint;
use liteobs_ebpf::layout::{self, ByteOrder, FlowKey, Owner, Stat};
use liteobs_ebpf::{Fields, ObjectConfig, TaskOffsets, object};

fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "{test} needs root, and LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping it"
    );
    eprintln!("SKIPPED {test}: needs root (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)");
    false
}

const TRACEFS: &str = "/sys/kernel/tracing";

fn mount_tracefs() {
    let events = Path::new(TRACEFS).join("events");
    if events.exists() {
        return;
    }
    let status = std::process::Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]).status();
    assert!(matches!(status, Ok(s) if s.success()), "mounting tracefs at {TRACEFS}: {status:?}");
}

fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit pointer; failure only means the default limit stays.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

/// The inode number of this process's cgroup directory in the cgroup2 mount (`0::` line of
/// /proc/self/cgroup, under the mount /proc/self/mountinfo lists as `cgroup2`).
fn own_cgroup_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split(' ').next() == Some("cgroup2")).then(|| pre.split(' ').nth(4).map(str::to_owned))?
        })
        .expect("a cgroup2 mount");
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line");
    std::fs::metadata(Path::new(&mount).join(path.trim_start_matches('/'))).unwrap().ino()
}

#[test]
fn loads_through_the_verifier_attaches_and_records_both_ends() {
    if !privileged("loads_through_the_verifier_attaches_and_records_both_ends") {
        return;
    }
    mount_tracefs();
    raise_memlock();
    let fields = Fields::from_tracefs(Path::new(TRACEFS)).unwrap();
    let task = TaskOffsets::from_file(Path::new(liteobs_ebpf::btf::VMLINUX_BTF)).unwrap();
    let cfg = ObjectConfig { fields, task: Some(task), ..ObjectConfig::default() };
    let bytes = object(&cfg).unwrap();
    let mut ebpf = aya::Ebpf::load(&bytes).unwrap_or_else(|e| panic!("load: {e:?}"));

    let mut attached = Vec::new();
    for p in liteobs_ebpf::program::programs(&cfg.fields, cfg.task).unwrap() {
        let prog: &mut TracePoint = ebpf.program_mut(p.name).unwrap().try_into().unwrap();
        // The verifier log is in the error's Debug form.
        prog.load().unwrap_or_else(|e| panic!("verifier rejected {}: {e:?}", p.name));
        prog.attach(p.category, p.tracepoint).unwrap_or_else(|e| panic!("attach {}: {e:?}", p.name));
        attached.push(p.name);
    }
    assert_eq!(attached.len(), 7);

    // A connection to a listener created after the attach, accepted on another thread.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap();
    let acceptor = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong").unwrap();
        peer
    });
    let mut client = TcpStream::connect(server_addr).unwrap();
    let client_addr = client.local_addr().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(acceptor.join().unwrap(), client_addr);

    let flows: HashMap<&MapData, [u8; FlowKey::SIZE], [u8; Owner::SIZE]> =
        HashMap::try_from(ebpf.map(layout::FLOW_OWNER).unwrap()).unwrap();
    let owner = |local: SocketAddr, remote: SocketAddr| -> Option<Owner> {
        let key = FlowKey::new(local, remote).encode(ByteOrder::NATIVE);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Ok(v) = flows.get(&key, 0) {
                return Some(Owner::decode(&v, ByteOrder::NATIVE));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let me = std::process::id();
    let client_owner = owner(client_addr, server_addr).expect("client side recorded");
    let server_owner = owner(server_addr, client_addr).expect("server side recorded");
    assert_eq!(client_owner.tgid, me);
    assert_eq!(server_owner.tgid, me, "the tgid, not the accepting thread's id");
    // comm is the process's name; the test harness names each test's thread after the test.
    let process = std::fs::read_to_string("/proc/self/comm").unwrap();
    let thread = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    assert_ne!(process, thread, "the harness did not name the thread; the check proves nothing");
    assert_eq!(client_owner.comm_str(), process.trim_end());
    // The cgroup is this process's in the unified hierarchy: its directory's inode number.
    let cgroup = own_cgroup_inode();
    assert_eq!(client_owner.cgroup(), Some(cgroup), "bpf_get_current_cgroup_id at connect");
    assert_eq!(server_owner.cgroup(), Some(cgroup));
    assert_eq!(server_owner.comm_str(), process.trim_end());

    let stats: Array<&MapData, [u8; Stat::COUNT * 8]> =
        Array::try_from(ebpf.map(layout::STATS).unwrap()).unwrap();
    let counters = layout::decode_stats(&stats.get(&0, 0).unwrap(), ByteOrder::NATIVE);
    eprintln!("stats: {counters:?}");
    let get = |s: Stat| counters[s as usize].1;
    assert!(get(Stat::Connects) >= 1);
    assert!(get(Stat::ActiveFlows) >= 1);
    assert!(get(Stat::Listens) >= 1);
    assert!(get(Stat::PassiveGuesses) >= 1);
    assert!(get(Stat::AcceptRefined) >= 1);
    assert!(get(Stat::ServedBy) >= 1, "the accepted side's read and write");
    assert_eq!(get(Stat::ThreadComms), 0);
}
