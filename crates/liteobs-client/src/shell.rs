//! Shell completions (`liteobs-client completions bash|zsh|fish`) and the man page
//! (`liteobs-client man`), generated from the same clap definitions as the flags themselves
//! ([`Cli`]), so that they cannot drift from what the program accepts.
//!
//! Users type long flags with one dash, Go-style (`-pid 1234`); `liteobs-goflags` rewrites them
//! to `--pid` before clap sees them, but clap_complete's scripts only know `--pid`. Each script
//! is therefore taught the one-dash spellings too, after it is generated:
//!
//! * bash: a wrapper around clap's completion function asks it with the word given two dashes
//!   (`-pi` as `--pi`) and answers with one (`-pid`); a flag typed with one dash before the word
//!   being completed (`-o` / `-output` then TAB) is looked up with two, so its values complete.
//!   (Also fixed: clap_complete 4.6 misnames the cases of a hyphenated program's subcommands,
//!   so `stats -gr` TAB gave nothing even with two dashes.)
//! * zsh: every `--name` option spec of `_arguments` is given a `-name` twin.
//! * fish: every `-l name` (long option) gets `-o name` (fish's own "old-style" one-dash long
//!   option), and the words before the cursor are rewritten to two dashes before fish's
//!   `argparse` looks for the command word (`stats`, `map`) among them; a last word that is a
//!   flag waiting for its value is left out of that look (argparse refused it, and clap's
//!   script then offered no values for `-o `, with one dash or two).
//!
//! What completes, in all three: subcommands, every flag in both spellings, the values of `-o`
//! and of `completions`, and file names for `-ca-file`. Filter values (PIDs, paths) are not
//! completed: they would need the server.
//!
//! The man page is clap_mangen's page for the program, with one more section per command that
//! has flags of its own (`stats`), so that every flag is in it.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::Cli;

/// The program's name, as the scripts register it.
pub const BIN: &str = "liteobs-client";

/// The shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// What a command that asks no server prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    Completions(Shell),
    Man,
}

/// Writes `what` to `out`.
pub fn write(what: Generated, out: &mut dyn Write) -> io::Result<()> {
    match what {
        Generated::Completions(shell) => out.write_all(completions(shell).as_bytes()),
        Generated::Man => man(out),
    }
}

/// Every long flag of the program and its commands, and whether it needs a value.
fn longs() -> Vec<(String, bool)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut commands = vec![cmd];
    let mut out: Vec<(String, bool)> = vec![("help".into(), false), ("version".into(), false)];
    while let Some(c) = commands.pop() {
        for arg in c.get_arguments().filter(|a| !a.is_hide_set()) {
            let needs_value = arg.get_action().takes_values();
            for long in arg.get_long_and_visible_aliases().into_iter().flatten() {
                if !out.iter().any(|(l, _)| l == long) {
                    out.push((long.to_owned(), needs_value));
                }
            }
        }
        commands.extend(c.get_subcommands().cloned());
    }
    out
}

/// The short flags that need a value (`o`).
fn short_valued() -> Vec<String> {
    let mut cmd = Cli::command();
    cmd.build();
    cmd.get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_short().map(String::from))
        .collect()
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, BIN, &mut script),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, BIN, &mut script),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, BIN, &mut script),
    }
    let script = String::from_utf8_lossy(&script).into_owned();
    match shell {
        Shell::Bash => bash_go_style(&script),
        Shell::Zsh => zsh_go_style(&script),
        Shell::Fish => fish_go_style(&script),
    }
}

/// clap's bash function, as clap_complete names it.
fn bash_function() -> String {
    format!("_{}", BIN.replace('-', "__"))
}

fn bash_go_style(script: &str) -> String {
    let inner = bash_function();
    let outer = format!("{inner}_goflags");
    let words = |needs_value: Option<bool>| {
        let names: Vec<String> = longs()
            .into_iter()
            .filter(|(_, v)| needs_value.is_none_or(|want| *v == want))
            .map(|(l, _)| l)
            .collect();
        format!(" {} ", names.join(" "))
    };
    // clap_complete 4.6 names the cases of a hyphenated program's subcommands with the hyphen
    // replaced twice (`liteobs__subcmd__client__subcmd__stats`), so no subcommand's flags would
    // ever complete: the names are put back as its loop above them writes them.
    let mut out = script
        .replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__"))
        .replace(&format!("complete -F {inner} "), &format!("complete -F {outer} "));
    out.push_str(&format!(
        r#"
# liteobs-client's users write long flags with one dash, as in Go (-pid 1234); the function
# above knows them with two. This one asks it with two dashes and answers with one.
{outer}() {{
    local longs="{all}" valued="{valued}"
    local cur="$2" prev="$3" typed
    if [[ "$prev" == -[!-]* && "$longs" == *" ${{prev#-}} "* ]]; then
        prev="-$prev"
    fi
    if [[ "$cur" == -[!-]* && "$valued" != *" ${{prev#--}} "* ]]; then
        {inner} "$1" "$cur" "$prev"
        typed=("${{COMPREPLY[@]}}")
        {inner} "$1" "-$cur" "$prev"
        COMPREPLY=("${{typed[@]}}" "${{COMPREPLY[@]#-}}")
    else
        {inner} "$1" "$cur" "$prev"
    fi
}}
"#,
        all = words(None),
        valued = words(Some(true)),
    ));
    out
}

fn zsh_go_style(script: &str) -> String {
    let mut out = String::with_capacity(script.len() * 2);
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        let Some(twin) = zsh_twin(line) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        // A spec may run over several lines (values with descriptions): it ends at `' \`.
        let mut spec = vec![line];
        while !spec.last().is_some_and(|l| l.trim_end().ends_with("' \\")) {
            match lines.next() {
                Some(next) => spec.push(next),
                None => break,
            }
        }
        for l in [twin.as_str()].into_iter().chain(spec[1..].iter().copied()).chain(spec.iter().copied()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `'-pid=[...]...' \` for an option spec line `'--pid=[...]...' \` (after any `(exclusions)`
/// and `*`), else `None`.
fn zsh_twin(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let spec = line.trim_start().strip_prefix('\'')?;
    let mut at = 0;
    if spec.starts_with('(') {
        at = spec.find(')')? + 1;
    }
    if spec[at..].starts_with('*') {
        at += 1;
    }
    let rest = spec[at..].strip_prefix("--")?;
    rest.starts_with(|c: char| c.is_ascii_alphanumeric())
        .then(|| format!("{}'{}-{rest}", &line[..indent], &spec[..at]))
}

fn fish_go_style(script: &str) -> String {
    let longs = longs();
    let mut out = String::with_capacity(script.len() * 2);
    for line in script.lines() {
        if line.starts_with("complete ") {
            let mut line = line.to_owned();
            for (long, _) in &longs {
                let l = format!(" -l {long} ");
                if let Some(p) = line.find(&l) {
                    line.insert_str(p + l.len() - 1, &format!(" -o {long}"));
                }
                let l_end = format!(" -l {long}");
                if line.ends_with(&l_end) {
                    line.push_str(&format!(" -o {long}"));
                }
            }
            out.push_str(&line);
        } else if line.trim_start().starts_with("argparse ") {
            // argparse knows long options with two dashes only; and it refuses a flag still
            // waiting for its value (the word being completed), which would hide the value
            // completions of `-o `/`--output `: such a last word is left out of its view.
            let names: Vec<&str> = longs.iter().map(|(l, _)| l.as_str()).collect();
            let valued: Vec<&str> = longs.iter().filter(|(_, v)| *v).map(|(l, _)| l.as_str()).collect();
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!(
                "{indent}set cmd (string replace -r -- '^-({})(=.*)?$' '--$1$2' $cmd)\n",
                names.join("|")
            ));
            out.push_str(&format!(
                "{indent}if set -q cmd[1]; and string match -qr -- '^(--({})|-{})$' $cmd[-1]\n{indent}    set -e cmd[-1]\n{indent}end\n",
                valued.join("|"),
                short_valued().join("|-"),
            ));
            out.push_str(line);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The man page (roff): clap_mangen's page for the program, then a section per command with
/// flags of its own.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands() {
        let own: Vec<clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
            .cloned()
            .collect();
        if own.is_empty() {
            continue;
        }
        let page = clap_mangen::Man::new(clap::Command::new(BIN).disable_help_flag(true).args(own));
        let mut section = Vec::new();
        page.render_options_section(&mut section)?;
        let section = String::from_utf8_lossy(&section);
        let heading = format!(".SH \"OPTIONS OF {} {}\"", BIN.to_uppercase(), sub.get_name().to_uppercase());
        out.write_all(section.replacen(".SH OPTIONS", &heading, 1).as_bytes())?;
    }
    Ok(())
}
