//! Which process owns each end of a TCP connection: the lookups behind `src_pid`/`src_comm`
//! (client side) and `dst_pid`/`dst_comm` (server side).
//!
//! Two sources, tried in order for every connection the cache does not know:
//! 1. `ebpf` (Linux, root): the kernel maps filled by the `liteobs-ebpf` program, which sees
//!    every connect, listen and accept from the moment it is attached. Exact for connections
//!    opened after the agent started, including forked workers (the acceptor wins).
//! 2. `procfs`: the TCP tables of every network namespace (socket inode per tuple; see
//!    [`netns`]) and `/proc/<pid>/fd` (process per inode), for connections opened before the
//!    agent started and anything the maps missed. Scans are rate limited; results are cached.
//!
//! Then, for a server end neither knows, the owner of the listener it reached: [`listeners`]
//! scans every namespace's listening sockets at start and every `listener_scan_interval`
//! ([`PidMap::refresh`]) and hands them to both sources ([`OwnerLookup::seed_listeners`]).
//! [`PidMap::fill`] also tells the agent's own uploads apart ([`Origin::Agent`]).
//!
//! [`PidMap`] puts them together behind a per-connection cache and counts what it does
//! ([`Counters`]). A cached answer lasts until the capture sees a new connection on the same
//! 4-tuple ([`PidMap::forget`]: once a connection closed, its tuple can be reused by another
//! process within milliseconds under connection churn), and at most `cache_ttl`. Limit: the
//! eBPF map keeps one owner per 4-tuple, so a tuple taken by another process before the
//! capture caught up with the old connection (the capture's latency, some 100 ms) is
//! attributed to the newer process.
//!
//! Construction never fails: when the eBPF program cannot be loaded (not root, tracepoint
//! missing, old kernel) it logs one warning saying why and continues with /proc alone.

#[cfg(target_os = "linux")]
pub mod ebpf;
pub mod listeners;
pub mod netns;
pub mod procfs;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use liteobs_model::TrafficLog;

/// A process as `ps` shows it: the process ID (thread-group ID, never a thread ID) and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The process's name (at most 15 bytes), `/proc/<pid>/comm`: the thread-group leader's
    /// task name, from either source (the eBPF source falls back to the name of the thread
    /// that connected or served only without the kernel's BTF, and warns).
    pub comm: String,
    /// The cgroup v2 id the process was in when it connected, accepted or served (eBPF reads
    /// it in the process's context, so it is known after the process exited); `None` from
    /// /proc and listener scans. What names the container of a process that is gone.
    pub cgroup: Option<u64>,
}

impl ProcessInfo {
    /// A process with no cgroup known.
    pub fn new(pid: u32, comm: impl Into<String>) -> ProcessInfo {
        ProcessInfo { pid, comm: comm.into(), cgroup: None }
    }
}

/// A source of socket owners.
pub trait OwnerLookup {
    /// The process owning the socket whose local end is `local` and whose peer is `remote`,
    /// if this source knows it.
    fn owner(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<ProcessInfo>;

    /// How many connections the source currently remembers, when it can tell cheaply enough
    /// to be asked now and then.
    fn entries(&self) -> Option<u64> {
        None
    }

    /// The source's own counters, by name (the eBPF program's in-kernel counters).
    fn source_stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Tells the source about listening sockets found outside it (the /proc scan of every
    /// network namespace, at start and now and then), so that the passive side of a new
    /// connection to a listener that existed before the agent is known. Answers how many
    /// entries it took; a source that learns listeners itself, or not at all, ignores them.
    fn seed_listeners(&mut self, _listeners: &[Listener]) -> usize {
        0
    }
}

/// A listening TCP socket and the process that owns it, as found by a scan.
///
/// `addr` is the address the socket is bound to, or, for a wildcard listener inside a network
/// namespace, one of that namespace's own addresses (a wildcard key would let every pod's
/// `0.0.0.0:8080` collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listener {
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub owner: ProcessInfo,
}

/// `-pidmap`: where attribution comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// eBPF maps, then /proc for what they miss (default).
    #[default]
    Ebpf,
    /// /proc only.
    Proc,
    /// No attribution.
    Off,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "ebpf" => Ok(Mode::Ebpf),
            "proc" => Ok(Mode::Proc),
            "off" => Ok(Mode::Off),
            other => Err(format!("unknown pidmap mode `{other}` (expected ebpf, proc or off)")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Ebpf => "ebpf",
            Mode::Proc => "proc",
            Mode::Off => "off",
        })
    }
}

/// Settings of [`PidMap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidMapConfig {
    pub mode: Mode,
    /// Ports to attribute (`-ports`); empty = all. Checked inside the BPF program.
    pub ports: Vec<u16>,
    /// Connections the kernel map remembers (LRU).
    pub map_entries: u32,
    /// Root of the proc filesystem (`/proc`; tests point it at a fixture tree).
    pub proc_root: PathBuf,
    /// Where tracefs is or gets mounted.
    pub tracefs: PathBuf,
    /// Shortest time between two full /proc scans.
    pub proc_scan_interval: Duration,
    /// How often the node's listening sockets are scanned again (the first scan runs when
    /// the map is built).
    pub listener_scan_interval: Duration,
    /// How long a looked-up owner (or its absence) is reused for the same connection.
    pub cache_ttl: Duration,
    /// Most connections kept in the cache.
    pub cache_entries: usize,
    /// Where the agent uploads (the addresses `-server` resolves to). A record whose client
    /// end is a connection the agent's process made to one of them is its own upload, even
    /// when the packets carry another destination (a Service address DNAT'd to the server
    /// pod): the sources key a socket by what it connected to, the packets by where they went.
    pub own_servers: Vec<SocketAddr>,
}

impl Default for PidMapConfig {
    fn default() -> PidMapConfig {
        PidMapConfig {
            mode: Mode::Ebpf,
            ports: Vec::new(),
            map_entries: 65_536,
            proc_root: PathBuf::from("/proc"),
            tracefs: PathBuf::from("/sys/kernel/tracing"),
            proc_scan_interval: Duration::from_secs(1),
            listener_scan_interval: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(5),
            cache_entries: 65_536,
            own_servers: Vec::new(),
        }
    }
}

/// What [`PidMap`] did, since it was built. Lookups count socket ends (two per exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Ends asked for.
    pub lookups: u64,
    /// Answered from the per-connection cache.
    pub cache_hits: u64,
    /// Found in the eBPF maps.
    pub ebpf_hits: u64,
    /// Asked of the eBPF maps and not found there.
    pub ebpf_misses: u64,
    /// Asked of /proc (after an eBPF miss, or in `proc` mode).
    pub proc_fallbacks: u64,
    /// Found in /proc.
    pub proc_hits: u64,
    /// Server ends no source knew, answered by the owner of the listener they reached.
    pub listener_hits: u64,
    /// Ends no source could attribute.
    pub unresolved: u64,
    /// Records whose client is the agent itself (its own uploads), reported as
    /// [`Origin::Agent`] so that the caller drops them.
    pub own_uploads: u64,
    /// Listener scans made (at start, then every `listener_scan_interval`).
    pub listener_scans: u64,
    /// Listener keys the last scan found, over all network namespaces.
    pub listeners: u64,
    /// Network namespaces the last listener scan read.
    pub listener_namespaces: u64,
    /// Listener entries the sources took (summed over scans).
    pub listeners_seeded: u64,
    /// Time spent in listener scans, in microseconds.
    pub listener_scan_us: u64,
    /// Connections in the eBPF `flow_owner` map at the last [`PidMap::counters`] call.
    pub map_entries: Option<u64>,
}

/// Whose traffic a record is, as far as [`PidMap::fill`] can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Anyone's but the agent's: report it.
    Observed,
    /// The agent's own (its client side is the agent's process: an upload, however the
    /// server was reached, e.g. through a Service address the capture filter does not
    /// exclude): never report it.
    Agent,
}

struct Cached {
    owner: Option<ProcessInfo>,
    at: Instant,
}

/// Attribution of connection ends, with a per-connection cache. See the module docs.
pub struct PidMap {
    ebpf: Option<Box<dyn OwnerLookup + Send>>,
    proc: Option<Box<dyn OwnerLookup + Send>>,
    /// The node's listeners, scanned now and then; None: not scanned (tests' own sources).
    scan: Option<listeners::ListenerScan>,
    /// The last scan's listeners, by the key they are reached under.
    listeners: HashMap<SocketAddr, ProcessInfo>,
    /// The agent's own process ID, as the sources report PIDs.
    own_pid: u32,
    /// See [`PidMapConfig::own_servers`].
    own_servers: Vec<SocketAddr>,
    /// Client ends checked against `own_servers`: is it the agent's, and when was it checked
    /// (same lifetime and bound as `cache`).
    own_checked: HashMap<SocketAddr, (bool, Instant)>,
    cache: HashMap<(SocketAddr, SocketAddr), Cached>,
    cache_ttl: Duration,
    cache_entries: usize,
    counters: Counters,
}

impl fmt::Debug for PidMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PidMap")
            .field("ebpf", &self.ebpf.is_some())
            .field("proc", &self.proc.is_some())
            .field("cached", &self.cache.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl PidMap {
    /// Builds the sources `cfg.mode` asks for. In `ebpf` mode, a program that cannot be loaded
    /// is logged once (with the reason) and /proc is used alone.
    pub fn new(cfg: &PidMapConfig) -> PidMap {
        let proc: Option<Box<dyn OwnerLookup + Send>> = match cfg.mode {
            Mode::Off => None,
            Mode::Ebpf | Mode::Proc => {
                Some(Box::new(procfs::ProcOwners::new(cfg.proc_root.clone(), cfg.proc_scan_interval)))
            }
        };
        let ebpf = match cfg.mode {
            Mode::Ebpf => Self::load_ebpf(cfg),
            Mode::Proc | Mode::Off => None,
        };
        let mut map = PidMap::with_sources(ebpf, proc, cfg);
        map.own_pid = own_pid(&cfg.proc_root);
        if cfg.mode != Mode::Off {
            map = map.with_listener_scan(listeners::ListenerScan::new(
                cfg.proc_root.clone(),
                cfg.listener_scan_interval,
            ));
            map.refresh_at(Instant::now());
            let c = map.counters;
            tracing::info!(
                listeners = c.listeners,
                namespaces = c.listener_namespaces,
                seeded = c.listeners_seeded,
                scan_us = c.listener_scan_us,
                "pidmap: listening sockets found"
            );
        }
        map
    }

    #[cfg(target_os = "linux")]
    fn load_ebpf(cfg: &PidMapConfig) -> Option<Box<dyn OwnerLookup + Send>> {
        let ecfg = ebpf::EbpfConfig {
            ports: cfg.ports.clone(),
            map_entries: cfg.map_entries,
            tracefs: cfg.tracefs.clone(),
            btf: liteobs_ebpf::btf::VMLINUX_BTF.into(),
        };
        match ebpf::EbpfOwners::load(&ecfg) {
            Ok(e) => {
                tracing::info!(ports = ?cfg.ports, map_entries = cfg.map_entries, "pidmap: eBPF attribution attached");
                Some(Box::new(e))
            }
            Err(e) => {
                tracing::warn!("pidmap: eBPF attribution unavailable, using /proc only: {}", error_chain(&e));
                None
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn load_ebpf(_cfg: &PidMapConfig) -> Option<Box<dyn OwnerLookup + Send>> {
        tracing::warn!("pidmap: eBPF attribution needs Linux, using /proc only");
        None
    }

    /// A map over the given sources (either may be absent), for tests and other callers that
    /// bring their own.
    pub fn with_sources(
        ebpf: Option<Box<dyn OwnerLookup + Send>>,
        proc: Option<Box<dyn OwnerLookup + Send>>,
        cfg: &PidMapConfig,
    ) -> PidMap {
        PidMap {
            ebpf,
            proc,
            scan: None,
            listeners: HashMap::new(),
            own_pid: std::process::id(),
            own_servers: cfg.own_servers.clone(),
            own_checked: HashMap::new(),
            cache: HashMap::new(),
            cache_ttl: cfg.cache_ttl,
            cache_entries: cfg.cache_entries.max(1),
            counters: Counters::default(),
        }
    }

    /// Scans the node's listeners with `scan` on [`PidMap::refresh_at`] (when it is due).
    pub fn with_listener_scan(mut self, scan: listeners::ListenerScan) -> PidMap {
        self.scan = Some(scan);
        self
    }

    /// Periodic work: [`PidMap::refresh_at`] now.
    pub fn refresh(&mut self) {
        self.refresh_at(Instant::now());
    }

    /// Scans the node's listening sockets if the last scan is `listener_scan_interval` old (or
    /// none was made), hands them to the sources ([`OwnerLookup::seed_listeners`]) and keeps
    /// them as the last answer for server ends. Cheap when not due (one comparison); a scan
    /// reads every namespace's TCP tables and walks `/proc/*/fd` only for new listeners (see
    /// [`listeners`]).
    pub fn refresh_at(&mut self, now: Instant) {
        let Some(scan) = self.scan.as_mut().filter(|s| s.due(now)) else { return };
        let found = scan.scan(now);
        let stats = scan.stats();
        let mut seeded = 0;
        for source in [self.ebpf.as_mut(), self.proc.as_mut()].into_iter().flatten() {
            seeded += source.seed_listeners(&found) as u64;
        }
        self.listeners = found.into_iter().map(|l| (SocketAddr::new(l.addr, l.port), l.owner)).collect();
        let c = &mut self.counters;
        c.listener_scans = stats.scans;
        c.listeners = stats.listeners;
        c.listener_namespaces = stats.namespaces;
        c.listener_scan_us = stats.micros;
        c.listeners_seeded += seeded;
    }

    /// The mode actually in effect (`proc` when eBPF was asked for but could not be loaded).
    pub fn effective_mode(&self) -> Mode {
        match (&self.ebpf, &self.proc) {
            (Some(_), _) => Mode::Ebpf,
            (None, Some(_)) => Mode::Proc,
            (None, None) => Mode::Off,
        }
    }

    /// (client owner, server owner) of the connection `client` → `server`.
    pub fn ends(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> (Option<ProcessInfo>, Option<ProcessInfo>) {
        self.ends_at(client, server, Instant::now())
    }

    /// [`PidMap::ends`] at a given time (the cache's clock).
    pub fn ends_at(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        now: Instant,
    ) -> (Option<ProcessInfo>, Option<ProcessInfo>) {
        (self.resolve(client, server, now, false), self.resolve(server, client, now, true))
    }

    /// Fills `src_pid`/`src_comm` and `dst_pid`/`dst_comm` of a record where they are unset
    /// and an owner is known, and says whether the record is the agent's own traffic (its
    /// client is the agent's process): the caller must then drop it. The record is left as
    /// it was in that case.
    pub fn fill(&mut self, rec: &mut TrafficLog) -> Origin {
        self.fill_ends(rec).origin
    }

    /// [`PidMap::fill`], also answering the cgroup of each end whose process it filled in,
    /// when the source knew it (eBPF).
    pub fn fill_ends(&mut self, rec: &mut TrafficLog) -> crate::attribute::Attribution {
        use crate::attribute::Attribution;
        let mut out = Attribution::observed();
        if self.ebpf.is_none() && self.proc.is_none() {
            return out;
        }
        let client = SocketAddr::new(rec.src_ip, rec.src_port);
        let server = SocketAddr::new(rec.dst_ip, rec.dst_port);
        let now = Instant::now();
        let (c, s) = self.ends_at(client, server, now);
        let own = match &c {
            Some(c) => c.pid == self.own_pid,
            None => self.connected_to_own_server(client, now),
        };
        if own {
            self.counters.own_uploads += 1;
            out.origin = Origin::Agent;
            return out;
        }
        if rec.src_pid.is_none()
            && let Some(c) = c
        {
            rec.src_pid = Some(c.pid);
            rec.src_comm = Some(c.comm);
            out.src_cgroup = c.cgroup;
        }
        if rec.dst_pid.is_none()
            && let Some(s) = s
        {
            rec.dst_pid = Some(s.pid);
            rec.dst_comm = Some(s.comm);
            out.dst_cgroup = s.cgroup;
        }
        out
    }

    /// True when the agent's process has a connection from `client` to one of
    /// `own_servers` (see [`PidMapConfig::own_servers`]). Asks eBPF when loaded (exact, one
    /// lookup per server address), else /proc; the answer is kept like the cache's.
    fn connected_to_own_server(&mut self, client: SocketAddr, now: Instant) -> bool {
        if self.own_servers.is_empty() {
            return false;
        }
        if let Some((own, at)) = self.own_checked.get(&client)
            && now.saturating_duration_since(*at) < self.cache_ttl
        {
            return *own;
        }
        let own_pid = self.own_pid;
        let own = match self.ebpf.as_mut().or(self.proc.as_mut()) {
            Some(source) => {
                self.own_servers.iter().any(|s| source.owner(client, *s).is_some_and(|o| o.pid == own_pid))
            }
            None => false,
        };
        if self.own_checked.len() >= self.cache_entries {
            self.own_checked.clear();
        }
        self.own_checked.insert(client, (own, now));
        own
    }

    /// The owner of the socket `local` ↔ `remote`: cache, then eBPF, then /proc.
    pub fn owner_at(&mut self, local: SocketAddr, remote: SocketAddr, now: Instant) -> Option<ProcessInfo> {
        self.resolve(local, remote, now, false)
    }

    /// [`PidMap::owner_at`]; for a server end (`passive`), what no source knows is answered
    /// by the owner of the listener `local` is, if the last scan found one.
    fn resolve(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        passive: bool,
    ) -> Option<ProcessInfo> {
        self.counters.lookups += 1;
        if let Some(c) = self.cache.get(&(local, remote))
            && now.saturating_duration_since(c.at) < self.cache_ttl
        {
            self.counters.cache_hits += 1;
            return c.owner.clone();
        }
        let mut owner = None;
        if let Some(e) = self.ebpf.as_mut() {
            owner = e.owner(local, remote);
            if owner.is_some() {
                self.counters.ebpf_hits += 1;
            } else {
                self.counters.ebpf_misses += 1;
            }
        }
        if owner.is_none()
            && let Some(p) = self.proc.as_mut()
        {
            self.counters.proc_fallbacks += 1;
            owner = p.owner(local, remote);
            if owner.is_some() {
                self.counters.proc_hits += 1;
            }
        }
        if owner.is_none()
            && passive
            && let Some(l) = listeners::listener_owner(&self.listeners, local)
        {
            self.counters.listener_hits += 1;
            owner = Some(l.clone());
        }
        if owner.is_none() {
            self.counters.unresolved += 1;
        }
        if self.cache.len() >= self.cache_entries {
            let ttl = self.cache_ttl;
            self.cache.retain(|_, c| now.saturating_duration_since(c.at) < ttl);
            if self.cache.len() >= self.cache_entries {
                self.cache.clear();
            }
        }
        self.cache.insert((local, remote), Cached { owner: owner.clone(), at: now });
        owner
    }

    /// Forgets the cached owners of the connection between `a` and `b` (both directions): a
    /// new connection on that 4-tuple was seen, so its next lookup asks the sources again.
    /// (The eBPF map already holds the new connection's owner. A /proc snapshot is kept: it
    /// is what answers for connections first seen mid-stream, which also count as new here.)
    pub fn forget(&mut self, a: SocketAddr, b: SocketAddr) {
        self.cache.remove(&(a, b));
        self.cache.remove(&(b, a));
        self.own_checked.remove(&a);
        self.own_checked.remove(&b);
    }

    /// The eBPF program's in-kernel counters by name (see `liteobs_ebpf::layout::Stat`);
    /// empty without eBPF.
    pub fn kernel_stats(&self) -> Vec<(&'static str, u64)> {
        self.ebpf.as_ref().map(|e| e.source_stats()).unwrap_or_default()
    }

    /// The counters, with `map_entries` read now from the kernel (one syscall per entry:
    /// call it at logging intervals, not per record).
    pub fn counters(&mut self) -> Counters {
        self.counters.map_entries = self.ebpf.as_ref().and_then(|e| e.entries());
        self.counters
    }
}

/// The agent's process ID as `root` (the proc filesystem the sources read) numbers it: the
/// `self` link, which differs from [`std::process::id`] when the agent runs in a PID namespace
/// of its own with the host's /proc mounted. Falls back to [`std::process::id`].
fn own_pid(root: &std::path::Path) -> u32 {
    std::fs::read_link(root.join("self"))
        .ok()
        .and_then(|t| t.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(std::process::id)
}

/// "outer: inner: innermost", for one-line warnings.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;
    use std::sync::{Arc, Mutex};

    /// A source answering from a fixed table, counting how often it is asked.
    struct Table {
        owners: HashMap<(SocketAddr, SocketAddr), ProcessInfo>,
        asked: Arc<Mutex<u32>>,
    }

    impl OwnerLookup for Table {
        fn owner(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<ProcessInfo> {
            if let Ok(mut n) = self.asked.lock() {
                *n += 1;
            }
            self.owners.get(&(local, remote)).cloned()
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn p(pid: u32, comm: &str) -> ProcessInfo {
        ProcessInfo::new(pid, comm)
    }

    fn table(entries: &[(&str, &str, ProcessInfo)]) -> (Box<Table>, Arc<Mutex<u32>>) {
        let asked = Arc::new(Mutex::new(0));
        let owners = entries.iter().map(|(l, r, o)| ((sa(l), sa(r)), o.clone())).collect();
        (Box::new(Table { owners, asked: asked.clone() }), asked)
    }

    #[test]
    fn looks_up_both_directions_and_falls_back_to_proc() {
        let client = "127.0.0.1:50000";
        let server = "127.0.0.1:8080";
        let (ebpf, _) = table(&[(client, server, p(10, "curl"))]);
        let (proc, proc_asked) = table(&[(server, client, p(20, "nginx"))]);
        let mut m = PidMap::with_sources(Some(ebpf), Some(proc), &PidMapConfig::default());
        let (c, s) = m.ends(sa(client), sa(server));
        assert_eq!(c, Some(p(10, "curl")));
        assert_eq!(s, Some(p(20, "nginx")));
        assert_eq!(*proc_asked.lock().unwrap(), 1, "proc only asked for the eBPF miss");
        let n = m.counters();
        assert_eq!((n.lookups, n.ebpf_hits, n.ebpf_misses, n.proc_fallbacks, n.proc_hits), (2, 1, 1, 1, 1));
        assert_eq!(m.effective_mode(), Mode::Ebpf);
    }

    #[test]
    fn caches_per_connection_until_the_ttl() {
        let (ebpf, asked) = table(&[("127.0.0.1:1000", "127.0.0.1:2000", p(1, "a"))]);
        let cfg = PidMapConfig { cache_ttl: Duration::from_secs(5), ..PidMapConfig::default() };
        let mut m = PidMap::with_sources(Some(ebpf), None, &cfg);
        let t0 = Instant::now();
        let (l, r) = (sa("127.0.0.1:1000"), sa("127.0.0.1:2000"));
        assert_eq!(m.owner_at(l, r, t0), Some(p(1, "a")));
        assert_eq!(m.owner_at(l, r, t0 + Duration::from_secs(4)), Some(p(1, "a")));
        assert_eq!(*asked.lock().unwrap(), 1);
        assert_eq!(m.owner_at(l, r, t0 + Duration::from_secs(6)), Some(p(1, "a")));
        assert_eq!(*asked.lock().unwrap(), 2);
        // Misses are cached too (bounding /proc work), and counted as unresolved.
        assert_eq!(m.owner_at(r, l, t0), None);
        assert_eq!(m.owner_at(r, l, t0), None);
        assert_eq!(*asked.lock().unwrap(), 3);
        assert_eq!(m.counters().unresolved, 1);
        assert_eq!(m.counters().cache_hits, 2);
    }

    /// A reused 4-tuple (another process, the same ephemeral port) is looked up again once
    /// the capture says a new connection started on it, however young the cached answer.
    #[test]
    fn a_new_connection_on_the_tuple_is_looked_up_again() {
        let (c, s) = (sa("127.0.0.1:45678"), sa("127.0.0.1:8080"));
        let owners = Arc::new(Mutex::new(HashMap::from([((c, s), p(100, "curl"))])));
        struct Shared(Arc<Mutex<HashMap<(SocketAddr, SocketAddr), ProcessInfo>>>);
        impl OwnerLookup for Shared {
            fn owner(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<ProcessInfo> {
                self.0.lock().ok()?.get(&(local, remote)).cloned()
            }
        }
        let mut m =
            PidMap::with_sources(Some(Box::new(Shared(owners.clone()))), None, &PidMapConfig::default());
        let t = Instant::now();
        assert_eq!(m.owner_at(c, s, t), Some(p(100, "curl")));
        owners.lock().unwrap().insert((c, s), p(200, "curl")); // the next connection's owner
        assert_eq!(m.owner_at(c, s, t), Some(p(100, "curl")), "same connection: cached");
        m.forget(s, c); // either order
        assert_eq!(m.owner_at(c, s, t), Some(p(200, "curl")));
        let mut a: Box<dyn crate::attribute::Attributor> = Box::new(m);
        owners.lock().unwrap().insert((c, s), p(300, "curl"));
        a.connection_opened(c, s);
        let mut rec = record(c, s);
        a.attribute(&mut rec);
        assert_eq!(rec.src_pid, Some(300));
    }

    #[test]
    fn cache_is_bounded() {
        let (ebpf, _) = table(&[]);
        let cfg = PidMapConfig { cache_entries: 4, ..PidMapConfig::default() };
        let mut m = PidMap::with_sources(Some(ebpf), None, &cfg);
        let t = Instant::now();
        for port in 1..100u16 {
            m.owner_at(SocketAddr::from(([127, 0, 0, 1], port)), sa("127.0.0.1:80"), t);
            assert!(m.cache.len() <= 4);
        }
    }

    #[test]
    fn fill_sets_both_sides_and_keeps_existing_values() {
        let (ebpf, _) = table(&[
            ("[::1]:40000", "[::1]:80", p(7, "python3")),
            ("[::1]:80", "[::1]:40000", p(8, "nginx")),
        ]);
        let mut m = PidMap::with_sources(Some(ebpf), None, &PidMapConfig::default());
        let mut rec = record(sa("[::1]:40000"), sa("[::1]:80"));
        m.fill(&mut rec);
        assert_eq!((rec.src_pid, rec.src_comm.as_deref()), (Some(7), Some("python3")));
        assert_eq!((rec.dst_pid, rec.dst_comm.as_deref()), (Some(8), Some("nginx")));
        let mut off = PidMap::with_sources(None, None, &PidMapConfig::default());
        assert_eq!(off.effective_mode(), Mode::Off);
        let mut rec2 = TrafficLog { src_pid: Some(1), ..rec.clone() };
        rec2.dst_pid = None;
        off.fill(&mut rec2);
        assert_eq!((rec2.src_pid, rec2.dst_pid), (Some(1), None));
    }

    /// A source that records the listeners it was told about.
    struct Seeded(Arc<Mutex<Vec<Vec<Listener>>>>);

    impl OwnerLookup for Seeded {
        fn owner(&mut self, _: SocketAddr, _: SocketAddr) -> Option<ProcessInfo> {
            None
        }

        fn seed_listeners(&mut self, listeners: &[Listener]) -> usize {
            if let Ok(mut v) = self.0.lock() {
                v.push(listeners.to_vec());
            }
            listeners.len()
        }
    }

    /// A node with one pod (namespace 2, 10.244.1.7) whose server 200 listens on
    /// 0.0.0.0:8080, and the node's own 0.0.0.0:80 (process 100).
    fn node_with_a_pod(dir: &std::path::Path) {
        use listeners::fixture::{Ns, Proc, write};
        let h = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let l = |local: &str, inode: u64| {
            format!(
                "   0: {local} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
            )
        };
        let own_tcp = format!("{h}{}", l("00000000:0050", 1001));
        let pod_tcp = format!("{h}{}", l("00000000:1F90", 2001));
        write(
            dir,
            &Ns { inode: 1, tcp: &own_tcp, tcp6: "", fib_trie: "", if_inet6: "" },
            &[Ns { inode: 2, tcp: &pod_tcp, tcp6: "", fib_trie: netns::tests::FIB_TRIE_POD, if_inet6: "" }],
            &[
                Proc { pid: 100, comm: "nginx", netns: 1, sockets: &[1001] },
                Proc { pid: 200, comm: "node", netns: 2, sockets: &[2001] },
            ],
        );
    }

    #[test]
    fn listeners_are_seeded_at_start_and_rescanned_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        node_with_a_pod(dir.path());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cfg = PidMapConfig { listener_scan_interval: Duration::from_secs(10), ..PidMapConfig::default() };
        let scan = listeners::ListenerScan::new(dir.path().to_path_buf(), cfg.listener_scan_interval)
            .with_byte_order(liteobs_ebpf::layout::ByteOrder::Little);
        let mut m =
            PidMap::with_sources(Some(Box::new(Seeded(seen.clone()))), None, &cfg).with_listener_scan(scan);
        let t0 = Instant::now();
        m.refresh_at(t0);
        m.refresh_at(t0 + Duration::from_secs(5));
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1, "one scan until the interval passed");
            let mut keys: Vec<(String, u32)> =
                seen[0].iter().map(|l| (SocketAddr::new(l.addr, l.port).to_string(), l.owner.pid)).collect();
            keys.sort();
            assert_eq!(keys, [("0.0.0.0:80".to_owned(), 100), ("10.244.1.7:8080".to_owned(), 200)]);
        }
        m.refresh_at(t0 + Duration::from_secs(10));
        assert_eq!(seen.lock().unwrap().len(), 2);
        let c = m.counters();
        assert_eq!((c.listener_scans, c.listeners, c.listener_namespaces, c.listeners_seeded), (2, 2, 2, 4));
    }

    /// Only a server end falls back to the listener it reached: a client's ephemeral port
    /// that happens to equal a listening port is not the listener's.
    #[test]
    fn server_ends_nobody_knows_belong_to_the_listener_they_reached() {
        let dir = tempfile::tempdir().unwrap();
        node_with_a_pod(dir.path());
        let (ebpf, _) = table(&[]);
        let scan = listeners::ListenerScan::new(dir.path().to_path_buf(), Duration::from_secs(10))
            .with_byte_order(liteobs_ebpf::layout::ByteOrder::Little);
        let mut m = PidMap::with_sources(Some(ebpf), None, &PidMapConfig::default()).with_listener_scan(scan);
        m.refresh();
        let (c, s) = m.ends(sa("10.244.1.9:40000"), sa("10.244.1.7:8080"));
        assert_eq!((c, s), (None, Some(p(200, "node"))), "the pod's own server");
        let (_, s) = m.ends(sa("10.0.0.5:40001"), sa("192.168.1.1:80"));
        assert_eq!(s, Some(p(100, "nginx")), "the node's wildcard");
        let (c, s) = m.ends(sa("10.244.1.9:80"), sa("10.244.1.8:8080"));
        assert_eq!((c, s), (None, None), "another pod's address is not the pod's listener");
        let n = m.counters();
        assert_eq!((n.listener_hits, n.unresolved), (2, 4));
    }

    #[test]
    fn the_agents_own_exchanges_are_reported_as_its_own() {
        let me = std::process::id();
        let (ebpf, _) = table(&[
            ("10.244.1.3:40000", "10.244.2.9:8080", p(me, "liteobs-agent")),
            ("10.244.1.3:40001", "10.244.2.9:8080", p(me + 1, "curl")),
        ]);
        let mut m = PidMap::with_sources(Some(ebpf), None, &PidMapConfig::default());
        let mut own = record(sa("10.244.1.3:40000"), sa("10.244.2.9:8080"));
        assert_eq!(m.fill(&mut own), Origin::Agent);
        let mut other = record(sa("10.244.1.3:40001"), sa("10.244.2.9:8080"));
        assert_eq!(m.fill(&mut other), Origin::Observed);
        assert_eq!(other.src_pid, Some(me + 1));
        // The agent as a server (nothing it does, but not its upload either) is kept.
        let mut reverse = record(sa("10.244.2.9:8080"), sa("10.244.1.3:40000"));
        assert_eq!(m.fill(&mut reverse), Origin::Observed);
        assert_eq!(m.counters().own_uploads, 1);
        let mut a: Box<dyn crate::attribute::Attributor> = Box::new(m);
        assert_eq!(a.attribute(&mut own.clone()), Origin::Agent);
    }

    /// Through a Service: the agent connected to the Service address (what `-server`
    /// resolves to, and what the sources key its socket by), the packets carry the server
    /// pod's address after DNAT.
    #[test]
    fn uploads_through_a_service_address_are_the_agents_own() {
        let me = std::process::id();
        let service = sa("10.96.0.10:8080");
        let (ebpf, _) = table(&[
            ("10.244.1.3:40000", "10.96.0.10:8080", p(me, "liteobs-agent")),
            ("10.244.1.3:40001", "10.96.0.10:8080", p(me + 1, "curl")),
        ]);
        let cfg = PidMapConfig { own_servers: vec![service], ..PidMapConfig::default() };
        let mut m = PidMap::with_sources(Some(ebpf), None, &cfg);
        let mut upload = record(sa("10.244.1.3:40000"), sa("10.244.2.9:8080"));
        assert_eq!(m.fill(&mut upload), Origin::Agent);
        let mut theirs = record(sa("10.244.1.3:40001"), sa("10.244.2.9:8080"));
        assert_eq!(m.fill(&mut theirs), Origin::Observed, "another process's call of the same Service");
        assert_eq!(m.counters().own_uploads, 1);
        let mut without = PidMap::with_sources(
            Some(table(&[("10.244.1.3:40000", "10.96.0.10:8080", p(me, "liteobs-agent"))]).0),
            None,
            &PidMapConfig::default(),
        );
        assert_eq!(without.fill(&mut upload.clone()), Origin::Observed, "without own_servers it cannot tell");
    }

    /// Construction never fails: as root on Linux the program loads; otherwise one warning is
    /// logged and /proc is used alone.
    #[test]
    fn new_falls_back_to_proc_when_ebpf_cannot_load() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let dir = tempfile::tempdir().unwrap();
        let cfg = PidMapConfig { proc_root: dir.path().to_path_buf(), ..PidMapConfig::default() };
        let m = PidMap::new(&cfg);
        // SAFETY: geteuid has no preconditions.
        let root = cfg!(target_os = "linux") && unsafe { libc::geteuid() } == 0;
        assert_eq!(m.effective_mode(), if root { Mode::Ebpf } else { Mode::Proc });
        let off = PidMap::new(&PidMapConfig { mode: Mode::Off, ..cfg.clone() });
        assert_eq!(off.effective_mode(), Mode::Off);
        let proc = PidMap::new(&PidMapConfig { mode: Mode::Proc, ..cfg });
        assert_eq!(proc.effective_mode(), Mode::Proc);
    }

    #[test]
    fn mode_parses_and_prints() {
        for m in [Mode::Ebpf, Mode::Proc, Mode::Off] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        assert!("bpf".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Ebpf);
    }
}
