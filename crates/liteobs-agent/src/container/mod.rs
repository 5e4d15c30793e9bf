//! Which container, pod and Kubernetes namespace a process belongs to, on this node.
//!
//! A process's cgroup names its container (`cgroup.rs`, pure; read under an injectable proc
//! root and cached per process in `process.rs`); the container runtime's own record of the
//! container holds the labels kubelet set on it (`labels.rs`), asked of containerd over its
//! socket (`containerd.rs` on `protobuf.rs`) and cached by a thread of its own (`runtime.rs`).
//! No Kubernetes API server is asked. [`ContainerIdentity`] puts the two together for
//! [`crate::attribute::PodAttribution`].
//!
//! Runtimes: containerd (its Containers service, namespace `k8s.io`). CRI-O and Docker
//! (cri-dockerd) containers are recognised in cgroups, so their records get
//! `*_container_id`, but their labels are not asked for yet (no pod names).

pub mod cgroup;
pub mod containerd;
pub mod labels;
pub mod process;
pub mod protobuf;
pub mod runtime;

use std::path::PathBuf;
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
}

impl Default for ContainersConfig {
    fn default() -> ContainersConfig {
        ContainersConfig {
            proc_root: PathBuf::from("/proc"),
            process_ttl: Duration::from_secs(2),
            process_entries: 65_536,
            runtime: RuntimeConfig::default(),
        }
    }
}

/// Process → container → pod. See the module docs.
pub struct ContainerIdentity {
    processes: ProcessContainers,
    runtime: RuntimeLabels,
}

impl ContainerIdentity {
    /// Starts the runtime's cache thread.
    pub fn start(cfg: ContainersConfig) -> ContainerIdentity {
        ContainerIdentity {
            processes: ProcessContainers::new(cfg.proc_root, cfg.process_ttl, cfg.process_entries),
            runtime: RuntimeLabels::start(cfg.runtime),
        }
    }

    /// The container of `pid`, `None` for a host process (or one that is gone).
    pub fn of_pid(&mut self, pid: u32) -> Option<ContainerOf> {
        let cg = self.processes.of_pid(pid, Instant::now())?;
        let pod = self.runtime.lookup(&cg.container_id);
        Some(ContainerOf { container_id: cg.container_id.clone(), pod })
    }

    pub fn counters(&self) -> (ProcessCounters, RuntimeCounters) {
        (self.processes.counters(), self.runtime.counters())
    }
}
