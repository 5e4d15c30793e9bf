//! Go-style flags for clap.
//!
//! LiteObs started as a Go project whose users typed `liteobs-client -pid 1234` and
//! `liteobs-server -db-type sqlite`. clap reads `-pid` as the short flags `-p -i -d`, so this
//! crate rewrites a single-dash argument to its double-dash form when its name (before any `=`)
//! is one of the command's long flags. Everything else (short flags such as `-o`, values, and
//! anything after `--`) passes through untouched, so both spellings work.

use std::ffi::OsString;

use clap::Command;

/// Rewrites `-name` / `-name=value` to `--name` / `--name=value` for every long flag `name` of
/// `cmd`. The first item (the program name) is kept as is.
pub fn normalize<I, T>(cmd: &Command, args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let longs: Vec<&str> = cmd
        .get_arguments()
        .flat_map(|a| a.get_long().into_iter().chain(a.get_all_aliases().into_iter().flatten()))
        .chain(["help", "version"])
        .collect();
    let mut out = Vec::new();
    let mut verbatim = false;
    for (i, arg) in args.into_iter().enumerate() {
        let arg: OsString = arg.into();
        if i == 0 || verbatim {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            verbatim = true;
            out.push(arg);
            continue;
        }
        let rewritten = arg.to_str().and_then(|s| {
            let body = s.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
            let name = body.split('=').next()?;
            (name.len() > 1 && longs.contains(&name)).then(|| OsString::from(format!("-{s}")))
        });
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn cmd() -> Command {
        Command::new("t")
            .arg(Arg::new("pid").long("pid"))
            .arg(Arg::new("db-type").long("db-type"))
            .arg(Arg::new("output").short('o').long("output"))
            .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
    }

    fn run(args: &[&str]) -> Vec<String> {
        normalize(&cmd(), args.iter().copied()).into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(run(&["t", "-pid", "12", "-db-type=sqlite"]), ["t", "--pid", "12", "--db-type=sqlite"]);
        assert_eq!(run(&["t", "--pid", "12"]), ["t", "--pid", "12"]);
        let m = cmd().get_matches_from(run(&["t", "-pid", "12", "-o", "json", "-vv"]));
        assert_eq!(m.get_one::<String>("pid").map(String::as_str), Some("12"));
        assert_eq!(m.get_one::<String>("output").map(String::as_str), Some("json"));
        assert_eq!(m.get_count("verbose"), 2);
    }

    #[test]
    fn unknown_names_values_and_everything_after_double_dash_pass_through() {
        assert_eq!(run(&["t", "-o", "-pidx", "-5"]), ["t", "-o", "-pidx", "-5"]);
        assert_eq!(run(&["t", "--", "-pid"]), ["t", "--", "-pid"]);
        assert_eq!(run(&["t", "-help"]), ["t", "--help"]);
    }
}
