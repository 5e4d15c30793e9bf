//! Aligned columns for the `stats` and `map` tables: a header and rows of cells already made
//! printable, two spaces apart, each column as wide as its widest cell, text to the left and
//! numbers to the right. (The exchange table fits a width with its own ladder: `table/`.)

use super::text::width;

/// The header line and one line per row, each ending with `\n`. `left(i)` says whether column
/// `i` is aligned to the left; the last column gets no trailing spaces.
pub fn aligned(header: &[&str], rows: &[Vec<String>], left: impl Fn(usize) -> bool) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .chain([width(header[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = " ".repeat(widths.get(i).copied().unwrap_or(0).saturating_sub(width(c)));
            if left(i) {
                l.push_str(c);
                if i + 1 < header.len() {
                    l.push_str(&pad);
                }
            } else {
                l.push_str(&pad);
                l.push_str(c);
            }
        }
        l.push('\n');
        l
    };
    let mut out = line(&mut header.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_display_width() {
        let rows = vec![vec!["ü-name".to_owned(), "5".to_owned()], vec!["b".to_owned(), "1200".to_owned()]];
        assert_eq!(aligned(&["NAME", "N"], &rows, |i| i == 0), "NAME       N\nü-name     5\nb       1200\n");
    }
}
