//! `liteobs-client map`: who calls whom, as an edge table, JSON, CSV, Graphviz or Mermaid;
//! pure, no I/O.
//!
//! The table lists edges busiest first (CLIENT → SERVER, COUNT, RATE, ERRORS, P95, LAST SEEN:
//! a time of day when today). It fits the width by the rules of [`super::fit`]: names are cut in
//! their middle down to [`stats::KEY_MIN`] columns, then LAST SEEN and RATE go
//! ([`DROP_ORDER`]). `-o wide` adds NO-RESP, P50, P99, MAX, the bytes and FIRST SEEN, and drops
//! nothing.
//! `-o dot` and `-o mermaid` draw the same graph: pods as boxes, processes as rounded boxes,
//! addresses as plain text; each edge labelled with its calls, errors and p95, drawn thicker
//! the busier it is (dot) and red, dashed, when any call failed — so errors are not told by
//! colour alone. Names come from the network: they are escaped for each format.

use liteobs_model::format_ts;
use liteobs_model::map::{Edge, MapResponse, Node, NodeKind};

use super::fit::Spec;
use super::grid::Grid;
use super::stats::{self, figure, how, latency, name};
use super::table::footer;
use super::text::printable;
use super::{View, cells};

/// The order in which columns are dropped when cutting the names is not enough.
pub const DROP_ORDER: [&str; 2] = ["LAST SEEN", "RATE"];

fn name_of<'a>(resp: &'a MapResponse, id: &'a str) -> &'a str {
    resp.nodes.iter().find(|n| n.id == id).map_or(id, |n| n.name.as_str())
}

fn p95(e: &Edge) -> String {
    latency(e.figures.p95_us)
}

/// `120 calls, 3 errors, p95 4.2ms`.
fn edge_label(e: &Edge) -> String {
    let calls = if e.figures.count == 1 { "1 call".to_owned() } else { format!("{} calls", e.figures.count) };
    let errors = match e.figures.errors {
        0 => String::new(),
        1 => ", 1 error".to_owned(),
        n => format!(", {n} errors"),
    };
    format!("{calls}{errors}, p95 {}", p95(e))
}

/// The edge table, ending with a line naming the window; `wide` adds every figure.
pub fn table(resp: &MapResponse, wide: bool, view: &View) -> String {
    let figures: Vec<&str> = if wide {
        vec![
            "COUNT",
            "RATE",
            "ERRORS",
            "NO-RESP",
            "P50",
            "P95",
            "P99",
            "MAX",
            "REQ",
            "RESP",
            "FIRST SEEN",
            "LAST SEEN",
        ]
    } else {
        vec!["COUNT", "RATE", "ERRORS", "P95", "LAST SEEN"]
    };
    let rows: Vec<Vec<String>> = resp
        .edges
        .iter()
        .map(|e| {
            let f = &e.figures;
            let mut row = vec![
                printable(name_of(resp, &e.client)).into_owned(),
                "→".to_owned(),
                printable(name_of(resp, &e.server)).into_owned(),
                f.count.to_string(),
                format!("{:.2}/s", f.rate),
                f.errors.to_string(),
            ];
            if wide {
                row.extend([
                    f.no_response.to_string(),
                    latency(f.p50_us),
                    p95(e),
                    latency(f.p99_us),
                    latency(f.max_us),
                ]);
                row.extend([
                    cells::size(f.req_bytes),
                    cells::size(f.resp_bytes),
                    view.clock.short(&f.first_seen),
                ]);
            } else {
                row.push(p95(e));
            }
            row.push(view.clock.short(&f.last_seen));
            row
        })
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        // Names and times to the left, numbers to the right.
        let specs = [name("CLIENT"), Spec::fixed("", false), name("SERVER")]
            .into_iter()
            .chain(figures.iter().map(|f| {
                let spec = figure(f, &DROP_ORDER, wide);
                Spec { right: !f.ends_with("SEEN"), ..spec }
            }))
            .collect();
        let grid = Grid::measured(specs, &rows, view.width, how(wide), view.colour);
        out.push_str(&grid.header());
        out.push('\n');
        for row in &rows {
            out.push_str(&grid.row(row, |_| None));
            out.push('\n');
        }
    }
    let n = resp.edges.len();
    let mut last = format!(
        "{n} {}, {} {}, {}",
        if n == 1 { "edge" } else { "edges" },
        resp.nodes.len(),
        if resp.nodes.len() == 1 { "node" } else { "nodes" },
        stats::window(&resp.since, &resp.until, view)
    );
    if resp.truncated {
        last.push_str(" (more edges match — raise -limit)");
    }
    for line in footer(&last, view.width) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The answer as the server gave it, pretty.
pub fn json(resp: &MapResponse) -> Result<String, serde_json::Error> {
    let mut out = serde_json::to_string_pretty(resp)?;
    out.push('\n');
    Ok(out)
}

/// One row per edge: the two node ids, their kinds, then the figures.
pub fn csv(resp: &MapResponse) -> Result<String, super::csv::CsvError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record([
        "client",
        "client_kind",
        "server",
        "server_kind",
        "count",
        "rate",
        "errors",
        "no_response",
        "p50_us",
        "p95_us",
        "p99_us",
        "max_us",
        "req_bytes",
        "resp_bytes",
        "first_seen",
        "last_seen",
    ])?;
    let kind = |id: &str| kind_name(Node::of_id(id).kind);
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for e in &resp.edges {
        let f = &e.figures;
        w.write_record([
            e.client.clone(),
            kind(&e.client).to_owned(),
            e.server.clone(),
            kind(&e.server).to_owned(),
            f.count.to_string(),
            f.rate.to_string(),
            f.errors.to_string(),
            f.no_response.to_string(),
            opt(f.p50_us),
            opt(f.p95_us),
            opt(f.p99_us),
            opt(f.max_us),
            f.req_bytes.to_string(),
            f.resp_bytes.to_string(),
            format_ts(&f.first_seen),
            format_ts(&f.last_seen),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes)?)
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Pod => "pod",
        NodeKind::Process => "process",
        NodeKind::Address => "address",
    }
}

/// A Graphviz string literal: quotes and backslashes escaped, control characters as `\u{..}`.
fn dot_string(s: &str) -> String {
    let s = printable(s);
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz `digraph`: `dot -Tsvg map.dot > map.svg`.
pub fn dot(resp: &MapResponse) -> String {
    let mut out = String::from("digraph liteobs {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for n in &resp.nodes {
        let shape = match n.kind {
            NodeKind::Pod => "shape=box",
            NodeKind::Process => "shape=box, style=rounded",
            NodeKind::Address => "shape=plaintext",
        };
        out.push_str(&format!("  {} [label={}, {shape}];\n", dot_string(&n.id), dot_string(&n.name)));
    }
    let busiest = resp.edges.iter().map(|e| e.figures.count).max().unwrap_or(1).max(1);
    for e in &resp.edges {
        // 1 to 5 points wide, by the edge's share of the busiest edge's calls.
        let pen = 1.0 + 4.0 * e.figures.count as f64 / busiest as f64;
        let failing = if e.figures.errors > 0 { ", color=red, style=dashed" } else { "" };
        out.push_str(&format!(
            "  {} -> {} [label={}, penwidth={pen:.1}{failing}];\n",
            dot_string(&e.client),
            dot_string(&e.server),
            dot_string(&edge_label(e))
        ));
    }
    out.push_str("}\n");
    out
}

/// Mermaid text for a label: quotes as `#quot;`, control characters escaped.
fn mermaid_text(s: &str) -> String {
    printable(s).replace('"', "#quot;")
}

/// A Mermaid `flowchart`, for Markdown that renders it (GitHub, GitLab).
pub fn mermaid(resp: &MapResponse) -> String {
    let mut out = String::from("flowchart LR\n");
    let index = |id: &str| resp.nodes.iter().position(|n| n.id == id).unwrap_or(usize::MAX);
    for (i, n) in resp.nodes.iter().enumerate() {
        let label = mermaid_text(&n.name);
        let node = match n.kind {
            NodeKind::Pod => format!("n{i}[\"{label}\"]"),
            NodeKind::Process => format!("n{i}(\"{label}\")"),
            NodeKind::Address => format!("n{i}>\"{label}\"]"),
        };
        out.push_str(&format!("  {node}\n"));
    }
    let mut failing = Vec::new();
    for (k, e) in resp.edges.iter().enumerate() {
        let arrow = if e.figures.errors > 0 { "-.->" } else { "-->" };
        if e.figures.errors > 0 {
            failing.push(k.to_string());
        }
        out.push_str(&format!(
            "  n{} {arrow}|\"{}\"| n{}\n",
            index(&e.client),
            mermaid_text(&edge_label(e)),
            index(&e.server)
        ));
    }
    if !failing.is_empty() {
        out.push_str(&format!("  linkStyle {} stroke:red\n", failing.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use liteobs_model::map::{Figures, answer};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn map() -> MapResponse {
        let edge = |client: &str, server: &str, count: u64, errors: u64| Edge {
            client: client.into(),
            server: server.into(),
            figures: Figures {
                count,
                rate: count as f64 / 900.0,
                errors,
                no_response: 0,
                p50_us: Some(800),
                p95_us: Some(4_200),
                p99_us: Some(9_000),
                max_us: Some(12_000),
                req_bytes: 0,
                resp_bytes: 100 * count,
                first_seen: at("2026-12-01T11:45:02Z"),
                last_seen: at("2026-12-01T11:59:58.5Z"),
            },
        };
        answer(
            vec![
                edge("pod:shop/checkout-7d9f8b6c4-x2kqz", "pod:shop/payments-5c8d7f9b4-q7wzt", 1200, 3),
                edge("pod:shop/payments-5c8d7f9b4-q7wzt", "address:[fd00::53]:443", 40, 0),
                edge("process:10.0.0.6/curl", "process:10.0.0.2/ng\"inx\u{1b}", 1, 0),
            ],
            at("2026-12-01T11:45:00Z"),
            at("2026-12-01T12:00:00Z"),
            false,
        )
    }

    const NOW: &str = "2026-12-01T12:00:05Z";

    fn view(width: Option<usize>) -> View {
        crate::render::fixtures::view_at(NOW, width)
    }

    #[test]
    fn edge_table() {
        insta::assert_snapshot!(table(&map(), false, &view(None)));
    }

    #[test]
    fn edge_table_at_80_120_and_200_columns() {
        let all = crate::render::fixtures::at_80_120_200(NOW, |wide, view| table(&map(), wide, view));
        insta::assert_snapshot!(all);
    }

    #[test]
    fn every_line_fits_every_width() {
        crate::render::fixtures::fits_every_width(NOW, |view| table(&map(), false, view));
    }

    #[test]
    fn graphviz() {
        insta::assert_snapshot!(dot(&map()));
    }

    #[test]
    fn mermaid_flowchart() {
        insta::assert_snapshot!(mermaid(&map()));
    }

    #[test]
    fn csv_and_json() {
        insta::assert_snapshot!(csv(&map()).unwrap());
        let back: MapResponse = serde_json::from_str(&json(&map()).unwrap()).unwrap();
        assert_eq!(back, map());
    }
}
