//! Writing a table's lines once [`super::fit`] has chosen its columns and widths: every table of
//! the client (exchanges, `stats`, `map`) goes through [`Grid`].
//!
//! * Cells are given already [`printable`](super::text::printable); a cell wider than its
//!   column is cut as its [`Spec::cut`] says (at its end or in its middle, with `…`).
//! * Columns are [`GAP`] spaces apart, text to the left, numbers to the right; the last column
//!   gets no trailing spaces.
//! * A plan that overflows a [`Fit::Width`] table has its lines cut at the width with `…` (the
//!   last resort); a [`Fit::Whole`] one prints them whole.
//! * With colour, the header is bold and a cell may be painted; escape codes wrap only the text,
//!   so they never count towards a width, and a line that had to be cut loses its colour
//!   (cutting between escape codes would break them).
//!
//! A [`Grid`] is made once, from the rows it will print or from widths decided in advance, and
//! then writes the header and any number of rows, one at a time: a stream (`-follow`) prints
//! its rows as they come without printing the header again, every row in the same columns.

use std::borrow::Cow;

use super::fit::{self, Cut, Fit, GAP, Plan, Spec};
use super::text::{self, ellipsize, ellipsize_middle};

pub const BOLD: &str = "\x1b[1m";
pub const RED: &str = "\x1b[31m";
pub const YELLOW: &str = "\x1b[33m";
pub const RESET: &str = "\x1b[0m";

/// The columns of a table, fitted to a width; writes its lines.
#[derive(Debug, Clone)]
pub struct Grid {
    specs: Vec<Spec>,
    plan: Plan,
    width: Option<usize>,
    how: Fit,
    colour: bool,
}

/// Each column's natural width: its widest cell, or its header when wider. `rows` hold one cell
/// per spec.
pub fn natural(specs: &[Spec], rows: &[Vec<String>]) -> Vec<usize> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| text::width(c))
                .chain([text::width(&spec.header)])
                .max()
                .unwrap_or(0)
        })
        .collect()
}

impl Grid {
    /// Fits `specs`, whose columns are `natural` wide, to `width` (`None`: no limit).
    pub fn new(specs: Vec<Spec>, natural: &[usize], width: Option<usize>, how: Fit, colour: bool) -> Grid {
        let plan = fit::fit(&specs, natural, width, how);
        Grid { specs, plan, width, how, colour }
    }

    /// Fits `specs` to `width` measuring `rows` (one cell per spec).
    pub fn measured(
        specs: Vec<Spec>,
        rows: &[Vec<String>],
        width: Option<usize>,
        how: Fit,
        colour: bool,
    ) -> Grid {
        let natural = natural(&specs, rows);
        Grid::new(specs, &natural, width, how, colour)
    }

    /// The indexes (into the specs) of the columns shown, in order.
    pub fn shown(&self) -> &[usize] {
        &self.plan.shown
    }

    /// The headers of the columns shown, in order.
    pub fn shown_headers(&self) -> Vec<&str> {
        self.plan.shown.iter().map(|&i| self.specs[i].header.as_str()).collect()
    }

    /// The plan: shown columns and their widths.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The header line, without a newline.
    pub fn header(&self) -> String {
        let headers: Vec<String> = self.specs.iter().map(|s| s.header.clone()).collect();
        let bold = self.colour.then_some(BOLD);
        let plain = self.line_with(&headers, |_| None);
        let plain = self.clip(plain);
        match bold {
            Some(code) => format!("{code}{plain}{RESET}"),
            None => plain,
        }
    }

    /// One row's line, without a newline: `cells` hold one cell per spec (all of them, shown
    /// or not); `paint(i)` may give a colour for spec `i`'s cell (used only with colour).
    pub fn row(&self, cells: &[String], paint: impl Fn(usize) -> Option<&'static str>) -> String {
        let plain = self.line_with(cells, |_| None);
        if !self.colour || self.clip_needed(&plain) {
            return self.clip(plain);
        }
        self.line_with(cells, paint)
    }

    /// The header and every row of `rows` (unpainted), each line ended by a newline.
    pub fn lines(&self, rows: &[Vec<String>]) -> String {
        let mut out = self.header();
        out.push('\n');
        for row in rows {
            out.push_str(&self.row(row, |_| None));
            out.push('\n');
        }
        out
    }

    fn clip_needed(&self, line: &str) -> bool {
        self.how == Fit::Width && self.width.is_some_and(|w| text::width(line) > w)
    }

    fn clip(&self, line: String) -> String {
        match self.width {
            Some(w) if self.clip_needed(&line) => text::clip(&line, w).into_owned(),
            _ => line,
        }
    }

    fn line_with(&self, cells: &[String], paint: impl Fn(usize) -> Option<&'static str>) -> String {
        let mut out = String::new();
        let last = self.plan.shown.len().saturating_sub(1);
        for (at, (&i, &width)) in self.plan.shown.iter().zip(&self.plan.widths).enumerate() {
            if at > 0 {
                out.push_str(&" ".repeat(GAP));
            }
            let spec = &self.specs[i];
            let cell = cells.get(i).map_or("", String::as_str);
            // A cell wider than its column happens only in a stream (widths decided before
            // the rows were seen): it is cut if its column may be, else (and without a width)
            // shown whole, pushing the rest of its row to the right.
            let shown = match (spec.cut, self.width) {
                (Cut::Never, _) | (_, None) => Cow::Borrowed(cell),
                (Cut::Middle, Some(_)) => ellipsize_middle(cell, width),
                (Cut::End, Some(_)) => ellipsize(cell, width),
            };
            let pad = " ".repeat(width.saturating_sub(text::width(&shown)));
            if spec.right {
                out.push_str(&pad);
            }
            match self.colour.then(|| paint(i)).flatten() {
                Some(code) => {
                    out.push_str(code);
                    out.push_str(&shown);
                    out.push_str(RESET);
                }
                None => out.push_str(&shown),
            }
            if !spec.right && at != last {
                out.push_str(&pad);
            }
        }
        // A last column that is empty in this row leaves the gaps before it.
        let kept = out.trim_end_matches(' ').len();
        out.truncate(kept);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn columns_align_by_display_width() {
        let specs = vec![Spec::fixed("NAME", false), Spec::fixed("N", true)];
        let rows = vec![cells(&["ü-name", "5"]), cells(&["b", "1200"])];
        let grid = Grid::measured(specs, &rows, None, Fit::Width, false);
        let lines: Vec<String> =
            [grid.header()].into_iter().chain(rows.iter().map(|r| grid.row(r, |_| None))).collect();
        assert_eq!(lines, ["NAME       N", "ü-name     5", "b       1200"]);
    }

    #[test]
    fn cuts_follow_the_spec_and_colour_wraps_only_text() {
        let specs = vec![
            Spec::fixed("WHO", false).cut(Cut::Middle, 6, 1),
            Spec::fixed("ST", true),
            Spec::fixed("PATH", false).cut(Cut::End, 6, 0),
        ];
        let rows = vec![cells(&["shop/checkout-x2kqz", "503", "/api/v1/items"])];
        let grid = Grid::measured(specs, &rows, Some(26), Fit::Width, true);
        assert_eq!(grid.header(), format!("{BOLD}WHO             ST  PATH{RESET}"));
        assert_eq!(
            grid.row(&rows[0], |i| (i == 1).then_some(RED)),
            format!("shop/c…-x2kqz  {RED}503{RESET}  /api/…")
        );
    }

    #[test]
    fn an_overflowing_plan_cuts_lines_unless_whole() {
        let specs = vec![Spec::fixed("METHOD", false), Spec::fixed("STATUS", true)];
        let rows = vec![cells(&["PROPPATCH", "200"])];
        let grid = Grid::measured(specs.clone(), &rows, Some(10), Fit::Width, true);
        assert_eq!(grid.row(&rows[0], |_| Some(RED)), "PROPPATCH…");
        assert_eq!(grid.header(), format!("{BOLD}METHOD…{RESET}"));
        let grid = Grid::measured(specs, &rows, Some(10), Fit::Whole, false);
        assert_eq!(grid.row(&rows[0], |_| None), "PROPPATCH     200");
    }
}
