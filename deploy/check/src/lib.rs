//! Harness for the tests of deploy/ (`tests/`): where the repository and the release binaries
//! are, the workspace version the images are tagged with, and when a root-only test may skip.
//!
//! This crate is its own workspace (see Cargo.toml for why), so it does not link the
//! `liteobs-integration` harness; [`privileged`] behaves exactly like the one there.

use std::path::PathBuf;
use std::time::Duration;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the main workspace's release binaries are: `$LITEOBS_BIN_DIR`, else
/// `$LITEOBS_MAIN_TARGET_DIR/release`, else scripts/lib.sh's default target directory.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LITEOBS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("LITEOBS_MAIN_TARGET_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/liteobs/target"), PathBuf::from);
    target.join("release")
}

/// The `[workspace.package]` version of the main workspace: the tag of the images and of the
/// manifests' image references.
pub fn workspace_version() -> String {
    let path = repo_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = text.split("[workspace.package]").nth(1).expect("Cargo.toml has [workspace.package]");
    section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("[workspace.package] has a version")
}

/// True when the test may use root-only facilities. When not root: prints why the test is
/// skipped and returns false, unless LITEOBS_REQUIRE_PRIVILEGED=1, where it fails instead.
pub fn privileged(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    skip_or_fail(test, "needs root");
    false
}

/// Prints `SKIPPED test: reason`, or panics when LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping.
pub fn skip_or_fail(test: &str, reason: &str) {
    assert!(
        std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "{test} {reason}, and LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping it"
    );
    eprintln!("SKIPPED {test}: {reason} (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)");
}

/// An HTTP agent for tests: no proxy, errors as values (a 4xx is an answer, not an Err).
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}
