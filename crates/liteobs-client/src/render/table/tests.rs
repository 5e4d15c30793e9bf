use liteobs_model::columns::COLUMNS;

use super::*;
use crate::render::fixtures::{across_nodes, clock, plain, pods, response, single, view};
use crate::render::grid::{BOLD, RESET};
use crate::render::text::ELLIPSIS;

/// Escape codes made visible, so that snapshots stay readable text.
fn visible(s: &str) -> String {
    s.replace('\x1b', "\\e")
}

fn strip(s: &str) -> String {
    [BOLD, RED, YELLOW, RESET].iter().fold(s.to_owned(), |s, code| s.replace(code, ""))
}

fn at(width: usize, resp: &QueryResponse) -> String {
    render(resp, Columns::Default, &view(Some(width)))
}

fn headers(records: &[TrafficLog], width: Option<usize>) -> Vec<String> {
    Table::fitted(records, Columns::Default, &view(width)).headers().into_iter().map(str::to_owned).collect()
}

#[test]
fn default_table_at_80_120_and_200_columns() {
    let mut all = String::new();
    for resp in [response(), pods()] {
        for width in [80, 120, 200] {
            all.push_str(&format!("--- width {width}\n{}", at(width, &resp)));
        }
    }
    insta::assert_snapshot!(all);
}

#[test]
fn wide_table_at_80_120_and_200_columns() {
    let mut all = String::new();
    let resp = QueryResponse { records: vec![plain(), across_nodes()], limit: 100, truncated: false };
    for width in [80, 120, 200] {
        all.push_str(&format!("--- width {width}\n{}", render(&resp, Columns::Wide, &view(Some(width)))));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn a_typical_row_at_eighty_columns_keeps_its_whole_path() {
    let out = at(80, &single());
    insta::assert_snapshot!(out, @r"
    TIME      CLIENT     SERVER    METHOD  STATUS  LATENCY  SIZE  PATH
    14:02:44  curl/1234  nginx/88  GET        200    1.5ms  512B  /api/v1/items?id=7
    1 exchange
    ");
    assert!(out.lines().all(|l| text::width(l) <= 80));
}

#[test]
fn a_pipe_gets_every_default_column_whole() {
    let out = render(&response(), Columns::Default, &view(None));
    assert_eq!(headers(&response().records, None), DEFAULT.map(Col::header));
    assert!(!out.contains(ELLIPSIS), "{out}");
    assert!(out.contains("/api/v1/orders/2026/11/25/batch-import?source=warehouse-eu-west&dry_run=false"));
}

#[test]
fn columns_go_in_the_documented_order_as_the_width_shrinks() {
    for records in [response().records, pods().records, single().records] {
        let mut before = headers(&records, None);
        for width in (20..=250).rev() {
            let now = headers(&records, Some(width));
            let gone: Vec<&String> = before.iter().filter(|h| !now.contains(h)).collect();
            for h in &gone {
                let rank = DROP_ORDER.iter().position(|d| d == h).unwrap_or_else(|| panic!("{h} dropped"));
                // Everything earlier in the order is gone already.
                for earlier in &DROP_ORDER[..rank] {
                    assert!(!now.iter().any(|n| n == earlier), "{width}: {h} went before {earlier}");
                }
            }
            assert!(now.iter().all(|h| before.contains(h)), "{width}: a column came back");
            before = now;
        }
        assert_eq!(before, ["METHOD", "STATUS", "PATH"]);
    }
}

#[test]
fn the_path_is_cut_at_its_end_and_names_in_their_middle() {
    let out = at(80, &pods());
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.contains(ELLIPSIS), "{out}");
    let long = at(100, &response());
    assert!(long.contains("  /api/v1/orders/2026/11/25/ba…\n"), "{long}");
    assert!(at(200, &pods()).contains("shop/checkout-7d9f8b6c4-x2kqz"));
}

#[test]
fn no_answer_is_marked_and_today_is_a_time_of_day() {
    let out = at(200, &response());
    let evil = out.lines().find(|l| l.contains("evil")).unwrap_or_default();
    assert!(evil.starts_with("Nov 24    evil/31337"), "{out}");
    assert!(evil.contains(" none ") && evil.contains(" - "), "{evil}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("14:02:44  curl/1234")), "{out}");
    assert!(!out.contains('\x1b'), "escapes from the wire are shown escaped: {out}");
}

#[test]
fn a_server_without_process_or_pod_is_its_host_else_its_address() {
    let mut r = plain();
    r.dst_pid = None;
    r.dst_comm = None;
    let resp = QueryResponse { records: vec![r.clone()], limit: 100, truncated: false };
    assert!(at(200, &resp).lines().nth(1).unwrap_or_default().contains("  api.example.test  10.0.0.2:8080"));
    r.host = None;
    r.src_pid = None;
    r.src_comm = None;
    let resp = QueryResponse { records: vec![r], limit: 100, truncated: false };
    let row = at(200, &resp).lines().nth(1).unwrap_or_default().to_owned();
    assert!(row.starts_with("14:02:44  10.0.0.1  10.0.0.2:8080  10.0.0.2:8080"), "{row}");
}

#[test]
fn colour_marks_the_header_and_failed_statuses_without_moving_anything() {
    let coloured = View { colour: true, ..view(Some(120)) };
    let out = render(&response(), Columns::Default, &coloured);
    insta::assert_snapshot!(visible(&out));
    assert_eq!(strip(&out), render(&response(), Columns::Default, &view(Some(120))));
}

#[test]
fn limit_reached_is_said_in_the_last_lines_wrapped_to_the_width() {
    let mut resp = single();
    resp.limit = 1;
    resp.truncated = true;
    assert_eq!(
        at(120, &resp).lines().last(),
        Some("1 exchange (limit 1 reached; more match — raise -limit)")
    );
    let narrow = at(40, &resp);
    assert!(narrow.lines().all(|l| text::width(l) <= 40), "{narrow}");
    assert!(narrow.replace('\n', " ").contains("more match — raise -limit)"), "{narrow}");
}

#[test]
fn no_records_is_just_the_summary() {
    let empty = QueryResponse { records: vec![], limit: 100, truncated: false };
    assert_eq!(at(80, &empty), "0 exchanges\n");
}

#[test]
fn wide_has_a_column_for_every_field_of_the_model_whatever_the_width() {
    let records = vec![plain(), across_nodes()];
    for width in [None, Some(40), Some(80), Some(250), Some(1000)] {
        let t = Table::fitted(&records, Columns::Wide, &view(width));
        let want: Vec<String> = COLUMNS.iter().map(|c| c.name.to_uppercase()).collect();
        assert_eq!(t.headers(), want, "{width:?}");
    }
    // Too narrow for every field: nothing is cut, lines are as long as they need.
    let out =
        render(&QueryResponse { records, limit: 100, truncated: false }, Columns::Wide, &view(Some(80)));
    assert!(!out.contains(ELLIPSIS), "{out}");
    assert!(out.contains("3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a3f9a"), "{out}");
}

#[test]
fn wide_cuts_text_only_when_that_makes_it_fit() {
    let mut r = plain();
    r.path = format!("/{}", "x".repeat(400));
    let resp = QueryResponse { records: vec![r], limit: 100, truncated: false };
    let whole = render(&resp, Columns::Wide, &view(None));
    let natural = whole.lines().map(text::width).max().unwrap_or(0);
    let fitted = render(&resp, Columns::Wide, &view(Some(natural - 100)));
    assert!(fitted.lines().all(|l| text::width(l) <= natural - 100), "{fitted}");
    assert!(fitted.contains(ELLIPSIS));
}

#[test]
fn a_stream_prints_rows_one_at_a_time_in_fixed_columns() {
    let v = view(Some(100));
    let table = Table::streaming(Columns::Default, &v);
    let header = table.header();
    let rows: Vec<String> = pods().records.iter().chain(&response().records).map(|r| table.row(r)).collect();
    assert!(text::width(&header) <= 100);
    assert!(rows.iter().all(|r| text::width(r) <= 100), "{rows:#?}");
    // Every row's columns start where the header's do: each row's METHOD stands under it.
    let before_method = text::width(&header[..header.find("METHOD").unwrap_or_default()]);
    for (row, r) in rows.iter().zip(pods().records.iter().chain(&response().records)) {
        let mut used = 0;
        let rest: String = row
            .chars()
            .skip_while(|c| {
                let skip = used < before_method;
                used += unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0);
                skip
            })
            .collect();
        assert!(rest.starts_with(&r.method), "{header}\n{row}");
    }
    insta::assert_snapshot!(format!("{header}\n{}\n", rows.join("\n")));
    // Without a width nothing is cut.
    let piped = Table::streaming(Columns::Default, &view(None));
    let row = piped.row(&response().records[1]);
    assert!(row.contains("dry_run=false") && !row.contains(ELLIPSIS), "{row}");
}

/// A small deterministic generator (xorshift), so that the property loops below need no
/// seed file and give the same records on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        let n = u64::try_from(from.len()).unwrap_or(1);
        from[usize::try_from(self.next() % n).unwrap_or(0)]
    }

    fn text(&mut self) -> String {
        let parts = [
            "/api",
            "/v1",
            "/items",
            "/ユーザー",
            "/写真",
            "/😀",
            "/é",
            "?q=✓",
            "\x1b[2J",
            "\n",
            "/a-very-long-segment-of-a-path",
            "&x=1",
            "/e\u{301}",
            "/日本語のパス",
            "%20",
        ];
        let n = self.next() % 12;
        (0..n).map(|_| self.pick(&parts)).collect()
    }

    fn name(&mut self) -> Option<String> {
        let names = [
            "",
            "curl",
            "python3",
            "node_exporter",
            "サーバー",
            "evil\x1b[31m",
            "a-very-long-process-name-indeed",
        ];
        (!self.next().is_multiple_of(4)).then(|| self.pick(&names).to_owned())
    }

    fn record(&mut self) -> TrafficLog {
        let mut r = plain();
        r.ts = clock().now - chrono::Duration::seconds(i64::try_from(self.next() % 200_000).unwrap_or(0));
        r.src_ip =
            self.pick(&["10.0.0.1", "2001:db8::17", "::1", "255.255.255.255"]).parse().unwrap_or(r.src_ip);
        r.dst_ip = self
            .pick(&["10.0.0.2", "fd00:1234:5678:9abc:def0:1234:5678:9abc", "127.0.0.1"])
            .parse()
            .unwrap_or(r.dst_ip);
        r.dst_port = u16::try_from(self.next() % 65_536).unwrap_or(80);
        r.method = self.pick(&["GET", "POST", "DELETE", "PROPPATCH", "M-SEARCH", "ゲット"]).to_owned();
        r.path = self.text();
        r.host = self.name();
        r.status = [0, 200, 204, 301, 404, 503][usize::try_from(self.next() % 6).unwrap_or(0)];
        r.latency_us = if r.status == 0 { 0 } else { self.next() >> (self.next() % 64) };
        r.resp_bytes = if r.status == 0 { 0 } else { self.next() >> (self.next() % 64) };
        r.src_pid =
            (!self.next().is_multiple_of(3)).then(|| u32::try_from(self.next() % 5_000_000).unwrap_or(1));
        r.src_comm = self.name();
        r.dst_pid =
            (!self.next().is_multiple_of(3)).then(|| u32::try_from(self.next() % 5_000_000).unwrap_or(1));
        r.dst_comm = self.name();
        if self.next().is_multiple_of(2) {
            r.src_namespace = self.name();
            r.src_pod = Some(format!(
                "{}-7d9f8b6c4-x2kqz",
                self.pick(&["checkout", "ペイメント", "a-deployment-with-a-long-name"])
            ));
        }
        if self.next().is_multiple_of(2) {
            r.dst_namespace = self.name();
            r.dst_pod = self.name();
        }
        r
    }
}

#[test]
fn generated_records_fit_every_width_from_40_to_250() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..60 {
        let n = usize::try_from(g.next() % 6 + 1).unwrap_or(1);
        let resp = QueryResponse {
            records: (0..n).map(|_| g.record()).collect(),
            limit: 100,
            truncated: g.next().is_multiple_of(2),
        };
        let whole = render(&resp, Columns::Default, &view(None));
        let natural = whole.lines().map(text::width).max().unwrap_or(0);
        for width in 40..=250 {
            let plain = render(&resp, Columns::Default, &view(Some(width)));
            for line in plain.lines() {
                assert!(
                    text::width(line) <= width,
                    "width {width}: a line is {} wide\n{plain}",
                    text::width(line)
                );
                assert_eq!(line, line.trim_end(), "trailing spaces at width {width}");
                assert!(!line.contains(['\x1b', '\n', '\r']), "a raw control character at width {width}");
            }
            if width >= natural {
                assert_eq!(plain, whole, "width {width}: nothing needs cutting");
            }
            let coloured = render(&resp, Columns::Default, &View { colour: true, ..view(Some(width)) });
            assert_eq!(strip(&coloured), plain, "colour must not change the layout (width {width})");
        }
    }
}

#[test]
fn generated_records_stream_within_every_width() {
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let records: Vec<TrafficLog> = (0..80).map(|_| g.record()).collect();
    for width in 40..=250 {
        let table = Table::streaming(Columns::Default, &view(Some(width)));
        assert!(text::width(&table.header()) <= width, "{width}");
        for r in &records {
            let row = table.row(r);
            assert!(text::width(&row) <= width, "width {width}: {row}");
        }
    }
}
