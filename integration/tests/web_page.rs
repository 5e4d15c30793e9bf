//! The web page at `/`, in a real headless Chromium against a real server with real uploaded
//! records: the traffic table shows them, the filters narrow them, the keyboard opens a row's
//! detail, the live table follows (and pauses for) records uploaded after the page opened, the
//! routes table and the map show what the records say and their clicks filter the traffic, and
//! a server with a token gets the page's token prompt; every visible text has AA contrast.
//!
//! The screenshots in `docs/` are made here: with `LITEOBS_UPDATE_SCREENSHOTS=1` they are
//! written there (`docs/web-traffic.png`, `docs/web-routes.png`, `docs/web-map.png`), otherwise
//! to a temporary directory (made and checked as PNGs, not kept), so that a test run leaves the
//! checkout as it was.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use fantoccini::key::Key;
use liteobs_integration::browser::{Browser, chromedriver, key};
use liteobs_integration::{Server, upload_gzip_ndjson};
use liteobs_model::TrafficLog;
use liteobs_model::map::{client_node, server_node};
use serde_json::json;

/// Now, to the microsecond (what LiteObs stores).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A shop: a frontend pod calling checkout, checkout calling payments and an outside API, and
/// a curl on the node asking nginx for its health; some calls fail.
fn shop() -> Vec<TrafficLog> {
    let frontend = json!({"src_ip": "10.244.1.5", "src_pid": 3101, "src_comm": "node",
        "src_namespace": "shop", "src_pod": "frontend-7d9f8b6c4-x2kqz", "src_node": "node-a"});
    let checkout_in = json!({"dst_ip": "10.244.2.9", "dst_port": 8080, "dst_pid": 4211,
        "dst_comm": "checkout", "dst_namespace": "shop", "dst_pod": "checkout-5c8d7f9b4-q7wzt", "dst_node": "node-b"});
    let checkout_out = json!({"src_ip": "10.244.2.9", "src_pid": 4211, "src_comm": "checkout",
        "src_namespace": "shop", "src_pod": "checkout-5c8d7f9b4-q7wzt", "src_node": "node-b"});
    let payments = json!({"dst_ip": "10.244.3.4", "dst_port": 9000, "dst_pid": 5120, "dst_comm": "payments",
        "dst_namespace": "shop", "dst_pod": "payments-6b7c9d8f5-lm4np", "dst_node": "node-c"});
    let outside = json!({"dst_ip": "93.184.216.34", "dst_port": 443});
    let curl = json!({"src_ip": "10.0.0.1", "src_pid": 4242, "src_comm": "curl"});
    let nginx = json!({"dst_ip": "10.0.0.2", "dst_port": 80, "dst_pid": 1200, "dst_comm": "nginx"});
    let mut out = Vec::new();
    let mut add = |client: &serde_json::Value,
                   server: &serde_json::Value,
                   method: &str,
                   path: &str,
                   status: u16,
                   latency_us: u64| {
        let n = out.len();
        let node = ["node-a", "node-b"][n % 2];
        let mut r = json!({
            "ts": (now() - Duration::seconds(300 - 10 * n as i64)).to_rfc3339(),
            "src_port": 40_000 + n, "method": method, "path": path, "status": status,
            "latency_us": latency_us, "req_bytes": 120 + n, "resp_bytes": 2_000 + 37 * n,
            "node": node, "exchange_id": 1_000 + n,
            "host": "shop.example",
        });
        for side in [client, server] {
            for (k, v) in side.as_object().into_iter().flatten() {
                r[k] = v.clone();
            }
        }
        out.push(serde_json::from_value::<TrafficLog>(r).expect("a record"));
    };
    for i in 0..6 {
        add(&frontend, &checkout_in, "POST", "/api/orders", 201, 18_000 + 900 * i);
    }
    for i in 0..4 {
        add(&frontend, &checkout_in, "GET", &format!("/api/orders/{}", 1234 + i), 200, 3_500 + 200 * i);
    }
    add(&frontend, &checkout_in, "GET", "/api/orders/99", 500, 250_000);
    add(&frontend, &checkout_in, "GET", "/api/orders/98", 500, 310_000);
    for i in 0..5 {
        add(&checkout_out, &payments, "POST", "/charge", 200, 42_000 + 3_000 * i);
    }
    add(&checkout_out, &payments, "POST", "/charge", 503, 1_200_000);
    add(&checkout_out, &outside, "GET", "/v1/rates?currency=EUR", 200, 95_000);
    add(&checkout_out, &outside, "GET", "/v1/rates?currency=USD", 200, 88_000);
    for _ in 0..3 {
        add(&curl, &nginx, "GET", "/healthz", 200, 350);
    }
    out
}

const ROWS: &str = "return document.querySelectorAll('#traffic tbody tr').length";

async fn rows_are(b: &Browser, n: usize) {
    b.until(&format!("{n} rows in the traffic table"), &format!("{ROWS} === {n}")).await;
}

/// Every visible text on the page against the background it is drawn on: WCAG 2 contrast of at
/// least 4.5:1 (AA for body text). Answers how many texts it checked and the failures.
const CONTRAST: &str = r#"
const lum = (c) => {
  const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const rgba = (s) => (s.match(/[\d.]+/g) || []).map(Number);
const background = (e) => {
  for (; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const bad = [];
let checked = 0;
for (const e of document.querySelectorAll('body *')) {
  // In SVG only labels count, drawn in their fill on the map's (white) background.
  const inSvg = e.closest('svg') !== null;
  if ((inSvg && e.tagName !== 'text') || e.closest('[hidden]') || !e.getClientRects().length) continue;
  const text = [...e.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join('');
  if (!text) continue;
  const style = getComputedStyle(e);
  if (style.visibility === 'hidden' || Number(style.opacity) < 1) continue;
  const colour = rgba(inSvg ? style.fill : style.color).slice(0, 3);
  const under = inSvg ? background(e.closest('svg').parentElement) : background(e);
  const [a, b] = [lum(colour), lum(under)];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  checked++;
  if (ratio < 4.5) bad.push(`${text.slice(0, 30)}: ${ratio.toFixed(2)} (${colour} on ${under})`);
}
return { checked, bad };
"#;

async fn contrast_is_aa(b: &Browser, view: &str) {
    let answer = b.js(CONTRAST).await;
    assert_eq!(answer["bad"], json!([]), "text under 4.5:1 contrast in the {view} view");
    let checked = answer["checked"].as_u64().unwrap_or(0);
    println!("{view}: {checked} texts checked for contrast");
    assert!(checked >= 20, "the {view} view's texts were checked: {checked}");
}

async fn screenshot(b: &Browser, name: &str, scratch: &std::path::Path) {
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{name}: a PNG of the page");
    let dir = if std::env::var("LITEOBS_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
    } else {
        scratch.to_path_buf()
    };
    std::fs::write(dir.join(format!("web-{name}.png")), png).expect("write the screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_traffic_routes_and_the_map_and_follows_new_records() {
    let Some(driver) = chromedriver("the_page_shows_traffic_routes_and_the_map_and_follows_new_records")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("sqlite", &dir.path().join("web.db"), None, None);
    let records = shop();
    let (status, answer) = upload_gzip_ndjson(&server, None, &records);
    assert_eq!(status, 200, "{answer}");
    let b = Browser::start(&driver).await.expect("a browser");

    // The table shows every record, newest first, with who is on each side.
    b.client.goto(&format!("{}/#traffic", server.url)).await.expect("open the page");
    rows_are(&b, records.len()).await;
    let first = b.js("return [...document.querySelectorAll('#traffic tbody tr:first-child td')].map(td => td.textContent)").await;
    let first: Vec<String> = serde_json::from_value(first).expect("cells");
    assert_eq!(first[1..4], ["GET", "/healthz", "200"], "the newest record first: {first:?}");
    assert_eq!(first[5], "curl (4242)10.0.0.1", "client: process and pid, then its address");
    assert_eq!(first[6], "nginx (1200)10.0.0.2:80");
    b.until("the live state", "return document.getElementById('status').textContent === 'live'").await;
    screenshot(&b, "traffic", dir.path()).await;
    contrast_is_aa(&b, "traffic").await;

    // Filters narrow it: a status class (a select), then an address typed in.
    b.select("select[name=status]", "5xx").await;
    rows_are(&b, 3).await;
    assert!(b.js("return location.hash").await.as_str().unwrap_or("").contains("status=5xx"));
    b.click("#clear-filters").await;
    rows_are(&b, records.len()).await;
    b.type_into("input[name=ip]", &format!("10.0.0.2{}", key(Key::Enter))).await;
    rows_are(&b, 3).await;
    b.click("#clear-filters").await;
    rows_are(&b, records.len()).await;

    // The keyboard: the first row, one down, Enter shows the second row's every field; Escape
    // closes it and gives the focus back to the row.
    b.js("document.querySelector('#traffic tbody tr').focus(); return true").await;
    b.press(&key(Key::Down)).await;
    b.press(&key(Key::Enter)).await;
    b.until("the detail panel", "return !document.getElementById('detail').hidden").await;
    let second = &records[records.len() - 2];
    let title = b.js("return document.getElementById('detail-title').textContent").await;
    assert_eq!(title, json!(format!("{} {} → {}", second.method, second.path, second.status)));
    let fields =
        b.js("return [...document.querySelectorAll('#detail-fields dt')].map(dt => dt.textContent)").await;
    let fields: BTreeSet<String> = serde_json::from_value(fields).expect("fields");
    let every: BTreeSet<String> =
        serde_json::to_value(second).expect("json").as_object().expect("object").keys().cloned().collect();
    assert!(every.is_subset(&fields), "every field of the record: missing {:?}", every.difference(&fields));
    b.press(&key(Key::Escape)).await;
    b.until("the detail closed", "return document.getElementById('detail').hidden").await;
    b.until("the focus back on the row", "return document.activeElement.tagName === 'TR'").await;

    // Follow: a record uploaded after the page opened appears at the top; paused, the next one
    // is held (and counted) until resumed.
    let later = |path: &str, id: i64| TrafficLog {
        ts: now(),
        path: path.to_owned(),
        exchange_id: Some(id),
        status: 200,
        ..records[7].clone()
    };
    let (status, _) = upload_gzip_ndjson(&server, None, &[later("/api/orders/777", 7_777)]);
    assert_eq!(status, 200);
    b.until(
        "the new record at the top",
        "return document.querySelector('#traffic tbody tr td:nth-child(3)').textContent === '/api/orders/777'",
    )
    .await;
    rows_are(&b, records.len() + 1).await;
    b.click("#pause").await;
    let (status, _) = upload_gzip_ndjson(&server, None, &[later("/api/orders/778", 7_778)]);
    assert_eq!(status, 200);
    b.until("one record held", "return document.getElementById('pause').textContent === 'Resume (1 new)'")
        .await;
    assert_eq!(b.js(ROWS).await, json!(records.len() + 1), "held while paused");
    b.click("#pause").await;
    rows_are(&b, records.len() + 2).await;
    assert_eq!(
        b.js("return document.querySelector('#traffic tbody tr td:nth-child(3)').textContent").await,
        json!("/api/orders/778")
    );

    // Routes: one row per server and route, errors counted; a click filters the traffic to it.
    b.click("#tab-routes").await;
    let route = liteobs_model::route::route("/api/orders/99", &Default::default());
    let row = format!("#routes tbody tr[data-route=\"{route}\"]");
    b.until("the routes table", &format!("return document.querySelector('{row}') !== null")).await;
    let pairs: BTreeSet<(String, String)> = records
        .iter()
        .map(|r| (server_node(r), liteobs_model::route::route(&r.path, &Default::default())))
        .collect();
    let shown = b.js("return [...document.querySelectorAll('#routes tbody tr')].map(tr => [tr.dataset.server, tr.dataset.route])").await;
    let shown: BTreeSet<(String, String)> = serde_json::from_value(shown).expect("rows");
    assert_eq!(shown, pairs, "one row per server and route");
    let errors = b.js(&format!("return document.querySelector('{row} td:nth-child(5)').textContent")).await;
    assert_eq!(errors, json!("2 (25%)"), "2 of the route's 8 calls failed");
    b.click("#routes th[data-sort=p95_us] button").await;
    b.until("sorted by p95", "return document.querySelector('#routes th[data-sort=p95_us]').getAttribute('aria-sort') === 'descending'").await;
    b.until(
        "the slowest route first",
        "return document.querySelector('#routes tbody tr').dataset.route === '/charge'",
    )
    .await;
    screenshot(&b, "routes", dir.path()).await;
    contrast_is_aa(&b, "routes").await;
    b.click(&row).await;
    // 4 + 2 in the shop, 2 followed.
    rows_are(&b, 8).await;
    let hash = b.js("return decodeURIComponent(location.hash)").await;
    assert!(hash.as_str().unwrap_or("").contains(&format!("route={route}")), "{hash}");

    // The map: the nodes and edges the records make; a click on an edge filters the traffic.
    b.click("#clear-filters").await;
    b.click("#tab-map").await;
    b.until("the map", "return document.querySelectorAll('#map g.edge').length > 0").await;
    let nodes: BTreeSet<String> = records.iter().flat_map(|r| [client_node(r), server_node(r)]).collect();
    let edges: BTreeSet<(String, String)> =
        records.iter().map(|r| (client_node(r), server_node(r))).collect();
    let drawn = b.js("return [...document.querySelectorAll('#map g.node')].map(g => g.dataset.id)").await;
    assert_eq!(serde_json::from_value::<BTreeSet<String>>(drawn).expect("ids"), nodes);
    let drawn = b.js("return [...document.querySelectorAll('#map g.edge')].map(g => [g.dataset.client, g.dataset.server])").await;
    assert_eq!(serde_json::from_value::<BTreeSet<(String, String)>>(drawn).expect("edges"), edges);
    let failing = b.js("return document.querySelectorAll('#map path.edge-line.bad').length").await;
    assert_eq!(failing, json!(2), "frontend→checkout and checkout→payments have errors (dashed, red)");
    screenshot(&b, "map", dir.path()).await;
    contrast_is_aa(&b, "map").await;
    let charge = &records[12];
    b.click(&format!(
        "#map g.edge[data-client=\"{}\"][data-server=\"{}\"] path.hit",
        client_node(charge),
        server_node(charge)
    ))
    .await;
    rows_are(&b, 6).await;
    assert!(
        b.js("return !document.getElementById('edge-filter').hidden").await == json!(true),
        "the edge is shown as a filter"
    );

    b.close().await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_once_and_sends_it() {
    let Some(driver) = chromedriver("with_a_token_the_page_asks_for_it_once_and_sends_it") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("sqlite", &dir.path().join("web.db"), Some("s3cret-token"), None);
    let records = shop();
    assert_eq!(upload_gzip_ndjson(&server, Some("s3cret-token"), &records).0, 200);
    let b = Browser::start(&driver).await.expect("a browser");

    b.client.goto(&format!("{}/", server.url)).await.expect("open the page");
    b.until("the token prompt", "return document.getElementById('token-dialog').open").await;
    assert_eq!(b.js(ROWS).await, json!(0), "nothing shown without the token");
    // A wrong token is refused and asked again, saying so.
    b.type_into("#token-input", &format!("wrong{}", key(Key::Enter))).await;
    b.until(
        "the prompt again, saying the token was refused",
        "return document.getElementById('token-dialog').open && document.getElementById('token-why').classList.contains('refused')",
    )
    .await;
    b.type_into("#token-input", &format!("s3cret-token{}", key(Key::Enter))).await;
    rows_are(&b, records.len()).await;
    assert_eq!(b.js("return document.getElementById('token-dialog').open").await, json!(false));

    // Kept for the tab: other views and a reload ask no more.
    b.click("#tab-map").await;
    b.until("the map", "return document.querySelectorAll('#map g.edge').length > 0").await;
    b.client.refresh().await.expect("reload");
    b.until("the map after a reload", "return document.querySelectorAll('#map g.edge').length > 0").await;
    assert_eq!(b.js("return document.getElementById('token-dialog').open").await, json!(false));

    b.close().await;
    server.stop();
}
