//! `liteobs-agent`: parses the flags into a [`Config`] and hands it to [`run`]; everything the
//! agent does lives in the library, so that tests drive the same code.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use liteobs_agent::capture::CaptureError;
use liteobs_agent::config::Config;
use liteobs_agent::run::{RunError, RunReport, run};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: every exchange allocates a few small strings, and
/// mimalloc's small-object path made a replay 7% faster than glibc's (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Option numbers of mimalloc v3's `mi_option_e` (the Rust bindings name only some); the test
/// below checks them against mimalloc's defaults.
const MI_OPTION_PURGE_DECOMMITS: std::ffi::c_int = 5;
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Makes mimalloc give freed memory back to the kernel at once, by decommitting it. By default
/// it waits a second after the last free, so the tens of MiB the agent frees after loading its
/// eBPF program and the kernel's BTF stayed in its resident size while idle (+31 MiB measured).
fn tune_allocator() {
    // SAFETY: plain setters of mimalloc's global options, valid at any time and from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 1);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// The exit status of a replay whose capture is damaged (cut short, an impossible length, ...):
/// the records before the damage were delivered, the rest of the file was not read. Distinct
/// from 1 (the agent could not do its job) and 2 (a bad flag, clap's). tshark says 2 for a file
/// cut short, but 2 is taken here. Listed in `--help` (`config::EXIT_STATUS_HELP`) and README.md.
const EXIT_DAMAGED: u8 = 3;

fn main() -> ExitCode {
    tune_allocator();
    let cfg = match Config::parse_from_args(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(e) => e.exit(),
    };
    match agent(&cfg) {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::Damaged) => ExitCode::from(EXIT_DAMAGED),
        Err(e) => {
            eprintln!("liteobs-agent: {e:#}");
            let damaged =
                matches!(e.downcast_ref::<RunError>(), Some(RunError::Capture(CaptureError::Damaged { .. })));
            if damaged { ExitCode::from(EXIT_DAMAGED) } else { ExitCode::FAILURE }
        }
    }
}

/// How a run that did not fail ended.
enum Outcome {
    Complete,
    /// The capture file is damaged; what came before the damage was delivered.
    Damaged,
}

fn agent(cfg: &Config) -> anyhow::Result<Outcome> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.trim().is_empty() => EnvFilter::try_new(&f).context("RUST_LOG")?,
        _ => EnvFilter::try_new(&cfg.log_level).context("-log-level")?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let report = match run(cfg) {
        Ok(r) => r,
        Err(RunError::StdoutClosed) => return Ok(Outcome::Complete),
        Err(
            e @ (RunError::Capture(_)
            | RunError::BadServer { .. }
            | RunError::Trust(_)
            | RunError::MetricsListen { .. }),
        ) => {
            return Err(e.into());
        }
        Err(e) => {
            let what = match &cfg.read {
                Some(f) => format!("replaying {f}"),
                None => format!("capturing on {}", cfg.iface),
            };
            return Err(anyhow::Error::new(e).context(what));
        }
    };
    print_summary(cfg, &report);
    if report.replay
        && let Some(endpoint) = &report.metrics
    {
        endpoint.linger(cfg.metrics_linger);
    }
    let Some(damage) = &report.summary.snapshot.damage else {
        return Ok(Outcome::Complete);
    };
    // One line, last, and not through the log: it must be seen whatever -log-level says.
    let file = match cfg.read.as_deref() {
        Some("-") | None => "stdin",
        Some(path) => path,
    };
    eprintln!("liteobs-agent: warning: {file}: {damage}; the records before it were kept");
    Ok(Outcome::Damaged)
}

/// A replay ends with its counters on stderr; a live run logs them once more.
fn print_summary(cfg: &Config, report: &RunReport) {
    let s = &report.summary;
    if report.replay {
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        let p = &s.snapshot.pipeline;
        eprintln!(
            "replayed {}: {} packets, {} exchanges in {:.3} s ({:.0} packets/s, {:.0} exchanges/s)",
            cfg.read.as_deref().unwrap_or("-"),
            p.packets,
            p.exchanges,
            secs,
            p.packets as f64 / secs,
            p.exchanges as f64 / secs,
        );
        eprint!("{}", s.snapshot);
    } else {
        tracing::info!(
            packets = s.snapshot.pipeline.packets,
            exchanges = s.snapshot.pipeline.exchanges,
            kernel_dropped = s.snapshot.kernel.map_or(0, |k| k.dropped),
            "stopped"
        );
        eprint!("{}", s.snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimalloc_option_numbers_are_the_ones_meant() {
        // mimalloc v3's defaults (src/options.c): purge_decommits = 1, purge_delay = 1000 ms.
        // Another numbering (a mimalloc upgrade) would read other options, with other values.
        // SAFETY: plain getters of mimalloc's global options.
        let (decommits, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DECOMMITS),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!((decommits, delay), (1, 1000));
    }
}
