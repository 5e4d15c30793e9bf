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

/// For a test that needs the command-line tool `tool` (Debian package `package`) when it is
/// not installed: prints `SKIPPED test: ...` with the reason. A missing tool is no missing
/// privilege, so LITEOBS_REQUIRE_PRIVILEGED=1 makes this a failure only where this machine's
/// apt could install the package (see [`apt_can_install`]), that is where scripts/test.sh
/// should have.
pub fn skip_missing_tool(test: &str, tool: &str, package: &str) {
    let policy = std::process::Command::new("apt-cache").args(["policy", package]).output();
    let installable = policy.is_ok_and(|o| apt_can_install(&String::from_utf8_lossy(&o.stdout)));
    if installable {
        skip_or_fail(test, &format!("needs {tool}, which is not installed (apt-get install {package})"));
    } else {
        eprintln!(
            "SKIPPED {test}: needs {tool}, which is not installed and which this machine's apt sources do not \
             have (Debian 12 and Ubuntu LTS do not package a current one); install it by hand to run this check"
        );
    }
}

/// True when `apt-cache policy PKG` output (`policy`) names a repository that has a version of
/// PKG: a `Version table` line `PRIORITY SOURCE` whose source is not the local dpkg status
/// (which only says it is installed here).
pub fn apt_can_install(policy: &str) -> bool {
    policy.lines().any(|line| {
        let mut words = line.split_whitespace();
        let priority = words.next().is_some_and(|w| w.parse::<i32>().is_ok());
        let source = words.next();
        priority && source.is_some_and(|s| s.parse::<i32>().is_err() && s != "/var/lib/dpkg/status")
    })
}

/// An HTTP agent for tests: no proxy, errors as values (a 4xx is an answer, not an Err).
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::apt_can_install;

    #[test]
    fn apt_policy_tells_a_repository_from_a_local_install() {
        let from_debian = "kubernetes-client:\n  Installed: (none)\n  Candidate: 1.20.5+really1.20.2-1.1+deb12u1\n  \
            Version table:\n     1.20.5+really1.20.2-1.1+deb12u1 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n";
        let local_only = "kubectl:\n  Installed: 1:528.0.0-0\n  Candidate: 1:528.0.0-0\n  Version table:\n \
            *** 1:528.0.0-0 100\n        100 /var/lib/dpkg/status\n";
        let unknown = "N: Unable to locate package kubectl\n";
        assert!(apt_can_install(from_debian));
        assert!(!apt_can_install(local_only));
        assert!(!apt_can_install(unknown));
        assert!(!apt_can_install(""));
        assert!(!apt_can_install("kubectl:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n"));
    }
}
