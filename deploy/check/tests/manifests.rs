//! The Kubernetes manifests in deploy/, checked without a cluster: every document parses into the
//! Kubernetes API types (k8s-openapi, API 1.33), every field in them is one those types know (a
//! misspelt field would be silently dropped by the API server, so the test serializes each
//! object back and compares), and the properties the deployment relies on hold: the agent
//! DaemonSet's namespaces, exact capabilities, mounts, node name, token, tolerations and
//! resources; the server's probes, token, volume and non-root user; names that refer to each
//! other agree. `kubectl kustomize` builds deploy/, deploy/ with the tls component and
//! deploy/overlays/clickhouse (alone and with tls), and the tests check what it builds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Namespace, PersistentVolumeClaim, PodSpec, Probe, ResourceRequirements, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use liteobs_deploy_check::{repo_root, skip_missing_tool, workspace_version};
use serde::Deserialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// Every object of the kustomization, by kind.
#[derive(Default)]
struct Manifests {
    namespace: String,
    namespaces: Vec<Namespace>,
    daemonsets: Vec<DaemonSet>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    claims: Vec<PersistentVolumeClaim>,
}

/// Parses `value` as `T` and fails, naming `what` and the JSON path, if serializing it back does
/// not give the same document: a field the type does not know, or a value of the wrong shape.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).expect("k8s-openapi types serialize");
    if let Some(diff) = first_difference("", value, &back) {
        panic!("{what}: {diff} (a field the Kubernetes API does not have, or a misspelt one?)");
    }
    typed
}

fn first_difference(path: &str, written: &Value, parsed: &Value) -> Option<String> {
    match (written, parsed) {
        (Value::Object(w), Value::Object(p)) => {
            for (k, wv) in w {
                let sub = format!("{path}.{k}");
                match p.get(k) {
                    Some(pv) => {
                        if let Some(d) = first_difference(&sub, wv, pv) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{sub} is not a field of this type")),
                }
            }
            p.keys().find(|k| !w.contains_key(*k)).map(|k| format!("{path}.{k} appeared when parsed"))
        }
        (Value::Array(w), Value::Array(p)) if w.len() == p.len() => w
            .iter()
            .zip(p)
            .enumerate()
            .find_map(|(i, (wv, pv))| first_difference(&format!("{path}[{i}]"), wv, pv)),
        _ if written == parsed => None,
        _ => Some(format!("{path}: written {written}, parsed {parsed}")),
    }
}

fn load() -> Manifests {
    let dir = deploy_dir();
    let kustomization: Value =
        yaml(&dir.join("kustomization.yaml")).pop().expect("kustomization.yaml is empty");
    let mut m = Manifests {
        namespace: kustomization["namespace"].as_str().expect("kustomization.yaml sets namespace").to_owned(),
        ..Manifests::default()
    };
    load_kustomization(&mut m, &dir, "");
    m
}

/// Adds the resources of the kustomization in `dir` (`rel`: its path under deploy/, for messages)
/// to `m`: files are parsed, directories are kustomizations of their own (deploy/base/), read
/// the same way.
fn load_kustomization(m: &mut Manifests, dir: &Path, rel: &str) {
    let kustomization: Value = yaml(&dir.join("kustomization.yaml"))
        .pop()
        .unwrap_or_else(|| panic!("{rel}kustomization.yaml is empty"));
    if let Some(ns) = kustomization["namespace"].as_str() {
        assert_eq!(ns, m.namespace, "{rel}kustomization.yaml: namespace differs from deploy/'s");
    }
    let resources: Vec<String> = kustomization["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{rel}kustomization.yaml: resources is a list"))
        .iter()
        .map(|r| r.as_str().expect("kustomization.yaml: resources are file or directory names").to_owned())
        .collect();
    for r in &resources {
        assert!(
            !r.contains("..") && !r.starts_with('/') && !r.contains("://"),
            "{rel}kustomization.yaml: resource {r} is not below it"
        );
    }
    let (bases, files): (Vec<&String>, Vec<&String>) = resources.iter().partition(|r| dir.join(r).is_dir());

    // Every manifest next to kustomization.yaml is one of its resources, and the other way round.
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
        .map(|e| e.expect("deploy/ entry").file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        on_disk,
        files.iter().map(|f| (*f).clone()).collect(),
        "deploy/{rel}*.yaml and {rel}kustomization.yaml resources differ"
    );

    for base in bases {
        load_kustomization(m, &dir.join(base), &format!("{rel}{}/", base.trim_end_matches('/')));
    }
    for file in files {
        for (i, doc) in yaml(&dir.join(file)).into_iter().enumerate() {
            let what = format!("{rel}{file} document {}", i + 1);
            let api = doc["apiVersion"].as_str().unwrap_or_else(|| panic!("{what}: no apiVersion"));
            match (api, doc["kind"].as_str().unwrap_or_else(|| panic!("{what}: no kind"))) {
                ("v1", "Namespace") => m.namespaces.push(typed(&what, &doc)),
                ("apps/v1", "DaemonSet") => m.daemonsets.push(typed(&what, &doc)),
                ("apps/v1", "Deployment") => m.deployments.push(typed(&what, &doc)),
                ("v1", "Service") => m.services.push(typed(&what, &doc)),
                ("v1", "PersistentVolumeClaim") => m.claims.push(typed(&what, &doc)),
                (api, kind) => panic!("{what}: {api} {kind} is not expected in deploy/"),
            }
        }
    }
}

/// The documents of a (multi-document) YAML file, as JSON values; empty documents are skipped.
fn yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn one<'a, T>(items: &'a [T], what: &str) -> &'a T {
    assert_eq!(items.len(), 1, "expected exactly one {what}");
    &items[0]
}

fn pod_spec<'a>(template: &'a Option<PodSpec>, what: &str) -> &'a PodSpec {
    template.as_ref().unwrap_or_else(|| panic!("{what}: pod template has no spec"))
}

fn only_container<'a>(spec: &'a PodSpec, what: &str) -> &'a Container {
    one(&spec.containers, &format!("container in {what}"))
}

fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    c.env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("container {}: no env {name}", c.name))
}

/// The token comes from the Secret the README tells users to create.
fn assert_token_from_secret(c: &Container) {
    let e = env(c, "LITEOBS_TOKEN");
    assert!(e.value.is_none(), "container {}: LITEOBS_TOKEN must not be written in the manifest", c.name);
    let r = e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref());
    let r = r.unwrap_or_else(|| panic!("container {}: LITEOBS_TOKEN is not from a Secret", c.name));
    assert_eq!((r.name.as_str(), r.key.as_str()), ("liteobs-token", "token"), "container {}", c.name);
    assert_ne!(r.optional, Some(true), "container {}: the token Secret must not be optional", c.name);
}

/// The image is the one scripts/images.sh builds: liteobs-<what>:<workspace version>.
fn assert_image(c: &Container, what: &str) {
    let want = format!("liteobs-{what}:{}", workspace_version());
    assert_eq!(c.image.as_deref(), Some(want.as_str()), "container {}", c.name);
    assert_eq!(
        c.image_pull_policy.as_deref(),
        Some("IfNotPresent"),
        "container {}: images loaded with kind/minikube",
        c.name
    );
}

/// CPU in millicores or memory in bytes.
fn quantity(q: &Quantity) -> f64 {
    let s = q.0.as_str();
    let suffixes = [("m", 1e-3), ("Ki", 1024.0), ("Mi", 1024.0 * 1024.0), ("Gi", 1024.0 * 1024.0 * 1024.0)];
    for (suffix, factor) in suffixes {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap_or_else(|e| panic!("quantity {s}: {e}")) * factor;
        }
    }
    s.parse().unwrap_or_else(|e| panic!("quantity {s}: {e}"))
}

/// Requests and limits for both CPU and memory, each request at most its limit.
fn assert_resources(c: &Container) {
    let r: &ResourceRequirements =
        c.resources.as_ref().unwrap_or_else(|| panic!("container {}: no resources", c.name));
    let empty = BTreeMap::new();
    let requests = r.requests.as_ref().unwrap_or(&empty);
    let limits = r.limits.as_ref().unwrap_or(&empty);
    for res in ["cpu", "memory"] {
        let req = requests.get(res).unwrap_or_else(|| panic!("container {}: no {res} request", c.name));
        let lim = limits.get(res).unwrap_or_else(|| panic!("container {}: no {res} limit", c.name));
        assert!(
            quantity(req) <= quantity(lim),
            "container {}: {res} request {} above limit {}",
            c.name,
            req.0,
            lim.0
        );
    }
}

fn assert_healthz(probe: &Option<Probe>, c: &Container, kind: &str) {
    let get = probe.as_ref().and_then(|p| p.http_get.as_ref());
    let get = get.unwrap_or_else(|| panic!("container {}: no {kind} probe with httpGet", c.name));
    assert_eq!(get.path.as_deref(), Some("/healthz"), "{kind} probe path");
    let ports = c.ports.as_deref().unwrap_or_default();
    let known = match &get.port {
        IntOrString::Int(n) => ports.iter().any(|p| p.container_port == *n),
        IntOrString::String(name) => ports.iter().any(|p| p.name.as_deref() == Some(name.as_str())),
    };
    assert!(known, "container {}: {kind} probe port {:?} is not a container port", c.name, get.port);
}

#[test]
fn every_manifest_parses_into_the_kubernetes_types() {
    let m = load();
    let ns = one(&m.namespaces, "Namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some(m.namespace.as_str()), "kustomization namespace");
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("pod-security.kubernetes.io/enforce").map(String::as_str),
        Some("privileged"),
        "the agent needs the privileged Pod Security level"
    );
    for (kind, n) in [("DaemonSet", m.daemonsets.len()), ("Deployment", m.deployments.len())] {
        assert_eq!(n, 1, "one {kind}");
    }
    assert_eq!((m.services.len(), m.claims.len()), (1, 1), "one Service and one PersistentVolumeClaim");
}

#[test]
fn agent_daemonset_runs_like_the_e2e_on_every_node() {
    let m = load();
    let ds = one(&m.daemonsets, "DaemonSet");
    let what = "DaemonSet liteobs-agent";
    assert_eq!(ds.metadata.name.as_deref(), Some("liteobs-agent"));
    let spec = ds.spec.as_ref().expect("DaemonSet spec");
    let template_labels =
        spec.template.metadata.as_ref().and_then(|md| md.labels.clone()).unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)),
        "{what}: selector"
    );

    let pod = pod_spec(&spec.template.spec, what);
    assert_eq!(pod.host_network, Some(true), "{what}: hostNetwork");
    assert_eq!(pod.host_pid, Some(true), "{what}: hostPID");
    assert_eq!(
        pod.dns_policy.as_deref(),
        Some("ClusterFirstWithHostNet"),
        "{what}: Service names on the host network"
    );
    let tolerations = pod.tolerations.as_deref().unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        "{what}: a toleration of every taint (operator Exists, no key, no effect), to run on every node"
    );

    let c = only_container(pod, what);
    assert_image(c, "agent");
    let sc = c.security_context.as_ref().expect("agent securityContext");
    assert_ne!(sc.privileged, Some(true), "{what}: not privileged");
    let caps = sc.capabilities.as_ref().expect("agent capabilities");
    let added: BTreeSet<&str> = caps.add.as_deref().unwrap_or_default().iter().map(String::as_str).collect();
    let want: BTreeSet<&str> =
        ["BPF", "PERFMON", "NET_RAW", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"].into();
    assert_eq!(added, want, "{what}: capabilities added (exactly these; see the comments in agent.yaml)");
    assert_eq!(caps.add.as_ref().map(Vec::len), Some(want.len()), "{what}: a capability listed twice");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{what}: every other capability dropped");
    assert_eq!(sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("Unconfined"), "{what}: seccomp");

    let node = env(c, "NODE_NAME").value_from.as_ref().and_then(|v| v.field_ref.as_ref());
    assert_eq!(
        node.map(|f| f.field_path.as_str()),
        Some("spec.nodeName"),
        "{what}: NODE_NAME from the downward API"
    );
    assert_token_from_secret(c);
    assert_resources(c);

    // The agent uploads to the Service, by its cluster DNS name.
    let svc = one(&m.services, "Service");
    let port = svc.spec.as_ref().and_then(|s| s.ports.as_deref()).and_then(|p| p.first()).map(|p| p.port);
    let url = format!(
        "http://{}.{}.svc:{}",
        svc.metadata.name.as_deref().unwrap_or_default(),
        m.namespace,
        port.expect("Service port")
    );
    let args = c.args.as_deref().unwrap_or_default();
    let server_arg = args.iter().position(|a| a == "-server").and_then(|i| args.get(i + 1));
    assert_eq!(server_arg, Some(&url), "{what}: -server is the Service");

    // tracefs and bpffs come from the node, read-only.
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    for path in ["/sys/kernel/tracing", "/sys/fs/bpf"] {
        let mount = mounts
            .iter()
            .find(|v| v.mount_path == path)
            .unwrap_or_else(|| panic!("{what}: no mount at {path}"));
        assert_eq!(mount.read_only, Some(true), "{what}: {path} read-only");
        let volume = pod.volumes.as_deref().unwrap_or_default().iter().find(|v| v.name == mount.name);
        let host = volume
            .and_then(|v| v.host_path.as_ref())
            .unwrap_or_else(|| panic!("{what}: {path} is not a hostPath"));
        assert_eq!(host.path, path, "{what}: hostPath for {path}");
    }
}

#[test]
fn agent_reads_the_container_runtime_socket_from_a_read_only_host_mount() {
    let m = load();
    let ds = one(&m.daemonsets, "DaemonSet");
    let what = "DaemonSet liteobs-agent";
    let spec = ds.spec.as_ref().expect("DaemonSet spec");
    let pod = pod_spec(&spec.template.spec, what);
    let c = only_container(pod, what);
    // The socket the agent asks (its flag, else the agent's default) ...
    let args = c.args.as_deref().unwrap_or_default();
    let socket = args
        .iter()
        .position(|a| a == "-containerd-socket")
        .and_then(|i| args.get(i + 1))
        .map_or("/run/containerd/containerd.sock", String::as_str);
    assert!(!args.iter().any(|a| a == "-containers" || a == "off"), "{what}: container attribution left on");
    // ... lies in a read-only mount of the same host directory (a directory rather than the
    // socket file, so that a restarted runtime's new socket is seen).
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let mount = mounts
        .iter()
        .filter(|v| socket.starts_with(&format!("{}/", v.mount_path.trim_end_matches('/'))))
        .max_by_key(|v| v.mount_path.len())
        .unwrap_or_else(|| panic!("{what}: no mount holds {socket}"));
    assert_eq!(mount.read_only, Some(true), "{what}: {} must be read-only", mount.mount_path);
    let volume = pod.volumes.as_deref().unwrap_or_default().iter().find(|v| v.name == mount.name);
    let host = volume
        .and_then(|v| v.host_path.as_ref())
        .unwrap_or_else(|| panic!("{what}: {} is not a hostPath", mount.mount_path));
    assert_eq!(
        host.path, mount.mount_path,
        "{what}: the runtime's directory at the same path as on the node"
    );
    assert_ne!(host.type_.as_deref(), Some("Socket"), "{what}: mount the directory, not the socket file");
}

#[test]
fn server_deployment_service_and_volume_fit_together() {
    let m = load();
    let dep = one(&m.deployments, "Deployment");
    let what = "Deployment liteobs-server";
    let spec = dep.spec.as_ref().expect("Deployment spec");
    assert_eq!(spec.replicas, Some(1), "{what}: one writer for the embedded database");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "{what}: never two pods on one volume"
    );
    let template_labels =
        spec.template.metadata.as_ref().and_then(|md| md.labels.clone()).unwrap_or_default();

    let pod = pod_spec(&spec.template.spec, what);
    let c = only_container(pod, what);
    assert_image(c, "server");
    assert_healthz(&c.readiness_probe, c, "readiness");
    assert_healthz(&c.liveness_probe, c, "liveness");
    assert_token_from_secret(c);
    assert_resources(c);

    // Non-root, as the image's own user (deploy/docker/server.Dockerfile).
    let psc = pod.security_context.as_ref().expect("server pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
    let dockerfile =
        std::fs::read_to_string(deploy_dir().join("docker/server.Dockerfile")).expect("server.Dockerfile");
    let user =
        dockerfile.lines().find_map(|l| l.strip_prefix("USER ")).expect("server.Dockerfile has a USER");
    let uid: i64 = user.split(':').next().and_then(|u| u.trim().parse().ok()).expect("numeric USER");
    assert_eq!(psc.run_as_user, Some(uid), "{what}: runAsUser is the image's USER");
    assert_eq!(psc.fs_group, Some(uid), "{what}: fsGroup makes the volume writable");

    // The database lives on the claim, under the mount.
    let claim = one(&m.claims, "PersistentVolumeClaim");
    let claim_name = claim.metadata.name.as_deref().expect("claim name");
    let volume = pod
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.persistent_volume_claim.as_ref().is_some_and(|p| p.claim_name == claim_name));
    let volume = volume.unwrap_or_else(|| panic!("{what}: no volume from claim {claim_name}"));
    let mount = c.volume_mounts.as_deref().unwrap_or_default().iter().find(|v| v.name == volume.name);
    let mount_path = &mount.unwrap_or_else(|| panic!("{what}: claim volume not mounted")).mount_path;
    let args = c.args.as_deref().unwrap_or_default();
    let db_path = args.iter().position(|a| a == "-db-path").and_then(|i| args.get(i + 1)).expect("-db-path");
    assert!(
        db_path.starts_with(&format!("{mount_path}/")),
        "{what}: -db-path {db_path} outside {mount_path}"
    );
    let listen = args.iter().position(|a| a == "-listen").and_then(|i| args.get(i + 1)).expect("-listen");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "{what}: -listen {listen} must accept connections from other pods"
    );

    // The Service selects these pods and reaches the named port.
    assert_service_reaches(one(&m.services, "Service"), &template_labels, c, listen);
}

/// Service `svc` selects the pods labelled `template_labels` (and no selector is empty), and
/// its targetPort is a port of container `c`, as is the port of `c`'s `-listen` (`listen`).
fn assert_service_reaches(
    svc: &Service,
    template_labels: &BTreeMap<String, String>,
    c: &Container,
    listen: &str,
) {
    let what = format!("container {}", c.name);
    let sspec = svc.spec.as_ref().expect("Service spec");
    let selector = sspec.selector.clone().unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)),
        "Service selector {selector:?} does not select the pods ({template_labels:?})"
    );
    let sport = one(sspec.ports.as_deref().unwrap_or_default(), "Service port");
    let target = sport.target_port.as_ref().expect("Service targetPort");
    let ports = c.ports.as_deref().unwrap_or_default();
    let ok = match target {
        IntOrString::Int(n) => ports.iter().any(|p| p.container_port == *n),
        IntOrString::String(name) => ports.iter().any(|p| p.name.as_deref() == Some(name.as_str())),
    };
    assert!(ok, "Service targetPort {target:?} is not a container port");
    let listen_port: i32 = listen.rsplit(':').next().and_then(|p| p.parse().ok()).expect("-listen port");
    assert!(
        ports.iter().any(|p| p.container_port == listen_port),
        "{what}: -listen port is the container port"
    );
}

/// What `kubectl apply -k deploy/` would send: kustomize (inside kubectl) builds it, every object
/// lands in the kustomization's namespace, and it is the same objects as the files.
#[test]
fn kustomize_builds_the_same_objects_in_one_namespace() {
    let out = match std::process::Command::new("kubectl").args(["kustomize"]).arg(deploy_dir()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip_missing_tool("kustomize build (kubectl kustomize deploy/)", "kubectl", "kubectl");
            return;
        }
        Err(e) => panic!("running kubectl kustomize: {e}"),
    };
    assert!(out.status.success(), "kubectl kustomize deploy/:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let m = load();
    let mut built: Vec<(String, String, Option<String>)> = serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize output is YAML"))
        .map(|v| {
            let md = &v["metadata"];
            (
                v["kind"].as_str().unwrap_or_default().to_owned(),
                md["name"].as_str().unwrap_or_default().to_owned(),
                md["namespace"].as_str().map(str::to_owned),
            )
        })
        .collect();
    built.sort();
    let ns = Some(m.namespace.clone());
    let mut want = vec![
        ("DaemonSet".to_owned(), "liteobs-agent".to_owned(), ns.clone()),
        ("Deployment".to_owned(), "liteobs-server".to_owned(), ns.clone()),
        ("Namespace".to_owned(), m.namespace.clone(), None),
        ("PersistentVolumeClaim".to_owned(), "liteobs-data".to_owned(), ns.clone()),
        ("Service".to_owned(), "liteobs-server".to_owned(), ns),
    ];
    want.sort();
    assert_eq!(built, want);
}

#[test]
fn a_broken_manifest_is_caught() {
    // The round trip is what catches fields the API does not have.
    let doc: Value = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"hostNetwrk": true, "containers": []}}}
    });
    let caught = std::panic::catch_unwind(|| typed::<DaemonSet>("test", &doc));
    let message =
        caught.err().and_then(|e| e.downcast_ref::<String>().cloned()).expect("a panic with a message");
    assert!(message.contains(".spec.template.spec.hostNetwrk is not a field"), "{message}");
}

/// `kubectl kustomize` of `dir` as JSON documents, or None (skipped) without kubectl.
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let out = match std::process::Command::new("kubectl").args(["kustomize"]).arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip_missing_tool("kustomize build", "kubectl", "kubectl");
            return None;
        }
        Err(e) => panic!("running kubectl kustomize: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    Some(
        serde_norway::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).expect("kustomize output is YAML"))
            .collect(),
    )
}

/// The Secret key that `path` in container `c` is: the read-only mount it lies under, the Secret
/// volume behind that mount, and the item mapped to the rest of the path.
fn secret_file(spec: &PodSpec, c: &Container, path: &str) -> (String, String) {
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let (mount, rest) = mounts
        .iter()
        .find_map(|m| path.strip_prefix(&format!("{}/", m.mount_path)).map(|rest| (m, rest)))
        .unwrap_or_else(|| panic!("container {}: {path} is under no volume mount", c.name));
    assert_eq!(mount.read_only, Some(true), "container {}: {} must be read-only", c.name, mount.mount_path);
    let volume = spec.volumes.as_deref().unwrap_or_default().iter().find(|v| v.name == mount.name);
    let secret = volume
        .and_then(|v| v.secret.as_ref())
        .unwrap_or_else(|| panic!("container {}: {path} is not on a Secret volume", c.name));
    let key = match &secret.items {
        Some(items) => items
            .iter()
            .find(|i| i.path == rest)
            .unwrap_or_else(|| panic!("container {}: no item of the Secret is {rest}", c.name))
            .key
            .clone(),
        None => rest.to_owned(),
    };
    (secret.secret_name.clone().unwrap_or_default(), key)
}

fn flag<'a>(c: &'a Container, name: &str) -> &'a str {
    let args = c.args.as_deref().unwrap_or_default();
    let at = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("container {}: no {name} in {args:?}", c.name));
    args.get(at + 1).unwrap_or_else(|| panic!("container {}: {name} has no value", c.name))
}

/// The manifests of deploy/ (its YAML files and those of its directories: base/, tls/,
/// overlays/*; not check/ or docker/) copied to a temporary directory, to be built with a change.
fn copy_manifests() -> tempfile::TempDir {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name");
            if path.is_dir() && !["check", "docker", "target"].iter().any(|n| name == *n) {
                copy_dir(&path, &to.join(name));
            } else if path.extension().is_some_and(|e| e == "yaml") {
                std::fs::copy(&path, to.join(name)).expect("copy");
            }
        }
    }
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(&deploy_dir(), copy.path());
    copy
}

/// deploy/tls/, enabled the way deploy/kustomization.yaml says (uncommenting `components: [tls]`):
/// one Secret `liteobs-tls` gives the server its certificate and key and the agents the CA, the
/// agents upload to the Service over https, the probes speak HTTPS, and nothing else changes.
#[test]
fn tls_component_wires_one_secret_into_server_and_agent() {
    let dir = deploy_dir();
    let copy = copy_manifests();
    let k = std::fs::read_to_string(copy.path().join("kustomization.yaml")).expect("kustomization.yaml");
    assert!(
        k.contains("\n# components: [tls]\n"),
        "deploy/kustomization.yaml must offer `# components: [tls]`"
    );
    std::fs::write(
        copy.path().join("kustomization.yaml"),
        k.replace("\n# components: [tls]\n", "\ncomponents: [tls]\n"),
    )
    .expect("write");
    let (Some(base), Some(built)) = (kustomize(&dir), kustomize(copy.path())) else { return };
    let kinds = |docs: &[Value]| -> Vec<(String, String)> {
        let mut v: Vec<_> = docs
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap_or_default().to_owned(),
                    d["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(kinds(&built), kinds(&base), "the component adds or removes objects");
    let find = |kind: &str| built.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    let server: Deployment = typed("tls Deployment", find("Deployment"));
    let agent: DaemonSet = typed("tls DaemonSet", find("DaemonSet"));
    let service: Service = typed("tls Service", find("Service"));
    let m = load();

    let spec = server.spec.as_ref().expect("Deployment spec");
    let pod = pod_spec(&spec.template.spec, "server");
    let c = only_container(pod, "server");
    assert_eq!(secret_file(pod, c, flag(c, "-tls-cert")), ("liteobs-tls".to_owned(), "tls.crt".to_owned()));
    assert_eq!(secret_file(pod, c, flag(c, "-tls-key")), ("liteobs-tls".to_owned(), "tls.key".to_owned()));
    for (probe, kind) in [(&c.readiness_probe, "readiness"), (&c.liveness_probe, "liveness")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{kind} probe"));
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"), "{kind} probe must speak HTTPS");
    }

    let spec = agent.spec.as_ref().expect("DaemonSet spec");
    let pod = pod_spec(&spec.template.spec, "agent");
    let c = only_container(pod, "agent");
    let svc_name = service.metadata.name.as_deref().expect("Service name");
    let port =
        one(service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default(), "Service port").port;
    assert_eq!(flag(c, "-server"), format!("https://{svc_name}.{}.svc:{port}", m.namespace));
    assert_eq!(secret_file(pod, c, flag(c, "-ca-file")), ("liteobs-tls".to_owned(), "ca.crt".to_owned()));
    // The agent's volume carries the CA only, never the server's key.
    let agent_tls = pod.volumes.as_deref().unwrap_or_default().iter().filter_map(|v| v.secret.as_ref());
    for secret in agent_tls {
        let keys: Vec<&str> =
            secret.items.as_deref().unwrap_or_default().iter().map(|i| i.key.as_str()).collect();
        assert!(secret.items.is_some() && !keys.contains(&"tls.key"), "agent Secret volume: {keys:?}");
    }
    // The base's other agent flags survive the patch.
    let base_agent = one(&m.daemonsets, "DaemonSet");
    let base_c =
        only_container(pod_spec(&base_agent.spec.as_ref().expect("spec").template.spec, "agent"), "agent");
    assert_eq!(flag(c, "-iface"), flag(base_c, "-iface"));
    assert_eq!(flag(c, "-metrics-listen"), flag(base_c, "-metrics-listen"), "the patch keeps the metrics");
    assert!(flag(base_c, "-server").starts_with("http://"), "the base stays plain http");
}

fn clickhouse_overlay() -> PathBuf {
    deploy_dir().join("overlays/clickhouse")
}

/// (kind, name, namespace) of every document, sorted.
fn object_ids(docs: &[Value]) -> Vec<(String, String, Option<String>)> {
    let mut ids: Vec<_> = docs
        .iter()
        .map(|d| {
            let md = &d["metadata"];
            (
                d["kind"].as_str().unwrap_or_default().to_owned(),
                md["name"].as_str().unwrap_or_default().to_owned(),
                md["namespace"].as_str().map(str::to_owned),
            )
        })
        .collect();
    ids.sort();
    ids
}

/// The one document of `kind` in a kustomize build.
fn only_of<'a>(docs: &'a [Value], kind: &str, what: &str) -> &'a Value {
    let of: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(of.len(), 1, "{what}: expected exactly one {kind}");
    of[0]
}

/// The JSON paths in `v` of any key in `keys`.
fn keys_in(v: &Value, keys: &[&str], path: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, sub) in o {
                let p = format!("{path}.{k}");
                if keys.contains(&k.as_str()) {
                    found.push(p.clone());
                }
                keys_in(sub, keys, &p, found);
            }
        }
        Value::Array(a) => {
            a.iter().enumerate().for_each(|(i, sub)| keys_in(sub, keys, &format!("{path}[{i}]"), found))
        }
        _ => {}
    }
}

/// What a setting of container `c` is: its flag `-name VALUE` in the args, else its environment
/// variable `env_name` written in the manifest.
fn setting(c: &Container, name: &str, env_name: &str) -> Option<String> {
    let args = c.args.as_deref().unwrap_or_default();
    let from_args = args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    from_args.or_else(|| {
        c.env.as_deref().unwrap_or_default().iter().find(|e| e.name == env_name).and_then(|e| e.value.clone())
    })
}

/// deploy/overlays/clickhouse/ (`kubectl apply -k deploy/overlays/clickhouse`): the server on
/// ClickHouse as three stateless replicas of a Deployment, no claim and no data volume, the
/// ClickHouse Service and password wired in, a PodDisruptionBudget and a spread over nodes;
/// everything else (the Service, the agent, the server's probes, resources, security context,
/// token) exactly the base's.
#[test]
fn clickhouse_overlay_runs_stateless_servers_behind_the_same_service() {
    let (Some(base), Some(built)) = (kustomize(&deploy_dir()), kustomize(&clickhouse_overlay())) else {
        return;
    };
    let m = load();
    let ns = Some(m.namespace.clone());

    // Every file of the overlay is one of its resources or patches, and the other way round.
    let dir = clickhouse_overlay();
    let k: Value = yaml(&dir.join("kustomization.yaml")).pop().expect("overlay kustomization.yaml");
    let resources = k["resources"].as_array().expect("overlay resources").iter().filter_map(Value::as_str);
    let patches = k["patches"].as_array().expect("overlay patches").iter().filter_map(|p| p["path"].as_str());
    let used: BTreeSet<String> =
        resources.chain(patches).filter(|r| dir.join(r).is_file()).map(str::to_owned).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("deploy/overlays/clickhouse/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(on_disk, used, "deploy/overlays/clickhouse/*.yaml and its kustomization.yaml differ");

    // The base's objects but the Namespace (deploy/namespace.yaml, applied first) and the claim,
    // plus the PodDisruptionBudget; all in the namespace, none keeping state.
    let mut want: Vec<_> = object_ids(&base)
        .into_iter()
        .filter(|(kind, _, _)| kind != "Namespace" && kind != "PersistentVolumeClaim")
        .collect();
    want.push(("PodDisruptionBudget".to_owned(), "liteobs-server".to_owned(), ns.clone()));
    want.sort();
    assert_eq!(object_ids(&built), want, "the overlay's objects");
    let mut stateful = Vec::new();
    for doc in &built {
        keys_in(doc, &["volumeClaimTemplates", "persistentVolumeClaim"], "", &mut stateful);
    }
    assert!(stateful.is_empty(), "no claim in the ClickHouse overlay: {stateful:?}");
    assert!(built.iter().all(|d| d["kind"] != "StatefulSet"), "a Deployment, not a StatefulSet");

    let what = "clickhouse Deployment liteobs-server";
    let server: Deployment = typed(what, only_of(&built, "Deployment", "overlay"));
    let base_server: Deployment = typed("base Deployment", only_of(&base, "Deployment", "base"));
    let spec = server.spec.as_ref().expect("Deployment spec");
    let base_spec = base_server.spec.as_ref().expect("base Deployment spec");
    assert_eq!(spec.replicas, Some(3), "{what}: three replicas");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate"),
        "{what}: nothing on disk to hand over, so rolling updates"
    );
    assert_eq!(spec.selector, base_spec.selector, "{what}: selector");
    assert_eq!(spec.template.metadata, base_spec.template.metadata, "{what}: labels and annotations");
    let template_labels =
        spec.template.metadata.as_ref().and_then(|md| md.labels.clone()).unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)),
        "{what}: selector selects the template"
    );

    let pod = pod_spec(&spec.template.spec, what);
    let base_pod = pod_spec(&base_spec.template.spec, "base server");
    let c = only_container(pod, what);
    let base_c = only_container(base_pod, "base server");
    assert_image(c, "server");
    assert_healthz(&c.readiness_probe, c, "readiness");
    assert_healthz(&c.liveness_probe, c, "liveness");
    assert_token_from_secret(c);
    assert_resources(c);
    assert_eq!(pod.security_context, base_pod.security_context, "{what}: pod securityContext as in the base");
    assert_eq!(c.security_context, base_c.security_context, "{what}: securityContext as in the base");
    assert_eq!((&c.readiness_probe, &c.liveness_probe), (&base_c.readiness_probe, &base_c.liveness_probe));
    assert_eq!((&c.resources, &c.ports), (&base_c.resources, &base_c.ports), "{what}: resources, ports");
    assert_eq!(pod.automount_service_account_token, Some(false), "{what}: no API token");

    // The data volume and its mount are gone, the rest (/tmp) is the base's.
    let claim_volumes: BTreeSet<&str> = base_pod
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|v| v.persistent_volume_claim.is_some())
        .map(|v| v.name.as_str())
        .collect();
    assert!(!claim_volumes.is_empty(), "the base keeps its database on a claim");
    let kept = |vs: &[k8s_openapi::api::core::v1::Volume]| -> Vec<String> {
        vs.iter().filter(|v| !claim_volumes.contains(v.name.as_str())).map(|v| v.name.clone()).collect()
    };
    let names = |vs: &[k8s_openapi::api::core::v1::Volume]| -> Vec<String> {
        vs.iter().map(|v| v.name.clone()).collect()
    };
    assert_eq!(
        names(pod.volumes.as_deref().unwrap_or_default()),
        kept(base_pod.volumes.as_deref().unwrap_or_default()),
        "{what}: the base's volumes but the claim's"
    );
    let mounts = |c: &Container| -> Vec<(String, String)> {
        c.volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|v| !claim_volumes.contains(v.name.as_str()))
            .map(|v| (v.name.clone(), v.mount_path.clone()))
            .collect()
    };
    assert_eq!(mounts(c), mounts(base_c), "{what}: the base's mounts but the claim's");
    assert_eq!(
        mounts(c).len(),
        c.volume_mounts.as_deref().unwrap_or_default().len(),
        "{what}: a mount of a claim volume"
    );

    // ClickHouse: the flags, the Service `clickhouse` of this namespace, the password from its
    // Secret (optional), and no database file.
    assert_eq!(flag(c, "-db-type"), "clickhouse", "{what}: -db-type");
    assert_eq!(
        setting(c, "-clickhouse-url", "LITEOBS_CLICKHOUSE_URL").as_deref(),
        Some("http://clickhouse:8123"),
        "{what}: ClickHouse's HTTP interface, the Service `clickhouse` in the same namespace"
    );
    let args = c.args.as_deref().unwrap_or_default();
    for gone in ["-db-path", "-clickhouse-password"] {
        assert!(!args.iter().any(|a| a == gone), "{what}: {gone} in {args:?}");
    }
    let password = env(c, "LITEOBS_CLICKHOUSE_PASSWORD");
    assert!(password.value.is_none(), "{what}: the password must not be written in the manifest");
    let r = password.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref());
    let r = r.unwrap_or_else(|| panic!("{what}: LITEOBS_CLICKHOUSE_PASSWORD is not from a Secret"));
    assert_eq!((r.name.as_str(), r.key.as_str()), ("liteobs-clickhouse", "password"), "{what}: password");
    assert_eq!(r.optional, Some(true), "{what}: a ClickHouse without a password needs no Secret");
    // Every other flag of the base's, unchanged.
    let base_args = base_c.args.as_deref().unwrap_or_default();
    for name in base_args.iter().filter(|a| a.starts_with('-') && *a != "-db-type" && *a != "-db-path") {
        assert_eq!(flag(c, name), flag(base_c, name), "{what}: {name} as in the base");
    }

    // Spread over nodes; disruptions leave two of the three.
    let spread = pod.topology_spread_constraints.as_deref().unwrap_or_default();
    let by_node = spread.iter().find(|t| t.topology_key == "kubernetes.io/hostname");
    let by_node = by_node.unwrap_or_else(|| panic!("{what}: no topology spread over kubernetes.io/hostname"));
    let spread_labels =
        by_node.label_selector.as_ref().and_then(|l| l.match_labels.clone()).unwrap_or_default();
    assert!(
        !spread_labels.is_empty() && spread_labels.iter().all(|(k, v)| template_labels.get(k) == Some(v)),
        "{what}: the spread counts these pods"
    );
    let pdb: PodDisruptionBudget =
        typed("PodDisruptionBudget", only_of(&built, "PodDisruptionBudget", "overlay"));
    let pdb_spec = pdb.spec.as_ref().expect("PodDisruptionBudget spec");
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(2)), "PodDisruptionBudget: minAvailable 2");
    assert_eq!(
        pdb_spec.selector.as_ref(),
        Some(&spec.selector),
        "PodDisruptionBudget: the Deployment's pods"
    );

    // The base's Service selects these pods; the agents, the base's, upload to it.
    let service: Service = typed("clickhouse Service", only_of(&built, "Service", "overlay"));
    assert_eq!(
        only_of(&built, "Service", "overlay"),
        only_of(&base, "Service", "base"),
        "the base's Service"
    );
    assert_service_reaches(&service, &template_labels, c, flag(c, "-listen"));
    let agent: DaemonSet = typed("clickhouse DaemonSet", only_of(&built, "DaemonSet", "overlay"));
    assert_eq!(
        only_of(&built, "DaemonSet", "overlay"),
        only_of(&base, "DaemonSet", "base"),
        "the base's agent"
    );
    let agent_c =
        only_container(pod_spec(&agent.spec.as_ref().expect("spec").template.spec, "agent"), "agent");
    let port =
        one(service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default(), "Service port").port;
    let svc_name = service.metadata.name.as_deref().expect("Service name");
    assert_eq!(flag(agent_c, "-server"), format!("http://{svc_name}.{}.svc:{port}", m.namespace));
}

/// The overlay with the tls component, as its kustomization.yaml says (`components:
/// [../../tls]`): both changes hold, the ClickHouse flags and the TLS ones.
#[test]
fn clickhouse_overlay_takes_the_tls_component() {
    let copy = copy_manifests();
    let overlay = copy.path().join("overlays/clickhouse");
    let k = std::fs::read_to_string(overlay.join("kustomization.yaml")).expect("kustomization.yaml");
    assert!(k.contains("`components: [../../tls]`"), "the overlay's kustomization.yaml says how to add TLS");
    std::fs::write(overlay.join("kustomization.yaml"), format!("{k}components: [../../tls]\n"))
        .expect("write");
    let Some(built) = kustomize(&overlay) else { return };
    let server: Deployment = typed("clickhouse+tls Deployment", only_of(&built, "Deployment", "overlay+tls"));
    let spec = server.spec.as_ref().expect("Deployment spec");
    let pod = pod_spec(&spec.template.spec, "server");
    let c = only_container(pod, "server");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(flag(c, "-db-type"), "clickhouse");
    assert_eq!(flag(c, "-clickhouse-url"), "http://clickhouse:8123");
    assert_eq!(secret_file(pod, c, flag(c, "-tls-cert")), ("liteobs-tls".to_owned(), "tls.crt".to_owned()));
    assert_eq!(secret_file(pod, c, flag(c, "-tls-key")), ("liteobs-tls".to_owned(), "tls.key".to_owned()));
    assert!(pod.volumes.as_deref().unwrap_or_default().iter().all(|v| v.persistent_volume_claim.is_none()));
    let agent: DaemonSet = typed("clickhouse+tls DaemonSet", only_of(&built, "DaemonSet", "overlay+tls"));
    let agent_c =
        only_container(pod_spec(&agent.spec.as_ref().expect("spec").template.spec, "agent"), "agent");
    assert!(flag(agent_c, "-server").starts_with("https://liteobs-server."), "agents upload over https");
}

/// The port a probe or annotation names: a number, or a container port's name.
fn port_number(c: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("container {}: no port named {name}", c.name))
                .container_port
        }
    }
}

/// Both programs serve their metrics where Prometheus' pod annotations say (the agent on 9469,
/// the server on 9470, by -metrics-listen, each a named container port), and the agent's probes
/// ask /healthz on that listener.
#[test]
fn metrics_are_served_where_the_annotations_point() {
    let m = load();
    let ds = one(&m.daemonsets, "DaemonSet");
    let dep = one(&m.deployments, "Deployment");
    let agent_spec = ds.spec.as_ref().expect("DaemonSet spec");
    let server_spec = dep.spec.as_ref().expect("Deployment spec");
    for (what, template, port) in
        [("agent", &agent_spec.template, 9469), ("server", &server_spec.template, 9470)]
    {
        let annotations =
            template.metadata.as_ref().and_then(|md| md.annotations.clone()).unwrap_or_default();
        let get = |k: &str| annotations.get(k).map(String::as_str);
        assert_eq!(get("prometheus.io/scrape"), Some("true"), "{what}: scrape annotation");
        assert_eq!(get("prometheus.io/path"), Some("/metrics"), "{what}: path annotation");
        assert_eq!(get("prometheus.io/port"), Some(port.to_string().as_str()), "{what}: port annotation");
        let c = only_container(pod_spec(&template.spec, what), what);
        let listen = flag(c, "-metrics-listen");
        assert_eq!(
            listen,
            format!("0.0.0.0:{port}"),
            "{what}: -metrics-listen on every address, port {port}"
        );
        assert_eq!(
            port_number(c, &IntOrString::String("metrics".into())),
            port,
            "{what}: a container port named metrics is the one -metrics-listen binds"
        );
    }
    let c = only_container(pod_spec(&agent_spec.template.spec, "agent"), "agent");
    for (probe, kind) in [(&c.readiness_probe, "readiness"), (&c.liveness_probe, "liveness")] {
        assert_healthz(probe, c, kind);
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("httpGet");
        assert_eq!(port_number(c, &get.port), 9469, "agent {kind} probe asks the metrics listener");
        assert_ne!(get.scheme.as_deref(), Some("HTTPS"), "the metrics listener is plain HTTP");
    }
    let liveness = c.liveness_probe.as_ref().expect("liveness");
    let grace = liveness.initial_delay_seconds.unwrap_or(0)
        + liveness.period_seconds.unwrap_or(10) * liveness.failure_threshold.unwrap_or(3);
    assert!(grace >= 60, "agent liveness: {grace} s is too short for loading eBPF on a busy node");
}
