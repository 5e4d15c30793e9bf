//! Go-style flags for clap.
//!
//! LiteObs started as a Go project whose users typed `liteobs-client -pid 1234` and
//! `liteobs-server -db-type sqlite`. clap reads `-pid` as the short flags `-p -i -d`, so this
//! crate rewrites the command line before clap sees it, following Go's `flag` package:
//!
//! * `-name` / `-name=value` becomes `--name` / `--name=value` when `name` is one of the
//!   command's long flags (or `help`, `version`);
//! * a flag that needs a value takes the next argument as it is, even when it starts with `-`
//!   (`-until -5`, `-path -x`), as Go does; it is handed to clap as `--name=value` so that clap
//!   does not read it as a flag. With nothing after it, clap says the value is missing;
//! * a single-dash word that is neither a long flag nor a cluster of the command's short flags
//!   (`-o json`, `-ojson`, `-vv`) is refused as [`UnknownFlag`], naming the word the user
//!   typed (`-bogus`), where clap alone would name its first letter (`'-b'`);
//! * `-` alone, negative numbers (`-5`), `--name` and everything after `--` pass through, for
//!   clap to judge.
//!
//! Use [`parse`] (or [`try_parse`]) instead of clap's `Parser::parse`, so that every program
//! reports an unknown flag the same way. This crate knows nothing of any one program's flags.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{Command, CommandFactory, FromArgMatches};

/// A single-dash word on the command line that names no flag of the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFlag {
    /// The flag as typed, without any `=value` (`-bogus-flag`).
    pub word: String,
}

/// What [`normalize`] needs to know about one long flag.
struct Long {
    name: String,
    /// The flag needs a value (`-pid 12`), as opposed to a switch (`-promisc`) or a flag whose
    /// value is optional, which take only `-name=value`.
    needs_value: bool,
}

fn longs(cmd: &Command) -> (Vec<Long>, Vec<char>) {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut longs = vec![
        Long { name: "help".to_owned(), needs_value: false },
        Long { name: "version".to_owned(), needs_value: false },
    ];
    let mut shorts = Vec::new();
    // A subcommand's flags count too (`liteobs-client stats -group-by server`): the words are
    // rewritten the same way wherever they stand, and clap judges where each belongs.
    let mut commands = vec![cmd.clone()];
    let mut all = Vec::new();
    while let Some(c) = commands.pop() {
        commands.extend(c.get_subcommands().cloned());
        all.push(c);
    }
    for arg in all.iter().flat_map(|c| c.get_arguments()) {
        let needs_value =
            arg.get_action().takes_values() && arg.get_num_args().is_some_and(|n| n.min_values() >= 1);
        for name in arg.get_long().into_iter().chain(arg.get_all_aliases().into_iter().flatten()) {
            longs.push(Long { name: name.to_owned(), needs_value });
        }
        shorts.extend(arg.get_short().into_iter().chain(arg.get_all_short_aliases().into_iter().flatten()));
    }
    if !cmd.is_disable_help_flag_set() {
        shorts.push('h');
    }
    if cmd.get_version().is_some() && !cmd.is_disable_version_flag_set() {
        shorts.push('V');
    }
    (longs, shorts)
}

/// Rewrites `args` (program name first) as described in the crate docs, or names the first
/// single-dash word that is no flag of `cmd`.
pub fn normalize<I, T>(cmd: &Command, args: I) -> Result<Vec<OsString>, UnknownFlag>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let (longs, shorts) = longs(cmd);
    let mut args = args.into_iter().map(Into::into);
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    while let Some(arg) = args.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        // Flags are ASCII; anything not UTF-8 is a value or clap's to refuse.
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let (dashes, body) = match s.strip_prefix("--") {
            Some(body) => ("--", body),
            None => match s.strip_prefix('-') {
                Some(body) if !body.is_empty() => ("-", body),
                _ => {
                    out.push(arg);
                    continue;
                }
            },
        };
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let long = longs.iter().find(|l| l.name == name).filter(|_| dashes == "--" || name.len() > 1);
        match (long, value) {
            (Some(_), Some(value)) => out.push(format!("--{name}={value}").into()),
            (Some(long), None) if long.needs_value => match args.next() {
                Some(value) => {
                    let mut joined = OsString::from(format!("--{name}="));
                    joined.push(value);
                    out.push(joined);
                }
                None => out.push(format!("--{name}").into()),
            },
            (Some(_), None) => out.push(format!("--{name}").into()),
            (None, _) if dashes == "--" || is_number(body) => out.push(arg),
            (None, _) => match body.chars().next() {
                Some(first) if shorts.contains(&first) => out.push(arg),
                _ => return Err(UnknownFlag { word: format!("-{name}") }),
            },
        }
    }
    Ok(out)
}

/// `5`, `-5`'s body, `1.5`: a negative number given where a value was expected, which clap
/// judges better than "unknown flag".
fn is_number(body: &str) -> bool {
    body.starts_with(|c: char| c.is_ascii_digit()) && body.parse::<f64>().is_ok()
}

/// Parses `args` (program name first) into `P`, Go-style; errors are clap's (exit code 2 with
/// [`clap::Error::exit`]), an unknown single-dash flag included.
pub fn try_parse<P, I, T>(args: I) -> Result<P, clap::Error>
where
    P: FromArgMatches + CommandFactory,
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut cmd = P::command();
    let args = normalize(&cmd, args).map_err(|unknown| {
        cmd.error(
            ErrorKind::UnknownArgument,
            format!("unexpected argument '{}' found (every flag is listed by -help)", unknown.word),
        )
    })?;
    let matches = cmd.try_get_matches_from_mut(args)?;
    P::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// [`try_parse`], printing clap's message and exiting on an error (or on `-help`).
pub fn parse<P, I, T>(args: I) -> P
where
    P: FromArgMatches + CommandFactory,
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    try_parse(args).unwrap_or_else(|e| e.exit())
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
            .arg(Arg::new("promisc").long("promisc").num_args(0..=1).default_missing_value("true"))
            .arg(Arg::new("dry-run").long("dry-run").action(ArgAction::SetTrue))
    }

    fn run(args: &[&str]) -> Result<Vec<String>, UnknownFlag> {
        normalize(&cmd(), args.iter().copied())
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            run(&["t", "-pid", "12", "-db-type=sqlite"]).unwrap(),
            ["t", "--pid=12", "--db-type=sqlite"]
        );
        assert_eq!(run(&["t", "--pid", "12"]).unwrap(), ["t", "--pid=12"]);
        assert_eq!(run(&["t", "-dry-run", "-promisc"]).unwrap(), ["t", "--dry-run", "--promisc"]);
        assert_eq!(run(&["t", "-promisc=false"]).unwrap(), ["t", "--promisc=false"]);
        let m = cmd().get_matches_from(run(&["t", "-pid", "12", "-o", "json", "-vv"]).unwrap());
        assert_eq!(m.get_one::<String>("pid").map(String::as_str), Some("12"));
        assert_eq!(m.get_one::<String>("output").map(String::as_str), Some("json"));
        assert_eq!(m.get_count("verbose"), 2);
    }

    #[test]
    fn a_flag_that_needs_a_value_takes_the_next_argument_whatever_it_is() {
        assert_eq!(run(&["t", "-pid", "-5"]).unwrap(), ["t", "--pid=-5"]);
        assert_eq!(run(&["t", "-pid", "-db-type"]).unwrap(), ["t", "--pid=-db-type"]);
        assert_eq!(run(&["t", "--pid", "--"]).unwrap(), ["t", "--pid=--"]);
        assert_eq!(run(&["t", "-pid", ""]).unwrap(), ["t", "--pid="]);
        assert_eq!(run(&["t", "-pid"]).unwrap(), ["t", "--pid"], "clap says the value is missing");
        let m = cmd().get_matches_from(run(&["t", "-pid", "-5"]).unwrap());
        assert_eq!(m.get_one::<String>("pid").map(String::as_str), Some("-5"));
    }

    #[test]
    fn unknown_single_dash_words_are_named_as_typed() {
        for (args, word) in [
            (&["t", "-bogus-flag"][..], "-bogus-flag"),
            (&["t", "-bogus=1"], "-bogus"),
            (&["t", "-pidx", "1"], "-pidx"),
            (&["t", "-p"], "-p"),
            (&["t", "-pid", "1", "-x"], "-x"),
        ] {
            assert_eq!(run(args), Err(UnknownFlag { word: word.to_owned() }), "{args:?}");
        }
    }

    #[test]
    fn shorts_numbers_lone_dash_double_dash_pass_through() {
        assert_eq!(run(&["t", "-o", "-5"]).unwrap(), ["t", "-o", "-5"]);
        assert_eq!(run(&["t", "-ojson", "-vv", "-1.5", "-"]).unwrap(), ["t", "-ojson", "-vv", "-1.5", "-"]);
        assert_eq!(
            run(&["t", "--bogus", "--", "-pid", "-bogus"]).unwrap(),
            ["t", "--bogus", "--", "-pid", "-bogus"]
        );
        assert_eq!(run(&["t", "-help"]).unwrap(), ["t", "--help"]);
        assert_eq!(run(&["t", "-h"]).unwrap(), ["t", "-h"]);
    }

    #[derive(Debug, clap::Parser)]
    #[command(name = "t")]
    struct Flags {
        #[arg(long)]
        pid: Option<String>,
    }

    #[test]
    fn parse_reports_the_typed_word_as_clap_would() {
        let e = try_parse::<Flags, _, _>(["t", "-bogus-flag"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(e.to_string().starts_with("error: unexpected argument '-bogus-flag' found"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(try_parse::<Flags, _, _>(["t", "-pid", "-5"]).unwrap().pid.as_deref(), Some("-5"));
        let e = try_parse::<Flags, _, _>(["t", "-"]).unwrap_err();
        assert!(e.to_string().contains("unexpected argument '-' found"), "{e}");
    }
}
