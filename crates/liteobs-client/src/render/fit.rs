//! Which columns a table shows at a given width, and how wide each is: the one set of rules
//! every table of the client follows (exchanges, `stats`, `map`).
//!
//! A table describes its columns as [`Spec`]s and measures each column's natural width (its
//! widest cell or its header); [`fit`] answers with a [`Plan`]. The rules, in order:
//!
//! 1. No width limit (stdout is not a terminal and `$COLUMNS` is unset, as kubectl does): every
//!    column, whole.
//! 2. Everything fits whole: every column, whole. Columns are never padded beyond their natural
//!    width, so a short answer gives short lines.
//! 3. Otherwise the columns that may be cut ([`Cut::End`], [`Cut::Middle`]) give up columns,
//!    lowest [`Spec::shrink`] rank first (a query table's PATH before the names of its sides),
//!    the widest of a rank first, each down to its [`Spec::min`] at most.
//! 4. When even that is too wide, the column with the lowest [`Spec::drop`] rank goes, and 2–3
//!    are tried again on what is left; columns without a drop rank always stay.
//! 5. When nothing is left to drop and it is still too wide, the plan is the narrowest one and
//!    [`Plan::overflows`] says so: the writer ([`super::grid`]) then cuts lines at the width, or,
//!    for a table that must not lose fields (`-o wide`, [`Fit::Whole`]), prints them whole.
//!
//! Gaps between columns are [`GAP`] spaces. Widths are terminal columns ([`super::text::width`]).
//! Not for building cells or writing lines: that is the tables' and [`super::grid`]'s job.

/// Spaces between two columns.
pub const GAP: usize = 2;

/// How a column's cells may be shortened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Never: numbers, times, addresses, methods. A cut value would mislead.
    Never,
    /// At its end with `…`: the start is what matters (a path: what `-path` matches).
    End,
    /// In its middle with `…`: both ends tell (`shop/check…x2kqz`, `long-comm…/1234`).
    Middle,
}

/// What [`fit`] needs to know of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub header: String,
    /// Cells are right-aligned (numbers).
    pub right: bool,
    pub cut: Cut,
    /// The narrowest a cut may make the column (never narrower than its header); ignored for
    /// [`Cut::Never`].
    pub min: usize,
    /// Columns with a lower rank are cut first.
    pub shrink: u8,
    /// Columns are dropped lowest rank first when cutting is not enough; `None`: never.
    pub drop: Option<u8>,
}

impl Spec {
    /// A column that is never cut nor dropped.
    pub fn fixed(header: impl Into<String>, right: bool) -> Spec {
        Spec { header: header.into(), right, cut: Cut::Never, min: 0, shrink: 0, drop: None }
    }

    /// This column, cut with `cut` down to `min` columns, cut when columns of a lower `shrink`
    /// rank are already at their minimum.
    pub fn cut(self, cut: Cut, min: usize, shrink: u8) -> Spec {
        Spec { cut, min, shrink, ..self }
    }

    /// This column, dropped with rank `rank` (lowest first) when cutting is not enough.
    pub fn dropped(self, rank: u8) -> Spec {
        Spec { drop: Some(rank), ..self }
    }

    /// The narrowest this column can be, given its natural width.
    fn narrowest(&self, natural: usize) -> usize {
        match self.cut {
            Cut::Never => natural,
            Cut::End | Cut::Middle => natural.min(self.min.max(super::text::width(&self.header))),
        }
    }
}

/// Whether a table may drop columns and cut lines to fit ([`Fit::Width`]), or must show every
/// column and every cell whole when cutting cells is not enough ([`Fit::Whole`], `-o wide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Width,
    Whole,
}

/// The columns to show (indexes into the specs, in order) and each one's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub shown: Vec<usize>,
    pub widths: Vec<usize>,
    /// Even the narrowest layout is wider than the width: lines are cut ([`Fit::Width`]) or
    /// printed whole ([`Fit::Whole`]).
    pub overflows: bool,
}

impl Plan {
    /// Columns the plan's lines take, gaps included.
    pub fn total(&self) -> usize {
        self.widths.iter().sum::<usize>() + GAP * self.widths.len().saturating_sub(1)
    }
}

/// The plan for `specs` whose natural widths are `natural` (one each), in `width` columns
/// (`None`: no limit). See the module docs for the rules.
pub fn fit(specs: &[Spec], natural: &[usize], width: Option<usize>, how: Fit) -> Plan {
    debug_assert_eq!(specs.len(), natural.len());
    let mut shown: Vec<usize> = (0..specs.len()).collect();
    let whole = |shown: &[usize]| Plan {
        shown: shown.to_vec(),
        widths: shown.iter().map(|&i| natural[i]).collect(),
        overflows: false,
    };
    let Some(width) = width else {
        return whole(&shown);
    };
    loop {
        if let Some(plan) = cut_to(specs, natural, &shown, width) {
            return plan;
        }
        let droppable = shown.iter().enumerate().filter_map(|(at, &i)| specs[i].drop.map(|rank| (rank, at)));
        match droppable.min() {
            Some((_, at)) if how == Fit::Width => {
                shown.remove(at);
            }
            _ => break,
        }
    }
    match how {
        Fit::Whole => Plan { overflows: true, ..whole(&shown) },
        Fit::Width => Plan {
            widths: shown.iter().map(|&i| specs[i].narrowest(natural[i])).collect(),
            shown,
            overflows: true,
        },
    }
}

/// `shown`'s widths cut to fit `width` by rule 3, or `None` when their minimums do not fit.
fn cut_to(specs: &[Spec], natural: &[usize], shown: &[usize], width: usize) -> Option<Plan> {
    let mut widths: Vec<usize> = shown.iter().map(|&i| natural[i]).collect();
    let gaps = GAP * shown.len().saturating_sub(1);
    let total = |widths: &[usize]| widths.iter().sum::<usize>() + gaps;
    let mut excess = total(&widths).saturating_sub(width);
    let mut ranks: Vec<u8> = shown.iter().map(|&i| specs[i].shrink).collect();
    ranks.sort_unstable();
    ranks.dedup();
    for rank in ranks {
        // Take a column at a time from the widest column of this rank that can still give.
        while excess > 0 {
            let widest = shown
                .iter()
                .enumerate()
                .filter(|&(at, &i)| specs[i].shrink == rank && widths[at] > specs[i].narrowest(natural[i]))
                .max_by_key(|&(at, _)| (widths[at], std::cmp::Reverse(at)));
            let Some((at, &i)) = widest else { break };
            // Down to the next-widest column of the rank at once; one at a time in a tie, so
            // that the columns of a rank end up as even as their minimums allow.
            let floor = specs[i].narrowest(natural[i]);
            let next = shown
                .iter()
                .enumerate()
                .filter(|&(other, &j)| other != at && specs[j].shrink == rank && widths[other] <= widths[at])
                .map(|(other, _)| widths[other])
                .max()
                .unwrap_or(0);
            let step = widths[at].saturating_sub(floor.max(next)).clamp(1, excess);
            widths[at] -= step;
            excess -= step;
        }
    }
    (excess == 0).then(|| Plan { shown: shown.to_vec(), widths, overflows: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<Spec> {
        vec![
            Spec::fixed("TIME", false),
            Spec::fixed("WHO", false).cut(Cut::Middle, 8, 1),
            Spec::fixed("SIZE", true).dropped(0),
            Spec::fixed("PATH", false).cut(Cut::End, 10, 0),
        ]
    }

    #[test]
    fn whole_when_it_fits_or_without_a_limit() {
        let natural = [8, 20, 5, 30];
        let all = Plan { shown: vec![0, 1, 2, 3], widths: natural.to_vec(), overflows: false };
        assert_eq!(fit(&specs(), &natural, None, Fit::Width), all);
        assert_eq!(fit(&specs(), &natural, Some(69), Fit::Width), all);
        assert_eq!(fit(&specs(), &natural, Some(500), Fit::Width), all);
    }

    #[test]
    fn the_lowest_shrink_rank_gives_first_then_the_next() {
        let natural = [8, 20, 5, 30];
        let p = fit(&specs(), &natural, Some(60), Fit::Width);
        assert_eq!(p.widths, [8, 20, 5, 21]);
        let p = fit(&specs(), &natural, Some(45), Fit::Width);
        assert_eq!(p.widths, [8, 16, 5, 10], "PATH at its minimum, then WHO");
        assert_eq!(p.total(), 45);
    }

    #[test]
    fn columns_go_in_drop_order_when_cutting_is_not_enough() {
        let natural = [8, 20, 5, 30];
        let p = fit(&specs(), &natural, Some(31), Fit::Width);
        assert_eq!((p.shown.as_slice(), p.widths.as_slice()), ([0, 1, 3].as_slice(), [8, 9, 10].as_slice()));
        let p = fit(&specs(), &natural, Some(20), Fit::Width);
        assert!(p.overflows);
        assert_eq!(p.widths, [8, 8, 10]);
        let p = fit(&specs(), &natural, Some(20), Fit::Whole);
        assert!(p.overflows);
        assert_eq!(p.widths, natural, "wide tables never lose a column or a character");
    }

    #[test]
    fn one_rank_shares_the_cut_widest_first() {
        let specs = vec![
            Spec::fixed("A", false).cut(Cut::Middle, 4, 0),
            Spec::fixed("B", false).cut(Cut::Middle, 4, 0),
        ];
        assert_eq!(fit(&specs, &[30, 10], Some(32), Fit::Width).widths, [20, 10]);
        assert_eq!(fit(&specs, &[30, 10], Some(20), Fit::Width).widths, [9, 9]);
        assert_eq!(fit(&specs, &[30, 10], Some(21), Fit::Width).widths, [9, 10]);
    }

    #[test]
    fn every_width_fits_or_says_it_overflows() {
        let natural = [8, 20, 5, 30];
        for width in 0..80 {
            let p = fit(&specs(), &natural, Some(width), Fit::Width);
            assert_eq!(p.total() > width, p.overflows, "{width}: {p:?}");
            for (at, &i) in p.shown.iter().enumerate() {
                assert!(p.widths[at] <= natural[i]);
            }
        }
    }
}
