//! Loading the `liteobs-ebpf` attribution program with aya and reading its maps.
//!
//! [`EbpfOwners::load`] does everything the kernel side needs, in order: mounts tracefs if it
//! is absent, raises `RLIMIT_MEMLOCK` (kernels before 5.11 charge BPF maps to it), reads the
//! tracepoint record layouts from tracefs and the `task_struct` offsets from the kernel's BTF
//! (without BTF, one warning: owners are then named by thread, and the program counts each
//! such owner in `thread_comms`), generates the object for exactly those layouts and
//! the configured map sizes, loads it (the kernel verifier runs here), writes the port filter,
//! and attaches every program. Dropping the value detaches the programs and frees the maps.
//!
//! Lookups read `flow_owner` with the key layout of [`liteobs_ebpf::layout::FlowKey`]: one
//! `bpf(BPF_MAP_LOOKUP_ELEM)` syscall per lookup, a few microseconds.

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, MapError};
use aya::programs::TracePoint;
use aya::programs::trace_point::TracePointLinkId;
use liteobs_ebpf::layout::{self, ByteOrder, Endpoint, FlowKey, Owner, Stat};
use liteobs_ebpf::{BuildError, Fields, FormatError, MapSizes, ObjectConfig, TaskOffsets};

use super::{Listener, OwnerLookup, ProcessInfo};

/// What the kernel side needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfConfig {
    /// Ports to attribute; empty = all.
    pub ports: Vec<u16>,
    /// Size of `flow_owner` (connections remembered); the other maps are sized from it.
    pub map_entries: u32,
    /// Where tracefs is mounted, or gets mounted when absent (aya looks for it at
    /// `/sys/kernel/tracing` or `/sys/kernel/debug/tracing`).
    pub tracefs: PathBuf,
    /// The kernel's BTF, for the offsets of the process name (usually
    /// [`liteobs_ebpf::btf::VMLINUX_BTF`]).
    pub btf: PathBuf,
}

/// Why the program could not be set up. Each says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("mounting tracefs at {path} (needs root)")]
    MountTracefs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading tracepoint layouts")]
    Format(#[from] FormatError),
    #[error("building the BPF object")]
    Build(#[from] BuildError),
    #[error("loading the BPF object (needs root, or CAP_BPF and CAP_PERFMON)")]
    Load(#[source] aya::EbpfError),
    #[error("program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} is missing from the object")]
    MissingMap(&'static str),
}

/// The loaded and attached program, and the maps the agent reads.
pub struct EbpfOwners {
    flows: HashMap<MapData, [u8; FlowKey::SIZE], [u8; Owner::SIZE]>,
    listeners: HashMap<MapData, [u8; Endpoint::SIZE], [u8; Owner::SIZE]>,
    stats: Array<MapData, [u8; Stat::COUNT * 8]>,
    links: Vec<(&'static str, TracePointLinkId)>,
    ebpf: aya::Ebpf,
}

impl std::fmt::Debug for EbpfOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfOwners")
            .field("programs", &self.links.iter().map(|l| l.0).collect::<Vec<_>>())
            .finish()
    }
}

/// Mounts tracefs at `path` unless tracefs is already there (or at the debugfs location);
/// returns where it is.
pub fn ensure_tracefs(path: &Path) -> Result<PathBuf, EbpfError> {
    let debugfs = Path::new("/sys/kernel/debug/tracing");
    for p in [path, debugfs] {
        if p.join("events").is_dir() {
            return Ok(p.to_path_buf());
        }
    }
    let err = |source| EbpfError::MountTracefs { path: path.to_path_buf(), source };
    let target = CString::new(path.as_os_str().as_bytes()).map_err(|e| err(io::Error::other(e)))?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call; data is NULL.
    let rc =
        unsafe { libc::mount(c"nodev".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    tracing::info!(path = %path.display(), "pidmap: mounted tracefs");
    Ok(path.to_path_buf())
}

/// Lifts `RLIMIT_MEMLOCK` so map creation does not fail on kernels that still charge it
/// (before 5.11). Failure is not fatal: newer kernels account BPF memory to the cgroup.
fn raise_memlock() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid pointer to an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("pidmap: could not raise RLIMIT_MEMLOCK: {}", io::Error::last_os_error());
    }
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> EbpfError {
    move |source| EbpfError::Map { name, source }
}

impl EbpfOwners {
    /// Sets up and attaches the program; see the module docs for the steps.
    pub fn load(cfg: &EbpfConfig) -> Result<EbpfOwners, EbpfError> {
        let tracefs = ensure_tracefs(&cfg.tracefs)?;
        raise_memlock();
        let fields = Fields::from_tracefs(&tracefs)?;
        let task = match TaskOffsets::from_file(&cfg.btf) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "pidmap: no task_struct offsets from {} ({e}): eBPF names owners by the thread \
                     that connected or served, not by the process (counted as thread_comms)",
                    cfg.btf.display()
                );
                None
            }
        };
        if fields.sock_io.is_none() {
            tracing::warn!(
                "pidmap: this kernel has no sock/sock_send_length tracepoint (before 6.3): connections \
                 handed to another process are attributed to the one that accepted them"
            );
        }
        let mut ports = cfg.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let sizes = MapSizes { ports: (ports.len() as u32).max(1), ..MapSizes::for_flows(cfg.map_entries) };
        let cfg_obj = ObjectConfig { sizes, fields, task };
        let bytes = liteobs_ebpf::object(&cfg_obj)?;
        let mut ebpf = aya::Ebpf::load(&bytes).map_err(EbpfError::Load)?;

        // The filter goes in before the programs see their first event.
        if !ports.is_empty() {
            let map = ebpf.map_mut(layout::PORT_FILTER).ok_or(EbpfError::MissingMap(layout::PORT_FILTER))?;
            let mut filter: HashMap<&mut MapData, u16, u8> =
                HashMap::try_from(map).map_err(map_err(layout::PORT_FILTER))?;
            for p in &ports {
                filter.insert(p, 1, 0).map_err(map_err(layout::PORT_FILTER))?;
            }
            let map = ebpf.map_mut(layout::CONFIG).ok_or(EbpfError::MissingMap(layout::CONFIG))?;
            let mut config: Array<&mut MapData, u32> =
                Array::try_from(map).map_err(map_err(layout::CONFIG))?;
            config.set(0, layout::CONFIG_FILTER_PORTS, 0).map_err(map_err(layout::CONFIG))?;
        }

        let mut links = Vec::new();
        for def in liteobs_ebpf::program::programs(&cfg_obj.fields, task).map_err(BuildError::from)? {
            let name = def.name;
            let prog = ebpf.program_mut(name).ok_or(EbpfError::MissingProgram(name))?;
            let tp: &mut TracePoint =
                prog.try_into().map_err(|source| EbpfError::Program { name, source })?;
            tp.load().map_err(|source| EbpfError::Program { name, source })?;
            let link = tp
                .attach(def.category, def.tracepoint)
                .map_err(|source| EbpfError::Program { name, source })?;
            links.push((name, link));
        }

        let flows = ebpf.take_map(layout::FLOW_OWNER).ok_or(EbpfError::MissingMap(layout::FLOW_OWNER))?;
        let flows = HashMap::try_from(flows).map_err(map_err(layout::FLOW_OWNER))?;
        let listeners =
            ebpf.take_map(layout::LISTEN_OWNER).ok_or(EbpfError::MissingMap(layout::LISTEN_OWNER))?;
        let listeners = HashMap::try_from(listeners).map_err(map_err(layout::LISTEN_OWNER))?;
        let stats = ebpf.take_map(layout::STATS).ok_or(EbpfError::MissingMap(layout::STATS))?;
        let stats = Array::try_from(stats).map_err(map_err(layout::STATS))?;
        Ok(EbpfOwners { flows, listeners, stats, links, ebpf })
    }

    /// The owner recorded for the socket whose local end is `local`, as stored.
    pub fn lookup(&self, local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
        let key = FlowKey::new(local, remote).encode(ByteOrder::NATIVE);
        match self.flows.get(&key, 0) {
            Ok(v) => Some(Owner::decode(&v, ByteOrder::NATIVE)),
            Err(MapError::KeyNotFound) => None,
            Err(e) => {
                tracing::debug!("pidmap: flow_owner lookup: {e}");
                None
            }
        }
    }

    /// Writes listeners found by a scan into `listen_owner` (the key the program builds at
    /// `listen()`: address IPv4 mapped, port host order), so the passive side of a new
    /// connection to a listener older than the program gets its owner as the first guess.
    /// An entry the program wrote itself is overwritten with the same owner or a sibling
    /// (SO_REUSEPORT), which is as good a guess. Answers how many were written.
    pub fn seed(&mut self, listeners: &[Listener]) -> usize {
        let mut written = 0;
        for l in listeners {
            let key = Endpoint::new(SocketAddr::new(l.addr, l.port)).encode(ByteOrder::NATIVE);
            let owner = Owner::new(l.owner.pid, &l.owner.comm)
                .with_cgroup(l.owner.cgroup.unwrap_or(0))
                .encode(ByteOrder::NATIVE);
            match self.listeners.insert(key, owner, 0) {
                Ok(()) => written += 1,
                Err(e) => tracing::debug!("pidmap: seeding listen_owner with {}:{}: {e}", l.addr, l.port),
            }
        }
        written
    }

    /// The owner `listen_owner` holds for a listening address, as stored.
    pub fn listener(&self, addr: SocketAddr) -> Option<Owner> {
        let key = Endpoint::new(addr).encode(ByteOrder::NATIVE);
        self.listeners.get(&key, 0).ok().map(|v| Owner::decode(&v, ByteOrder::NATIVE))
    }

    /// Connections in `flow_owner` now (walks the map: one syscall per entry).
    pub fn flow_entries(&self) -> u64 {
        self.flows.keys().filter(Result::is_ok).count() as u64
    }

    /// The program's own counters (see [`Stat`]).
    pub fn kernel_stats(&self) -> Vec<(Stat, u64)> {
        match self.stats.get(&0, 0) {
            Ok(v) => layout::decode_stats(&v, ByteOrder::NATIVE).to_vec(),
            Err(e) => {
                tracing::debug!("pidmap: reading stats: {e}");
                Vec::new()
            }
        }
    }

    /// Names of the attached programs.
    pub fn programs(&self) -> Vec<&'static str> {
        self.links.iter().map(|(n, _)| *n).collect()
    }
}

impl OwnerLookup for EbpfOwners {
    fn owner(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<ProcessInfo> {
        self.lookup(local, remote).map(|o| ProcessInfo {
            pid: o.tgid,
            comm: o.comm_str(),
            cgroup: o.cgroup(),
        })
    }

    fn entries(&self) -> Option<u64> {
        Some(self.flow_entries())
    }

    fn source_stats(&self) -> Vec<(&'static str, u64)> {
        self.kernel_stats().into_iter().map(|(s, n)| (s.name(), n)).collect()
    }

    fn seed_listeners(&mut self, listeners: &[Listener]) -> usize {
        self.seed(listeners)
    }
}

impl Drop for EbpfOwners {
    /// Detaches every program explicitly (dropping `ebpf` would too; this makes the order
    /// and the log line certain).
    fn drop(&mut self) {
        for (name, link) in self.links.drain(..) {
            let detached = self
                .ebpf
                .program_mut(name)
                .and_then(|p| <&mut TracePoint>::try_from(p).ok())
                .map(|tp| tp.detach(link));
            if let Some(Err(e)) = detached {
                tracing::debug!("pidmap: detaching {name}: {e}");
            }
        }
        tracing::debug!("pidmap: eBPF programs detached");
    }
}
