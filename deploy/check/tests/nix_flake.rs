//! The Nix flake, as far as a machine without nixpkgs can check it (Debian's nix-bin, Nix 2.8):
//! flake.nix parses, its inputs evaluate, and flake.lock locks exactly those inputs, each to a
//! full revision with a NAR hash, following what flake.nix says. Building it needs nixpkgs and
//! rust-overlay from GitHub, which this project's build machines cannot reach (README, "Nix").
//!
//! Skipped with a message when nix-instantiate is missing, unless LITEOBS_REQUIRE_PRIVILEGED=1
//! (CI), where that is a failure: scripts/test.sh installs nix-bin.

use std::process::Command;

use liteobs_deploy_check::{repo_root, skip_or_fail};
use serde_json::Value;

/// Runs nix-instantiate with ARGS in the repository, with a private state directory (Nix 2.8
/// otherwise wants to write under /nix/var, which only root may). None when it is not installed.
fn nix_instantiate(args: &[&str]) -> Option<(bool, String, String)> {
    let state = tempfile::tempdir().expect("tempdir");
    let out = match Command::new("nix-instantiate")
        .args(args)
        .current_dir(repo_root())
        .env("NIX_STATE_DIR", state.path())
        .env("NIX_CONFIG", "build-users-group =")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running nix-instantiate: {e}"),
    };
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn flake_parses_and_its_lock_pins_every_input() {
    let Some((ok, _, err)) = nix_instantiate(&["--parse", "flake.nix"]) else {
        skip_or_fail("nix flake check", "needs nix-instantiate (apt-get install nix-bin)");
        return;
    };
    assert!(ok, "nix-instantiate --parse flake.nix:\n{err}");

    let expr = "let f = import ./flake.nix; \
                    w = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package; \
                in { inputs = f.inputs; description = f.description; rust = w.rust-version; version = w.version; }";
    let (ok, out, err) =
        nix_instantiate(&["--eval", "--strict", "--json", "-E", expr]).expect("nix-instantiate");
    assert!(ok, "evaluating flake.nix's inputs:\n{err}");
    let flake: Value = serde_json::from_str(&out).expect("nix-instantiate --json prints JSON");
    assert!(flake["description"].as_str().is_some_and(|d| !d.is_empty()), "flake.nix has a description");
    assert_eq!(flake["rust"], "1.95", "the toolchain the flake asks rust-overlay for");

    let lock_text = std::fs::read_to_string(repo_root().join("flake.lock")).expect("flake.lock");
    let lock: Value = serde_json::from_str(&lock_text).expect("flake.lock is JSON");
    assert_eq!(lock["version"], 7, "flake.lock format version");
    let root = lock["root"].as_str().expect("flake.lock root");
    let nodes = lock["nodes"].as_object().expect("flake.lock nodes");
    let root_inputs = nodes[root]["inputs"].as_object().expect("root inputs");
    let inputs = flake["inputs"].as_object().expect("flake inputs");
    assert_eq!(
        root_inputs.keys().collect::<Vec<_>>(),
        inputs.keys().collect::<Vec<_>>(),
        "flake.lock locks exactly the inputs of flake.nix"
    );

    for (name, input) in inputs {
        let node = &nodes[root_inputs[name].as_str().expect("a root input names a node")];
        let locked = &node["locked"];
        let original = &node["original"];
        // "github:OWNER/REPO" or "github:OWNER/REPO/REF", as flake.nix writes it.
        let url = input["url"].as_str().expect("input url");
        let mut parts = url.strip_prefix("github:").expect("github: inputs only").split('/');
        let (owner, repo, r#ref) = (parts.next(), parts.next(), parts.next());
        assert_eq!(original["owner"].as_str(), owner, "{name}: original owner");
        assert_eq!(original["repo"].as_str(), repo, "{name}: original repo");
        assert_eq!(original["ref"].as_str(), r#ref, "{name}: original ref");
        assert_eq!(
            (locked["owner"].as_str(), locked["repo"].as_str()),
            (owner, repo),
            "{name}: locked source"
        );
        assert_eq!(locked["type"], "github", "{name}");
        let rev = locked["rev"].as_str().unwrap_or_default();
        assert!(
            rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: full revision, got {rev:?}"
        );
        let nar = locked["narHash"].as_str().unwrap_or_default();
        assert!(
            nar.strip_prefix("sha256-").is_some_and(|h| h.len() == 44 && h.ends_with('=')),
            "{name}: SRI sha256 narHash, got {nar:?}"
        );
        assert!(locked["lastModified"].as_u64().is_some(), "{name}: lastModified");
        // `inputs.X.follows = "Y"` is locked as ["Y"].
        let follows = input["inputs"].as_object().into_iter().flatten();
        for (sub, spec) in follows {
            let target = spec["follows"].as_str().expect("only `follows` sub-inputs");
            assert_eq!(
                node["inputs"][sub],
                serde_json::json!([target]),
                "{name}.inputs.{sub} follows {target}"
            );
        }
    }
}
