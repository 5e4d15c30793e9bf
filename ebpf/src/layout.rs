//! The bytes shared between the BPF program and the agent: map names, key and value layouts,
//! byte orders, and the indices of the config and stats arrays.
//!
//! Both sides must build byte-identical keys, so every layout is written down here once, as a
//! `#[repr(C)]` struct (checked against its size and field offsets at compile time) plus
//! explicit `encode`/`decode` functions that take the byte order of the host-order fields.
//! The kernel writes host-order fields in the byte order of the machine it runs on; the agent
//! runs on that same machine, so it uses [`ByteOrder::NATIVE`]. The explicit parameter exists so
//! that the encoding is tested for both orders (big-endian hosts such as s390x build the same
//! keys with the ports' bytes swapped) and so that a key dumped on one machine can be decoded on
//! another.
//!
//! Conventions, for every key and value below:
//! - **Addresses** are 16 bytes in network byte order (as on the wire). IPv4 addresses are
//!   stored as IPv4-mapped IPv6 addresses, `::ffff:a.b.c.d` (bytes 0–9 zero, bytes 10–11
//!   `ff ff`, bytes 12–15 the IPv4 address), whether the socket is `AF_INET` or an `AF_INET6`
//!   socket carrying IPv4 (dual stack). A packet's IPv4 address and a dual-stack socket's
//!   mapped address therefore produce the same key, and no separate family field is needed.
//! - **Ports** are `u16` in *host* byte order, as the `sock:inet_sock_set_state` tracepoint
//!   gives them (the program converts the network-order port of a `sockaddr` with `be16`).
//! - **Process IDs** are the thread-group ID (`tgid`, the PID `ps` shows), `u32`, host order.
//! - **Names** (`comm`) are the kernel's 16-byte task name, NUL padded, of the thread that
//!   connected, listened or accepted.
//! - Padding bytes are always zero (the kernel compares keys bytewise).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// `skaddr` (kernel `struct sock *`, u64 host order) → [`Owner`]: who called `connect()` on a
/// socket still in SYN_SENT. LRU hash.
pub const SOCK_OWNER: &str = "sock_owner";
/// [`FlowKey`] → [`Owner`]: the process that owns the socket whose local end is the key's
/// `saddr`/`sport`. LRU hash; the map the agent reads.
pub const FLOW_OWNER: &str = "flow_owner";
/// [`Endpoint`] (listening address and port) → [`Owner`] of the listening socket. LRU hash.
pub const LISTEN_OWNER: &str = "listen_owner";
/// `pid_tgid` (u64 host order: `tgid << 32 | thread id`) → user pointer (u64) to the peer
/// `sockaddr` passed to `accept`/`accept4`, between syscall entry and exit. LRU hash.
pub const ACCEPT_ARGS: &str = "accept_args";
/// [`Endpoint`] (remote address and port of an accepted connection) → its [`FlowKey`], from
/// the handshake until `accept` returns it. LRU hash.
pub const ACCEPT_PENDING: &str = "accept_pending";
/// `skaddr` (u64 host order) → [`FlowKey`] of a passively opened (accepted) connection, from
/// the handshake until its server side first sends, or the socket closes. The socket I/O
/// programs look the socket of every TCP send/receive up here, so that the process doing the
/// I/O (the one serving the connection) becomes its owner. LRU hash.
pub const PASSIVE_SK: &str = "passive_sk";
/// Port (u16 host order) → 1 (u8): the ports to attribute when filtering is on. Plain hash,
/// written only by the agent.
pub const PORT_FILTER: &str = "port_filter";
/// Array of one u32 (host order) holding [`CONFIG_FILTER_PORTS`] and future flags.
pub const CONFIG: &str = "config";
/// Array of one value: [`Stat::COUNT`] u64 counters (host order), indexed by [`Stat`].
pub const STATS: &str = "stats";

/// Bit in `config[0]`: when set, only connections with a local or remote port present in
/// [`PORT_FILTER`] are recorded; when clear (the default), all TCP connections are.
pub const CONFIG_FILTER_PORTS: u32 = 1;

/// `AF_INET`, as in `sockaddr` and the tracepoint's `family` field.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;

/// TCP states (`include/net/tcp_states.h`) the program reacts to.
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    pub const CLOSE: i32 = 7;
    pub const LISTEN: i32 = 10;
    pub const NEW_SYN_RECV: i32 = 12;
}

/// Byte order of host-order fields (ports, tgid, counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// The order of the machine this code runs on, which is the order the kernel used.
    pub const NATIVE: ByteOrder =
        if cfg!(target_endian = "big") { ByteOrder::Big } else { ByteOrder::Little };

    fn u16_bytes(self, v: u16) -> [u8; 2] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    fn u16_from(self, b: [u8; 2]) -> u16 {
        match self {
            ByteOrder::Little => u16::from_le_bytes(b),
            ByteOrder::Big => u16::from_be_bytes(b),
        }
    }

    fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    fn u32_from(self, b: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        }
    }

    fn u64_bytes(self, v: u64) -> [u8; 8] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    /// Decodes a u64 counter or `skaddr`.
    pub fn u64_from(self, b: [u8; 8]) -> u64 {
        match self {
            ByteOrder::Little => u64::from_le_bytes(b),
            ByteOrder::Big => u64::from_be_bytes(b),
        }
    }
}

/// An address as the maps store it: 16 bytes, network order, IPv4 as `::ffff:a.b.c.d`.
pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The inverse of [`addr_bytes`]: a mapped address comes back as IPv4.
pub fn addr_from_bytes(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

/// Key of [`FLOW_OWNER`]: one TCP connection seen from one of its sockets.
///
/// | offset | size | field   | byte order |
/// |-------:|-----:|---------|------------|
/// | 0      | 16   | `saddr` | network; the socket's local address, IPv4 mapped |
/// | 16     | 16   | `daddr` | network; the remote address, IPv4 mapped |
/// | 32     | 2    | `sport` | host; local port |
/// | 34     | 2    | `dport` | host; remote port |
///
/// 36 bytes, no padding. The owner of `(saddr, sport)`: for a client, look up
/// `(client, server)`; for a server, `(server, client)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    pub const SIZE: usize = 36;

    /// The key of the socket whose local end is `local`.
    pub fn new(local: SocketAddr, remote: SocketAddr) -> FlowKey {
        FlowKey {
            saddr: addr_bytes(local.ip()),
            daddr: addr_bytes(remote.ip()),
            sport: local.port(),
            dport: remote.port(),
        }
    }

    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(addr_from_bytes(self.saddr), self.sport)
    }

    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(addr_from_bytes(self.daddr), self.dport)
    }

    pub fn encode(&self, order: ByteOrder) -> [u8; FlowKey::SIZE] {
        let mut b = [0u8; FlowKey::SIZE];
        b[0..16].copy_from_slice(&self.saddr);
        b[16..32].copy_from_slice(&self.daddr);
        b[32..34].copy_from_slice(&order.u16_bytes(self.sport));
        b[34..36].copy_from_slice(&order.u16_bytes(self.dport));
        b
    }

    pub fn decode(b: &[u8; FlowKey::SIZE], order: ByteOrder) -> FlowKey {
        FlowKey {
            saddr: take(b, 0),
            daddr: take(b, 16),
            sport: order.u16_from(take(b, 32)),
            dport: order.u16_from(take(b, 34)),
        }
    }
}

/// Key of [`LISTEN_OWNER`] (a listening address and port) and of [`ACCEPT_PENDING`] (an
/// accepted connection's remote address and port).
///
/// | offset | size | field  | byte order |
/// |-------:|-----:|--------|------------|
/// | 0      | 16   | `addr` | network, IPv4 mapped; `::` or `::ffff:0.0.0.0` for a wildcard listener |
/// | 16     | 2    | `port` | host |
/// | 18     | 2    | `pad`  | always 0 |
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
    pub pad: u16,
}

impl Endpoint {
    pub const SIZE: usize = 20;

    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint { addr: addr_bytes(addr.ip()), port: addr.port(), pad: 0 }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(addr_from_bytes(self.addr), self.port)
    }

    pub fn encode(&self, order: ByteOrder) -> [u8; Endpoint::SIZE] {
        let mut b = [0u8; Endpoint::SIZE];
        b[0..16].copy_from_slice(&self.addr);
        b[16..18].copy_from_slice(&order.u16_bytes(self.port));
        b[18..20].copy_from_slice(&order.u16_bytes(self.pad));
        b
    }

    pub fn decode(b: &[u8; Endpoint::SIZE], order: ByteOrder) -> Endpoint {
        Endpoint { addr: take(b, 0), port: order.u16_from(take(b, 16)), pad: order.u16_from(take(b, 18)) }
    }
}

/// Value of [`SOCK_OWNER`], [`FLOW_OWNER`] and [`LISTEN_OWNER`]: a process, and the cgroup it
/// was in when it connected, listened, accepted or served.
///
/// | offset | size | field       | byte order |
/// |-------:|-----:|-------------|------------|
/// | 0      | 4    | `tgid`      | host; the process ID as `ps` shows it |
/// | 4      | 16   | `comm`      | bytes; the process's name (thread-group leader's comm), NUL padded (not necessarily NUL terminated) |
/// | 20     | 4    | `pad`       | always 0 |
/// | 24     | 8    | `cgroup_id` | host; `bpf_get_current_cgroup_id()`: the id of the task's cgroup in the cgroup v2 (unified) hierarchy, which is the inode number of that cgroup's directory in a cgroup2 mount; 0 when unknown (an entry the agent wrote from a /proc scan) |
///
/// The cgroup is read in the process's own context, so it stays known after the process
/// exits: the agent names the container of a connection whose client (curl) is gone by the
/// time the exchange is attributed (see the agent's `container::cgroup_dirs`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub tgid: u32,
    pub comm: [u8; 16],
    pub pad: u32,
    pub cgroup_id: u64,
}

impl Owner {
    pub const SIZE: usize = 32;

    /// An owner with `comm` truncated to 15 bytes, as the kernel does, and no cgroup.
    pub fn new(tgid: u32, comm: &str) -> Owner {
        let mut c = [0u8; 16];
        let n = comm.len().min(15);
        c[..n].copy_from_slice(&comm.as_bytes()[..n]);
        Owner { tgid, comm: c, pad: 0, cgroup_id: 0 }
    }

    /// The same owner in cgroup `id`.
    pub fn with_cgroup(self, id: u64) -> Owner {
        Owner { cgroup_id: id, ..self }
    }

    /// The name up to the first NUL, with invalid UTF-8 replaced.
    pub fn comm_str(&self) -> String {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }

    /// The cgroup, `None` when the entry does not carry one (0).
    pub fn cgroup(&self) -> Option<u64> {
        (self.cgroup_id != 0).then_some(self.cgroup_id)
    }

    pub fn encode(&self, order: ByteOrder) -> [u8; Owner::SIZE] {
        let mut b = [0u8; Owner::SIZE];
        b[0..4].copy_from_slice(&order.u32_bytes(self.tgid));
        b[4..20].copy_from_slice(&self.comm);
        b[20..24].copy_from_slice(&order.u32_bytes(self.pad));
        b[24..32].copy_from_slice(&order.u64_bytes(self.cgroup_id));
        b
    }

    pub fn decode(b: &[u8; Owner::SIZE], order: ByteOrder) -> Owner {
        Owner {
            tgid: order.u32_from(take(b, 0)),
            comm: take(b, 4),
            pad: order.u32_from(take(b, 20)),
            cgroup_id: order.u64_from(take(b, 24)),
        }
    }
}

/// Counters the program keeps in [`STATS`] (one u64 each, at `index * 8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stat {
    /// TCP state changes that passed the port filter.
    StateChanges = 0,
    /// TCP state changes dropped by the port filter.
    Filtered,
    /// CLOSE→SYN_SENT recorded in `sock_owner`.
    Connects,
    /// SYN_SENT→ESTABLISHED recorded in `flow_owner` from `sock_owner`.
    ActiveFlows,
    /// SYN_SENT→ESTABLISHED whose socket was not in `sock_owner` (connect before load).
    ActiveMisses,
    /// CLOSE→LISTEN recorded in `listen_owner`.
    Listens,
    /// Passive →ESTABLISHED recorded in `flow_owner` from the listener.
    PassiveGuesses,
    /// Passive →ESTABLISHED with no known listener.
    PassiveMisses,
    /// accept/accept4 returns that overwrote `flow_owner` with the acceptor.
    AcceptRefined,
    /// accept/accept4 returns with a peer address but no pending handshake.
    AcceptMisses,
    /// TCP sends/receives on an accepted socket that made the process doing them its owner.
    ServedBy,
    /// Owners recorded with the current thread's name because the leader's could not be read
    /// (no BTF offsets, or a failed kernel read).
    ThreadComms,
    /// A gauge, not a counter: at least the number of entries in `passive_sk` (incremented
    /// before each insert, decremented by each delete that removed one; LRU evictions leave it
    /// higher). While it is 0 the socket I/O programs skip their hash lookup.
    PassiveOpen,
}

impl Stat {
    pub const COUNT: usize = 13;
    pub const ALL: [Stat; Stat::COUNT] = [
        Stat::StateChanges,
        Stat::Filtered,
        Stat::Connects,
        Stat::ActiveFlows,
        Stat::ActiveMisses,
        Stat::Listens,
        Stat::PassiveGuesses,
        Stat::PassiveMisses,
        Stat::AcceptRefined,
        Stat::AcceptMisses,
        Stat::ServedBy,
        Stat::ThreadComms,
        Stat::PassiveOpen,
    ];

    /// Byte offset of this counter in the stats value.
    pub fn offset(self) -> usize {
        self as usize * 8
    }

    pub fn name(self) -> &'static str {
        match self {
            Stat::StateChanges => "state_changes",
            Stat::Filtered => "filtered",
            Stat::Connects => "connects",
            Stat::ActiveFlows => "active_flows",
            Stat::ActiveMisses => "active_misses",
            Stat::Listens => "listens",
            Stat::PassiveGuesses => "passive_guesses",
            Stat::PassiveMisses => "passive_misses",
            Stat::AcceptRefined => "accept_refined",
            Stat::AcceptMisses => "accept_misses",
            Stat::ServedBy => "served_by",
            Stat::ThreadComms => "thread_comms",
            Stat::PassiveOpen => "passive_open",
        }
    }
}

/// Decodes the [`STATS`] value into (counter, value) pairs.
pub fn decode_stats(b: &[u8; Stat::COUNT * 8], order: ByteOrder) -> [(Stat, u64); Stat::COUNT] {
    Stat::ALL.map(|s| (s, order.u64_from(take(b, s.offset()))))
}

/// The IPv4 wildcard as a mapped address, `::ffff:0.0.0.0`.
pub const V4_ANY_MAPPED: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];

// The #[repr(C)] structs are the documentation of record; make sure they say what the
// encoders do.
const _: () = {
    assert!(size_of::<FlowKey>() == FlowKey::SIZE);
    assert!(std::mem::offset_of!(FlowKey, daddr) == 16);
    assert!(std::mem::offset_of!(FlowKey, sport) == 32);
    assert!(std::mem::offset_of!(FlowKey, dport) == 34);
    assert!(size_of::<Endpoint>() == Endpoint::SIZE);
    assert!(std::mem::offset_of!(Endpoint, port) == 16);
    assert!(size_of::<Owner>() == Owner::SIZE);
    assert!(std::mem::offset_of!(Owner, comm) == 4);
    assert!(std::mem::offset_of!(Owner, pad) == 20);
    assert!(std::mem::offset_of!(Owner, cgroup_id) == 24);
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flow_key_bytes_on_both_byte_orders() {
        let k = FlowKey::new(sa("127.0.0.1:8080"), sa("10.1.2.3:50000"));
        let le = k.encode(ByteOrder::Little);
        let be = k.encode(ByteOrder::Big);
        // Addresses: network order, mapped, identical on both orders.
        let local = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        let remote = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3];
        assert_eq!(le[0..16], local);
        assert_eq!(be[0..16], local);
        assert_eq!(le[16..32], remote);
        assert_eq!(be[16..32], remote);
        // Ports: host order. 8080 = 0x1f90, 50000 = 0xc350.
        assert_eq!(le[32..36], [0x90, 0x1f, 0x50, 0xc3]);
        assert_eq!(be[32..36], [0x1f, 0x90, 0xc3, 0x50]);
        // And back.
        assert_eq!(FlowKey::decode(&le, ByteOrder::Little), k);
        assert_eq!(FlowKey::decode(&be, ByteOrder::Big), k);
        assert_eq!(k.local(), sa("127.0.0.1:8080"));
        assert_eq!(k.remote(), sa("10.1.2.3:50000"));
        // Decoding with the wrong order swaps the ports, never the addresses.
        let wrong = FlowKey::decode(&le, ByteOrder::Big);
        assert_eq!((wrong.saddr, wrong.sport), (k.saddr, 0x901f));
    }

    #[test]
    fn flow_key_ipv6_and_mapped_are_normalised() {
        let k = FlowKey::new(sa("[::1]:80"), sa("[2001:db8::7]:41000"));
        let b = k.encode(ByteOrder::Little);
        assert_eq!(b[0..16], Ipv6Addr::LOCALHOST.octets());
        assert_eq!(b[16..18], [0x20, 0x01]);
        assert_eq!(FlowKey::decode(&b, ByteOrder::Little).remote(), sa("[2001:db8::7]:41000"));
        // A dual-stack socket's mapped address gives the key of the plain IPv4 address.
        let mapped = FlowKey::new(sa("[::ffff:127.0.0.1]:8080"), sa("[::ffff:10.1.2.3]:50000"));
        assert_eq!(mapped, FlowKey::new(sa("127.0.0.1:8080"), sa("10.1.2.3:50000")));
        assert_eq!(mapped.local(), sa("127.0.0.1:8080"));
    }

    #[test]
    fn endpoint_and_owner_round_trip_on_both_orders() {
        let e = Endpoint::new(sa("0.0.0.0:443"));
        assert_eq!(e.addr, V4_ANY_MAPPED);
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let b = e.encode(order);
            assert_eq!(b[18..20], [0, 0]);
            assert_eq!(Endpoint::decode(&b, order), e);
        }
        assert_eq!(e.encode(ByteOrder::Little)[16..18], [0xbb, 0x01]);
        assert_eq!(e.encode(ByteOrder::Big)[16..18], [0x01, 0xbb]);

        let o = Owner::new(0x0102_0304, "a-very-long-process-name").with_cgroup(0x1122_3344_5566_7788);
        assert_eq!(o.comm_str(), "a-very-long-pro");
        assert_eq!(o.cgroup(), Some(0x1122_3344_5566_7788));
        assert_eq!(Owner::new(1, "x").cgroup(), None, "0 is no cgroup");
        let le = o.encode(ByteOrder::Little);
        let be = o.encode(ByteOrder::Big);
        assert_eq!(le[0..4], [4, 3, 2, 1]);
        assert_eq!(be[0..4], [1, 2, 3, 4]);
        assert_eq!(le[4..20], be[4..20]);
        assert_eq!(le[20..24], [0; 4]);
        assert_eq!(le[24..32], [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(be[24..32], [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(Owner::decode(&le, ByteOrder::Little), o);
        assert_eq!(Owner::decode(&be, ByteOrder::Big), o);
    }

    #[test]
    fn encode_matches_the_in_memory_repr_c_layout() {
        // What the kernel sees is the struct's memory on this host.
        let k = FlowKey::new(sa("[::1]:1234"), sa("127.0.0.1:80"));
        // SAFETY: FlowKey is repr(C), 36 bytes with no padding, all fields plain integers.
        let raw: [u8; 36] = unsafe { std::mem::transmute(k) };
        assert_eq!(raw, k.encode(ByteOrder::NATIVE));
        let o = Owner::new(42, "nginx").with_cgroup(9876);
        // SAFETY: Owner is repr(C), 32 bytes with no implicit padding (`pad` is a field).
        let raw: [u8; 32] = unsafe { std::mem::transmute(o) };
        assert_eq!(raw, o.encode(ByteOrder::NATIVE));
    }

    #[test]
    fn stats_decode() {
        let mut b = [0u8; Stat::COUNT * 8];
        b[Stat::AcceptRefined.offset()] = 3;
        let s = decode_stats(&b, ByteOrder::Little);
        assert_eq!(s[Stat::AcceptRefined as usize], (Stat::AcceptRefined, 3));
        assert_eq!(s[0].1, 0);
    }
}
