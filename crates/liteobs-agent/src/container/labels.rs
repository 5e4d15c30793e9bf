//! What kubelet's labels on a container say about its pod: pure.
//!
//! kubelet (through the CRI) labels every container it makes with
//! `io.kubernetes.pod.namespace`, `io.kubernetes.pod.name` and, for workload containers (not the
//! pod's sandbox, the "pause" container), `io.kubernetes.container.name`. containerd, CRI-O and
//! cri-dockerd keep them as the container's labels. A container without the pod labels was not
//! made by kubelet (`ctr run`, `docker run`): it has an ID but no pod.

use std::collections::HashMap;

pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Where in Kubernetes a container is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub pod: String,
    /// `None` for the pod's sandbox.
    pub container: Option<String>,
}

/// The pod of a container from its labels; `None` unless both pod labels are there and not empty.
pub fn pod_identity(labels: &HashMap<String, String>) -> Option<PodIdentity> {
    let get = |k: &str| labels.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    Some(PodIdentity {
        namespace: get(POD_NAMESPACE)?,
        pod: get(POD_NAME)?,
        container: get(CONTAINER_NAME).filter(|c| c != "POD"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn kubelet_labels() {
        let full =
            labels(&[(POD_NAMESPACE, "shop"), (POD_NAME, "web-7d9f"), (CONTAINER_NAME, "nginx"), ("x", "y")]);
        assert_eq!(
            pod_identity(&full),
            Some(PodIdentity {
                namespace: "shop".into(),
                pod: "web-7d9f".into(),
                container: Some("nginx".into())
            })
        );
        // The sandbox: containerd and CRI-O give no container name, cri-dockerd gives "POD".
        for sandbox in [
            labels(&[(POD_NAMESPACE, "shop"), (POD_NAME, "web")]),
            labels(&[(POD_NAMESPACE, "shop"), (POD_NAME, "web"), (CONTAINER_NAME, "POD")]),
        ] {
            assert_eq!(pod_identity(&sandbox).unwrap().container, None);
        }
        assert_eq!(pod_identity(&labels(&[(POD_NAME, "web")])), None);
        assert_eq!(pod_identity(&labels(&[(POD_NAMESPACE, " "), (POD_NAME, "web")])), None);
        assert_eq!(pod_identity(&labels(&[])), None);
    }
}
