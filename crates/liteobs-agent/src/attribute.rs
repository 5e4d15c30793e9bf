//! Attribution: filling in which processes were at either end of an exchange.
//!
//! The pipeline emits records with `src_pid`, `src_comm`, `dst_pid` and `dst_comm` unset; an
//! [`Attributor`] may fill them in before the record is reported. [`crate::pidmap::PidMap`]
//! (eBPF maps, then /proc) is the real one; [`NoAttribution`] leaves records as they are (replays,
//! `-pidmap off`). An attributor must be quick (it runs on the capture thread, once per record)
//! and must never fail a record: what it cannot tell, it leaves unset.
//!
//! [`PodAttribution`] wraps another attributor: once that one has named the processes, it adds
//! each one's container, pod and namespace ([`crate::container`]) and the node that saw them.

use std::net::SocketAddr;

use liteobs_model::TrafficLog;

use crate::container::{
    CgroupDirsCounters, ContainerIdentity, ContainerOf, ProcessCounters, RuntimeCounters,
};
pub use crate::pidmap::Origin;

/// An attributor's counters, for the metrics ([`crate::metrics`]): what its sources found.
/// `None` where the attributor has no such source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributionCounters {
    pub pids: Option<crate::pidmap::Counters>,
    pub containers: Option<(ProcessCounters, CgroupDirsCounters, RuntimeCounters)>,
}

/// What an attributor tells beside the record it filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribution {
    pub origin: Origin,
    /// The cgroup v2 id of the client's process when it connected, if the attributor filled
    /// in `src_pid` and knew it (eBPF).
    pub src_cgroup: Option<u64>,
    /// The same for the server's process (`dst_pid`) when it listened, accepted or served.
    pub dst_cgroup: Option<u64>,
}

impl Attribution {
    /// Someone's traffic, no cgroup known.
    pub fn observed() -> Attribution {
        Attribution { origin: Origin::Observed, src_cgroup: None, dst_cgroup: None }
    }
}

/// Fills in process information on a record, as far as it can.
pub trait Attributor {
    /// Fills in what it knows; [`Origin::Agent`] means the record is the agent's own traffic
    /// (its uploads) and must not be reported.
    fn attribute(&mut self, rec: &mut TrafficLog) -> Origin;

    /// [`Attributor::attribute`], and the cgroups of the processes it filled in, for the
    /// container of a process that has exited ([`PodAttribution`]). Without cgroups by default.
    fn attribute_ends(&mut self, rec: &mut TrafficLog) -> Attribution {
        Attribution { origin: self.attribute(rec), ..Attribution::observed() }
    }

    /// The capture saw a new TCP connection between `a` and `b` (either may be the client).
    /// What was known about an earlier connection on the same 4-tuple must not be reused for
    /// it: once a connection closes, its tuple can be taken by another process (an ephemeral
    /// port reused) or be accepted by another worker.
    fn connection_opened(&mut self, _a: SocketAddr, _b: SocketAddr) {}

    /// Logs the attributor's own counters (called with the agent's periodic counters).
    fn log_stats(&mut self) {}

    /// The attributor's own counters, for the metrics; called as often as [`Attributor::log_stats`]
    /// (counting may take a walk of a kernel map).
    fn counters(&mut self) -> AttributionCounters {
        AttributionCounters::default()
    }

    /// Periodic work (rescanning what it learns from the system), called on the live
    /// capture's ticks, a few times a second; must return at once when nothing is due.
    fn refresh(&mut self) {}
}

impl Attributor for crate::pidmap::PidMap {
    fn attribute(&mut self, rec: &mut TrafficLog) -> Origin {
        self.fill(rec)
    }

    fn attribute_ends(&mut self, rec: &mut TrafficLog) -> Attribution {
        self.fill_ends(rec)
    }

    fn refresh(&mut self) {
        crate::pidmap::PidMap::refresh(self);
    }

    fn connection_opened(&mut self, a: SocketAddr, b: SocketAddr) {
        self.forget(a, b);
    }

    fn counters(&mut self) -> AttributionCounters {
        AttributionCounters { pids: Some(crate::pidmap::PidMap::counters(self)), containers: None }
    }

    fn log_stats(&mut self) {
        let c = crate::pidmap::PidMap::counters(self);
        tracing::info!(
            mode = %self.effective_mode(),
            lookups = c.lookups,
            cache_hits = c.cache_hits,
            ebpf_hits = c.ebpf_hits,
            ebpf_misses = c.ebpf_misses,
            proc_fallbacks = c.proc_fallbacks,
            proc_hits = c.proc_hits,
            listener_hits = c.listener_hits,
            unresolved = c.unresolved,
            own_uploads = c.own_uploads,
            map_entries = c.map_entries.unwrap_or(0),
            listener_scans = c.listener_scans,
            listeners = c.listeners,
            listener_namespaces = c.listener_namespaces,
            listeners_seeded = c.listeners_seeded,
            listener_scan_us = c.listener_scan_us,
            "attribution counters"
        );
    }
}

/// Leaves every record as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAttribution;

impl Attributor for NoAttribution {
    fn attribute(&mut self, _rec: &mut TrafficLog) -> Origin {
        Origin::Observed
    }
}

/// Adds pods to what an inner attributor found: for each side whose PID is known, its
/// `*_container_id` (from the cgroup the inner attributor says the process was in, else from
/// the live process's `/proc/<pid>/cgroup`), and from the runtime's labels `*_namespace`,
/// `*_pod`, `*_container`;
/// and `*_node` (the agent's node, the record's `node`) on every side whose process is known.
/// A host process gets a node and no pod fields.
pub struct PodAttribution<A> {
    inner: A,
    containers: ContainerIdentity,
}

impl<A: Attributor> PodAttribution<A> {
    pub fn new(inner: A, containers: ContainerIdentity) -> PodAttribution<A> {
        PodAttribution { inner, containers }
    }
}

/// The fields of one side of a record.
struct SideFields<'a> {
    pid: Option<u32>,
    cgroup: Option<u64>,
    node: &'a mut Option<String>,
    container_id: &'a mut Option<String>,
    namespace: &'a mut Option<String>,
    pod: &'a mut Option<String>,
    container: &'a mut Option<String>,
}

impl SideFields<'_> {
    fn fill(self, node: &str, containers: &mut ContainerIdentity) {
        let Some(pid) = self.pid else { return };
        if self.node.is_none() {
            *self.node = Some(node.to_owned());
        }
        if self.container_id.is_some() {
            return;
        }
        let Some(ContainerOf { container_id, pod }) = containers.of_process(pid, self.cgroup) else { return };
        *self.container_id = Some(container_id);
        if let Some(p) = pod {
            *self.namespace = Some(p.namespace.clone());
            *self.pod = Some(p.pod.clone());
            self.container.clone_from(&p.container);
        }
    }
}

impl<A: Attributor> Attributor for PodAttribution<A> {
    fn attribute(&mut self, rec: &mut TrafficLog) -> Origin {
        let Attribution { origin, src_cgroup, dst_cgroup } = self.inner.attribute_ends(rec);
        if origin == Origin::Agent || (rec.src_pid.is_none() && rec.dst_pid.is_none()) {
            return origin;
        }
        let node = rec.node.clone();
        SideFields {
            pid: rec.src_pid,
            cgroup: src_cgroup,
            node: &mut rec.src_node,
            container_id: &mut rec.src_container_id,
            namespace: &mut rec.src_namespace,
            pod: &mut rec.src_pod,
            container: &mut rec.src_container,
        }
        .fill(&node, &mut self.containers);
        SideFields {
            pid: rec.dst_pid,
            cgroup: dst_cgroup,
            node: &mut rec.dst_node,
            container_id: &mut rec.dst_container_id,
            namespace: &mut rec.dst_namespace,
            pod: &mut rec.dst_pod,
            container: &mut rec.dst_container,
        }
        .fill(&node, &mut self.containers);
        origin
    }

    fn connection_opened(&mut self, a: SocketAddr, b: SocketAddr) {
        self.inner.connection_opened(a, b);
    }

    fn refresh(&mut self) {
        self.inner.refresh();
        self.containers.refresh();
    }

    fn counters(&mut self) -> AttributionCounters {
        AttributionCounters { containers: Some(self.containers.counters()), ..self.inner.counters() }
    }

    fn log_stats(&mut self) {
        self.inner.log_stats();
        let (p, g, r) = self.containers.counters();
        tracing::info!(
            process_lookups = p.lookups,
            process_cache_hits = p.cache_hits,
            cgroup_reads = p.cgroup_reads,
            in_container = p.in_container,
            cgroup_lookups = g.lookups,
            cgroup_containers = g.containers,
            cgroup_unknown = g.unknown,
            cgroup_walks = g.walks,
            cgroup_dirs = g.entries,
            runtime_hits = r.hits,
            runtime_misses = r.misses,
            runtime_pending = r.pending,
            runtime_calls = r.runtime_calls,
            runtime_errors = r.runtime_errors,
            runtime_entries = r.entries,
            "container attribution counters"
        );
    }
}

impl<A: Attributor + ?Sized> Attributor for Box<A> {
    fn attribute(&mut self, rec: &mut TrafficLog) -> Origin {
        (**self).attribute(rec)
    }

    fn attribute_ends(&mut self, rec: &mut TrafficLog) -> Attribution {
        (**self).attribute_ends(rec)
    }

    fn refresh(&mut self) {
        (**self).refresh();
    }

    fn connection_opened(&mut self, a: SocketAddr, b: SocketAddr) {
        (**self).connection_opened(a, b);
    }

    fn log_stats(&mut self) {
        (**self).log_stats();
    }

    fn counters(&mut self) -> AttributionCounters {
        (**self).counters()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::container::{ContainersConfig, RuntimeConfig};

    /// Stands in for the PID source: says which PIDs own the two ends.
    struct KnownPids(Option<u32>, Option<u32>);

    impl Attributor for KnownPids {
        fn attribute(&mut self, rec: &mut TrafficLog) -> Origin {
            rec.src_pid = self.0;
            rec.dst_pid = self.1;
            Origin::Observed
        }
    }

    /// Stands in for eBPF: names the two ends' processes and the cgroups they connected and
    /// served from.
    struct WithCgroups(u32, Option<u64>, u32, Option<u64>);

    impl Attributor for WithCgroups {
        fn attribute(&mut self, rec: &mut TrafficLog) -> Origin {
            self.attribute_ends(rec).origin
        }

        fn attribute_ends(&mut self, rec: &mut TrafficLog) -> Attribution {
            rec.src_pid = Some(self.0);
            rec.dst_pid = Some(self.2);
            Attribution { origin: Origin::Observed, src_cgroup: self.1, dst_cgroup: self.3 }
        }
    }

    /// curl connected from its container's cgroup and exited before its exchange was
    /// attributed: no /proc entry, but the cgroup id names the container.
    #[test]
    fn an_exited_process_gets_its_container_from_the_cgroup_it_connected_from() {
        use std::os::unix::fs::MetadataExt;
        const ID: &str = "69ee6124b333a405752f6bc5f3bd97db60fe3828992235f1d27f34e5c8aa0095";
        let cgroups = tempfile::tempdir().unwrap();
        let dir =
            cgroups.path().join(format!("kubepods/besteffort/pod1b4846b8-45c5-f6c0-6ec5-cea9d94d8c0f/{ID}"));
        std::fs::create_dir_all(&dir).unwrap();
        let host = cgroups.path().join("system.slice");
        std::fs::create_dir_all(&host).unwrap();
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        let gone = tempfile::tempdir().unwrap();
        let start = |proc_root: std::path::PathBuf| {
            ContainerIdentity::start(ContainersConfig {
                proc_root,
                runtime: RuntimeConfig { socket: gone.path().join("gone.sock"), ..RuntimeConfig::default() },
                cgroup_dirs: Some(crate::container::CgroupDirsConfig {
                    mount: Some(cgroups.path().to_path_buf()),
                    ..crate::container::CgroupDirsConfig::default()
                }),
                ..ContainersConfig::default()
            })
        };
        let rec =
            || crate::testing::record("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());

        // Client 4242 has exited (an empty proc root); server 4343 is in a host cgroup.
        let mut a = PodAttribution::new(
            WithCgroups(4242, Some(ino(&dir)), 4343, Some(ino(&host))),
            start(gone.path().to_path_buf()),
        );
        let mut r = rec();
        a.attribute(&mut r);
        assert_eq!(r.src_container_id.as_deref(), Some(ID));
        assert_eq!(r.dst_container_id, None, "a host cgroup is no container");

        // An id no walk knows, or none: the live process's /proc/<pid>/cgroup answers
        // (fixtures/cgroup/proc: 103 is in a container, 114 is a host process).
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cgroup/proc");
        let mut a = PodAttribution::new(WithCgroups(103, Some(u64::MAX), 114, None), start(fixtures));
        let mut r = rec();
        a.attribute(&mut r);
        assert_eq!(
            r.src_container_id.as_deref(),
            Some("1f2e3d4c5b6a79880716253443526170a9b8c7d6e5f4031221304f5e6d7c8b9a")
        );
        assert_eq!(r.dst_container_id, None);
    }

    #[test]
    fn a_dead_runtime_leaves_container_ids_and_nodes_but_no_pods() {
        let dir = tempfile::tempdir().unwrap();
        let containers = ContainerIdentity::start(ContainersConfig {
            proc_root: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/cgroup/proc"),
            runtime: RuntimeConfig { socket: dir.path().join("gone.sock"), ..RuntimeConfig::default() },
            ..ContainersConfig::default()
        });
        // 114 is a host process, 103 a container (fixtures/cgroup/proc).
        let mut a = PodAttribution::new(KnownPids(Some(114), Some(103)), containers);
        let mut rec =
            crate::testing::record("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        rec.node = "node-a".into();
        let t = Instant::now();
        a.attribute(&mut rec);
        assert!(t.elapsed() < Duration::from_millis(500));
        assert_eq!((rec.src_node.as_deref(), rec.src_container_id.as_deref()), (Some("node-a"), None));
        assert_eq!(rec.dst_node.as_deref(), Some("node-a"));
        assert_eq!(
            rec.dst_container_id.as_deref(),
            Some("1f2e3d4c5b6a79880716253443526170a9b8c7d6e5f4031221304f5e6d7c8b9a")
        );
        assert_eq!((rec.dst_pod, rec.dst_namespace, rec.dst_container), (None, None, None));
        a.log_stats();

        // No PID on either side: nothing added.
        let containers = ContainerIdentity::start(ContainersConfig {
            runtime: RuntimeConfig { socket: dir.path().join("gone.sock"), ..RuntimeConfig::default() },
            ..ContainersConfig::default()
        });
        let mut a = PodAttribution::new(KnownPids(None, None), containers);
        let mut rec =
            crate::testing::record("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        a.attribute(&mut rec);
        assert_eq!((rec.src_node, rec.dst_node, rec.dst_container_id), (None, None, None));
    }
}
