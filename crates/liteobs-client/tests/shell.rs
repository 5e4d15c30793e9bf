//! The completion scripts and the man page of the built binary, checked by the real shells and
//! `man` where this machine has them (each check that needs one skips with a line saying so
//! when it is missing; `bash` is always there).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_liteobs-client");

/// Every long flag of the program and its commands.
const FLAGS: [&str; 18] = [
    "ip",
    "pid",
    "method",
    "status",
    "path",
    "namespace",
    "pod",
    "route",
    "since",
    "until",
    "limit",
    "server",
    "token",
    "ca-file",
    "output",
    "timeout",
    "group-by",
    "sort",
];

fn generated(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).env_remove("LITEOBS_SERVER").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn script(shell: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), generated(&["completions", shell])).unwrap();
    file
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `program args...`, returning stdout; fails the test on a non-zero exit.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_script_names_the_commands_and_both_spellings_of_every_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let s = generated(&["completions", shell]);
        for command in ["stats", "map", "sql", "completions", "man"] {
            assert!(s.contains(command), "{shell}: {command}");
        }
        for flag in FLAGS {
            let two_dashes = if shell == "fish" { format!("-l {flag}") } else { format!("--{flag}") };
            assert!(s.contains(&two_dashes), "{shell}: --{flag}");
            let one_dash = match shell {
                "bash" => format!(" {flag} "),
                "zsh" => format!("'-{flag}=["),
                _ => format!("-o {flag}"),
            };
            assert!(s.contains(&one_dash), "{shell}: -{flag} ({one_dash:?})");
        }
    }
    // A shell that is not supported is clap's usage error.
    let out = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Asks the bash script what it offers for `words` (the last one is being completed).
fn bash_complete(file: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let n = words.len() - 1;
    let prev = if n > 0 { words[n - 1] } else { "" };
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={n}\n_liteobs__client_goflags liteobs-client '{}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display(),
        quoted.join(" "),
        words[n],
    );
    run("bash", &["-c", &program]).lines().map(str::to_owned).collect()
}

#[test]
fn bash_accepts_the_script_and_completes_what_users_type() {
    let file = script("bash");
    run("bash", &["-n", &file.path().display().to_string()]);
    let offered = bash_complete(file.path(), &["liteobs-client", "-pi"]);
    assert_eq!(offered, ["-pid"], "one dash in, one dash out");
    let offered = bash_complete(file.path(), &["liteobs-client", "--pi"]);
    assert_eq!(offered, ["--pid"]);
    let offered = bash_complete(file.path(), &["liteobs-client", "-o"]);
    assert!(offered.contains(&"-o".to_owned()) && offered.contains(&"-output".to_owned()), "{offered:?}");
    for flag in ["-o", "-output", "--output"] {
        let offered = bash_complete(file.path(), &["liteobs-client", flag, ""]);
        assert!(
            offered.contains(&"wide".to_owned()) && offered.contains(&"csv".to_owned()),
            "{flag}: {offered:?}"
        );
    }
    let offered = bash_complete(file.path(), &["liteobs-client", "-pid", "12", "st"]);
    assert_eq!(offered, ["stats"]);
    let offered = bash_complete(file.path(), &["liteobs-client", "stats", "-gr"]);
    assert_eq!(offered, ["-group-by"]);
    let offered = bash_complete(file.path(), &["liteobs-client", "sq"]);
    assert_eq!(offered, ["sql"]);
    let offered = bash_complete(file.path(), &["liteobs-client", "completions", "z"]);
    assert_eq!(offered, ["zsh"]);
    let offered = bash_complete(file.path(), &["liteobs-client", "map", "-o", "m"]);
    assert_eq!(offered, ["mermaid"]);
}

/// Types `words` and TAB into an interactive zsh (on a zpty) with the script installed, then
/// echoes what the line became: what a user would see.
const ZSH_TYPE: &str = r#"
zmodload zsh/zpty
zpty z env PATH="$BINDIR:$PATH" zsh -f -i
zpty -w z "fpath=($COMPDIR \$fpath); autoload -U compinit; compinit -u; PS1='%% '"
zpty -w -n z "liteobs-client $WORDS"$'\t'
sleep 1.5
zpty -w -n z $'\x01echo @@\x05\n'
out=""
for i in {1..50}; do
  zpty -r -t z chunk && out+=$chunk || sleep 0.1
  [[ $out == *"@@"*"@@"* ]] && break
done
zpty -d z
print -r -- "$out"
"#;

#[test]
fn zsh_accepts_the_script_and_completes_what_users_type() {
    if !has("zsh") {
        eprintln!("skipped: zsh is not installed (apt-get install zsh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("_liteobs-client");
    std::fs::write(&file, generated(&["completions", "zsh"])).unwrap();
    run("zsh", &["-n", &file.display().to_string()]);
    let bin_dir = Path::new(BIN).parent().unwrap();
    for (typed, want) in
        [("-pi", "@@liteobs-client -pid"), ("-pid 12 stats -gr", "@@liteobs-client -pid 12 stats -group-by")]
    {
        let out = Command::new("timeout")
            .args(["30", "zsh", "-f", "-c", ZSH_TYPE])
            .env("BINDIR", bin_dir)
            .env("COMPDIR", dir.path())
            .env("WORDS", typed)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "{typed}: no {want:?} in\n{text}");
    }
}

#[test]
fn fish_accepts_the_script_and_completes_what_users_type() {
    if !has("fish") {
        eprintln!("skipped: fish is not installed (apt-get install fish)");
        return;
    }
    let file = script("fish");
    let path = file.path().display().to_string();
    run("fish", &["--no-execute", &path]);
    let complete = |line: &str| -> Vec<String> {
        run("fish", &["-c", &format!("source '{path}'; complete -C '{line}'")])
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        complete("liteobs-client -pi").contains(&"-pid".to_owned()),
        "{:?}",
        complete("liteobs-client -pi")
    );
    assert!(complete("liteobs-client --pi").contains(&"--pid".to_owned()));
    for typed in ["-output ", "--output ", "-o ", "-pid 12 -o ", "stats -o "] {
        let line = format!("liteobs-client {typed}");
        assert!(complete(&line).contains(&"wide".to_owned()), "{line}: {:?}", complete(&line));
    }
    assert!(
        complete("liteobs-client -pid 12 st").contains(&"stats".to_owned()),
        "{:?}",
        complete("liteobs-client -pid 12 st")
    );
    assert!(
        complete("liteobs-client stats -gr").contains(&"-group-by".to_owned()),
        "{:?}",
        complete("liteobs-client stats -gr")
    );
}

#[test]
fn the_man_page_has_every_flag_and_renders() {
    let page = generated(&["man"]);
    assert!(page.starts_with(".ie") || page.contains(".TH liteobs-client"), "{page}");
    for flag in FLAGS {
        // roff escapes the dashes of option names.
        assert!(page.contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))), "--{flag} missing");
    }
    assert!(page.contains("one dash"), "the page says flags take one dash too");
    if !has("man") {
        eprintln!(
            "skipped: man is not installed (apt-get install man-db): the page was checked as text only"
        );
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &page).unwrap();
    let out = Command::new("man")
        .args(["-l", &file.path().display().to_string()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "man -l: {}", String::from_utf8_lossy(&out.stderr));
    let text = strip_overstrike(&text);
    for want in ["liteobs-client", "--group-by", "--pid", "completions"] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}

/// Text without man's overstrike bold (`c\bc`) and underline (`_\bc`).
fn strip_overstrike(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}
