//! Running the agent: wiring a packet source, the pipeline, attribution and a record sink
//! together, on the threads the binary uses.
//!
//! * [`drive`] is the capture loop, synchronous and shared by every mode (and by the tests,
//!   which replay fixtures through it): read a frame, push it through the pipeline, attribute
//!   the records it produced, merge the captures of one exchange ([`crate::merge`]) and emit
//!   them, expire idle flows, log counters, and on a stop drain what the source already holds
//!   before finishing.
//! * [`run`] is what `main` calls: it opens the source, starts [`drive`] on its own thread
//!   (libpcap blocks), and on the calling thread runs an actix runtime for the reporter (awc
//!   is single-threaded) and the SIGINT/SIGTERM handling. First signal: stop capturing, drain,
//!   and deliver what is held until `-shutdown-timeout` passes. Second signal: give up on
//!   delivery at once.
//!
//! Time: a replay runs on the file's clock (flows expire and merged records leave by packet
//! timestamps, so a replay's records do not depend on how fast it runs); a live capture runs on
//! the wall clock, so that flows expire and held records leave even when no packet arrives.

use std::fmt;
use std::io::{self, IsTerminal};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use liteobs_model::{ServerUrl, TS_MAX_MICROS, TS_MIN_MICROS, TrafficLog};
use serde::Serialize;
use tokio::sync::watch;

use crate::attribute::{Attributor, NoAttribution, Origin, PodAttribution};
use crate::capture::offline::OfflineSource;
use crate::capture::{CaptureError, Damage, KernelStats, Next, PacketSource, SourceStats};
use crate::config::{Config, resolve_node};
use crate::container::ContainerIdentity;
use crate::merge::{MergeConfig, MergeStats, NodeMerge};
use crate::metrics::{AgentMetrics, Endpoint, Phase, Published};
use crate::pidmap::{Mode, PidMap, PidMapConfig};
use crate::pipeline::{Counters, Pipeline, PipelineConfig};
use crate::report::stdout::ThreadedWriter;
use crate::report::{
    Overflow, RecordQueue, ReportCounters, ReportError, ReportStats, Reporter, ReporterConfig,
};
use crate::spool::{Spool, SpoolConfig, SpoolError};

/// Where [`drive`] puts records.
pub enum RecordSink {
    /// NDJSON on standard output, written by a thread of its own.
    Stdout(ThreadedWriter),
    /// The reporter's queue.
    Queue(Arc<RecordQueue>),
    /// Kept in memory (tests, tools).
    Collect(Vec<TrafficLog>),
}

impl RecordSink {
    fn emit(&mut self, records: &mut Vec<TrafficLog>) -> Result<(), RunError> {
        match self {
            RecordSink::Stdout(w) => w.write(records).map_err(RunError::from_stdout)?,
            RecordSink::Queue(q) => q.push(records),
            RecordSink::Collect(v) => v.append(records),
        }
        Ok(())
    }

    /// Makes what was emitted visible (live capture calls this on its ticks).
    fn flush(&mut self) -> Result<(), RunError> {
        match self {
            RecordSink::Stdout(w) => w.flush().map_err(RunError::from_stdout),
            _ => Ok(()),
        }
    }

    /// Everything emitted is written (or handed to the reporter's queue).
    fn finish(&mut self) -> Result<(), RunError> {
        match self {
            RecordSink::Stdout(w) => w.finish().map_err(RunError::from_stdout),
            _ => Ok(()),
        }
    }
}

/// Which clock expires idle flows.
#[derive(Clone)]
pub enum Clock {
    /// The packets' own timestamps (replays: deterministic).
    Packets,
    /// The wall clock, looked at every tick and whenever the source is idle (live capture), so
    /// that flows expire, records are flushed and counters logged while no packet arrives.
    /// Packet timestamps do not move it: one packet stamped in the future must not expire
    /// every connection.
    Wall(Arc<dyn WallClock>),
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock::Wall(Arc::new(SystemClock))
    }
}

/// The time a live capture runs on: passed in, so that tests move it themselves.
pub trait WallClock: Send + Sync {
    /// A monotonic instant, for intervals (ticks, counters).
    fn now(&self) -> Instant;
    /// Microseconds since the Unix epoch, the unit of packet timestamps, for idle expiry.
    fn now_us(&self) -> i64;
}

/// The system's clocks: [`Instant::now`] and [`SystemTime::now`].
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_us(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// How often [`drive`] expires flows, on its [`Clock`].
const EXPIRE_EVERY_US: i64 = 1_000_000;
/// Live: how often the wall clock is looked at (expiry, stdout flush, stats).
const TICK: Duration = Duration::from_millis(200);

/// Settings for [`drive`].
pub struct DriveOptions {
    pub clock: Clock,
    /// Log counters this often (wall clock); None: never during the run.
    pub stats_interval: Option<Duration>,
    /// Shows the file's progress; updated every few thousand packets.
    pub progress: Option<ProgressBar>,
    /// The on-node merge's hold and cap.
    pub merge: MergeConfig,
    /// Where counters are published for `-metrics-listen` (see [`crate::metrics`]).
    pub metrics: Option<Arc<Published>>,
}

/// Every counter worth logging, at one instant.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Snapshot {
    /// The pipeline's counters (packets, bytes, exchanges, parse errors, gaps, ...).
    #[serde(flatten)]
    pub pipeline: Counters,
    /// The on-node merge's (records merged, pushed out by its cap, held).
    #[serde(flatten)]
    pub merge: MergeStats,
    pub flows_open: usize,
    /// The kernel's (live capture only).
    pub kernel: Option<KernelStats>,
    pub unsupported_link: u64,
    /// Where a capture file is damaged (reading stopped there), if it is.
    pub damage: Option<Damage>,
    /// The reporter's (with a server only).
    pub report: Option<ReportStats>,
}

impl Snapshot {
    fn log(&self, message: &'static str) {
        let k = self.kernel.unwrap_or_default();
        let r = self.report.unwrap_or_default();
        let p = &self.pipeline;
        tracing::info!(
            packets = p.packets,
            bytes = p.bytes,
            kernel_received = k.received,
            kernel_dropped = k.dropped,
            kernel_if_dropped = k.if_dropped,
            flows_open = self.flows_open,
            exchanges = p.exchanges,
            parse_errors = p.parse_errors,
            gaps = p.gaps,
            merged_on_node = self.merge.merged_on_node,
            merge_overflow = self.merge.merge_overflow,
            merge_held = self.merge.merge_held,
            records_dropped = r.records_dropped,
            records_acked = r.records_acked,
            records_rejected = r.records_rejected,
            records_spooled = r.records_spooled,
            upload_failures = r.upload_failures,
            "{message}"
        );
    }
}

impl fmt::Display for Snapshot {
    /// One `name value` line per counter, for the end of a replay.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<(String, String)> = Vec::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&self.pipeline) {
            for (k, v) in map {
                lines.push((k, v.to_string()));
            }
        }
        lines.push(("flows_open".into(), self.flows_open.to_string()));
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self.merge) {
            for (k, v) in map {
                lines.push((k, v.to_string()));
            }
        }
        if let Some(k) = self.kernel {
            lines.push(("kernel_received".into(), k.received.to_string()));
            lines.push(("kernel_dropped".into(), k.dropped.to_string()));
            lines.push(("kernel_if_dropped".into(), k.if_dropped.to_string()));
        }
        if self.unsupported_link > 0 {
            lines.push(("unsupported_link_packets".into(), self.unsupported_link.to_string()));
        }
        if let Some(d) = &self.damage {
            lines.push(("damaged_at_byte".into(), d.offset.to_string()));
        }
        if let Some(r) = self.report
            && let Ok(serde_json::Value::Object(map)) = serde_json::to_value(r)
        {
            for (k, v) in map {
                lines.push((k, v.to_string()));
            }
        }
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in lines {
            writeln!(f, "{k:<width$}  {v:>12}")?;
        }
        Ok(())
    }
}

/// What [`drive`] did.
#[derive(Debug, Clone)]
pub struct DriveSummary {
    pub snapshot: Snapshot,
    pub elapsed: Duration,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("writing records to standard output: {0}")]
    Stdout(io::Error),
    /// The reader of standard output went away (`| head`): not a failure.
    #[error("standard output was closed")]
    StdoutClosed,
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("-spool-dir keeps batches for a server: give -server too")]
    SpoolWithoutServer,
    #[error("-server {url:?}: {reason}")]
    BadServer { url: String, reason: String },
    #[error(transparent)]
    Trust(#[from] liteobs_tls::TrustError),
    #[error("starting a thread: {0}")]
    Thread(io::Error),
    #[error("the capture thread panicked")]
    CapturePanicked,
    #[error("-metrics-listen {addr}: {source}")]
    MetricsListen { addr: String, source: io::Error },
}

impl RunError {
    fn from_stdout(e: io::Error) -> RunError {
        if e.kind() == io::ErrorKind::BrokenPipe { RunError::StdoutClosed } else { RunError::Stdout(e) }
    }
}

/// The capture loop: runs until the source ends (a file's end, or a live source drained after
/// `stop` was set), then finishes the pipeline so that every pending exchange is emitted.
///
/// `report` adds the reporter's counters to logged snapshots.
pub fn drive(
    source: &mut dyn PacketSource,
    pipeline: &mut Pipeline,
    attributor: &mut dyn Attributor,
    sink: &mut RecordSink,
    stop: &AtomicBool,
    opts: &DriveOptions,
    report: &dyn Fn() -> Option<ReportStats>,
) -> Result<DriveSummary, RunError> {
    let started = Instant::now();
    let mut out: Vec<TrafficLog> = Vec::with_capacity(256);
    let mut merger = NodeMerge::new(opts.merge);
    // `now_us` is the merge's clock, given only where it is read (see `merge_now`); without it
    // `out` is empty and nothing is due.
    let emit = |out: &mut Vec<TrafficLog>,
                sink: &mut RecordSink,
                attributor: &mut dyn Attributor,
                merger: &mut NodeMerge,
                now_us: Option<i64>|
     -> Result<(), RunError> {
        if !out.is_empty() {
            // The agent's own uploads are dropped here (counted by the attributor).
            out.retain_mut(|r| attributor.attribute(r) != Origin::Agent);
        }
        if let Some(now_us) = now_us {
            merger.push(now_us, out);
        }
        if !out.is_empty() {
            sink.emit(out)?;
        }
        Ok(())
    };
    let mut draining = false;
    let mut packets: u64 = 0;
    let mut last_ts_us = i64::MIN;
    let mut last_expire_us = i64::MIN;
    let wall_started = match &opts.clock {
        Clock::Wall(wall) => wall.now(),
        Clock::Packets => started,
    };
    let mut next_tick = wall_started + TICK;
    let mut next_expire = wall_started;
    let mut next_stats = opts.stats_interval.map(|i| wall_started + i);
    // The merge's clock: the file's in a replay; live, the wall clock's monotonic instant (a
    // wall clock stepped back must not hold records until it has caught up), read only when
    // records arrive and on ticks.
    let merge_now = |last_ts_us: i64| match &opts.clock {
        Clock::Packets => last_ts_us,
        Clock::Wall(wall) => {
            i64::try_from(wall.now().saturating_duration_since(wall_started).as_micros()).unwrap_or(i64::MAX)
        }
    };
    let snapshot = |source: &mut dyn PacketSource, pipeline: &Pipeline, merger: &NodeMerge| {
        let s: SourceStats = source.stats();
        Snapshot {
            pipeline: pipeline.counters().clone(),
            merge: merger.stats(),
            flows_open: pipeline.open_flows(),
            kernel: s.kernel,
            unsupported_link: s.unsupported_link,
            damage: s.damage,
            report: report(),
        }
    };

    loop {
        if !draining && stop.load(Ordering::Relaxed) {
            source.begin_drain()?;
            draining = true;
        }
        let idle = match source.next_packet()? {
            Next::Packet(p) => {
                // An impossible timestamp (the pipeline skips its records) must not move the
                // file's clock: one packet stamped in the year 11476 would expire every flow.
                if p.ts_us > last_ts_us && (TS_MIN_MICROS..=TS_MAX_MICROS).contains(&p.ts_us) {
                    last_ts_us = p.ts_us;
                }
                pipeline.push(p.ts_us, p.link, p.data, &mut out);
                packets += 1;
                false
            }
            Next::Idle => true,
            Next::End => break,
        };
        // Records first: those the packet completed belong to the connection it may have
        // replaced on the same 4-tuple. On the file's clock held records may be due after any
        // packet; live, the clock is read when records arrive and on ticks.
        let now_us = match opts.clock {
            Clock::Packets => Some(last_ts_us),
            Clock::Wall(_) => (!out.is_empty()).then(|| merge_now(last_ts_us)),
        };
        emit(&mut out, sink, &mut *attributor, &mut merger, now_us)?;
        if !idle {
            for key in pipeline.opened() {
                attributor.connection_opened(SocketAddr::from(key.a), SocketAddr::from(key.b));
            }
        }
        match &opts.clock {
            Clock::Packets => {
                // An integer comparison per packet: flows expire exactly when the file's clock
                // says, however the file is split into reads.
                if last_ts_us != i64::MIN && last_ts_us.saturating_sub(last_expire_us) >= EXPIRE_EVERY_US {
                    pipeline.expire(last_ts_us, &mut out);
                    last_expire_us = last_ts_us;
                    emit(&mut out, sink, &mut *attributor, &mut merger, Some(last_ts_us))?;
                }
                if packets.is_multiple_of(8192) {
                    if let Some(pb) = &opts.progress
                        && let Some((done, _)) = source.progress()
                    {
                        pb.set_position(done);
                    }
                    if let Some(m) = &opts.metrics {
                        m.publish(snapshot(source, pipeline, &merger));
                    }
                }
            }
            // The wall clock is read every 256 packets, or when the source is idle.
            Clock::Wall(wall) if idle || packets.is_multiple_of(256) => {
                let now = wall.now();
                if now >= next_tick {
                    next_tick = now + TICK;
                    attributor.refresh();
                    // Scheduled on the monotonic clock, so that a wall clock stepped back does not
                    // stop expiry until it has caught up again.
                    if now >= next_expire {
                        next_expire = now + Duration::from_micros(EXPIRE_EVERY_US.unsigned_abs());
                        pipeline.expire(wall.now_us(), &mut out);
                    }
                    emit(&mut out, sink, &mut *attributor, &mut merger, Some(merge_now(last_ts_us)))?;
                    sink.flush()?;
                    let stats_due = next_stats.filter(|at| now >= *at);
                    if opts.metrics.is_some() || stats_due.is_some() {
                        let snap = snapshot(source, pipeline, &merger);
                        if let Some(at) = stats_due {
                            snap.log("counters");
                            attributor.log_stats();
                            next_stats = opts.stats_interval.map(|i| at.max(now - i) + i);
                        }
                        if let Some(m) = &opts.metrics {
                            if stats_due.is_some() {
                                m.publish_attribution(attributor.counters());
                            }
                            m.publish(snap);
                        }
                    }
                }
            }
            Clock::Wall(_) => {}
        }
    }
    pipeline.finish(&mut out);
    emit(&mut out, sink, &mut *attributor, &mut merger, Some(merge_now(last_ts_us)))?;
    // The capture ended: what is held leaves now.
    merger.finish(&mut out);
    if !out.is_empty() {
        sink.emit(&mut out)?;
    }
    sink.finish()?;
    attributor.log_stats();
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let last = snapshot(source, pipeline, &merger);
    if let Some(m) = &opts.metrics {
        m.publish_attribution(attributor.counters());
        m.publish(last.clone());
    }
    Ok(DriveSummary { snapshot: last, elapsed: started.elapsed() })
}

/// Replays a capture file through the same loop the binary uses and returns its records
/// (for tests and tools).
pub fn replay_file(path: &Path, cfg: PipelineConfig) -> Result<(Vec<TrafficLog>, DriveSummary), RunError> {
    let mut source = OfflineSource::open(&path.to_string_lossy())?;
    let mut pipeline = Pipeline::new(cfg);
    let mut sink = RecordSink::Collect(Vec::new());
    let opts = DriveOptions {
        clock: Clock::Packets,
        stats_interval: None,
        progress: None,
        merge: MergeConfig::default(),
        metrics: None,
    };
    let summary = drive(
        &mut source,
        &mut pipeline,
        &mut NoAttribution,
        &mut sink,
        &AtomicBool::new(false),
        &opts,
        &|| None,
    )?;
    let RecordSink::Collect(records) = sink else { unreachable!("the sink was built as Collect above") };
    Ok((records, summary))
}

/// What a whole run did.
#[derive(Debug)]
pub struct RunReport {
    pub summary: DriveSummary,
    /// True when this was a replay of a file.
    pub replay: bool,
    /// The `-metrics-listen` server, still serving (a replay may linger on it).
    pub metrics: Option<Endpoint>,
}

/// Checks `-server` and returns its normalized base URL and the addresses it resolves to (so
/// that the agent does not capture its own uploads).
pub fn server_endpoint(url: &str) -> Result<(String, Vec<SocketAddr>), RunError> {
    let bad = |reason: String| RunError::BadServer { url: url.to_owned(), reason };
    let parsed = ServerUrl::parse(url).map_err(|e| bad(e.to_string()))?;
    let addrs: Vec<SocketAddr> = match (parsed.host(), parsed.port()).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            tracing::warn!(server = %parsed, error = %e, "cannot resolve the server now; its traffic is not excluded from capture");
            Vec::new()
        }
    };
    Ok((parsed.to_string(), addrs))
}

fn open_source(cfg: &Config, exclude: &[SocketAddr]) -> Result<Box<dyn PacketSource + Send>, RunError> {
    if let Some(path) = &cfg.read {
        return Ok(Box::new(OfflineSource::open(path)?));
    }
    #[cfg(target_os = "linux")]
    {
        use crate::capture::live::{LiveConfig, LiveSource};
        let live = LiveConfig {
            iface: cfg.iface.clone(),
            filter: crate::capture::bpf_filter(&cfg.port_list(), exclude),
            buffer_size: usize::try_from(cfg.buffer_size).unwrap_or(usize::MAX),
            snaplen: cfg.snaplen,
            read_timeout: Duration::from_millis(100),
            immediate: cfg.immediate_mode,
            promisc: cfg.promisc,
        };
        if live.buffer_size < 32 << 20 {
            tracing::warn!(
                buffer_bytes = live.buffer_size,
                "a capture buffer under 32 MiB drops packets under load (see BENCHMARKS.md)"
            );
        }
        let src = LiveSource::open(&live)?;
        tracing::info!(
            iface = %live.iface,
            filter = %live.filter,
            buffer_bytes = live.buffer_size,
            immediate = live.immediate,
            promisc = live.promisc,
            "capture open"
        );
        Ok(Box::new(src))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = exclude;
        Err(CaptureError::LiveUnsupported.into())
    }
}

/// Runs the agent as configured until its input ends (replay) or a signal stops it (live).
/// Live captures attribute processes as `-pidmap` says, and their pods unless `-containers off` (the eBPF program is loaded before the
/// capture starts, so it sees the connections the capture will see); a replay has no processes
/// to ask, so its records keep the PID fields empty.
pub fn run(cfg: &Config) -> Result<RunReport, RunError> {
    if cfg.read.is_some() || cfg.pidmap == Mode::Off {
        return run_with(cfg, |_| Box::new(NoAttribution));
    }
    run_with(cfg, |servers| {
        let pids = PidMap::new(&PidMapConfig { own_servers: servers.to_vec(), ..cfg.pidmap_config() });
        if cfg.containers {
            Box::new(PodAttribution::new(pids, ContainerIdentity::start(cfg.containers_config())))
        } else {
            Box::new(pids)
        }
    })
}

/// [`run`] with an [`Attributor`] that fills in processes on the capture thread. The attributor
/// is made once the capture source is open, so a bad `-iface` or file fails before anything is
/// loaded into the kernel; it is given the addresses `-server` resolves to (where the agent's
/// own uploads go).
pub fn run_with(
    cfg: &Config,
    make_attributor: impl FnOnce(&[SocketAddr]) -> Box<dyn Attributor + Send>,
) -> Result<RunReport, RunError> {
    let node = resolve_node(cfg.node.as_deref(), Path::new("/proc/sys/kernel/hostname"));
    let replay = cfg.read.is_some();
    let server = cfg.server.as_deref().map(server_endpoint).transpose()?;
    // Read at start, so a bad -ca-file is an error before anything is captured.
    let tls = match &server {
        Some((url, _)) if url.starts_with("https://") => {
            Some(liteobs_tls::client_config(cfg.ca_file.as_deref())?)
        }
        _ => None,
    };
    let exclude = server.as_ref().map(|(_, a)| a.clone()).unwrap_or_default();
    let counters = Arc::new(ReportCounters::default());
    // First, so that probes are answered ("starting") while eBPF loads.
    let (published, endpoint) = match &cfg.metrics_listen {
        None => (None, None),
        Some(addr) => {
            let published = Arc::new(Published::default());
            let metrics = AgentMetrics::new(published.clone(), &counters.upload_latency);
            let endpoint = crate::metrics::serve(addr, metrics)
                .map_err(|source| RunError::MetricsListen { addr: addr.clone(), source })?;
            (Some(published), Some(endpoint))
        }
    };
    let spool = open_spool(cfg, server.is_some(), &counters)?;
    let mut source = open_source(cfg, &exclude)?;
    let mut attributor = make_attributor(&exclude);
    if let Some(p) = &published {
        p.set_phase(if replay { Phase::Replaying } else { Phase::Live });
    }
    if !replay {
        // Logged once attribution is ready too: scripts and tests wait for this line before
        // they make traffic.
        tracing::info!(iface = %cfg.iface, "capturing");
    }
    let mut pipeline = Pipeline::new(cfg.pipeline_config(node));

    let queue = server.as_ref().map(|_| {
        let overflow = if replay { Overflow::Wait } else { Overflow::DropOldest };
        Arc::new(RecordQueue::new(cfg.buffer as usize, overflow))
    });
    let mut sink = match &queue {
        Some(q) => RecordSink::Queue(q.clone()),
        None => RecordSink::Stdout(ThreadedWriter::spawn(io::stdout()).map_err(RunError::Thread)?),
    };
    let progress = replay_progress(source.as_ref());
    let opts = DriveOptions {
        clock: if replay { Clock::Packets } else { Clock::system() },
        stats_interval: (!replay).then_some(cfg.stats_interval),
        progress,
        merge: cfg.merge_config(),
        metrics: published.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let capture = {
        let stop = stop.clone();
        let queue = queue.clone();
        let counters = counters.clone();
        std::thread::Builder::new()
            .name("liteobs-capture".into())
            .spawn(move || {
                let report = || queue.as_ref().map(|q| counters.snapshot(q));
                let result = drive(
                    source.as_mut(),
                    &mut pipeline,
                    attributor.as_mut(),
                    &mut sink,
                    &stop,
                    &opts,
                    &report,
                );
                if let Some(q) = &queue {
                    q.close();
                }
                let _ = done_tx.send(());
                result
            })
            .map_err(RunError::Thread)?
    };

    let reporter_cfg = server.map(|(url, _)| ReporterConfig {
        token: cfg.token.clone().filter(|t| !t.is_empty()),
        tls,
        batch_size: cfg.batch_size as usize,
        flush_interval: cfg.flush_interval,
        max_backoff: cfg.max_backoff.max(Duration::from_millis(1)),
        ..ReporterConfig::new(url)
    });
    let shutdown_timeout = cfg.shutdown_timeout;
    let report_result: Result<Option<ReportStats>, ReportError> = actix_rt::System::new().block_on(async {
        let (deadline_tx, deadline_rx) = watch::channel::<Option<tokio::time::Instant>>(None);
        let signals = {
            let stop = stop.clone();
            let queue = queue.clone();
            async move {
                wait_for_signal().await;
                stop.store(true, Ordering::Relaxed);
                if let Some(q) = &queue {
                    q.stop_waiting();
                }
                let _ = deadline_tx.send(Some(tokio::time::Instant::now() + shutdown_timeout));
                tracing::info!(
                    held = queue.as_ref().map_or(0, |q| q.len()),
                    deadline_s = shutdown_timeout.as_secs_f64(),
                    "stopping: draining the capture and delivering what is held (a second signal gives up)"
                );
                wait_for_signal().await;
                let _ = deadline_tx.send(Some(tokio::time::Instant::now()));
                tracing::warn!("second signal: giving up on delivery");
                std::future::pending::<()>().await;
            }
        };
        let work = async {
            let reported = match (&queue, reporter_cfg) {
                (Some(q), Some(rcfg)) => {
                    let mut reporter = Reporter::new(rcfg, counters.clone());
                    if let Some(s) = spool {
                        reporter = reporter.with_spool(s);
                    }
                    let r = reporter.run(q, deadline_rx).await;
                    if r.is_err() {
                        // Nothing more can be delivered: stop capturing too.
                        stop.store(true, Ordering::Relaxed);
                        q.stop_waiting();
                        q.close();
                    }
                    r.map(Some)
                }
                _ => Ok(None),
            };
            let _ = done_rx.await;
            reported
        };
        tokio::select! {
            r = work => r,
            _ = signals => unreachable!("the signal task never ends"),
        }
    });
    let drive_result = capture.join().map_err(|_| RunError::CapturePanicked)?;
    let reported = report_result?;
    let mut summary = drive_result?;
    if let Some(q) = &queue {
        summary.snapshot.report = Some(reported.unwrap_or_else(|| counters.snapshot(q)));
    }
    if let Some(p) = &published {
        p.publish(summary.snapshot.clone());
        p.set_phase(Phase::Done);
    }
    Ok(RunReport { summary, replay, metrics: endpoint })
}

/// Opens `-spool-dir` before anything is captured, so that a directory that cannot be used is
/// one error at start; says what an earlier run left there.
fn open_spool(cfg: &Config, has_server: bool, counters: &ReportCounters) -> Result<Option<Spool>, RunError> {
    let Some(dir) = &cfg.spool_dir else { return Ok(None) };
    if !has_server {
        return Err(RunError::SpoolWithoutServer);
    }
    let (spool, recovered) = Spool::open(&SpoolConfig { dir: dir.clone(), max_bytes: cfg.spool_max_bytes })?;
    let set_aside = recovered.set_aside.len() as u64;
    counters.spool_files_set_aside.fetch_add(set_aside, Ordering::Relaxed);
    if recovered.batches > 0 || set_aside > 0 {
        tracing::info!(
            dir = %dir.display(),
            batches = recovered.batches,
            records = recovered.records,
            set_aside,
            "spool: batches left by an earlier run are delivered first"
        );
    }
    Ok(Some(spool))
}

/// A progress bar for replays of large files when standard error is a terminal.
fn replay_progress(source: &(dyn PacketSource + Send)) -> Option<ProgressBar> {
    let (_, total) = source.progress()?;
    if total < 32 << 20 || !io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template(
        "{spinner} replaying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .ok()?
    .progress_chars("=> ");
    let pb = ProgressBar::new(total).with_style(style);
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}

/// SIGINT or SIGTERM (Ctrl-C elsewhere).
#[cfg(unix)]
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
pub(crate) async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::sync::Mutex;

    use etherparse::PacketBuilder;

    use super::*;
    use crate::capture::Packet;
    use crate::pipeline::LinkType;

    /// A wall clock that moves only when told.
    struct ManualClock {
        base: Instant,
        base_us: i64,
        elapsed: Mutex<Duration>,
    }

    impl ManualClock {
        fn new(base_us: i64) -> Arc<ManualClock> {
            Arc::new(ManualClock { base: Instant::now(), base_us, elapsed: Mutex::new(Duration::ZERO) })
        }

        fn advance(&self, by: Duration) -> Duration {
            let mut e = self.elapsed.lock().unwrap();
            *e += by;
            *e
        }

        fn elapsed(&self) -> Duration {
            *self.elapsed.lock().unwrap()
        }
    }

    impl WallClock for ManualClock {
        fn now(&self) -> Instant {
            self.base + self.elapsed()
        }

        fn now_us(&self) -> i64 {
            self.base_us + i64::try_from(self.elapsed().as_micros()).unwrap()
        }
    }

    /// A live source that hands out its frames 1 ms apart (stamped by the clock unless a
    /// frame says otherwise), then goes quiet: each call is one read timeout (100 ms) with no
    /// packet, and `on_idle` is told how long the run has been going; the source ends when
    /// `on_idle` says so or after `quiet_until`.
    struct QuietSource {
        clock: Arc<ManualClock>,
        frames: VecDeque<(Option<i64>, Vec<u8>)>,
        frame: Vec<u8>,
        quiet_until: Duration,
        on_idle: Box<dyn FnMut(Duration) -> bool>,
    }

    impl PacketSource for QuietSource {
        fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
            if let Some((ts, frame)) = self.frames.pop_front() {
                self.frame = frame;
                let ts_us = ts.unwrap_or_else(|| self.clock.now_us());
                self.clock.advance(Duration::from_millis(1));
                return Ok(Next::Packet(Packet { ts_us, link: LinkType::Ethernet, data: &self.frame }));
            }
            let elapsed = self.clock.advance(Duration::from_millis(100));
            if elapsed >= self.quiet_until || !(self.on_idle)(elapsed) {
                return Ok(Next::End);
            }
            Ok(Next::Idle)
        }

        fn begin_drain(&mut self) -> Result<(), CaptureError> {
            Ok(())
        }

        fn stats(&mut self) -> SourceStats {
            SourceStats::default()
        }

        fn describe(&self) -> String {
            "a quiet source".into()
        }
    }

    const T0_US: i64 = 1_767_225_600_000_000;

    /// An Ethernet frame of a TCP segment from 10.0.0.1:`cport` to 10.0.0.2:80 or back.
    fn frame(cport: u16, from_client: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (src, dst, sport, dport) = if from_client { (a, b, cport, 80) } else { (b, a, 80, cport) };
        let mut tcp = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 65535);
        if flags.contains('S') {
            tcp = tcp.syn();
        }
        if flags.contains('A') {
            tcp = tcp.ack(ack);
        }
        let mut out = Vec::new();
        tcp.write(&mut out, payload).unwrap();
        out
    }

    const GET: &[u8] = b"GET /quiet HTTP/1.1\r\nHost: t\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

    /// Handshake and request of a connection from port `cport`, unanswered.
    fn unanswered(cport: u16) -> Vec<(Option<i64>, Vec<u8>)> {
        vec![
            (None, frame(cport, true, 100, 0, "S", b"")),
            (None, frame(cport, false, 500, 101, "SA", b"")),
            (None, frame(cport, true, 101, 501, "A", b"")),
            (None, frame(cport, true, 101, 501, "A", GET)),
        ]
    }

    fn live(clock: &Arc<ManualClock>, stats_interval: Option<Duration>) -> DriveOptions {
        DriveOptions {
            clock: Clock::Wall(clock.clone()),
            stats_interval,
            progress: None,
            merge: MergeConfig::default(),
            metrics: None,
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline::new(PipelineConfig { idle_timeout_us: 2_000_000, ..PipelineConfig::default() })
    }

    /// The issue's case: a live connection whose request gets no answer, then no packet at
    /// all. The wall clock must expire it (status 0) about when the idle timeout says, and
    /// let it out of the on-node merge's hold a second later (on a tick), not only when the
    /// capture stops.
    #[test]
    fn a_quiet_live_source_expires_connections_on_the_wall_clock() {
        let clock = ManualClock::new(T0_US);
        let queue = Arc::new(RecordQueue::new(100, Overflow::DropOldest));
        let seen_at = Rc::new(Cell::new(None));
        let (q, seen) = (queue.clone(), seen_at.clone());
        let mut source = QuietSource {
            clock: clock.clone(),
            frames: unanswered(40_000).into(),
            frame: Vec::new(),
            quiet_until: Duration::from_secs(10),
            on_idle: Box::new(move |elapsed| {
                if !q.is_empty() {
                    seen.set(Some(elapsed));
                    return false;
                }
                true
            }),
        };
        let mut sink = RecordSink::Queue(queue.clone());
        let summary = drive(
            &mut source,
            &mut pipeline(),
            &mut NoAttribution,
            &mut sink,
            &AtomicBool::new(false),
            &live(&clock, None),
            &|| None,
        )
        .unwrap();
        let at = seen_at.get().expect("the unanswered request was emitted only when the source ended");
        let hold = Duration::from_micros(MergeConfig::default().hold_us.unsigned_abs());
        assert!(
            at > Duration::from_secs(2) + hold && at < Duration::from_millis(3_400) + hold,
            "left after {at:?}"
        );
        let records = queue.take_all();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].path.as_str(), records[0].status), ("/quiet", 0));
        assert_eq!(summary.snapshot.pipeline.flows_expired, 1);
    }

    /// One packet stamped a day ahead (a clock stepped back after it) must not make every
    /// live connection look idle: expiry runs on the wall clock, not on the latest packet.
    #[test]
    fn a_packet_stamped_in_the_future_does_not_expire_live_connections() {
        let clock = ManualClock::new(T0_US);
        let queue = Arc::new(RecordQueue::new(100, Overflow::DropOldest));
        let mut frames: VecDeque<_> = unanswered(40_001).into();
        frames.push_back((Some(T0_US + 86_400_000_000), frame(40_002, true, 7, 0, "S", b"")));
        let early = Rc::new(Cell::new(false));
        let (q, flag) = (queue.clone(), early.clone());
        let mut source = QuietSource {
            clock: clock.clone(),
            frames,
            frame: Vec::new(),
            quiet_until: Duration::from_millis(1_500),
            on_idle: Box::new(move |_| {
                flag.set(flag.get() || !q.is_empty());
                true
            }),
        };
        let mut sink = RecordSink::Queue(queue.clone());
        let summary = drive(
            &mut source,
            &mut pipeline(),
            &mut NoAttribution,
            &mut sink,
            &AtomicBool::new(false),
            &live(&clock, None),
            &|| None,
        )
        .unwrap();
        assert!(!early.get(), "a connection idle for under the timeout was expired");
        assert_eq!(summary.snapshot.pipeline.flows_expired, 0);
        assert_eq!(queue.take_all().len(), 1, "emitted once, at the end");
    }

    /// The replay's sibling: one packet stamped in the year 11476 must not move the file's
    /// clock, or every open connection would expire at once (and its answer arrive orphaned).
    #[test]
    fn an_impossible_packet_time_does_not_move_the_files_clock() {
        let clock = ManualClock::new(T0_US);
        let mut frames: VecDeque<_> = unanswered(40_004)
            .into_iter()
            .enumerate()
            .map(|(i, (_, f))| (Some(T0_US + i as i64), f))
            .collect();
        frames.push_back((Some(299_970_000_000_000_000), frame(40_005, true, 7, 0, "S", b"")));
        frames.push_back((Some(T0_US + 10), frame(40_004, false, 501, 101 + GET.len() as u32, "A", OK)));
        let mut source = QuietSource {
            clock,
            frames,
            frame: Vec::new(),
            quiet_until: Duration::ZERO,
            on_idle: Box::new(|_| false),
        };
        let mut sink = RecordSink::Collect(Vec::new());
        let opts = DriveOptions {
            clock: Clock::Packets,
            stats_interval: None,
            progress: None,
            merge: MergeConfig::default(),
            metrics: None,
        };
        let summary = drive(
            &mut source,
            &mut pipeline(),
            &mut NoAttribution,
            &mut sink,
            &AtomicBool::new(false),
            &opts,
            &|| None,
        )
        .unwrap();
        let RecordSink::Collect(records) = sink else { unreachable!() };
        let got: Vec<(&str, u16)> = records.iter().map(|r| (r.path.as_str(), r.status)).collect();
        assert_eq!(got, [("/quiet", 200)]);
        assert_eq!(summary.snapshot.pipeline.flows_expired, 0);
    }

    /// A shared byte buffer standing in for standard output.
    #[derive(Clone, Default)]
    struct SharedOut(Arc<Mutex<Vec<u8>>>);

    impl io::Write for SharedOut {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The rest of the class: on a quiet live source, records already complete reach standard
    /// output, and counters are logged every interval, without waiting for a packet.
    #[test]
    fn a_quiet_live_source_still_flushes_records_and_logs_counters() {
        let clock = ManualClock::new(T0_US);
        let out = SharedOut::default();
        let mut frames: VecDeque<_> = unanswered(40_003).into();
        frames.push_back((None, frame(40_003, false, 501, 101 + GET.len() as u32, "A", OK)));
        let written_at = Rc::new(Cell::new(None));
        let (buf, seen) = (out.0.clone(), written_at.clone());
        let mut source = QuietSource {
            clock: clock.clone(),
            frames,
            frame: Vec::new(),
            quiet_until: Duration::from_millis(3_500),
            on_idle: Box::new(move |elapsed| {
                // The writer thread needs a moment of real time for what it was handed.
                std::thread::sleep(Duration::from_millis(5));
                if seen.get().is_none() && buf.lock().unwrap().contains(&b'\n') {
                    seen.set(Some(elapsed));
                }
                true
            }),
        };
        let mut sink = RecordSink::Stdout(ThreadedWriter::spawn(out.clone()).unwrap());
        let snapshots = Cell::new(0);
        drive(
            &mut source,
            &mut pipeline(),
            &mut NoAttribution,
            &mut sink,
            &AtomicBool::new(false),
            &live(&clock, Some(Duration::from_secs(1))),
            &|| {
                snapshots.set(snapshots.get() + 1);
                None
            },
        )
        .unwrap();
        let at = written_at.get().expect("the record reached the output only at the end");
        assert!(at < Duration::from_secs(2), "written after {at:?}");
        assert_eq!(snapshots.get(), 3 + 1, "counters at 1 s, 2 s and 3 s, then the final snapshot");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn server_urls() {
        let (u, a) = server_endpoint("http://127.0.0.1:9000/").unwrap();
        assert_eq!(u, "http://127.0.0.1:9000");
        assert_eq!(a, vec!["127.0.0.1:9000".parse::<SocketAddr>().unwrap()]);
        let (u, a) = server_endpoint("http://[::1]:7/").unwrap();
        assert_eq!(u, "http://[::1]:7");
        assert_eq!(a, vec!["[::1]:7".parse::<SocketAddr>().unwrap()]);
        let (_, a) = server_endpoint("http://127.0.0.1").unwrap();
        assert_eq!(a[0].port(), 80);
        let (u, a) = server_endpoint("https://127.0.0.1/").unwrap();
        assert_eq!((u.as_str(), a), ("https://127.0.0.1", vec!["127.0.0.1:443".parse().unwrap()]));
        assert!(server_endpoint("ftp://x").is_err());
        for (raw, want) in [
            ("http://", r#"-server "http://": no host; write http://HOST[:PORT]"#),
            ("[::1]:7", r#"-server "[::1]:7": no scheme; write http://[::1]:7"#),
            (
                "http://h/?q",
                r#"-server "http://h/?q": a query string or fragment (? or #) is not allowed; the base URL ends at its path"#,
            ),
        ] {
            assert_eq!(server_endpoint(raw).unwrap_err().to_string(), want);
        }
    }
}
