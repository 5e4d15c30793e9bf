//! From a process ID to its container: `/proc/<pid>/cgroup` read under an injectable proc root
//! and parsed by [`super::cgroup`], cached per process.
//!
//! The cache is keyed by PID and remembers the process's start time (field 22 of
//! `/proc/<pid>/stat`): within `ttl` an entry is trusted as is (no system call per record);
//! after it, the start time is read again and only a different one (the PID was reused) or a
//! gone process makes the cgroup be read again. Bounded: at `max_entries` the stale entries go,
//! then all. Not for: what the container is called (`runtime.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cgroup::{CgroupIdentity, parse_cgroup_file};

/// Most bytes read of a `/proc/<pid>/cgroup` (a v1 host has about a dozen short lines).
const MAX_CGROUP_FILE: u64 = 64 * 1024;

struct Cached {
    start_time: Option<u64>,
    identity: Option<Arc<CgroupIdentity>>,
    checked: Instant,
}

/// What [`ProcessContainers`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounters {
    /// Processes asked for.
    pub lookups: u64,
    /// Answered from the cache (start time read again or not).
    pub cache_hits: u64,
    /// cgroup files read.
    pub cgroup_reads: u64,
    /// Processes found in a container.
    pub in_container: u64,
}

/// PID → container ID, cached. See the module docs.
pub struct ProcessContainers {
    proc_root: PathBuf,
    ttl: Duration,
    max_entries: usize,
    cache: HashMap<u32, Cached>,
    counters: ProcessCounters,
}

impl ProcessContainers {
    pub fn new(proc_root: PathBuf, ttl: Duration, max_entries: usize) -> ProcessContainers {
        ProcessContainers {
            proc_root,
            ttl,
            max_entries: max_entries.max(1),
            cache: HashMap::new(),
            counters: ProcessCounters::default(),
        }
    }

    pub fn counters(&self) -> ProcessCounters {
        self.counters
    }

    /// The container `pid` runs in, `None` for a host process or one that is gone.
    pub fn of_pid(&mut self, pid: u32, now: Instant) -> Option<Arc<CgroupIdentity>> {
        self.counters.lookups += 1;
        let found = if let Some(c) = self.cache.get_mut(&pid) {
            if now.saturating_duration_since(c.checked) < self.ttl {
                Some(c.identity.clone())
            } else {
                let start = read_start_time(&self.proc_root, pid);
                if start.is_some() && start == c.start_time {
                    c.checked = now;
                    Some(c.identity.clone())
                } else {
                    None
                }
            }
        } else {
            None
        };
        let out = if let Some(identity) = found {
            self.counters.cache_hits += 1;
            identity
        } else {
            self.counters.cgroup_reads += 1;
            let start_time = read_start_time(&self.proc_root, pid);
            let identity =
                read_cgroup(&self.proc_root, pid).and_then(|t| parse_cgroup_file(&t)).map(Arc::new);
            self.make_room(now);
            self.cache.insert(pid, Cached { start_time, identity: identity.clone(), checked: now });
            identity
        };
        if out.is_some() {
            self.counters.in_container += 1;
        }
        out
    }

    fn make_room(&mut self, now: Instant) {
        if self.cache.len() < self.max_entries {
            return;
        }
        let ttl = self.ttl;
        self.cache.retain(|_, c| now.saturating_duration_since(c.checked) < ttl);
        if self.cache.len() >= self.max_entries {
            self.cache.clear();
        }
    }
}

fn read_cgroup(root: &std::path::Path, pid: u32) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(root.join(pid.to_string()).join("cgroup")).ok()?;
    let mut text = String::new();
    f.take(MAX_CGROUP_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

fn read_start_time(root: &std::path::Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(root.join(pid.to_string()).join("stat")).ok()?;
    parse_start_time(&text)
}

/// Field 22 (`starttime`, clock ticks since boot) of a `/proc/<pid>/stat` line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every format in fixtures/cgroup/proc: one directory per process, with the container ID
    /// (or none) its cgroup file names and the pod UID.
    const EXPECTED: &[(u32, Option<&str>, Option<&str>)] = &[
        (101, Some(C1), Some(U1)), // cgroup v2, systemd driver, containerd, burstable
        (102, Some(C1), Some(U1)), // cgroup v2, systemd driver, seen from a cgroup namespace
        (103, Some(C2), Some(U2)), // cgroup v2, cgroupfs driver, besteffort
        (104, Some(C2), Some(U2)), // cgroup v1 hybrid, cgroupfs driver, guaranteed
        (105, Some(C1), Some(U1)), // cgroup v1 hybrid, systemd driver, containerd
        (106, Some(C3), Some(U3)), // CRI-O, systemd driver (v2)
        (107, None, None),         // CRI-O's conmon, not the workload
        (108, Some(C3), Some(U3)), // CRI-O, cgroupfs driver (v1)
        (109, Some(C4), None),     // Docker, cgroupfs (v1)
        (110, Some(C4), None),     // Docker, systemd (v2)
        (111, Some(C4), Some(U2)), // cri-dockerd under kubepods (v1)
        (112, Some(C2), Some(U2)), // kind: a pod inside a node container (v2, systemd)
        (113, Some(C2), Some(U2)), // a pod inside a Docker node container (v1, cgroupfs)
        (114, None, None),         // host: root cgroup (v2)
        (115, None, None),         // host: a user session (v2)
        (116, None, None),         // host: a system service (v1 hybrid)
        (117, Some(C2), Some(U2)), // v1, memory moved by a sandbox, the others name the container
    ];
    const C1: &str = "8d0a3b5f4c2e1d6a7b9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d";
    const C2: &str = "1f2e3d4c5b6a79880716253443526170a9b8c7d6e5f4031221304f5e6d7c8b9a";
    const C3: &str = "c0ffee00deadbeef0123456789abcdef0123456789abcdef0123456789abcdef";
    const C4: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const U1: &str = "3e5b2a1c-7d4f-4a6b-9c8d-0e1f2a3b4c5d";
    const U2: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
    const U3: &str = "12345678-9abc-4def-8123-456789abcdef";

    fn fixture_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cgroup/proc")
    }

    #[test]
    fn every_fixture_format() {
        let mut p = ProcessContainers::new(fixture_root(), Duration::from_secs(2), 1000);
        let now = Instant::now();
        for (pid, id, uid) in EXPECTED {
            let got = p.of_pid(*pid, now);
            assert_eq!(got.as_ref().map(|g| g.container_id.as_str()), *id, "pid {pid}");
            assert_eq!(got.as_ref().and_then(|g| g.pod_uid.as_deref()), *uid, "pid {pid}");
        }
        // Every fixture directory is in the table, so a new format gets an expectation.
        let dirs = std::fs::read_dir(fixture_root()).unwrap().count();
        assert_eq!(dirs, EXPECTED.len());
        assert_eq!(p.of_pid(999_999, now), None, "a process that does not exist");
    }

    #[test]
    fn cache_trusts_within_ttl_and_notices_a_reused_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("42");
        std::fs::create_dir(&pdir).unwrap();
        let stat = |start: u64| {
            format!("42 (my (odd) comm) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10\n")
        };
        std::fs::write(pdir.join("stat"), stat(100)).unwrap();
        std::fs::write(pdir.join("cgroup"), format!("0::/docker/{C4}\n")).unwrap();
        let mut p = ProcessContainers::new(dir.path().to_path_buf(), Duration::from_secs(2), 1000);
        let t0 = Instant::now();
        assert_eq!(p.of_pid(42, t0).unwrap().container_id, C4);
        // Same PID, another process in another container, started later.
        std::fs::write(pdir.join("stat"), stat(200)).unwrap();
        std::fs::write(pdir.join("cgroup"), "0::/system.slice/ssh.service\n").unwrap();
        assert!(p.of_pid(42, t0 + Duration::from_secs(1)).is_some(), "trusted within the TTL");
        assert_eq!(p.of_pid(42, t0 + Duration::from_secs(3)), None, "start time changed: read again");
        assert_eq!(p.counters().cgroup_reads, 2);
        // Same start time after the TTL: the cgroup file is not read again.
        assert_eq!(p.of_pid(42, t0 + Duration::from_secs(6)), None);
        assert_eq!(p.counters().cgroup_reads, 2);
    }

    #[test]
    fn bounded() {
        let mut p = ProcessContainers::new(PathBuf::from("/nonexistent"), Duration::from_secs(2), 8);
        let now = Instant::now();
        for pid in 0..100 {
            p.of_pid(pid, now);
        }
        assert!(p.cache.len() <= 8);
    }

    #[test]
    fn start_time() {
        assert_eq!(parse_start_time("1 (a) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0"), Some(777));
        assert_eq!(parse_start_time("1 (a) b) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0"), Some(5));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time("1 (a) S 0"), None);
    }
}
