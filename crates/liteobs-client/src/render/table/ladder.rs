//! The table's layouts, from everything to the narrowest, and the order in which they give up
//! details: the one place that order is written down (the module docs of [`super`] and the
//! README describe it; the snapshots pin it).
//!
//! This module only says what each layout shows; building the cells and fitting them to a
//! width is [`super`]'s job.

/// PATH is never cut narrower than this many columns (ellipsis included) before the table
/// starts dropping other details.
pub const PATH_MIN: usize = 12;

/// In the last layout, a pod name is cut at its end to this many columns (ellipsis included).
/// Its start is kept because that is what `-pod` matches (`checkout-7d9f8b…`).
pub const POD_MAX: usize = 16;

/// What one step of the fitting shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// SERVER puts the Service address the client dialled before the server's own, when the
    /// record has one (`10.96.12.7:80→10.244.2.9:8080`); meaningful only with `addresses`.
    pub service: bool,
    /// TIME has its date (`2026-11-25 14:02:44.123`) rather than the time of day only.
    pub date: bool,
    /// A side known only as a process names the command after the PID (`1234/curl`).
    pub comm: bool,
    /// A side whose pod is known puts its namespace before the pod name (`shop/checkout-…`).
    pub namespace: bool,
    pub size: bool,
    /// CLIENT has its port (`10.0.0.1:51234`); meaningful only with `addresses`.
    pub client_port: bool,
    /// Columns are two spaces apart rather than one.
    pub wide_gap: bool,
    pub latency: bool,
    /// CLIENT and SERVER show the address before the pod or PID.
    pub addresses: bool,
    /// Pod names are shown whole rather than cut to [`POD_MAX`] columns.
    pub whole_pods: bool,
}

const FULL: Layout = Layout {
    service: true,
    date: true,
    comm: true,
    namespace: true,
    size: true,
    client_port: true,
    wide_gap: true,
    latency: true,
    addresses: true,
    whole_pods: true,
};

// Each step is the one before it with one more detail given up.
const NO_SERVICE: Layout = Layout { service: false, ..FULL };
const NO_DATE: Layout = Layout { date: false, ..NO_SERVICE };
const NO_COMM: Layout = Layout { comm: false, ..NO_DATE };
const NO_NAMESPACE: Layout = Layout { namespace: false, ..NO_COMM };
const NO_SIZE: Layout = Layout { size: false, ..NO_NAMESPACE };
const NO_CLIENT_PORT: Layout = Layout { client_port: false, ..NO_SIZE };
const NARROW_GAP: Layout = Layout { wide_gap: false, ..NO_CLIENT_PORT };
const NO_LATENCY: Layout = Layout { latency: false, ..NARROW_GAP };
const NO_ADDRESSES: Layout = Layout { addresses: false, ..NO_LATENCY };
const CUT_PODS: Layout = Layout { whole_pods: false, ..NO_ADDRESSES };

/// The layouts tried in order, from everything to the narrowest; the first that fits wins.
///
/// Why this order: what is redundant or least asked for goes first (the Service address is
/// how the client reached the server, not who served; the date is the same on every row of a
/// recent query), then the qualifiers of an identity (command name, namespace) while the
/// identity itself (PID, pod name) stays, then whole columns, then addresses (a pod name or
/// PID says who more plainly than an IP), and last the pod names' tails, which are what
/// tells two replicas apart but not which workload they are.
pub const LADDER: [Layout; 11] = [
    FULL,
    NO_SERVICE,
    NO_DATE,
    NO_COMM,
    NO_NAMESPACE,
    NO_SIZE,
    NO_CLIENT_PORT,
    NARROW_GAP,
    NO_LATENCY,
    NO_ADDRESSES,
    CUT_PODS,
];

/// The widest layout: what the table shows when nothing needs to go.
pub const WIDEST: Layout = FULL;

#[cfg(test)]
mod tests {
    use super::*;

    /// The details a layout shows, in field order.
    fn shown(l: &Layout) -> [bool; 10] {
        [
            l.service,
            l.date,
            l.comm,
            l.namespace,
            l.size,
            l.client_port,
            l.wide_gap,
            l.latency,
            l.addresses,
            l.whole_pods,
        ]
    }

    #[test]
    fn each_step_gives_up_exactly_one_more_detail() {
        assert_eq!(LADDER[0], WIDEST);
        assert!(shown(&WIDEST).iter().all(|b| *b));
        for (i, pair) in LADDER.windows(2).enumerate() {
            let (before, after) = (shown(&pair[0]), shown(&pair[1]));
            let lost = before.iter().zip(&after).filter(|(b, a)| **b && !**a).count();
            let regained = before.iter().zip(&after).filter(|(b, a)| !**b && **a).count();
            assert_eq!((lost, regained), (1, 0), "step {}", i + 1);
        }
        assert!(shown(&LADDER[LADDER.len() - 1]).iter().all(|b| !*b));
    }
}
