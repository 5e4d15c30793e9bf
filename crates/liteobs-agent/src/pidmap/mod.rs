//! Which process owns each end of a TCP connection: the lookups behind `src_pid`/`src_comm`
//! (client side) and `dst_pid`/`dst_comm` (server side).
//!
//! Two sources, tried in order for every connection the cache does not know:
//! 1. `ebpf` (Linux, root): the kernel maps filled by the `liteobs-ebpf` program, which sees
//!    every connect, listen and accept from the moment it is attached. Exact for connections
//!    opened after the agent started, including forked workers (the acceptor wins).
//! 2. `procfs`: `/proc/net/tcp{,6}` (socket inode per tuple) and `/proc/<pid>/fd` (process per
//!    inode), for connections opened before the agent started and anything the maps missed.
//!    Scans are rate limited; results are cached.
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
    /// How long a looked-up owner (or its absence) is reused for the same connection.
    pub cache_ttl: Duration,
    /// Most connections kept in the cache.
    pub cache_entries: usize,
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
            cache_ttl: Duration::from_secs(5),
            cache_entries: 65_536,
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
    /// Ends no source could attribute.
    pub unresolved: u64,
    /// Connections in the eBPF `flow_owner` map at the last [`PidMap::counters`] call.
    pub map_entries: Option<u64>,
}

struct Cached {
    owner: Option<ProcessInfo>,
    at: Instant,
}

/// Attribution of connection ends, with a per-connection cache. See the module docs.
pub struct PidMap {
    ebpf: Option<Box<dyn OwnerLookup + Send>>,
    proc: Option<Box<dyn OwnerLookup + Send>>,
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
        PidMap::with_sources(ebpf, proc, cfg)
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
            cache: HashMap::new(),
            cache_ttl: cfg.cache_ttl,
            cache_entries: cfg.cache_entries.max(1),
            counters: Counters::default(),
        }
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
        (self.owner_at(client, server, now), self.owner_at(server, client, now))
    }

    /// Fills `src_pid`/`src_comm` and `dst_pid`/`dst_comm` of a record where they are unset
    /// and an owner is known.
    pub fn fill(&mut self, rec: &mut TrafficLog) {
        if self.ebpf.is_none() && self.proc.is_none() {
            return;
        }
        let client = SocketAddr::new(rec.src_ip, rec.src_port);
        let server = SocketAddr::new(rec.dst_ip, rec.dst_port);
        let (c, s) = self.ends(client, server);
        if rec.src_pid.is_none()
            && let Some(c) = c
        {
            rec.src_pid = Some(c.pid);
            rec.src_comm = Some(c.comm);
        }
        if rec.dst_pid.is_none()
            && let Some(s) = s
        {
            rec.dst_pid = Some(s.pid);
            rec.dst_comm = Some(s.comm);
        }
    }

    /// The owner of the socket `local` ↔ `remote`: cache, then eBPF, then /proc.
    pub fn owner_at(&mut self, local: SocketAddr, remote: SocketAddr, now: Instant) -> Option<ProcessInfo> {
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
        ProcessInfo { pid, comm: comm.into() }
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
