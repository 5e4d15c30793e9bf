//! The node's listening TCP sockets and their owners, found in /proc: what tells the
//! attribution who serves a port whose `listen()` happened before the agent started.
//!
//! A pass ([`ListenerScan::scan`]) reads `tcp` and `tcp6` of every network namespace (see
//! [`super::netns`]) for sockets in state LISTEN (0x0A), keys each by the address it accepts
//! on ([`listener_keys`]), and finds its owner through `/proc/*/fd`. Only inodes not seen in
//! an earlier pass (or whose owner has exited) need that walk, so a pass on a quiet node reads
//! the tables and nothing else. The result goes to the sources through
//! [`super::OwnerLookup::seed_listeners`], and [`super::PidMap`] keeps it as its last answer
//! for the server side of a connection no source knows.
//!
//! Choices a caller may rely on:
//! - A socket several processes hold (an nginx master and its workers, any pre-fork server)
//!   belongs to the lowest PID, usually the master, which opened it. The eBPF accept and
//!   connection paths refine the owner per connection where they can.
//! - In the agent's own network namespace a wildcard listener (`0.0.0.0`, `::`) keeps its
//!   wildcard address, as the eBPF program keys listeners. In any other namespace it is keyed
//!   by each of that namespace's own addresses (`fib_trie` "/32 host LOCAL", `if_inet6`), so
//!   that every pod's `0.0.0.0:8080` gets its own key; loopback addresses of other namespaces
//!   are left out (the agent cannot capture a pod's `lo`). A dual-stack `::` listener is keyed
//!   by the namespace's IPv4 addresses too; where an explicit IPv4 listener has the same key,
//!   the IPv4 one wins.
//! - Bounded: at most [`MAX_LISTENERS`] listeners per pass, namespaces as in
//!   [`super::procfs::MAX_NAMESPACES`].
//!
//! Not for: connections (that is [`super::procfs`]), or listeners opened after the agent
//! started, which the eBPF program sees itself (a pass finds them too, at its next interval).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use liteobs_ebpf::layout::ByteOrder;

use super::netns::{self, NetNs};
use super::procfs::{self, MAX_NAMESPACES, TcpSocket};
use super::{Listener, ProcessInfo};

/// Kernel TCP state LISTEN, as `/proc/net/tcp` prints it (0x0A).
pub const TCP_LISTEN: u8 = 10;
/// Most listeners one pass keeps.
pub const MAX_LISTENERS: usize = 16_384;

/// The keys one listening socket is reachable under (see the module docs): its own address in
/// the agent's namespace, or the namespace's non-loopback addresses for a wildcard elsewhere.
/// `v4`/`v6` are the namespace's addresses; ignored for the agent's own namespace.
pub fn listener_keys(local: SocketAddr, own: bool, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Vec<SocketAddr> {
    let local = procfs::normalise(local);
    let port = local.port();
    if own {
        return vec![local];
    }
    let v4s = || v4.iter().filter(|a| !a.is_loopback()).map(move |a| SocketAddr::new(IpAddr::V4(*a), port));
    let v6s = || v6.iter().filter(|a| !a.is_loopback()).map(move |a| SocketAddr::new(IpAddr::V6(*a), port));
    match local.ip() {
        ip if ip.is_loopback() => Vec::new(),
        IpAddr::V4(a) if a.is_unspecified() => v4s().collect(),
        IpAddr::V6(a) if a.is_unspecified() => v6s().chain(v4s()).collect(),
        _ => vec![local],
    }
}

/// The listening sockets among `sockets` (any state order), with the keys they are reached
/// under, in the given order: (key, inode). A key already taken keeps its first socket (`tcp`
/// is read before `tcp6`, so an explicit IPv4 listener wins over a dual-stack one).
pub fn keyed_listeners(
    sockets: &[TcpSocket],
    own: bool,
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
) -> Vec<(SocketAddr, u64)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in sockets.iter().filter(|s| s.state == TCP_LISTEN && s.inode != 0) {
        for key in listener_keys(s.local, own, v4, v6) {
            if seen.insert(key) {
                out.push((key, s.inode));
            }
        }
    }
    out
}

/// What the scans did, since the scanner was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanStats {
    /// Passes made.
    pub scans: u64,
    /// Listener keys found by the last pass.
    pub listeners: u64,
    /// Network namespaces read by the last pass.
    pub namespaces: u64,
    /// Passes that had new listener inodes and so walked `/proc/*/fd`.
    pub fd_walks: u64,
    /// Time spent in passes, in microseconds.
    pub micros: u64,
}

/// Periodic passes over the node's listeners, remembering owners by socket inode between
/// passes. See the module docs.
#[derive(Debug)]
pub struct ListenerScan {
    root: PathBuf,
    order: ByteOrder,
    interval: Duration,
    last: Option<Instant>,
    /// inode → owner, from earlier passes.
    owners: HashMap<u64, ProcessInfo>,
    stats: ScanStats,
}

impl ListenerScan {
    /// Scans `root` (normally `/proc`) when [`ListenerScan::due`], every `interval`.
    pub fn new(root: PathBuf, interval: Duration) -> ListenerScan {
        ListenerScan {
            root,
            order: ByteOrder::NATIVE,
            interval,
            last: None,
            owners: HashMap::new(),
            stats: ScanStats::default(),
        }
    }

    /// Reads fixture trees written on a machine of the other byte order.
    pub fn with_byte_order(mut self, order: ByteOrder) -> ListenerScan {
        self.order = order;
        self
    }

    /// True when no pass was made yet or the last one is `interval` old at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    pub fn stats(&self) -> ScanStats {
        self.stats
    }

    /// One pass at `now`: every listener of the node with its owner. Never fails: a root that
    /// cannot be read gives no listeners (and a debug line), a namespace whose process left
    /// is skipped, a socket whose holder cannot be found is left out.
    pub fn scan(&mut self, now: Instant) -> Vec<Listener> {
        let started = Instant::now();
        self.last = Some(now);
        self.stats.scans += 1;
        let spaces = match netns::namespaces(&self.root, MAX_NAMESPACES) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(root = %self.root.display(), "pidmap: listener scan: {e}");
                Vec::new()
            }
        };
        let mut keyed: Vec<(SocketAddr, u64)> = Vec::new();
        let mut namespaces = 0;
        for ns in &spaces {
            let Some(found) = self.namespace_listeners(ns) else { continue };
            namespaces += 1;
            let room = MAX_LISTENERS.saturating_sub(keyed.len());
            keyed.extend(found.into_iter().take(room));
        }
        // Owners: remembered ones whose process still exists, the rest from one fd walk.
        let live: HashSet<u64> = keyed.iter().map(|(_, i)| *i).collect();
        let root = &self.root;
        self.owners.retain(|inode, o| live.contains(inode) && root.join(o.pid.to_string()).exists());
        let new: HashSet<u64> = live.iter().copied().filter(|i| !self.owners.contains_key(i)).collect();
        if !new.is_empty() {
            self.stats.fd_walks += 1;
            match procfs::socket_holders(&self.root, &new) {
                Ok(holders) => {
                    for (inode, pid) in holders {
                        let comm = procfs::read_comm(&self.root, pid);
                        self.owners.insert(inode, ProcessInfo::new(pid, comm));
                    }
                }
                Err(e) => tracing::debug!(root = %self.root.display(), "pidmap: listener owners: {e}"),
            }
        }
        let mut seen = HashSet::new();
        let listeners: Vec<Listener> = keyed
            .into_iter()
            .filter(|(key, _)| seen.insert(*key))
            .filter_map(|(key, inode)| {
                let owner = self.owners.get(&inode)?.clone();
                Some(Listener { addr: key.ip(), port: key.port(), owner })
            })
            .collect();
        self.stats.listeners = listeners.len() as u64;
        self.stats.namespaces = namespaces;
        self.stats.micros += u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        listeners
    }

    /// The keyed listeners of one namespace; None when its tables cannot be read.
    fn namespace_listeners(&self, ns: &NetNs) -> Option<Vec<(SocketAddr, u64)>> {
        let sockets = netns::tcp_sockets(&self.root, ns, self.order).ok()?;
        if !sockets.iter().any(|s| s.state == TCP_LISTEN) {
            return Some(Vec::new());
        }
        let (v4, v6) = if ns.is_own() { (Vec::new(), Vec::new()) } else { netns::addresses(&self.root, ns) };
        Some(keyed_listeners(&sockets, ns.is_own(), &v4, &v6))
    }
}

/// The owner of the listener a connection to `server` reached, from `table` (key → owner):
/// the exact address, then the IPv4 wildcard (for IPv4), then the IPv6 wildcard (dual-stack
/// listeners take IPv4 connections too). The same order as the eBPF program's.
pub fn listener_owner(table: &HashMap<SocketAddr, ProcessInfo>, server: SocketAddr) -> Option<&ProcessInfo> {
    let server = procfs::normalise(server);
    let port = server.port();
    table
        .get(&server)
        .or_else(|| {
            server
                .is_ipv4()
                .then(|| table.get(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)))
                .flatten()
        })
        .or_else(|| table.get(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)))
}

/// A fixture proc tree for the listener and connection scans (tests only): namespaces with
/// their tables and addresses, and processes with their namespace, fd links and comm.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;

    /// One network namespace of a fixture: its inode and its files (`tcp`, `tcp6`,
    /// `fib_trie`, `if_inet6`; empty strings are not written).
    pub struct Ns<'a> {
        pub inode: u64,
        pub tcp: &'a str,
        pub tcp6: &'a str,
        pub fib_trie: &'a str,
        pub if_inet6: &'a str,
    }

    /// One process: PID, comm, the inode of its namespace, the socket inodes it holds.
    pub struct Proc<'a> {
        pub pid: u32,
        pub comm: &'a str,
        pub netns: u64,
        pub sockets: &'a [u64],
    }

    /// Writes the tree: `own` is the agent's namespace (`<dir>/net`, `<dir>/self/ns/net`);
    /// every process's `net/` holds its namespace's files.
    pub fn write(dir: &Path, own: &Ns, others: &[Ns], procs: &[Proc]) {
        let files = |ns: &Ns, net: &Path| {
            std::fs::create_dir_all(net).unwrap();
            for (name, text) in
                [("tcp", ns.tcp), ("tcp6", ns.tcp6), ("fib_trie", ns.fib_trie), ("if_inet6", ns.if_inet6)]
            {
                if !text.is_empty() {
                    std::fs::write(net.join(name), text).unwrap();
                }
            }
        };
        files(own, &dir.join("net"));
        std::fs::create_dir_all(dir.join("self/ns")).unwrap();
        std::os::unix::fs::symlink(format!("net:[{}]", own.inode), dir.join("self/ns/net")).unwrap();
        for p in procs {
            let pd = dir.join(p.pid.to_string());
            std::fs::create_dir_all(pd.join("fd")).unwrap();
            std::fs::create_dir_all(pd.join("ns")).unwrap();
            std::fs::write(pd.join("comm"), format!("{}\n", p.comm)).unwrap();
            std::os::unix::fs::symlink(format!("net:[{}]", p.netns), pd.join("ns/net")).unwrap();
            std::os::unix::fs::symlink("/dev/null", pd.join("fd/0")).unwrap();
            for (i, inode) in p.sockets.iter().enumerate() {
                std::os::unix::fs::symlink(format!("socket:[{inode}]"), pd.join(format!("fd/{}", i + 3)))
                    .unwrap();
            }
            let ns = std::iter::once(own).chain(others).find(|n| n.inode == p.netns);
            if let Some(ns) = ns {
                files(ns, &pd.join("net"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::fixture::{Ns, Proc};
    use super::*;
    use crate::pidmap::netns::tests::{FIB_TRIE_POD, IF_INET6_POD};

    const HEADER: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// One `/proc/net/tcp{,6}` line (little-endian words), as the kernel prints it.
    fn line(local: &str, remote: &str, state: u8, inode: u64) -> String {
        format!(
            "   0: {local} {remote} {state:02X} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
        )
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn p(pid: u32, comm: &str) -> ProcessInfo {
        ProcessInfo::new(pid, comm)
    }

    #[test]
    fn wildcards_keep_their_address_in_the_own_namespace_and_take_the_namespaces_elsewhere() {
        let v4: Vec<Ipv4Addr> = vec!["10.244.1.7".parse().unwrap(), Ipv4Addr::LOCALHOST];
        let v6: Vec<Ipv6Addr> = vec![Ipv6Addr::LOCALHOST, "fd00::107".parse().unwrap()];
        assert_eq!(listener_keys(sa("0.0.0.0:8080"), true, &v4, &v6), vec![sa("0.0.0.0:8080")]);
        assert_eq!(listener_keys(sa("[::]:80"), true, &v4, &v6), vec![sa("[::]:80")]);
        assert_eq!(listener_keys(sa("0.0.0.0:8080"), false, &v4, &v6), vec![sa("10.244.1.7:8080")]);
        assert_eq!(
            listener_keys(sa("[::]:80"), false, &v4, &v6),
            vec![sa("[fd00::107]:80"), sa("10.244.1.7:80")],
            "dual-stack: the namespace's IPv6 and IPv4 addresses, never loopback"
        );
        assert_eq!(listener_keys(sa("10.244.1.7:9000"), false, &v4, &v6), vec![sa("10.244.1.7:9000")]);
        assert!(
            listener_keys(sa("127.0.0.1:9000"), false, &v4, &v6).is_empty(),
            "a pod's lo is not captured"
        );
        assert_eq!(listener_keys(sa("127.0.0.1:9000"), true, &v4, &v6), vec![sa("127.0.0.1:9000")]);
        assert_eq!(
            listener_keys(sa("[::ffff:10.244.1.7]:81"), false, &v4, &v6),
            vec![sa("10.244.1.7:81")],
            "mapped addresses are keyed as IPv4"
        );
    }

    #[test]
    fn only_listening_sockets_are_keyed_and_ipv4_wins_a_shared_key() {
        let tcp = procfs::parse_net_tcp(
            &format!(
                "{HEADER}{}{}",
                line("00000000:1F90", "00000000:0000", 0x0A, 11),
                line("0701F40A:1F90", "0201F40A:C350", 0x01, 12)
            ),
            ByteOrder::Little,
        );
        let tcp6 = procfs::parse_net_tcp(
            &format!(
                "{HEADER}{}",
                line(
                    "00000000000000000000000000000000:1F90",
                    "00000000000000000000000000000000:0000",
                    0x0A,
                    13
                )
            ),
            ByteOrder::Little,
        );
        let all: Vec<TcpSocket> = tcp.into_iter().chain(tcp6).collect();
        let v4 = ["10.244.1.7".parse().unwrap()];
        let v6 = ["fd00::107".parse().unwrap()];
        assert_eq!(
            keyed_listeners(&all, false, &v4, &v6),
            vec![(sa("10.244.1.7:8080"), 11), (sa("[fd00::107]:8080"), 13)]
        );
    }

    /// The node: the agent's namespace (1) with nginx (master 100, workers 101 and 102 holding
    /// the same listener) on 0.0.0.0:80 and sshd on 127.0.0.1:22; two pods (namespaces 2 and
    /// 3) each with its own server on 0.0.0.0:8080, one of them also on [::]:9090 and on its
    /// 127.0.0.1:9000; pod 3's namespace is read through its lowest PID (300).
    fn node(dir: &Path) {
        let own_tcp = format!(
            "{HEADER}{}{}{}",
            line("00000000:0050", "00000000:0000", 0x0A, 1001),
            line("0100007F:0016", "00000000:0000", 0x0A, 1002),
            line("0100007F:0016", "0100007F:D431", 0x01, 1003)
        );
        let pod2_tcp = format!(
            "{HEADER}{}{}",
            line("00000000:1F90", "00000000:0000", 0x0A, 2001),
            line("0100007F:2328", "00000000:0000", 0x0A, 2002)
        );
        let pod2_tcp6 = format!(
            "{HEADER}{}",
            line(
                "00000000000000000000000000000000:2382",
                "00000000000000000000000000000000:0000",
                0x0A,
                2003
            )
        );
        let pod3_tcp = format!("{HEADER}{}", line("00000000:1F90", "00000000:0000", 0x0A, 3001));
        let pod3_fib = FIB_TRIE_POD.replace("10.244.1.7", "10.244.1.8");
        let own = Ns { inode: 1, tcp: &own_tcp, tcp6: "", fib_trie: "", if_inet6: "" };
        let pods = [
            Ns { inode: 2, tcp: &pod2_tcp, tcp6: &pod2_tcp6, fib_trie: FIB_TRIE_POD, if_inet6: IF_INET6_POD },
            Ns { inode: 3, tcp: &pod3_tcp, tcp6: "", fib_trie: &pod3_fib, if_inet6: "" },
        ];
        fixture::write(
            dir,
            &own,
            &pods,
            &[
                Proc { pid: 102, comm: "nginx", netns: 1, sockets: &[1001] },
                Proc { pid: 100, comm: "nginx", netns: 1, sockets: &[1001] },
                Proc { pid: 101, comm: "nginx", netns: 1, sockets: &[1001] },
                Proc { pid: 50, comm: "sshd", netns: 1, sockets: &[1002, 1003] },
                Proc { pid: 200, comm: "node", netns: 2, sockets: &[2001, 2002, 2003] },
                Proc { pid: 301, comm: "python3", netns: 3, sockets: &[3001] },
                Proc { pid: 300, comm: "pause", netns: 3, sockets: &[] },
            ],
        );
    }

    fn table(listeners: &[Listener]) -> HashMap<SocketAddr, ProcessInfo> {
        listeners.iter().map(|l| (SocketAddr::new(l.addr, l.port), l.owner.clone())).collect()
    }

    #[test]
    fn finds_every_namespaces_listeners_and_their_owners() {
        let dir = tempfile::tempdir().unwrap();
        node(dir.path());
        let mut scan = ListenerScan::new(dir.path().to_path_buf(), Duration::from_secs(10))
            .with_byte_order(ByteOrder::Little);
        let found = table(&scan.scan(Instant::now()));
        let expect: HashMap<SocketAddr, ProcessInfo> = [
            ("0.0.0.0:80", p(100, "nginx")),
            ("127.0.0.1:22", p(50, "sshd")),
            ("10.244.1.7:8080", p(200, "node")),
            ("[fd00::107]:9090", p(200, "node")),
            ("[fe80::a8c1:abff:fe2e:3f40]:9090", p(200, "node")),
            ("10.244.1.7:9090", p(200, "node")),
            ("10.244.1.8:8080", p(301, "python3")),
        ]
        .into_iter()
        .map(|(a, o)| (sa(a), o))
        .collect();
        assert_eq!(found, expect, "nginx: the lowest PID; pods' loopback listeners left out");
        let s = scan.stats();
        assert_eq!((s.scans, s.listeners, s.namespaces, s.fd_walks), (1, 7, 3, 1));
    }

    #[test]
    fn later_passes_walk_fds_only_for_new_or_orphaned_listeners() {
        let dir = tempfile::tempdir().unwrap();
        node(dir.path());
        let t0 = Instant::now();
        let mut scan = ListenerScan::new(dir.path().to_path_buf(), Duration::from_secs(10))
            .with_byte_order(ByteOrder::Little);
        assert!(scan.due(t0));
        assert_eq!(scan.scan(t0).len(), 7);
        assert!(!scan.due(t0 + Duration::from_secs(9)));
        assert!(scan.due(t0 + Duration::from_secs(10)));
        // Nothing changed: no walk.
        assert_eq!(scan.scan(t0 + Duration::from_secs(10)).len(), 7);
        assert_eq!(scan.stats().fd_walks, 1);
        // The nginx master exits; its workers keep the socket: walked again, lowest live PID.
        std::fs::remove_dir_all(dir.path().join("100")).unwrap();
        let l = table(&scan.scan(t0 + Duration::from_secs(20)));
        assert_eq!(l.get(&sa("0.0.0.0:80")), Some(&p(101, "nginx")));
        assert_eq!(scan.stats().fd_walks, 2);
    }

    #[test]
    fn a_missing_root_finds_nothing() {
        let mut scan = ListenerScan::new(PathBuf::from("/nonexistent/proc"), Duration::ZERO);
        assert!(scan.scan(Instant::now()).is_empty());
        assert_eq!(scan.stats().scans, 1);
    }

    #[test]
    fn lookups_try_the_exact_address_then_the_wildcards() {
        let t: HashMap<SocketAddr, ProcessInfo> = [
            (sa("10.244.1.7:8080"), p(1, "pod")),
            (sa("0.0.0.0:8080"), p(2, "host4")),
            (sa("[::]:8080"), p(3, "host6")),
            (sa("[::]:9090"), p(4, "dual")),
        ]
        .into_iter()
        .collect();
        assert_eq!(listener_owner(&t, sa("10.244.1.7:8080")).map(|o| o.pid), Some(1));
        assert_eq!(listener_owner(&t, sa("[::ffff:10.244.1.7]:8080")).map(|o| o.pid), Some(1));
        assert_eq!(listener_owner(&t, sa("192.168.0.1:8080")).map(|o| o.pid), Some(2));
        assert_eq!(listener_owner(&t, sa("[fd00::1]:8080")).map(|o| o.pid), Some(3));
        assert_eq!(listener_owner(&t, sa("192.168.0.1:9090")).map(|o| o.pid), Some(4));
        assert_eq!(listener_owner(&t, sa("192.168.0.1:7070")), None);
    }
}
