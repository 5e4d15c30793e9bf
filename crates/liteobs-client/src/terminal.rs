//! How wide the output may be and whether it may be coloured.
//!
//! Decided once, in `main`, from stdout and the environment; everything below takes the answer
//! as plain values. The rules are in [`Terminal::decide`], a pure function, so they are tested
//! without a terminal:
//!
//! * width: the terminal's own width when stdout is one; otherwise `$COLUMNS` when it is a
//!   positive number; otherwise, on a terminal whose size cannot be read, [`TTY_FALLBACK_WIDTH`];
//!   otherwise (a pipe or a file, and no `$COLUMNS`) no limit: as kubectl does, output that is
//!   not read on a terminal is never cut, so that `grep` and `less -S` see whole rows;
//! * colour: only when stdout is a terminal, `NO_COLOR` is unset or empty (<https://no-color.org>)
//!   and `TERM` is not `dumb`.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// Width used when stdout is a terminal that does not say how wide it is, nor does `$COLUMNS`.
pub const TTY_FALLBACK_WIDTH: usize = 80;

/// Where output goes, as far as rendering cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    /// Columns available, in terminal columns; `None`: no limit.
    pub width: Option<usize>,
    /// May ANSI colour codes be written.
    pub colour: bool,
}

impl Terminal {
    /// Looks at the real stdout and environment.
    pub fn detect() -> Terminal {
        let stdout = std::io::stdout();
        let is_tty = stdout.is_terminal();
        let tty_width = terminal_size::terminal_size_of(&stdout).map(|(w, _)| usize::from(w.0));
        Terminal::decide(
            is_tty,
            tty_width,
            std::env::var_os("COLUMNS").as_deref(),
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        )
    }

    /// The rules, applied to given facts (`tty_width` is the terminal's width if known).
    pub fn decide(
        is_tty: bool,
        tty_width: Option<usize>,
        columns: Option<&OsStr>,
        no_color: Option<&OsStr>,
        term: Option<&OsStr>,
    ) -> Terminal {
        let columns = columns.and_then(OsStr::to_str).and_then(|c| c.trim().parse::<usize>().ok());
        let width = [if is_tty { tty_width } else { None }, columns, is_tty.then_some(TTY_FALLBACK_WIDTH)]
            .into_iter()
            .flatten()
            .find(|w| *w > 0);
        let colour = is_tty && no_color.is_none_or(OsStr::is_empty) && term != Some(OsStr::new("dumb"));
        Terminal { width, colour }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn width_prefers_the_terminal_then_columns_and_a_pipe_has_no_limit() {
        assert_eq!(Terminal::decide(true, Some(93), os("70"), None, None).width, Some(93));
        assert_eq!(Terminal::decide(true, None, os("70"), None, None).width, Some(70));
        assert_eq!(Terminal::decide(false, Some(93), os("70"), None, None).width, Some(70));
        assert_eq!(Terminal::decide(false, Some(93), None, None, None).width, None);
        for junk in ["", "0", "-5", "wide"] {
            assert_eq!(Terminal::decide(false, None, os(junk), None, None).width, None, "{junk:?}");
            assert_eq!(Terminal::decide(true, None, os(junk), None, None).width, Some(TTY_FALLBACK_WIDTH));
        }
        assert_eq!(Terminal::decide(true, Some(0), None, None, None).width, Some(TTY_FALLBACK_WIDTH));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(Terminal::decide(true, None, None, None, os("xterm")).colour);
        assert!(Terminal::decide(true, None, None, os(""), None).colour, "empty NO_COLOR is unset");
        assert!(!Terminal::decide(true, None, None, os("1"), None).colour);
        assert!(!Terminal::decide(true, None, None, None, os("dumb")).colour);
        assert!(!Terminal::decide(false, None, None, None, os("xterm")).colour);
    }
}
