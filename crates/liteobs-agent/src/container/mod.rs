//! Which container, pod and Kubernetes namespace a process belongs to, on this node.
//!
//! A process's cgroup names its container (`cgroup.rs`, pure; read under an injectable proc
//! root and cached per process in `process.rs`; or, for a process that has exited, found by
//! the cgroup v2 id eBPF recorded when it connected, through a walk of the cgroup2 hierarchy in
//! `cgroup_dirs.rs`); the container runtime's own record of the
//! container holds the labels kubelet set on it (`labels.rs`), asked of containerd over its
//! socket (`containerd.rs` on `protobuf.rs`) and cached by a thread of its own (`runtime.rs`).
//! No Kubernetes API server is asked. [`ContainerIdentity`] puts the two together for
//! [`crate::attribute::PodAttribution`].
//!
//! Runtimes: containerd (its Containers service, namespace `k8s.io`). CRI-O and Docker
//! (cri-dockerd) containers are recognised in cgroups, so their records get
//! `*_container_id`, but their labels are not asked for yet (no pod names).

pub mod cgroup;
pub mod cgroup_dirs;
pub mod containerd;
pub mod labels;
pub mod process;
pub mod protobuf;
pub mod runtime;

use std::path::PathBuf;

pub use cgroup_dirs::{CgroupDirs, CgroupDirsConfig, CgroupDirsCounters, CgroupLookup};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use labels::PodIdentity;
pub use process::{ProcessContainers, ProcessCounters};
pub use runtime::{RuntimeConfig, RuntimeCounters, RuntimeLabels};

/// What is known of the container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOf {
    pub container_id: String,
    /// From the runtime's labels; `None` when the runtime does not know it (yet) or it is not
    /// a pod's container.
    pub pod: Option<Arc<PodIdentity>>,
}

/// Settings of [`ContainerIdentity`].
#[derive(Debug, Clone)]
pub struct ContainersConfig {
    /// Root of the proc filesystem whose `<pid>/cgroup` files are read.
    pub proc_root: PathBuf,
    /// How long a process's container is trusted before its start time is checked again.
    pub process_ttl: Duration,
    /// Most processes cached.
    pub process_entries: usize,
    pub runtime: RuntimeConfig,
    /// The cgroup2 hierarchy walked for cgroup ids; `None`: found in `<proc_root>/self/mountinfo`.
    pub cgroup_dirs: Option<CgroupDirsConfig>,
}

impl Default for ContainersConfig {
    fn default() -> ContainersConfig {
        ContainersConfig {
            proc_root: PathBuf::from("/proc"),
            process_ttl: Duration::from_secs(2),
            process_entries: 65_536,
            runtime: RuntimeConfig::default(),
            cgroup_dirs: None,
        }
    }
}

/// Process → container → pod. See the module docs.
pub struct ContainerIdentity {
    processes: ProcessContainers,
    cgroups: CgroupDirs,
    runtime: RuntimeLabels,
}

impl ContainerIdentity {
    /// Starts the runtime's cache thread.
    /// Walks the cgroup2 hierarchy once.
    pub fn start(cfg: ContainersConfig) -> ContainerIdentity {
        let dirs = cfg.cgroup_dirs.unwrap_or_else(|| CgroupDirs::detect(&cfg.proc_root));
        let mut cgroups = CgroupDirs::new(dirs);
        cgroups.refresh(Instant::now());
        ContainerIdentity {
            processes: ProcessContainers::new(cfg.proc_root, cfg.process_ttl, cfg.process_entries),
            cgroups,
            runtime: RuntimeLabels::start(cfg.runtime),
        }
    }

    /// The container of `pid`, `None` for a host process (or one that is gone).
    pub fn of_pid(&mut self, pid: u32) -> Option<ContainerOf> {
        self.of_process(pid, None)
    }

    /// The container of process `pid`, which was in cgroup `cgroup` (v2 id, from eBPF) when it
    /// made or served the connection. The id answers first: it was read while the process
    /// lived, so it holds after the process exited. When it names no container (unknown to
    /// the walks, or a cgroup that is not a container's: a runtime that leaves containers in
    /// the unified root of a v1 hybrid host), `/proc/<pid>/cgroup` answers, as for a process
    /// without an id. `None`: neither names a container.
    pub fn of_process(&mut self, pid: u32, cgroup: Option<u64>) -> Option<ContainerOf> {
        let now = Instant::now();
        let by_id = match cgroup.map(|id| self.cgroups.lookup(id, now)) {
            Some(CgroupLookup::Container(c)) => Some(c),
            _ => None,
        };
        let cg = match by_id {
            Some(c) => c,
            None => self.processes.of_pid(pid, now)?,
        };
        let pod = self.runtime.lookup(&cg.container_id);
        Some(ContainerOf { container_id: cg.container_id.clone(), pod })
    }

    /// Periodic work: walks the cgroup2 hierarchy when due (see [`CgroupDirs::refresh`]).
    pub fn refresh(&mut self) {
        self.cgroups.refresh(Instant::now());
    }

    pub fn counters(&self) -> (ProcessCounters, CgroupDirsCounters, RuntimeCounters) {
        (self.processes.counters(), self.cgroups.counters(), self.runtime.counters())
    }
}
