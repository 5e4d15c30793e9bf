//! The agent's command line: every flag, its default and its meaning, parsed with clap.
//!
//! Flags are Go-style single-dash (`-iface lo`, `-ports 80,8080`); double dashes work too
//! (see [`Config::parse_from_args`], which parses with [`liteobs_goflags::try_parse`]).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::Parser;

use crate::pidmap::{Mode, PidMapConfig};
use crate::pipeline::PipelineConfig;

/// The exit statuses, as `--help` lists them (README.md says the same).
pub const EXIT_STATUS_HELP: &str = "Exit status: 0 done; 1 error (one line on stderr says why); 2 bad flag; \
     3 damaged capture file (a warning line names the file, the byte offset and what is wrong; \
     the records before the damage were delivered).";

/// LiteObs node agent: captures packets, rebuilds TCP streams, parses HTTP/1.x and ships
/// one record per request/response exchange.
///
/// Live (default): captures on -iface. With -read FILE: replays a .pcap or .pcapng file.
/// Records go to -server (POST {server}/upload, gzip NDJSON) or, without -server, to
/// standard output as NDJSON. Counters go to standard error through the log.
#[derive(Debug, Clone, Parser)]
#[command(name = "liteobs-agent", version, about, long_about = None, after_help = EXIT_STATUS_HELP)]
pub struct Config {
    /// Interface to capture on (`any` for all interfaces).
    #[arg(long, default_value = "lo", value_name = "NAME")]
    pub iface: String,

    /// TCP ports to watch, comma-separated (e.g. 80,8080); empty watches every TCP port.
    #[arg(long, value_delimiter = ',', value_name = "PORTS", default_value = "", hide_default_value = true,
          value_parser = parse_port)]
    pub ports: Vec<Option<u16>>,

    /// Replay a capture file (.pcap or .pcapng, `-` for stdin) instead of capturing live.
    #[arg(long, value_name = "FILE")]
    pub read: Option<String>,

    /// liteobs-server base URL (http://host:port or https://host:port); without it records
    /// are printed to stdout.
    #[arg(long, value_name = "URL", env = "LITEOBS_SERVER")]
    pub server: Option<String>,

    /// PEM file of the CA(s) that sign the server's certificate, trusted instead of the system
    /// store for an https:// -server.
    #[arg(long, value_name = "FILE", env = "LITEOBS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// Bearer token for the server.
    #[arg(long, value_name = "TOKEN", env = "LITEOBS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Node name put in every record [default: $NODE_NAME, else the host name].
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: Option<String>,

    /// Records per upload.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Longest a record waits for its batch to fill before it is sent anyway.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub flush_interval: Duration,

    /// Records held for the server while it is slow or down; when full, the oldest are dropped
    /// (and counted).
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub buffer: u32,

    /// Keep every batch on disk in this directory until the server has it (one file per batch,
    /// written crash-safe), so that an outage longer than -buffer, a restart or a kill -9 loses
    /// nothing spooled; batches left by an earlier run are delivered first. Needs -server.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<std::path::PathBuf>,

    /// Most bytes the spool may hold; when full, live capture drops the oldest batches (counted)
    /// and a replay waits for room.
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_spool_size)]
    pub spool_max_bytes: u64,

    /// Kernel capture buffer (bytes; K, M, G, KiB, MiB, GiB suffixes allowed).
    #[arg(long, default_value = "64MiB", value_name = "SIZE", value_parser = parse_size)]
    pub buffer_size: u64,

    /// Hand each packet to the agent as soon as the kernel has it, instead of in blocks of up
    /// to 100 ms: lower latency, but on loopback (MTU 64 KiB) the ring then holds only about a
    /// thousand packets and drops under load (see BENCHMARKS.md).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub immediate_mode: bool,

    /// Put the interface in promiscuous mode, to see traffic between other hosts (a bridge or
    /// a mirrored port). Not needed for the node's own traffic, pods' included.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub promisc: bool,

    /// Bytes kept of each packet.
    #[arg(long, default_value_t = 262_144, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub snaplen: u32,

    /// How often counters are logged while capturing live.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub stats_interval: Duration,

    /// On SIGINT/SIGTERM, how long to keep trying to deliver what is held.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest pause between upload retries (they back off exponentially up to it).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub max_backoff: Duration,

    /// A connection with no packet for this long is closed (its pending request is reported
    /// with status 0) [default: the pipeline's].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Most TCP connections tracked at once [default: the pipeline's].
    #[arg(long, value_name = "N")]
    pub max_flows: Option<usize>,

    /// Most bytes buffered per connection direction while waiting for missing data
    /// [default: the pipeline's].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_conn_buffer: Option<u64>,

    /// Most bytes buffered across all connections [default: the pipeline's].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_total_buffer: Option<u64>,

    /// How long a record waits for another capture of its exchange on this node (before and
    /// after a Service's DNAT, seen with -iface any), to leave as one record with both
    /// addresses; on the capture's clock (a replay's is the file's). 0 keeps every capture.
    #[arg(long, default_value = "100ms", value_name = "DURATION", value_parser = parse_duration)]
    pub merge_hold: Duration,

    /// Most records waiting for another capture at once; past it the oldest leaves unmerged
    /// (counted in merge_overflow).
    #[arg(long, default_value_t = 32_768, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub merge_max_held: u32,

    /// Where process IDs come from: `ebpf` (kernel maps, then /proc for what they miss),
    /// `proc` (/proc only) or `off`. Without the privileges to load eBPF, the agent says why
    /// once and uses /proc.
    #[arg(long, default_value_t = Mode::Ebpf, value_name = "MODE")]
    pub pidmap: Mode,

    /// Connections the eBPF map remembers (LRU; the socket and accept maps are sized from it).
    #[arg(long, default_value_t = 65_536, value_name = "N", value_parser = clap::value_parser!(u32).range(64..))]
    pub pidmap_entries: u32,

    /// Whether each process's container, pod and namespace are added to records (`on`, `off`):
    /// from its cgroup and the container runtime's labels. Needs process attribution.
    #[arg(long, default_value = "on", value_name = "on|off", action = clap::ArgAction::Set, value_parser = parse_on_off)]
    pub containers: bool,

    /// containerd's socket, asked for the labels kubelet puts on containers (read-only use:
    /// Get and List of its Containers service, namespace k8s.io). k3s:
    /// /run/k3s/containerd/containerd.sock.
    #[arg(long, default_value = "/run/containerd/containerd.sock", value_name = "PATH")]
    pub containerd_socket: std::path::PathBuf,

    /// Serve Prometheus metrics (`GET /metrics`, OpenMetrics text) and `GET /healthz` on this
    /// address (e.g. 0.0.0.0:9469; port 0 picks one, logged). Off when not given. Plain HTTP,
    /// no token: bind it where only the scraper reaches it.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// After a replay (-read) is done, keep -metrics-listen serving for this long, or until
    /// SIGINT/SIGTERM, so that its final counters can be scraped. 0 exits at once.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub metrics_linger: Duration,

    /// Log filter (tracing env-filter syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}

impl Config {
    /// Parses a command line (program name first), accepting Go-style single-dash flags.
    pub fn parse_from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        liteobs_goflags::try_parse(args)
    }

    /// The watched ports (an empty `-ports ""` entry means none given).
    pub fn port_list(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.ports.iter().flatten().copied().collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The attribution settings: mode, the watched ports (also filtered in the kernel) and the
    /// map size.
    pub fn pidmap_config(&self) -> PidMapConfig {
        PidMapConfig {
            mode: self.pidmap,
            ports: self.port_list(),
            map_entries: self.pidmap_entries,
            ..PidMapConfig::default()
        }
    }

    /// The container attribution settings (`-containers on`).
    pub fn containers_config(&self) -> crate::container::ContainersConfig {
        let d = crate::container::ContainersConfig::default();
        crate::container::ContainersConfig {
            runtime: crate::container::RuntimeConfig {
                socket: self.containerd_socket.clone(),
                ..d.runtime.clone()
            },
            ..d
        }
    }

    /// The on-node merge's settings (`-merge-hold`, `-merge-max-held`).
    pub fn merge_config(&self) -> crate::merge::MergeConfig {
        crate::merge::MergeConfig {
            hold_us: i64::try_from(self.merge_hold.as_micros()).unwrap_or(i64::MAX),
            max_held: usize::try_from(self.merge_max_held).unwrap_or(usize::MAX),
        }
    }

    /// The pipeline settings, flags over the pipeline's defaults.
    pub fn pipeline_config(&self, node: String) -> PipelineConfig {
        let mut p = PipelineConfig { node, ..PipelineConfig::default() };
        if let Some(d) = self.idle_timeout {
            p.idle_timeout_us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        }
        if let Some(n) = self.max_flows {
            p.max_flows = n;
        }
        if let Some(n) = self.max_conn_buffer {
            p.max_conn_buffer = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.max_total_buffer {
            p.max_total_buffer = usize::try_from(n).unwrap_or(usize::MAX);
        }
        p
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

fn parse_port(s: &str) -> Result<Option<u16>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(format!("{s:?} is not a TCP port (1-65535)")),
    }
}

/// Go-style durations: a number and a unit, `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, possibly
/// repeated (`1m30s`) and with a fraction (`1.5s`). `0` alone is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 500ms, 10s or 1m30s");
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Byte sizes: a whole number with an optional suffix, K/KB/KiB, M/MB/MiB, G/GB/GiB (all
/// powers of 1024, as for buffer sizes everywhere in Linux tooling).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size like 64MiB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown size unit {unit:?} (use K, M or G)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// A spool limit: a size of at least 1 MiB (room for a few batches).
fn parse_spool_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < 1 << 20 {
        return Err(format!("{s:?} is too small for a spool (1MiB at least)"));
    }
    Ok(n)
}

/// The node name: the flag (or $NODE_NAME, which clap already folded into it), else the
/// kernel's host name from `hostname_file` (normally /proc/sys/kernel/hostname), else
/// gethostname(2), else "unknown".
pub fn resolve_node(flag: Option<&str>, hostname_file: &Path) -> String {
    if let Some(n) = flag.map(str::trim).filter(|n| !n.is_empty()) {
        return n.to_owned();
    }
    if let Ok(s) = std::fs::read_to_string(hostname_file) {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_owned();
        }
    }
    gethostname().unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(unix)]
fn gethostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(not(unix))]
fn gethostname() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::parse_from_args(std::iter::once("liteobs-agent").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.iface, "lo");
        assert!(c.port_list().is_empty());
        assert_eq!(c.batch_size, 1000);
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.buffer, 100_000);
        assert_eq!(c.buffer_size, 64 << 20);
        assert_eq!(c.snaplen, 262_144);
        assert_eq!(c.stats_interval, Duration::from_secs(10));
        assert!(c.read.is_none());
        assert!(!c.immediate_mode);
        assert!(parse(&["-immediate-mode"]).unwrap().immediate_mode);
        assert!(!parse(&["-immediate-mode=false"]).unwrap().immediate_mode);
        assert!(!c.promisc);
        assert!(parse(&["-promisc"]).unwrap().promisc);
        assert!(c.spool_dir.is_none());
        assert_eq!(c.spool_max_bytes, 1 << 30);
        let c = parse(&["-spool-dir", "/var/lib/liteobs/spool", "-spool-max-bytes", "64MiB"]).unwrap();
        assert_eq!(c.spool_dir.as_deref(), Some(Path::new("/var/lib/liteobs/spool")));
        assert_eq!(c.spool_max_bytes, 64 << 20);
        assert_eq!(c.merge_config(), crate::merge::MergeConfig::default());
        let m = parse(&["-merge-hold", "0", "-merge-max-held", "10"]).unwrap().merge_config();
        assert_eq!((m.hold_us, m.max_held), (0, 10));
        assert!(c.containers);
        assert_eq!(c.containerd_socket, Path::new("/run/containerd/containerd.sock"));
        let c = parse(&["-containers", "off", "-containerd-socket", "/run/k3s/containerd/containerd.sock"])
            .unwrap();
        assert!(!c.containers);
        assert_eq!(c.containers_config().runtime.socket, Path::new("/run/k3s/containerd/containerd.sock"));
    }

    #[test]
    fn go_style_flags() {
        let c = parse(&[
            "-iface",
            "any",
            "-ports",
            "8080,80,8080",
            "-read=x.pcap",
            "-server",
            "http://127.0.0.1:9",
            "-batch-size",
            "5",
            "-flush-interval",
            "250ms",
            "-buffer-size",
            "32MiB",
            "-node",
            "n1",
            "-idle-timeout",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(c.iface, "any");
        assert_eq!(c.port_list(), [80, 8080]);
        assert_eq!(c.read.as_deref(), Some("x.pcap"));
        assert_eq!(c.batch_size, 5);
        assert_eq!(c.flush_interval, Duration::from_millis(250));
        assert_eq!(c.buffer_size, 32 << 20);
        assert_eq!(c.node.as_deref(), Some("n1"));
        assert_eq!(c.pipeline_config("n".into()).idle_timeout_us, 90_000_000);
        assert_eq!(parse(&["-ports", ""]).unwrap().port_list(), Vec::<u16>::new());
    }

    #[test]
    fn bad_values_name_the_flag() {
        for args in [
            &["-ports", "80,http"][..],
            &["-ports", "0"],
            &["-batch-size", "0"],
            &["-flush-interval", "soon"],
            &["-buffer-size", "64XB"],
            &["-snaplen", "10"],
            &["-spool-max-bytes", "4KiB"],
            &["-containers", "maybe"],
            &["-merge-hold", "a while"],
            &["-merge-max-held", "0"],
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(&format!("--{}", &args[0][1..])), "{args:?}: {e}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn node_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hostname");
        std::fs::write(&f, "box-7\n").unwrap();
        assert_eq!(resolve_node(Some("flagged"), &f), "flagged");
        assert_eq!(resolve_node(None, &f), "box-7");
        assert_eq!(resolve_node(Some("  "), &f), "box-7");
        let from_syscall = resolve_node(None, &dir.path().join("missing"));
        assert!(!from_syscall.is_empty());
    }
}
