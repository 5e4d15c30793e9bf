//! Socket owners from the proc filesystem: the fallback for connections the eBPF maps do not
//! know (opened before the agent started, or evicted), and the only source in `-pidmap proc`.
//!
//! A scan reads `<root>/net/tcp` and `<root>/net/tcp6` (tuple → socket inode), then every
//! `<root>/<pid>/fd/*` link of the form `socket:[inode]` (inode → process) and
//! `<root>/<pid>/comm`. Scans cost one directory read per process, so they run lazily, on a
//! lookup the last scan cannot answer, and at most once per `min_interval`; their results are
//! kept until the next scan. Parsing is separate from reading ([`parse_net_tcp`],
//! [`parse_socket_link`]) and the root is a parameter, so tests run on fixture trees.
//!
//! Every network namespace on the node is read (see [`super::netns`]: with the host's PID
//! namespace and /proc, a pod's connections are in `<root>/<pid>/net/tcp*` of one of its
//! processes), at most [`MAX_NAMESPACES`] of them and [`MAX_SOCKETS`] sockets per scan; other
//! namespaces' loopback sockets are left out (the capture cannot see a pod's `lo`). A socket
//! held by several processes (inherited across `fork`) is attributed to the lowest PID. The
//! name is always `<root>/<pid>/comm` of the thread group, i.e. its leader's name.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use liteobs_ebpf::layout::ByteOrder;

use super::{OwnerLookup, ProcessInfo, netns};

/// One line of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Kernel TCP state (1 ESTABLISHED, 10 LISTEN, ...).
    pub state: u8,
    /// Socket inode; 0 for sockets without one (TIME_WAIT, orphans).
    pub inode: u64,
}

/// Parses an address as `/proc/net/tcp{,6}` prints it: `0100007F:1F90` or
/// `00000000000000000000000001000000:0050`. The address is printed as 32-bit words, each
/// the network-order bytes read as a host-order integer, so decoding needs the byte order of
/// the machine that printed it; the port is the host-order value in hex. IPv4-mapped IPv6
/// addresses come back as IPv4.
pub fn parse_proc_addr(s: &str, order: ByteOrder) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| -> Option<[u8; 4]> {
        let v = u32::from_str_radix(hex, 16).ok()?;
        Some(match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        })
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            let v6 = Ipv6Addr::from(b);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6`. The header and lines that do not
/// parse are skipped.
pub fn parse_net_tcp(text: &str, order: ByteOrder) -> Vec<TcpSocket> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !f[0].ends_with(':') {
                return None;
            }
            Some(TcpSocket {
                local: parse_proc_addr(f[1], order)?,
                remote: parse_proc_addr(f[2], order)?,
                state: u8::from_str_radix(f[3], 16).ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// The inode of a `/proc/<pid>/fd/<n>` link target `socket:[12345]`.
pub fn parse_socket_link(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// A v4-mapped IPv6 socket address as plain IPv4, so that keys from packets and from
/// dual-stack sockets compare equal.
pub(crate) fn normalise(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// Results of one scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// (local, remote) → owner, for every socket with an inode held by some process.
    pub owners: HashMap<(SocketAddr, SocketAddr), ProcessInfo>,
    /// Network namespaces whose tables were read.
    pub namespaces: usize,
}

/// Most network namespaces one scan reads (a node runs some hundred pods).
pub const MAX_NAMESPACES: usize = 4096;
/// Most sockets one scan keeps, over all namespaces: a bound on its memory.
pub const MAX_SOCKETS: usize = 1 << 18;

/// The process holding each of the `wanted` socket inodes, from every `<root>/<pid>/fd/*`
/// link: the lowest PID when several hold one (a socket inherited across `fork`, a pre-fork
/// server's listener). `<root>/<pid>` directories are thread groups (threads are only under
/// `task/`), so the PID is always a thread-group ID. Processes that vanish or deny access
/// are skipped. Costs one directory read per process and one `readlink` per descriptor.
pub fn socket_holders(root: &Path, wanted: &HashSet<u64>) -> io::Result<HashMap<u64, u32>> {
    let mut holder: HashMap<u64, u32> = HashMap::new();
    if wanted.is_empty() {
        return Ok(holder);
    }
    for entry in std::fs::read_dir(root)?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let Some(inode) = target.to_str().and_then(parse_socket_link) else { continue };
            if wanted.contains(&inode) {
                holder.entry(inode).and_modify(|p| *p = (*p).min(pid)).or_insert(pid);
            }
        }
    }
    Ok(holder)
}

/// `<root>/<pid>/comm`: the name of the thread group's leader (the process's name as `ps`
/// shows it), whatever its other threads call themselves. Empty when it cannot be read.
pub fn read_comm(root: &Path, pid: u32) -> String {
    std::fs::read_to_string(root.join(pid.to_string()).join("comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}

/// Scans `root` once: the TCP tables of every network namespace (the agent's own first; see
/// [`super::netns`]), then the processes holding their sockets. A missing `net/tcp` of the
/// agent's own namespace is an error; other namespaces whose process left are skipped.
/// Loopback sockets of other namespaces are left out: the agent cannot capture a pod's `lo`,
/// and their tuples would shadow the node's own loopback connections. A tuple seen in two
/// namespaces keeps the first (the agent's own).
pub fn scan(root: &Path, order: ByteOrder) -> io::Result<Snapshot> {
    let spaces = netns::namespaces(root, MAX_NAMESPACES)?;
    let mut sockets = Vec::new();
    let mut namespaces = 0;
    for ns in &spaces {
        let found = match netns::tcp_sockets(root, ns, order) {
            Ok(s) => s,
            Err(e) if ns.is_own() => return Err(e),
            Err(_) => continue,
        };
        namespaces += 1;
        let room = MAX_SOCKETS.saturating_sub(sockets.len());
        sockets.extend(found.into_iter().filter(|s| ns.is_own() || !s.local.ip().is_loopback()).take(room));
    }
    let wanted: HashSet<u64> = sockets.iter().map(|s| s.inode).filter(|&i| i != 0).collect();
    let holder = socket_holders(root, &wanted)?;

    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut owners = HashMap::new();
    for s in sockets {
        let Some(&pid) = holder.get(&s.inode) else { continue };
        let comm = comms.entry(pid).or_insert_with(|| read_comm(root, pid)).clone();
        owners.entry((normalise(s.local), normalise(s.remote))).or_insert(ProcessInfo::new(pid, comm));
    }
    Ok(Snapshot { owners, namespaces })
}

/// [`OwnerLookup`] over rate-limited /proc scans.
#[derive(Debug)]
pub struct ProcOwners {
    root: PathBuf,
    min_interval: Duration,
    order: ByteOrder,
    last_scan: Option<Instant>,
    snapshot: Snapshot,
    scans: u64,
    failures: u64,
}

impl ProcOwners {
    /// Scans `root` (normally `/proc`) at most once per `min_interval`.
    pub fn new(root: PathBuf, min_interval: Duration) -> ProcOwners {
        ProcOwners {
            root,
            min_interval,
            order: ByteOrder::NATIVE,
            last_scan: None,
            snapshot: Snapshot::default(),
            scans: 0,
            failures: 0,
        }
    }

    /// Reads fixture trees written on a machine of the other byte order.
    pub fn with_byte_order(mut self, order: ByteOrder) -> ProcOwners {
        self.order = order;
        self
    }

    /// Full scans done so far (successful or not).
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// Owner at time `now` (the rate limiter's clock).
    pub fn owner_at(&mut self, local: SocketAddr, remote: SocketAddr, now: Instant) -> Option<ProcessInfo> {
        let key = (normalise(local), normalise(remote));
        let due = self.last_scan.is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if let Some(found) = self.snapshot.owners.get(&key) {
            // Found in the last scan; rescan only when that scan is old, since a closed
            // connection's tuple may have been reused by another process.
            let old =
                self.last_scan.is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval * 10);
            if !(old && due) {
                return Some(found.clone());
            }
        }
        if !due {
            return None;
        }
        self.last_scan = Some(now);
        self.scans += 1;
        match scan(&self.root, self.order) {
            Ok(s) => self.snapshot = s,
            Err(e) => {
                self.failures += 1;
                // Once, then every thousandth: a broken /proc does not flood the log.
                if self.failures % 1000 == 1 {
                    tracing::warn!(root = %self.root.display(), "pidmap: /proc scan failed: {e}");
                }
                self.snapshot = Snapshot::default();
            }
        }
        self.snapshot.owners.get(&key).cloned()
    }
}

impl OwnerLookup for ProcOwners {
    fn owner(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<ProcessInfo> {
        self.owner_at(local, remote, Instant::now())
    }

    fn entries(&self) -> Option<u64> {
        Some(self.snapshot.owners.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/tcp as printed on a little-endian machine (x86-64): a listener on
    /// 127.0.0.1:8080 and one connection 127.0.0.1:50000 ↔ 127.0.0.1:8080, both ends, plus a
    /// TIME_WAIT socket without inode.
    const TCP_LE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    /// /proc/net/tcp6 (little-endian): a dual-stack listener on [::]:80, a connection
    /// [::1]:41000 ↔ [::1]:80, and an IPv4 client on the dual-stack listener
    /// (::ffff:10.0.0.2:5000 → ::ffff:10.0.0.1:80).
    const TCP6_LE: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000001000000:A028 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100000A:0050 0000000000000000FFFF00000200000A:1388 01 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 20 4 30 10 -1
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ipv4_lines_little_endian() {
        let socks = parse_net_tcp(TCP_LE, ByteOrder::Little);
        assert_eq!(socks.len(), 4);
        assert_eq!(
            socks[0],
            TcpSocket { local: sa("127.0.0.1:8080"), remote: sa("0.0.0.0:0"), state: 10, inode: 1001 }
        );
        assert_eq!(socks[1].local, sa("127.0.0.1:50000"));
        assert_eq!(socks[1].remote, sa("127.0.0.1:8080"));
        assert_eq!(socks[3].inode, 0);
        assert_eq!(socks[3].state, 6);
    }

    #[test]
    fn parses_ipv6_and_mapped_lines() {
        let socks = parse_net_tcp(TCP6_LE, ByteOrder::Little);
        assert_eq!(socks.len(), 3);
        assert_eq!(socks[0].local, sa("[::]:80"));
        assert_eq!(socks[1].local, sa("[::1]:80"));
        assert_eq!(socks[1].remote, sa("[::1]:41000"));
        assert_eq!(socks[2].local, sa("10.0.0.1:80"), "mapped addresses come back as IPv4");
        assert_eq!(socks[2].remote, sa("10.0.0.2:5000"));
    }

    #[test]
    fn big_endian_hosts_print_the_words_the_other_way() {
        // The same sockets as printed by a big-endian kernel: each word is the address bytes
        // in order.
        assert_eq!(parse_proc_addr("7F000001:1F90", ByteOrder::Big), Some(sa("127.0.0.1:8080")));
        assert_eq!(parse_proc_addr("7F000001:1F90", ByteOrder::Little), Some(sa("1.0.0.127:8080")));
        assert_eq!(
            parse_proc_addr("00000000000000000000000000000001:0050", ByteOrder::Big),
            Some(sa("[::1]:80"))
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000FFFF0A000001:0050", ByteOrder::Big),
            Some(sa("10.0.0.1:80"))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_proc_addr("0100007F", ByteOrder::Little), None);
        assert_eq!(parse_proc_addr("0100007:1F90", ByteOrder::Little), None);
        assert_eq!(parse_proc_addr("0100007F:XYZ", ByteOrder::Little), None);
        assert!(parse_net_tcp("garbage\n   0: nope\n", ByteOrder::Little).is_empty());
        assert_eq!(parse_socket_link("socket:[1234]"), Some(1234));
        assert_eq!(parse_socket_link("pipe:[1234]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    /// Builds a proc tree: net/tcp{,6}, and processes with fd links and comm.
    fn fixture(dir: &Path, procs: &[(u32, &str, &[u64])]) {
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::fs::write(dir.join("net/tcp"), TCP_LE).unwrap();
        std::fs::write(dir.join("net/tcp6"), TCP6_LE).unwrap();
        for (pid, comm, inodes) in procs {
            let p = dir.join(pid.to_string());
            std::fs::create_dir_all(p.join("fd")).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            std::os::unix::fs::symlink("/dev/null", p.join("fd/0")).unwrap();
            std::os::unix::fs::symlink("pipe:[77]", p.join("fd/1")).unwrap();
            for (i, inode) in inodes.iter().enumerate() {
                std::os::unix::fs::symlink(format!("socket:[{inode}]"), p.join(format!("fd/{}", i + 3)))
                    .unwrap();
            }
        }
        // Not a process.
        std::fs::create_dir_all(dir.join("sys")).unwrap();
    }

    #[test]
    fn scans_a_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        // 300 listens and serves; 200 is its parent holding the listener too; 400 the client.
        fixture(
            dir.path(),
            &[
                (200, "server-master", &[1001]),
                (300, "server", &[1001, 1003, 2002, 2003]),
                (400, "client", &[1002]),
            ],
        );
        let snap = scan(dir.path(), ByteOrder::Little).unwrap();
        let get = |l: &str, r: &str| snap.owners.get(&(sa(l), sa(r))).cloned();
        assert_eq!(get("127.0.0.1:50000", "127.0.0.1:8080"), Some(ProcessInfo::new(400, "client")));
        assert_eq!(get("127.0.0.1:8080", "127.0.0.1:50000"), Some(ProcessInfo::new(300, "server")));
        assert_eq!(
            get("127.0.0.1:8080", "0.0.0.0:0").map(|p| p.pid),
            Some(200),
            "lowest PID of shared sockets"
        );
        assert_eq!(get("[::1]:80", "[::1]:41000").map(|p| p.pid), Some(300));
        assert_eq!(get("10.0.0.1:80", "10.0.0.2:5000").map(|p| p.pid), Some(300));
        assert_eq!(get("127.0.0.1:8080", "127.0.0.1:50001"), None, "TIME_WAIT has no owner");
    }

    /// A pod's keep-alive connection opened before the agent is only in its own namespace's
    /// tables: the scan reads every namespace, through one process of each, and leaves out
    /// a pod's loopback connections (which would shadow the node's).
    #[test]
    fn scans_every_network_namespace() {
        use crate::pidmap::listeners::fixture::{Ns, Proc, write};
        let dir = tempfile::tempdir().unwrap();
        let h = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let l = |local: &str, remote: &str, inode: u64| {
            format!(
                "   0: {local} {remote} 01 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 20 4 30 10 -1\n"
            )
        };
        // Node: 127.0.0.1:50000 -> 127.0.0.1:8080 (client 400). Pod (namespace 2): its
        // server 10.244.1.7:8080 <- 10.244.1.9:41000 (process 201), and a loopback connection
        // with the node's very tuple (process 202).
        let own_tcp = format!("{h}{}", l("0100007F:C350", "0100007F:1F90", 1002));
        let pod_tcp = format!(
            "{h}{}{}",
            l("0701F40A:1F90", "0901F40A:A028", 2001),
            l("0100007F:C350", "0100007F:1F90", 2002)
        );
        write(
            dir.path(),
            &Ns { inode: 1, tcp: &own_tcp, tcp6: "", fib_trie: "", if_inet6: "" },
            &[Ns { inode: 2, tcp: &pod_tcp, tcp6: "", fib_trie: "", if_inet6: "" }],
            &[
                Proc { pid: 400, comm: "client", netns: 1, sockets: &[1002] },
                Proc { pid: 200, comm: "pause", netns: 2, sockets: &[] },
                Proc { pid: 201, comm: "server", netns: 2, sockets: &[2001] },
                Proc { pid: 202, comm: "sidecar", netns: 2, sockets: &[2002] },
            ],
        );
        let snap = scan(dir.path(), ByteOrder::Little).unwrap();
        let get = |l: &str, r: &str| snap.owners.get(&(sa(l), sa(r))).map(|o| o.pid);
        assert_eq!(get("10.244.1.7:8080", "10.244.1.9:41000"), Some(201), "the pod's connection");
        assert_eq!(get("127.0.0.1:50000", "127.0.0.1:8080"), Some(400), "the node's, not the pod's loopback");
        assert_eq!((snap.owners.len(), snap.namespaces), (2, 2));
    }

    /// The name is the process's (the thread group leader's `comm`), whatever the thread that
    /// opened the socket calls itself. The test process itself, from a renamed thread.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_name_is_the_thread_group_leaders_not_the_threads() {
        let leader = std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_owned();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tid_comm, client) = std::thread::Builder::new()
            .name("renamed-worker".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
                (comm.trim_end().to_owned(), std::net::TcpStream::connect(addr).unwrap())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(tid_comm, "renamed-worker", "the thread did rename itself");
        assert_ne!(leader, tid_comm);
        let mut p = ProcOwners::new(PathBuf::from("/proc"), Duration::ZERO);
        let o = p.owner(client.local_addr().unwrap(), addr);
        assert_eq!(o, Some(ProcessInfo::new(std::process::id(), leader)));
    }

    #[test]
    fn lookups_rescan_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path(), &[(400, "client", &[1002])]);
        let mut p = ProcOwners::new(dir.path().to_path_buf(), Duration::from_secs(1));
        let t0 = Instant::now();
        let (l, r) = (sa("127.0.0.1:50000"), sa("127.0.0.1:8080"));
        assert_eq!(p.owner_at(l, r, t0).map(|o| o.pid), Some(400));
        assert_eq!(p.scans(), 1);
        // A hit is answered from the snapshot; a miss inside the interval does not rescan.
        assert_eq!(p.owner_at(l, r, t0 + Duration::from_millis(10)).map(|o| o.pid), Some(400));
        assert_eq!(p.owner_at(r, l, t0 + Duration::from_millis(20)), None);
        assert_eq!(p.scans(), 1);
        // After the interval a miss rescans.
        assert_eq!(p.owner_at(r, l, t0 + Duration::from_secs(2)), None);
        assert_eq!(p.scans(), 2);
        // Mapped addresses in the query are normalised.
        assert_eq!(
            p.owner_at(sa("[::ffff:127.0.0.1]:50000"), r, t0 + Duration::from_secs(2)).map(|o| o.pid),
            Some(400)
        );
        assert_eq!(p.entries(), Some(1));
    }

    #[test]
    fn missing_proc_is_a_miss_not_a_panic() {
        let mut p = ProcOwners::new(PathBuf::from("/nonexistent/proc"), Duration::ZERO);
        assert_eq!(p.owner(sa("127.0.0.1:1"), sa("127.0.0.1:2")), None);
    }

    /// Reads this machine's real /proc: the test's own listening socket must be found.
    #[cfg(target_os = "linux")]
    #[test]
    fn finds_own_socket_in_real_proc() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = std::net::TcpStream::connect(addr).unwrap();
        let (_s, _) = l.accept().unwrap();
        let mut p = ProcOwners::new(PathBuf::from("/proc"), Duration::ZERO);
        let o = p.owner(c.local_addr().unwrap(), addr);
        assert_eq!(o.map(|o| o.pid), Some(std::process::id()));
    }
}
