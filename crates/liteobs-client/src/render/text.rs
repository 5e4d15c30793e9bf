//! Terminal-safe text: control characters escaped, widths measured in terminal columns.
//!
//! Paths, methods and process names come off the wire, so a captured request could carry an
//! escape sequence that rewrites the user's terminal, or a newline that breaks the table. Every
//! such string passes through [`printable`] before it is shown.
//!
//! Widths are display columns (Unicode East Asian Width: `日` takes two, a combining accent
//! none), never bytes, so that a Japanese path lines up like an ASCII one. Truncation works on
//! whole chars, so it never splits one.

use std::borrow::Cow;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The mark left where text was cut (one column wide).
pub const ELLIPSIS: char = '…';

/// `s` with every control character (C0, DEL, C1) replaced by its Rust escape (`\n`, `\u{1b}`).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Columns `s` takes on a terminal. Meant for [`printable`] text (control characters count 0).
pub fn width(s: &str) -> usize {
    s.width()
}

/// `s` cut to at most `max` columns, ending in [`ELLIPSIS`] when cut. A wide char that would
/// straddle the limit is dropped whole, so the result may be one column short. `max == 0`
/// gives "".
pub fn ellipsize(s: &str, max: usize) -> Cow<'_, str> {
    if width(s) <= max {
        return Cow::Borrowed(s);
    }
    let Some(room) = max.checked_sub(1) else {
        return Cow::Borrowed("");
    };
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push(ELLIPSIS);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_others_kept() {
        assert!(matches!(printable("/päth?q=✓"), Cow::Borrowed("/päth?q=✓")));
        assert_eq!(printable("/a\tb\n\u{1b}[31mred\u{7f}\u{9b}"), r"/a\tb\n\u{1b}[31mred\u{7f}\u{9b}");
    }

    #[test]
    fn widths_are_columns_not_bytes() {
        assert_eq!(width("/abc"), 4);
        assert_eq!(width("/päth"), 5);
        assert_eq!(width("/e\u{301}"), 2, "a combining accent takes no column");
        assert_eq!(width("/日本"), 5);
        assert_eq!(width("/😀"), 3);
    }

    #[test]
    fn ellipsize_never_splits_a_char_nor_exceeds_the_limit() {
        assert_eq!(ellipsize("/abc", 4), "/abc");
        assert_eq!(ellipsize("/abcd", 4), "/ab…");
        assert_eq!(ellipsize("/ääää", 4), "/ää…");
        // Multi-byte and wide: a byte-based cut would panic or split them.
        assert_eq!(ellipsize("/日本語のパス", 6), "/日本…");
        assert_eq!(ellipsize("/日本語のパス", 5), "/日…", "日本 would need 5 + 1 for the ellipsis");
        assert_eq!(ellipsize("/😀😀😀", 4), "/😀…");
        for max in 0..20 {
            let cut = ellipsize("/日本語/é/パス/😀/abc", max);
            assert!(width(&cut) <= max, "{max}: {cut}");
            assert!(width(&cut) + 1 >= max || max == 0, "{max}: {cut} lost more than a column");
        }
        assert_eq!(ellipsize("/abc", 1), "…");
        assert_eq!(ellipsize("/abc", 0), "");
        assert_eq!(ellipsize("", 0), "");
    }
}
