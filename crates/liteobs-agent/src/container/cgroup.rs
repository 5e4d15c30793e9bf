//! From the text of `/proc/<pid>/cgroup` to the container a process runs in: pure, no I/O.
//!
//! A container runtime puts each container's processes in a cgroup whose last path component
//! carries the container's ID, in one of a few spellings:
//!
//! | who | cgroup path (last components) |
//! |---|---|
//! | kubelet, cgroupfs driver | `/kubepods/besteffort/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>` (guaranteed) |
//! | kubelet, systemd driver | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | containerd outside kubelet | `/<namespace>/<id>` (cgroupfs), `.../cri-containerd-<id>.scope` |
//! | CRI-O | `crio-<id>.scope`, `/crio-<id>`; `crio-conmon-<id>.scope` is its monitor, not the workload |
//! | Docker, cri-dockerd | `/docker/<id>`, `docker-<id>.scope`, `/kubepods/.../<id>` |
//! | nested (kind, Docker in Docker) | `/docker/<node id>/kubepods/.../<id>`, `/kubelet.slice/kubelet-kubepods.slice/...` |
//!
//! `<id>` is 64 lowercase hex digits for all of them. The innermost ID wins (a kind node is
//! itself a container; its pods are what the record is about). A path may start with `/..`
//! components when the reader is in a cgroup namespace of its own (a pod's, on cgroup v2): the
//! components after them are read the same way.
//!
//! On cgroup v1 a process has one line per hierarchy, and they need not agree (a sandbox may
//! move a process in one hierarchy only): the lines are tried in a fixed order of hierarchies
//! every runtime joins (`name=systemd`, `pids`, `memory`, `cpu`, then the others), after the
//! cgroup v2 line `0::` (the only one on a pure v2 host). Host processes (`/`, `/user.slice/...`,
//! `/system.slice/ssh.service`) have no container.
//!
//! Not for: reading the file (`process.rs`), or what the ID is called (`labels.rs`).

/// Length of a container ID in every runtime this knows.
const ID_LEN: usize = 64;

/// What a process's cgroup says about its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// The runtime's container ID: 64 lowercase hex digits.
    pub container_id: String,
    /// The pod's UID with dashes (`pod<uid>` of kubelet's cgroup), when the path names one.
    pub pod_uid: Option<String>,
}

/// The container of a process from the whole text of its `/proc/<pid>/cgroup`; `None` for a
/// host process or text that names none.
pub fn parse_cgroup_file(text: &str) -> Option<CgroupIdentity> {
    let mut best: Option<(usize, CgroupIdentity)> = None;
    for line in text.lines() {
        // hierarchy-ID:controller-list:path; the path may itself contain ':'.
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rank = hierarchy_rank(controllers);
        if best.as_ref().is_some_and(|(r, _)| *r <= rank) {
            continue;
        }
        if let Some(id) = parse_cgroup_path(path) {
            best = Some((rank, id));
        }
    }
    best.map(|(_, id)| id)
}

/// Lower is tried first: the v2 line, then v1 hierarchies every runtime joins.
fn hierarchy_rank(controllers: &str) -> usize {
    const ORDER: [&str; 4] = ["name=systemd", "pids", "memory", "cpu"];
    if controllers.is_empty() {
        return 0;
    }
    controllers
        .split(',')
        .filter_map(|c| ORDER.iter().position(|o| *o == c))
        .min()
        .map_or(ORDER.len() + 1, |p| p + 1)
}

/// The container named by one cgroup path (the innermost one), with the pod UID of the
/// component before it when kubelet made the path.
pub fn parse_cgroup_path(path: &str) -> Option<CgroupIdentity> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != "..").collect();
    let at = comps.iter().rposition(|c| container_id_of(c).is_some())?;
    let container_id = container_id_of(comps[at])?.to_owned();
    let pod_uid = comps[..at].iter().rev().find_map(|c| pod_uid_of(c));
    Some(CgroupIdentity { container_id, pod_uid })
}

/// The container ID one path component carries, if it is a container's cgroup.
fn container_id_of(comp: &str) -> Option<&str> {
    // systemd scopes: `<prefix>-<id>.scope`; the prefix names the runtime. CRI-O's conmon
    // (`crio-conmon-<id>.scope`) monitors the container from outside it.
    if let Some(stem) = comp.strip_suffix(".scope") {
        let (prefix, id) = stem.rsplit_once('-')?;
        let known = matches!(prefix, "cri-containerd" | "crio" | "docker" | "libpod");
        return (known && is_id(id)).then_some(id);
    }
    if let Some(id) = comp.strip_prefix("crio-") {
        return is_id(id).then_some(id);
    }
    is_id(comp).then_some(comp)
}

/// The pod UID of kubelet's pod cgroup: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid with underscores>.slice` (systemd), given with dashes.
fn pod_uid_of(comp: &str) -> Option<String> {
    let raw = match comp.strip_suffix(".slice") {
        Some(stem) => stem.rsplit_once("-pod")?.1,
        None => comp.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f6e1b2a9c3d5e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const UID: &str = "0b6c4f4e-6a7d-4d3e-9e2f-1a2b3c4d5e6f";

    #[test]
    fn paths_of_every_runtime_and_driver() {
        let uid_ = UID.replace('-', "_");
        let node = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        type Want<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: Vec<(String, Want)> = vec![
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), Some((ID, Some(UID)))),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), Some((ID, Some(UID)))),
            (format!("/kubepods/pod{UID}/{ID}"), Some((ID, Some(UID)))),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some((ID, Some(UID))),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
                Some((ID, Some(UID))),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"
                ),
                Some((ID, Some(UID))),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-conmon-{ID}.scope"
                ),
                None,
            ),
            (format!("/kubepods/besteffort/pod{UID}/crio-{ID}"), Some((ID, Some(UID)))),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/docker-{ID}.scope"
                ),
                Some((ID, Some(UID))),
            ),
            (format!("/docker/{ID}"), Some((ID, None))),
            (format!("/system.slice/docker-{ID}.scope"), Some((ID, None))),
            (format!("/k8s.io/{ID}"), Some((ID, None))),
            (format!("/docker/{node}/kubepods/besteffort/pod{UID}/{ID}"), Some((ID, Some(UID)))),
            (
                format!(
                    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some((ID, Some(UID))),
            ),
            (
                format!("/../../kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"),
                Some((ID, Some(UID))),
            ),
            ("/".into(), None),
            ("/user.slice/user-1000.slice/session-3.scope".into(), None),
            ("/system.slice/ssh.service".into(), None),
            (format!("/docker/{}", &ID[..63]), None),
            (format!("/docker/{}", ID.to_uppercase()), None),
            (format!("/kubepods/besteffort/pod{UID}"), None),
        ];
        for (path, want) in cases {
            let got = parse_cgroup_path(&path);
            let want = want.map(|(id, uid)| CgroupIdentity {
                container_id: id.to_owned(),
                pod_uid: uid.map(str::to_owned),
            });
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn v1_prefers_the_stable_hierarchies_and_hostile_text_is_none() {
        // A sandbox that moved the process in `memory` only must not hide the container.
        let text = format!(
            "12:memory:/sandbox/{}\n11:pids:/kubepods/pod{UID}/{ID}\n1:name=systemd:/kubepods/pod{UID}/{ID}\n0::/\n",
            "b".repeat(64)
        );
        assert_eq!(parse_cgroup_file(&text).unwrap().container_id, ID);
        assert_eq!(parse_cgroup_file("0::/\n"), None);
        for junk in ["", "\n\n", "garbage", "::::", "0::", "x:y:/docker/zz"] {
            assert_eq!(parse_cgroup_file(junk), None, "{junk:?}");
        }
    }
}
