//! Writes the attribution eBPF object to a file for inspection with `llvm-objdump -d` or
//! `bpftool`. Uses the running kernel's tracepoint layouts when tracefs is readable, the
//! built-in defaults otherwise.
//!
//! Usage: `liteobs-ebpf-dump OUT.o [TRACEFS]` (TRACEFS defaults to /sys/kernel/tracing).

use std::path::PathBuf;
use std::process::ExitCode;

use liteobs_ebpf::{Fields, ObjectConfig, object};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: liteobs-ebpf-dump OUT.o [TRACEFS]");
        return ExitCode::from(2);
    };
    let tracefs = args.next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/sys/kernel/tracing"));
    let fields = match Fields::from_tracefs(&tracefs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("using default tracepoint layouts: {e}");
            Fields::default()
        }
    };
    let cfg = ObjectConfig { fields, ..ObjectConfig::default() };
    let bytes = match object(&cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("liteobs-ebpf-dump: building the object: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&out, &bytes) {
        eprintln!("liteobs-ebpf-dump: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {} ({} bytes)", out.display(), bytes.len());
    ExitCode::SUCCESS
}
