//! The labels of containers, from the container runtime, cached for the capture thread.
//!
//! The capture thread asks [`RuntimeLabels::lookup`] once per container side of a record; it
//! must stay quick, so it only ever reads the cache under a mutex. A background thread
//! (`liteobs-runtime`) fills it: a `List` at start and every `refresh_every` (which also forgets
//! containers that are gone), and a `Get` for each container the cache does not know, asked
//! for by the capture thread. The first lookup of an unknown container waits for that `Get` at
//! most `miss_wait` (so a new pod's first record usually has its name); every other lookup
//! of a container being fetched answers "unknown" at once. A container the runtime does not
//! know, or any answer while the runtime is down, is remembered as unknown for
//! `negative_ttl`. At most `max_entries` containers are kept.
//!
//! A runtime that is down or absent is one warning (and one line when it answers again), the
//! records go out without pod fields, and it is asked again within 5 s (or `refresh_every` if shorter). Not for: the
//! wire protocol (`containerd.rs`).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::containerd::ContainerdClient;
use super::labels::{PodIdentity, pod_identity};
use super::protobuf::RuntimeContainer;

/// How soon a runtime that did not answer the list is asked again.
const RETRY_WHILE_DOWN: Duration = Duration::from_secs(5);

/// Settings of [`RuntimeLabels`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// containerd's socket (`-containerd-socket`).
    pub socket: PathBuf,
    /// containerd namespace of kubelet's containers.
    pub namespace: String,
    /// Deadline of one call.
    pub call_timeout: Duration,
    /// How often the whole list is asked for.
    pub refresh_every: Duration,
    /// How long "unknown" is remembered.
    pub negative_ttl: Duration,
    /// How long the first lookup of an unknown container waits for the runtime.
    pub miss_wait: Duration,
    /// Most containers cached.
    pub max_entries: usize,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "k8s.io".into(),
            call_timeout: Duration::from_secs(2),
            refresh_every: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(10),
            miss_wait: Duration::from_millis(50),
            max_entries: 16_384,
        }
    }
}

/// What [`RuntimeLabels`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeCounters {
    /// Lookups answered from the cache (known or remembered as unknown).
    pub hits: u64,
    /// Lookups of a container not in the cache (each asks the runtime once).
    pub misses: u64,
    /// Lookups that found the container being fetched and did not wait.
    pub pending: u64,
    /// Calls made to the runtime (List and Get).
    pub runtime_calls: u64,
    /// Calls that failed.
    pub runtime_errors: u64,
    /// Containers cached now.
    pub entries: u64,
}

enum Entry {
    /// Being fetched by the worker.
    Pending,
    /// What the runtime said; `expires` is set for "unknown" answers only.
    Known { identity: Option<Arc<PodIdentity>>, expires: Option<Instant> },
}

struct State {
    entries: HashMap<String, Entry>,
    queue: VecDeque<String>,
    stop: bool,
    counters: RuntimeCounters,
}

struct Shared {
    state: Mutex<State>,
    /// The worker waits on it for work.
    work: Condvar,
    /// Lookups wait on it for answers.
    answered: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a cache that is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Container ID → pod, cached, filled from the runtime by a thread of its own. See module docs.
pub struct RuntimeLabels {
    shared: Arc<Shared>,
    cfg: RuntimeConfig,
    worker: Option<JoinHandle<()>>,
}

impl RuntimeLabels {
    /// Starts the worker, which asks for the list at once.
    pub fn start(cfg: RuntimeConfig) -> RuntimeLabels {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                entries: HashMap::new(),
                queue: VecDeque::new(),
                stop: false,
                counters: RuntimeCounters::default(),
            }),
            work: Condvar::new(),
            answered: Condvar::new(),
        });
        let worker = {
            let shared = shared.clone();
            let cfg = cfg.clone();
            std::thread::Builder::new().name("liteobs-runtime".into()).spawn(move || worker(&shared, &cfg))
        };
        let worker = match worker {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "containers: cannot start the runtime thread; records carry no pod fields");
                None
            }
        };
        RuntimeLabels { shared, cfg, worker }
    }

    pub fn counters(&self) -> RuntimeCounters {
        let st = self.shared.lock();
        RuntimeCounters { entries: st.entries.len() as u64, ..st.counters }
    }

    /// The pod of container `id`, if the runtime says it has one (see the module docs for how
    /// long this may wait: at most `miss_wait`, once per container).
    pub fn lookup(&self, id: &str) -> Option<Arc<PodIdentity>> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        match st.entries.get(id) {
            Some(Entry::Known { identity, expires }) if expires.is_none_or(|e| now < e) => {
                let identity = identity.clone();
                st.counters.hits += 1;
                return identity;
            }
            Some(Entry::Pending) => {
                st.counters.pending += 1;
                return None;
            }
            _ => {}
        }
        self.worker.as_ref()?;
        st.counters.misses += 1;
        if st.entries.len() >= self.cfg.max_entries {
            evict(&mut st.entries, now);
            if st.entries.len() >= self.cfg.max_entries {
                return None;
            }
        }
        st.entries.insert(id.to_owned(), Entry::Pending);
        st.queue.push_back(id.to_owned());
        self.shared.work.notify_one();
        let deadline = now + self.cfg.miss_wait;
        loop {
            match st.entries.get(id) {
                Some(Entry::Known { identity, .. }) => return identity.clone(),
                Some(Entry::Pending) => {}
                None => return None,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self.shared.answered.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Drop for RuntimeLabels {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Makes room: expired "unknown" answers go first, then every "unknown" answer.
fn evict(entries: &mut HashMap<String, Entry>, now: Instant) {
    entries.retain(|_, e| !matches!(e, Entry::Known { expires: Some(x), .. } if *x <= now));
    let before = entries.len();
    entries.retain(|_, e| !matches!(e, Entry::Known { expires: Some(_), .. }));
    if entries.len() == before {
        tracing::debug!(entries = before, "containers: cache full of known containers");
    }
}

fn known(c: &RuntimeContainer) -> Entry {
    Entry::Known { identity: pod_identity(&c.labels).map(Arc::new), expires: None }
}

/// Whether the runtime answered last time, to warn once per outage.
struct Health {
    down: bool,
    ever_answered: bool,
}

impl Health {
    fn failed(&mut self, client: &ContainerdClient, e: &dyn std::error::Error, every: Duration) {
        if !self.down {
            tracing::warn!(
                socket = %client.socket().display(),
                "containers: the container runtime does not answer ({e}); records carry no pod fields until it does (asked again every {every:?})"
            );
        }
        self.down = true;
    }

    fn answered(&mut self, client: &ContainerdClient, containers: Option<usize>) {
        if self.down || !self.ever_answered {
            tracing::info!(socket = %client.socket().display(), containers, "containers: the container runtime answers");
        }
        self.down = false;
        self.ever_answered = true;
    }
}

fn worker(shared: &Shared, cfg: &RuntimeConfig) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "containers: cannot start the runtime client; records carry no pod fields");
            return;
        }
    };
    let client = ContainerdClient::new(&cfg.socket, &cfg.namespace, cfg.call_timeout);
    let mut health = Health { down: false, ever_answered: false };
    let mut next_list = Instant::now();
    loop {
        let batch: Vec<String> = {
            let mut st = shared.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = Instant::now();
                if !st.queue.is_empty() || now >= next_list {
                    break;
                }
                st = shared.work.wait_timeout(st, next_list - now).unwrap_or_else(|p| p.into_inner()).0;
            }
            st.queue.drain(..).collect()
        };
        if Instant::now() >= next_list {
            next_list = Instant::now() + cfg.refresh_every;
            let listed = rt.block_on(client.list());
            let mut st = shared.lock();
            st.counters.runtime_calls += 1;
            match listed {
                Ok(containers) => {
                    health.answered(&client, Some(containers.len()));
                    let fresh: HashMap<String, Entry> =
                        containers.iter().map(|c| (c.id.clone(), known(c))).collect();
                    // Containers that are gone are forgotten; pending and "unknown" ones are kept
                    // unless the list answers them.
                    st.entries.retain(|_, e| !matches!(e, Entry::Known { expires: None, .. }));
                    let room = cfg.max_entries.saturating_sub(st.entries.len());
                    for (id, e) in fresh.into_iter().take(room) {
                        st.entries.insert(id, e);
                    }
                }
                Err(e) => {
                    st.counters.runtime_errors += 1;
                    drop(st);
                    let retry = cfg.refresh_every.min(RETRY_WHILE_DOWN);
                    next_list = Instant::now() + retry;
                    health.failed(&client, &e, retry);
                }
            }
            shared.answered.notify_all();
        }
        for id in batch {
            if !matches!(shared.lock().entries.get(&id), Some(Entry::Pending)) {
                continue;
            }
            let got = if health.down { None } else { Some(rt.block_on(client.get(&id))) };
            let mut st = shared.lock();
            let expires = Some(Instant::now() + cfg.negative_ttl);
            let entry = match got {
                Some(Ok(Some(c))) => {
                    st.counters.runtime_calls += 1;
                    health.answered(&client, None);
                    known(&c)
                }
                Some(Ok(None)) => {
                    st.counters.runtime_calls += 1;
                    Entry::Known { identity: None, expires }
                }
                Some(Err(e)) => {
                    st.counters.runtime_calls += 1;
                    st.counters.runtime_errors += 1;
                    drop(st);
                    health.failed(&client, &e, cfg.refresh_every.min(RETRY_WHILE_DOWN));
                    st = shared.lock();
                    Entry::Known { identity: None, expires }
                }
                // Down since the last call: not asked until the next refresh finds it back.
                None => Entry::Known { identity: None, expires },
            };
            st.entries.insert(id, entry);
            drop(st);
            shared.answered.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_runtime_answers_unknown_quickly_and_counts_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RuntimeConfig { socket: dir.path().join("none.sock"), ..RuntimeConfig::default() };
        let labels = RuntimeLabels::start(cfg);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(labels.lookup("abc"), None);
        }
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
        // The worker has tried the list (and maybe the Get) by now.
        let deadline = Instant::now() + Duration::from_secs(5);
        while labels.counters().runtime_errors == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let c = labels.counters();
        assert!(c.runtime_errors >= 1, "{c:?}");
        assert_eq!(c.misses, 1, "one miss, then pending or remembered as unknown: {c:?}");
    }
}
