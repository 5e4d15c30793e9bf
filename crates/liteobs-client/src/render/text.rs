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
    let (mut out, _) = take(s.chars(), room);
    out.push(ELLIPSIS);
    Cow::Owned(out.into_iter().collect())
}

/// The chars of `chars` that fit in `room` columns, from the first, and the columns they take.
fn take(chars: impl Iterator<Item = char>, room: usize) -> (Vec<char>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    for c in chars {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    (out, used)
}

/// `s` cut to at most `max` columns by taking chars out of its middle and putting one
/// [`ELLIPSIS`] there, so that both its start and its end stay (`shop/checko…x2kqz`,
/// `very-long-na…/1234`): for names whose end tells apart what their start groups together.
/// When the room is odd the start gets the extra column, since it is read first. Never splits
/// a char (a wide one that does not fit is dropped, so the result may be up to two columns
/// short); `max == 0` gives "".
pub fn ellipsize_middle(s: &str, max: usize) -> Cow<'_, str> {
    if width(s) <= max {
        return Cow::Borrowed(s);
    }
    let Some(room) = max.checked_sub(1) else {
        return Cow::Borrowed("");
    };
    let (mut head, used) = take(s.chars(), room - room / 2);
    // A wide char that did not fit the head leaves its column to the tail.
    let (mut tail, _) = take(s.chars().rev(), room - used);
    tail.reverse();
    head.push(ELLIPSIS);
    head.extend(tail);
    Cow::Owned(head.into_iter().collect())
}

/// `line` cut to `width` columns with [`ELLIPSIS`] when it is wider, the spaces a cut may
/// leave before the mark dropped. For the last resort, when no layout fits.
pub fn clip(line: &str, width: usize) -> Cow<'_, str> {
    if self::width(line) <= width {
        return Cow::Borrowed(line);
    }
    let cut = ellipsize(line, width);
    match cut.strip_suffix(ELLIPSIS) {
        Some(body) if width > 1 => Cow::Owned(format!("{}{ELLIPSIS}", body.trim_end())),
        _ => cut,
    }
}

/// `text` broken into lines of at most `width` columns at spaces; a word wider than `width`
/// is cut with [`ELLIPSIS`]. For footers, which are prose and must not be clipped.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word = ellipsize(word, width);
        if !line.is_empty() && self::width(&line) + 1 + self::width(&word) > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
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

    #[test]
    fn middle_cuts_keep_both_ends() {
        assert_eq!(ellipsize_middle("shop/checkout-7d9f8b6c4-x2kqz", 17), "shop/che…c4-x2kqz");
        assert_eq!(ellipsize_middle("curl/1234", 9), "curl/1234");
        assert_eq!(ellipsize_middle("a-very-long-command/1234", 12), "a-very…/1234");
        assert_eq!(ellipsize_middle("/日本語のパス/x", 8), "/日…ス/x");
        assert_eq!(ellipsize_middle("abc", 1), "…");
        assert_eq!(ellipsize_middle("abc", 0), "");
        for max in 0..24 {
            let cut = ellipsize_middle("/日本語/é/パス/😀/abc", max);
            assert!(width(&cut) <= max, "{max}: {cut}");
            // A wide char may fail to fit at each end: at most a column lost at each.
            assert!(width(&cut) + 2 >= max || max == 0, "{max}: {cut} lost more than two columns");
        }
    }

    #[test]
    fn clips_and_wraps_stay_within_the_width() {
        assert_eq!(clip("abc  def", 6), "abc…");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(
            wrap("3 exchanges (limit 3 reached; more match)", 16),
            ["3 exchanges", "(limit 3", "reached; more", "match)"]
        );
        assert_eq!(wrap("", 10), [""]);
        for w in 1..50 {
            for l in wrap("100 exchanges (limit 100 reached; more match — raise -limit)", w) {
                assert!(width(&l) <= w, "{w}: {l}");
            }
        }
    }
}
