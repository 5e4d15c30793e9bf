//! The network namespaces of the node as the proc filesystem shows them, and what each one
//! holds: its TCP sockets and its own addresses.
//!
//! A DaemonSet agent runs with the host's PID namespace and /proc, so `<root>/<pid>/ns/net`
//! names the network namespace of every process on the node (each pod has its own), and
//! `<root>/<pid>/net/*` shows that namespace's tables. One process per namespace is enough to
//! read them; [`namespaces`] picks the lowest PID of each. The agent's own namespace is the
//! one `<root>/self/ns/net` names and is read through `<root>/net/*`.
//!
//! Parsing ([`parse_ns_link`], [`parse_fib_trie_local`], [`parse_if_inet6`]) is separate from
//! reading, and the root is a parameter, so tests run on fixture trees. Not for: telling
//! which pod a namespace belongs to (that is the container runtime's record).

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use liteobs_ebpf::layout::ByteOrder;

use super::procfs::{TcpSocket, parse_net_tcp};

/// One network namespace, and a process through whose /proc directory its tables are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    /// The namespace's inode (`net:[inode]`); None when the agent cannot tell its own.
    pub inode: Option<u64>,
    /// The lowest PID in the namespace; None for the agent's own (read via `<root>/net`).
    pub pid: Option<u32>,
}

impl NetNs {
    /// True for the agent's own network namespace.
    pub fn is_own(&self) -> bool {
        self.pid.is_none()
    }

    /// The directory holding this namespace's `tcp`, `tcp6`, `fib_trie` and `if_inet6`.
    pub fn net_dir(&self, root: &Path) -> PathBuf {
        match self.pid {
            None => root.join("net"),
            Some(pid) => root.join(pid.to_string()).join("net"),
        }
    }
}

/// The inode of a `/proc/<pid>/ns/net` link target `net:[4026531840]`.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    target.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The addresses a namespace owns, from the text of `/proc/net/fib_trie`: the leaves followed
/// by a `/32 host LOCAL` entry (the local routing table's entry for each configured address).
/// Sorted, without duplicates (the main and local tables both list them).
pub fn parse_fib_trie_local(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(addr) = t.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if t.starts_with('+') || !t.starts_with('/') {
            leaf = None;
        } else if t.split_whitespace().collect::<Vec<_>>() == ["/32", "host", "LOCAL"]
            && let Some(a) = leaf
        {
            out.push(a);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The IPv6 addresses of a namespace, from the text of `/proc/net/if_inet6` (one line per
/// address: 32 hex digits in network byte order, then index, prefix length, scope, flags and
/// interface name). Sorted, without duplicates; lines that do not parse are skipped.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = text
        .lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            if hex.len() != 32 {
                return None;
            }
            u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The node's network namespaces: the agent's own first, then every other one found through
/// `<root>/*/ns/net`, by inode, at most `limit` in all. Processes that vanish or deny access
/// are skipped. When the agent cannot read its own namespace link, it lists only its own (it
/// could not tell the others from it).
pub fn namespaces(root: &Path, limit: usize) -> io::Result<Vec<NetNs>> {
    let own =
        std::fs::read_link(root.join("self/ns/net")).ok().and_then(|t| t.to_str().and_then(parse_ns_link));
    let mut out = vec![NetNs { inode: own, pid: None }];
    let Some(own) = own else { return Ok(out) };
    let mut others: BTreeMap<u64, u32> = BTreeMap::new();
    for entry in std::fs::read_dir(root)?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(target) = std::fs::read_link(entry.path().join("ns/net")) else { continue };
        let Some(inode) = target.to_str().and_then(parse_ns_link) else { continue };
        if inode != own {
            others.entry(inode).and_modify(|p| *p = (*p).min(pid)).or_insert(pid);
        }
    }
    out.extend(others.into_iter().map(|(inode, pid)| NetNs { inode: Some(inode), pid: Some(pid) }));
    out.truncate(limit.max(1));
    Ok(out)
}

/// The TCP sockets of one namespace (`tcp`, then `tcp6`). A missing `tcp6` (no IPv6) is
/// fine; a missing `tcp` is an error (the process left, or this is no proc filesystem).
pub fn tcp_sockets(root: &Path, ns: &NetNs, order: ByteOrder) -> io::Result<Vec<TcpSocket>> {
    let dir = ns.net_dir(root);
    let mut sockets = parse_net_tcp(&std::fs::read_to_string(dir.join("tcp"))?, order);
    if let Ok(text) = std::fs::read_to_string(dir.join("tcp6")) {
        sockets.extend(parse_net_tcp(&text, order));
    }
    Ok(sockets)
}

/// The namespace's own IPv4 and IPv6 addresses (empty when the files cannot be read).
pub fn addresses(root: &Path, ns: &NetNs) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let dir = ns.net_dir(root);
    let v4 =
        std::fs::read_to_string(dir.join("fib_trie")).map(|t| parse_fib_trie_local(&t)).unwrap_or_default();
    let v6 = std::fs::read_to_string(dir.join("if_inet6")).map(|t| parse_if_inet6(&t)).unwrap_or_default();
    (v4, v6)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// /proc/net/fib_trie of a pod: lo and eth0 with 10.244.1.7/24.
    pub(crate) const FIB_TRIE_POD: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        +-- 10.244.1.0/29 2 0 2
           |-- 10.244.1.0
              /24 link UNICAST
           |-- 10.244.1.7
              /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        +-- 10.244.1.0/29 2 0 2
           |-- 10.244.1.0
              /24 link UNICAST
           |-- 10.244.1.7
              /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
";

    /// /proc/net/if_inet6 of the same pod: ::1, a global and a link-local address on eth0.
    pub(crate) const IF_INET6_POD: &str = "00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000107 02 40 00 80     eth0
fe80000000000000a8c1abfffe2e3f40 02 40 20 80     eth0
";

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(parse_ns_link("net:[x]"), None);
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_ns_link("socket:[12]"), None);
    }

    #[test]
    fn local_addresses_from_fib_trie() {
        let v4: Vec<Ipv4Addr> = ["10.244.1.7", "127.0.0.1"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(
            parse_fib_trie_local(FIB_TRIE_POD),
            v4,
            "network, broadcast and /8 entries are not addresses"
        );
        assert!(parse_fib_trie_local("").is_empty());
        assert!(parse_fib_trie_local("  |-- nonsense\n     /32 host LOCAL\n/32 host LOCAL\n").is_empty());
    }

    #[test]
    fn addresses_from_if_inet6() {
        let v6: Vec<Ipv6Addr> =
            ["::1", "fd00::107", "fe80::a8c1:abff:fe2e:3f40"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(parse_if_inet6(IF_INET6_POD), v6);
        assert!(parse_if_inet6("zz000000000000000000000000000001 01 80 10 80 lo\nshort 01\n").is_empty());
    }
}
