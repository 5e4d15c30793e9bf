//! From a cgroup v2 id to the container whose cgroup it is, without the process: the walk of
//! the cgroup2 (unified) hierarchy that maps directory inode numbers to cgroup paths.
//!
//! Why: the eBPF program records, with each connection's owner, `bpf_get_current_cgroup_id()`
//! read in the owner's own context at connect, accept or serve time (see
//! `liteobs_ebpf::layout::Owner`). A short-lived client (curl) has exited by the time its
//! exchange is attributed, so its `/proc/<pid>/cgroup` is gone; its cgroup id is not. A cgroup
//! v2 id is the inode number of the cgroup's directory in a cgroup2 mount (kernfs numbers its
//! nodes with the id on 64-bit kernels), so walking the mount and reading each directory's
//! inode gives id → path, and [`super::cgroup::parse_cgroup_path`] gives path → container.
//!
//! Where the hierarchy is: the `cgroup2` mount in `/proc/self/mountinfo` ([`cgroup2_mount`],
//! pure): `/sys/fs/cgroup` on a pure v2 host, `/sys/fs/cgroup/unified` on a v1 hybrid one.
//! On a hybrid host runc also puts every container in the unified hierarchy (checked on this
//! project's test machine: `0::/kubepods/.../<id>` next to the v1 lines, and the eBPF id is
//! that directory's inode). Where the runtime leaves containers in the unified root, every id
//! is the root's, which names no container, and attribution falls back to `/proc` as before.
//!
//! When it walks ([`CgroupDirs`]): at start, every `rescan_every` (so a container's directory
//! is known while it exists, even when it is removed before its exchanges are attributed),
//! and on a lookup of an id no walk has seen (a container younger than the last walk), at most
//! once per `min_rescan`. Bounded: at most `max_entries` directories are walked and
//! remembered; a directory no walk has seen for `forget_after` is forgotten.
//!
//! Not for: reading `/proc/<pid>/cgroup` (`process.rs`) or asking the runtime (`runtime.rs`).
//! An id this cannot place is answered as unknown, never guessed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cgroup::{CgroupIdentity, parse_cgroup_path};

/// Deepest directory walked below the mount (kubelet's deepest paths are 5 levels; nested
/// nodes such as kind add a few).
const MAX_DEPTH: usize = 24;

/// The mount point of the cgroup2 hierarchy from the text of a `/proc/<pid>/mountinfo`; `None`
/// when there is none (a pure cgroup v1 host).
///
/// With several cgroup2 mounts (an agent in a cgroup namespace of its own, with the host's
/// hierarchy mounted too), the one that sees most of the hierarchy wins: its root (field 4)
/// climbs out of the namespace with the most `..` components. Ties keep the first.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut best: Option<(usize, PathBuf)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        if post.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let mut f = pre.split(' ');
        let (Some(root), Some(point)) = (f.nth(3), f.next()) else { continue };
        let up = root.split('/').filter(|c| *c == "..").count();
        if best.as_ref().is_none_or(|(u, _)| up > *u) {
            best = Some((up, PathBuf::from(unescape_mountinfo(point))));
        }
    }
    best.map(|(_, p)| p)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One directory found by a walk: its inode number (the cgroup id) and its path below the
/// mount, starting with `/` (`/` itself for the root), as `/proc/<pid>/cgroup` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    pub id: u64,
    pub path: String,
}

/// Walks the directories under `root` (not following symbolic links), at most `max_dirs` of
/// them and [`MAX_DEPTH`] levels deep. Unreadable directories are skipped (a cgroup removed
/// during the walk).
pub fn walk(root: &Path, max_dirs: usize) -> Vec<CgroupDir> {
    let mut out = Vec::new();
    let Ok(meta) = std::fs::metadata(root) else { return out };
    out.push(CgroupDir { id: meta.ino(), path: "/".into() });
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if out.len() >= max_dirs {
                return out;
            }
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name();
            let path = format!("{rel}/{}", name.to_string_lossy());
            out.push(CgroupDir { id: meta.ino(), path: path.clone() });
            stack.push((e.path(), path, depth + 1));
        }
    }
    out
}

/// What [`CgroupDirs::lookup`] knows of an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLookup {
    /// A container's cgroup (or one below it).
    Container(Arc<CgroupIdentity>),
    /// A cgroup that is no container's (the root, a system service, a user session).
    NotAContainer,
    /// No walk has seen it (no cgroup2 mount, a cgroup removed before any walk, or the rescan
    /// budget is spent).
    Unknown,
}

/// Settings of [`CgroupDirs`].
#[derive(Debug, Clone)]
pub struct CgroupDirsConfig {
    /// The cgroup2 mount; `None`: no hierarchy to walk (every id is unknown).
    pub mount: Option<PathBuf>,
    /// A walk at least this often, from [`CgroupDirs::refresh`].
    pub rescan_every: Duration,
    /// Shortest time between two walks caused by lookups of unknown ids.
    pub min_rescan: Duration,
    /// How long a directory no walk has seen since is still answered.
    pub forget_after: Duration,
    /// Most directories walked and remembered.
    pub max_entries: usize,
}

impl Default for CgroupDirsConfig {
    fn default() -> CgroupDirsConfig {
        CgroupDirsConfig {
            mount: None,
            rescan_every: Duration::from_secs(5),
            min_rescan: Duration::from_millis(500),
            forget_after: Duration::from_secs(600),
            max_entries: 65_536,
        }
    }
}

/// What [`CgroupDirs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupDirsCounters {
    /// Ids asked for.
    pub lookups: u64,
    /// Ids that named a container.
    pub containers: u64,
    /// Ids no walk had seen (answered unknown).
    pub unknown: u64,
    /// Walks made.
    pub walks: u64,
    /// Directories remembered now.
    pub entries: u64,
}

struct Known {
    identity: Option<Arc<CgroupIdentity>>,
    seen: Instant,
}

/// cgroup id → container, from walks of the cgroup2 hierarchy. See the module docs.
pub struct CgroupDirs {
    cfg: CgroupDirsConfig,
    known: HashMap<u64, Known>,
    last_walk: Option<Instant>,
    counters: CgroupDirsCounters,
}

impl CgroupDirs {
    pub fn new(cfg: CgroupDirsConfig) -> CgroupDirs {
        CgroupDirs { cfg, known: HashMap::new(), last_walk: None, counters: CgroupDirsCounters::default() }
    }

    /// Settings with the mount found in `<proc_root>/self/mountinfo` (none found: a warning,
    /// and every id is unknown).
    pub fn detect(proc_root: &Path) -> CgroupDirsConfig {
        let mount =
            std::fs::read_to_string(proc_root.join("self/mountinfo")).ok().and_then(|t| cgroup2_mount(&t));
        match &mount {
            Some(m) => tracing::info!(mount = %m.display(), "containers: cgroup2 hierarchy found"),
            None => tracing::warn!(
                "containers: no cgroup2 mount in {}/self/mountinfo: the container of a process that has \
                 exited cannot be told",
                proc_root.display()
            ),
        }
        CgroupDirsConfig { mount, ..CgroupDirsConfig::default() }
    }

    pub fn counters(&self) -> CgroupDirsCounters {
        CgroupDirsCounters { entries: self.known.len() as u64, ..self.counters }
    }

    /// Periodic walk, when `rescan_every` has passed since the last one (or none was made).
    pub fn refresh(&mut self, now: Instant) {
        if self.last_walk.is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.rescan_every) {
            self.walk(now);
        }
    }

    /// What cgroup `id` is. An id no walk has seen causes a walk, unless one was made within
    /// `min_rescan`.
    pub fn lookup(&mut self, id: u64, now: Instant) -> CgroupLookup {
        self.counters.lookups += 1;
        if !self.known.contains_key(&id)
            && self.cfg.mount.is_some()
            && self.last_walk.is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.min_rescan)
        {
            self.walk(now);
        }
        match self.known.get(&id) {
            Some(Known { identity: Some(c), .. }) => {
                self.counters.containers += 1;
                CgroupLookup::Container(c.clone())
            }
            Some(Known { identity: None, .. }) => CgroupLookup::NotAContainer,
            None => {
                self.counters.unknown += 1;
                CgroupLookup::Unknown
            }
        }
    }

    fn walk(&mut self, now: Instant) {
        self.last_walk = Some(now);
        let Some(mount) = &self.cfg.mount else { return };
        self.counters.walks += 1;
        let found = walk(mount, self.cfg.max_entries);
        let forget_after = self.cfg.forget_after;
        self.known.retain(|_, k| now.saturating_duration_since(k.seen) < forget_after);
        if self.known.len() + found.len() > self.cfg.max_entries {
            // Keep what this walk sees; the removed directories go first.
            self.known.clear();
        }
        for d in found {
            let entry = self
                .known
                .entry(d.id)
                .or_insert_with(|| Known { identity: parse_cgroup_path(&d.path).map(Arc::new), seen: now });
            entry.seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "69ee6124b333a405752f6bc5f3bd97db60fe3828992235f1d27f34e5c8aa0095";
    const ID_B: &str = "95fa484420f3ed88e334aec3c3875ce7680b3dac21f9655242b4fd04c80439b0";
    const UID: &str = "1b4846b8-45c5-f6c0-6ec5-cea9d94d8c0f";

    fn ino(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn finds_the_cgroup2_mount_on_v2_hybrid_and_namespaced_hosts() {
        // This project's test machine: cgroup v1 hybrid, the unified hierarchy beside v1's.
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v2 = "26 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        // A pod with a cgroup namespace of its own and the host's hierarchy mounted as well:
        // the host's mount shows a root above the namespace's.
        let pod = "1200 1190 0:23 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n\
            1201 1190 0:23 /../../.. /host/sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(pod), Some(PathBuf::from("/host/sys/fs/cgroup")));
        let escaped = "41 31 0:38 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(escaped), Some(PathBuf::from("/mnt/my cgroup")));
        let v1_only = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        for junk in [v1_only, "", "garbage\n", " - cgroup2\n", "1 2 3 - cgroup2 x y\n"] {
            assert_eq!(cgroup2_mount(junk), None, "{junk:?}");
        }
    }

    /// A fixture tree shaped as kubelet makes it (cgroupfs and systemd drivers) plus host
    /// cgroups; the directories' real inode numbers stand for the cgroup ids.
    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join(format!("kubepods/besteffort/pod{UID}/{ID_A}"));
        let b = dir.path().join(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID_B}.scope",
            UID.replace('-', "_")
        ));
        let host = dir.path().join("system.slice/ssh.service");
        for d in [&a, &b, &host] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(dir.path().join("cgroup.procs"), "").unwrap(); // files are not cgroups
        (dir, a, b, host)
    }

    #[test]
    fn a_walk_gives_every_directory_by_inode_with_its_cgroup_path() {
        let (dir, a, _, host) = tree();
        let found = walk(dir.path(), 1000);
        let by_id: HashMap<u64, &str> = found.iter().map(|d| (d.id, d.path.as_str())).collect();
        assert_eq!(by_id[&ino(dir.path())], "/");
        assert_eq!(by_id[&ino(&a)], format!("/kubepods/besteffort/pod{UID}/{ID_A}"));
        assert_eq!(by_id[&ino(&host)], "/system.slice/ssh.service");
        assert_eq!(found.len(), 11, "{found:?}");
        assert_eq!(walk(dir.path(), 3).len(), 3, "bounded");
        assert!(walk(&dir.path().join("absent"), 10).is_empty());
    }

    #[test]
    fn ids_name_containers_host_cgroups_or_nothing() {
        let (dir, a, b, host) = tree();
        let cfg = CgroupDirsConfig { mount: Some(dir.path().to_path_buf()), ..CgroupDirsConfig::default() };
        let mut dirs = CgroupDirs::new(cfg);
        let t = Instant::now();
        dirs.refresh(t);
        let container = |l: CgroupLookup| match l {
            CgroupLookup::Container(c) => (c.container_id.clone(), c.pod_uid.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(container(dirs.lookup(ino(&a), t)), (ID_A.into(), Some(UID.into())));
        assert_eq!(container(dirs.lookup(ino(&b), t)).0, ID_B);
        assert_eq!(dirs.lookup(ino(&host), t), CgroupLookup::NotAContainer);
        assert_eq!(dirs.lookup(ino(dir.path()), t), CgroupLookup::NotAContainer);
        assert_eq!(dirs.lookup(u64::MAX, t), CgroupLookup::Unknown);
        assert_eq!(dirs.counters().walks, 1, "the miss came within min_rescan of the walk");
    }

    #[test]
    fn a_new_container_is_found_by_a_rescan_and_a_removed_one_is_still_answered() {
        let (dir, a, _, _) = tree();
        let cfg = CgroupDirsConfig {
            mount: Some(dir.path().to_path_buf()),
            min_rescan: Duration::from_millis(500),
            forget_after: Duration::from_secs(60),
            ..CgroupDirsConfig::default()
        };
        let mut dirs = CgroupDirs::new(cfg);
        let t0 = Instant::now();
        dirs.refresh(t0);
        // A container started after the walk.
        let late = dir.path().join(format!("kubepods/besteffort/pod{UID}/{}", "c".repeat(64)));
        std::fs::create_dir(&late).unwrap();
        let late_id = ino(&late);
        assert_eq!(
            dirs.lookup(late_id, t0 + Duration::from_millis(100)),
            CgroupLookup::Unknown,
            "rate limited"
        );
        assert!(matches!(dirs.lookup(late_id, t0 + Duration::from_millis(600)), CgroupLookup::Container(_)));
        assert_eq!(dirs.counters().walks, 2);
        // The container exits and its cgroup is removed: still answered from the last walks,
        // until forget_after.
        let a_id = ino(&a);
        std::fs::remove_dir(&a).unwrap();
        dirs.refresh(t0 + Duration::from_secs(10));
        assert!(matches!(dirs.lookup(a_id, t0 + Duration::from_secs(10)), CgroupLookup::Container(_)));
        dirs.refresh(t0 + Duration::from_secs(80));
        assert_eq!(dirs.lookup(a_id, t0 + Duration::from_secs(80)), CgroupLookup::Unknown);
    }

    #[test]
    fn bounded_and_without_a_mount_everything_is_unknown() {
        let (dir, a, _, _) = tree();
        let cfg = CgroupDirsConfig {
            mount: Some(dir.path().to_path_buf()),
            max_entries: 4,
            ..CgroupDirsConfig::default()
        };
        let mut dirs = CgroupDirs::new(cfg);
        dirs.refresh(Instant::now());
        assert!(dirs.counters().entries <= 4);
        let mut none = CgroupDirs::new(CgroupDirsConfig::default());
        none.refresh(Instant::now());
        assert_eq!(none.lookup(ino(&a), Instant::now()), CgroupLookup::Unknown);
        assert_eq!(none.counters().walks, 0);
    }
}
