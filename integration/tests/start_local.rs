//! `bash scripts/start.sh local --no-build` as a user runs it (as root, so that the agent
//! captures): it must print the table of the traffic it made, with processes, and leave no
//! process it started behind. It runs the binaries of this test's target directory.
//!
//! Every process the script starts inherits a marker variable; after the script exits, any
//! process whose /proc/PID/environ still carries it is a leak (and is killed, so that one
//! failure does not leave a root agent capturing loopback).

#![cfg(target_os = "linux")]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use liteobs_integration::{bin, privileged};

const MARKER: &str = "LITEOBS_START_TEST_MARKER";
/// The script starts a server, a web server and the agent, makes a dozen requests and queries
/// twice: seconds. Past this it is hung.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// PIDs and command lines of the processes whose environment holds `MARKER=value`.
fn marked(value: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARKER}={value}");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_owned())
        })
        .collect()
}

fn kill(pid: &str) {
    let _ = Command::new("kill").args(["-KILL", pid]).status();
}

#[test]
fn start_local_stops_everything_it_started() {
    if !privileged("start.sh local leaves nothing running") {
        return;
    }
    let release = bin("liteobs-agent").parent().expect("the release dir").to_owned();
    bin("liteobs-server");
    bin("liteobs-client");
    let target = release.parent().expect("the target dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository");
    let logs = tempfile::tempdir().unwrap();
    let value = format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_micros());

    let mut script = Command::new("bash")
        .args(["scripts/start.sh", "local", "--no-build"])
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", target)
        .env(MARKER, &value)
        .env("COLUMNS", "200")
        .env_remove("LITEOBS_SERVER")
        .env_remove("LITEOBS_TOKEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
        .process_group(0)
        .spawn()
        .expect("running bash scripts/start.sh");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = script.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            kill(&format!("-{}", script.id()));
            let _ = script.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(logs.path().join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(logs.path().join("stderr")).unwrap_or_default();

    // What exits with the script may take a moment to be reaped by init; a leak stays.
    let mut left = marked(&value);
    let settle = Instant::now() + Duration::from_secs(3);
    while !left.is_empty() && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        left = marked(&value);
    }
    for (pid, _) in &left {
        kill(&pid.to_string());
    }

    let status = status.unwrap_or_else(|| panic!("start.sh local ran over {SCRIPT_TIMEOUT:?}\n{stderr}"));
    assert!(status.success(), "start.sh local failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("agent: capturing lo"), "the agent never started:\n{stderr}");
    assert!(stdout.contains("TIME ") && stdout.contains("python3/"), "no attributed table:\n{stdout}");
    let last = stderr.lines().rev().find(|l| l.starts_with("==> ")).unwrap_or("");
    assert!(
        last.starts_with("==> web page: http://127.0.0.1:"),
        "it ends with the page's URL: {last:?}\n{stderr}"
    );
    assert!(left.is_empty(), "start.sh local left these running: {left:?}\nstderr:\n{stderr}");
}
