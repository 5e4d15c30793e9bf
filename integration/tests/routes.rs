//! Routes through the real programs, each backend: the server templates every stored
//! exchange's path (its `-route` patterns first, then the heuristic), bounds the distinct
//! routes per server (`-max-routes`), counts what it folds, and keeps the bound across a
//! restart; `liteobs-client stats -group-by server,route` answers what the brute-force
//! reference computes from the routes the model's rules give, in JSON, CSV and the table.

use std::net::SocketAddr;

use liteobs_integration::{Server, backends, client, upload_gzip_ndjson};
use liteobs_model::TrafficLog;
use liteobs_model::route::{Bounds, CardinalityLimit, Patterns, route};
use liteobs_model::stats::{StatsQuery, StatsResponse, reference};
use serde_json::json;

const TOKEN: &str = "r0utes";
const WINDOW: [&str; 4] = ["-since", "2026-12-01T10:00:00Z", "-until", "2026-12-01T10:10:00Z"];

/// 120 requests, most to 127.0.0.9:8080 and a fifth to [::1]:8080: ids, user names a pattern
/// covers, and 12 distinct reports and shop lists (127.0.0.9 passes `-max-routes 8`).
fn sample() -> Vec<TrafficLog> {
    let names = ["ann", "bob", "cyd"];
    (0..120u32)
        .map(|i| {
            let path = match i % 4 {
                0 => format!("/item/{}?page={i}", 1000 + i),
                1 => format!("/users/{}/repos", names[i as usize % 3]),
                2 => format!(
                    "/report/{}",
                    ["daily", "weekly", "monthly", "yearly", "hourly", "minutely"][(i / 4 % 6) as usize]
                ),
                _ => format!(
                    "/shop/{}/list",
                    ["fruit", "veg", "bread", "milk", "fish", "cheese"][(i / 4 % 6) as usize]
                ),
            };
            serde_json::from_value(json!({
                "ts": format!("2026-12-01T10:0{}:{:02}.{:06}Z", i / 60, i % 60, i),
                "src_ip": "127.0.0.1",
                "src_port": 40000 + i,
                "dst_ip": if i % 5 == 0 { "::1" } else { "127.0.0.9" },
                "dst_port": 8080,
                "method": "GET",
                "path": path,
                "status": if i % 10 == 9 { 500 } else { 200 },
                "latency_us": 100 + i * 3,
                "req_bytes": 0,
                "resp_bytes": i,
                "node": "node-1",
                "route": "/what/the/uploader/says"
            }))
            .expect("valid record")
        })
        .collect()
}

/// The routes the server must give, by the model's rules with the same flags.
fn expected(records: &[TrafficLog], max_routes: usize) -> Vec<TrafficLog> {
    let patterns = Patterns::parse(["/users/{name}/repos"]).expect("pattern");
    let mut limit = CardinalityLimit::new(Bounds { routes: max_routes, ..Bounds::DEFAULT });
    records
        .iter()
        .map(|r| {
            let key = SocketAddr::new(r.dst_ip, r.dst_port);
            TrafficLog { route: Some(limit.admit(&key, route(&r.path, &patterns))), ..r.clone() }
        })
        .collect()
}

fn upload(server: &Server, records: &[TrafficLog]) {
    assert_eq!(upload_gzip_ndjson(server, Some(TOKEN), records).0, 200);
}

/// The newest stored record whose path starts with `prefix`, through the client's JSON.
fn newest_with_path(server: &Server, prefix: &str) -> TrafficLog {
    let args =
        ["-server", server.url.as_str(), "-token", TOKEN, "-o", "json", "-path", prefix, "-limit", "1"];
    let (code, out, err) = client(&args);
    assert_eq!(code, 0, "{err}");
    let mut rows: Vec<TrafficLog> = serde_json::from_str(&out).expect("records");
    rows.pop().expect("a record")
}

fn stats(server: &Server, extra: &[&str]) -> (i32, String, String) {
    let mut args =
        vec!["-server", server.url.as_str(), "-token", TOKEN, "stats", "-group-by", "server,route"];
    args.extend(WINDOW);
    args.extend_from_slice(extra);
    client(&args)
}

#[test]
fn routes_through_the_real_server_and_client() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(format!("routes.{backend}"));
        let routes_file = dir.path().join("routes.txt");
        std::fs::write(&routes_file, "# the shop's API\n/users/{name}/repos\n").expect("routes file");
        let flags =
            ["-token", TOKEN, "-routes-file", routes_file.to_str().expect("utf-8"), "-max-routes", "8"];
        let server = Server::start_with(backend, &db, &flags);
        let records = sample();
        upload(&server, &records[..70]);
        upload(&server, &records[70..]);
        let want = expected(&records, 8);
        let folded = want.iter().filter(|r| r.route.as_deref().is_some_and(|r| r.ends_with('*'))).count();
        assert!(folded > 0, "the bound is reached");

        // JSON: the brute-force answer over the routes the rules give, and the fold counted.
        let (code, out, err) = stats(&server, &["-o", "json", "-sort", "p95_us"]);
        assert_eq!(code, 0, "{backend}: {err}");
        let got: StatsResponse = serde_json::from_str(&out).expect("stats JSON");
        let params =
            [("group_by", "server,route"), ("sort", "p95_us"), ("since", WINDOW[1]), ("until", WINDOW[3])];
        let query = StatsQuery::from_params(params, chrono::Utc::now()).expect("query");
        let mut reference = reference(&want, &query, chrono::Utc::now());
        reference.routes_folded = Some(folded as u64);
        assert_eq!(got, reference, "{backend}");
        let routes: Vec<&str> = got.groups.iter().filter_map(|g| g.key["route"].as_str()).collect();
        for r in ["/item/{id}", "/users/{name}/repos", "/report/daily", "/shop/*", "/report/*"] {
            assert!(routes.contains(&r), "{backend}: {r} in {routes:?}");
        }

        // The table and CSV show the route; the table says how many routes were folded.
        let (code, table, err) = stats(&server, &[]);
        assert_eq!(code, 0, "{backend}: {err}");
        assert!(table.starts_with("SERVER") && table.contains("ROUTE"), "{backend}:\n{table}");
        assert!(table.contains("/users/{name}/repos") && table.contains("127.0.0.9:8080"), "{table}");
        assert!(table.contains(&format!("the server folded {folded} routes")), "{table}");
        let (code, csv, _) = stats(&server, &["-o", "csv"]);
        assert_eq!(code, 0);
        assert!(csv.lines().next().is_some_and(|h| h.contains(",route,")), "{csv}");

        // Queries carry the stored route (not the uploader's), in JSON and CSV.
        assert_eq!(newest_with_path(&server, "/item/").route.as_deref(), Some("/item/{id}"));
        let (_, csv, _) = client(&["-server", &server.url, "-token", TOKEN, "-o", "csv", "-limit", "1"]);
        assert!(csv.lines().next().is_some_and(|h| h.ends_with(",route")), "{csv}");

        // Restart: the bound starts from what is stored, so a new endpoint of a full server folds.
        assert!(server.stop().success());
        let server = Server::start_with(backend, &db, &flags);
        let mut late = records[..1].to_vec();
        late[0].path = "/brand/new".into();
        upload(&server, &late);
        assert_eq!(newest_with_path(&server, "/brand/").route.as_deref(), Some("/*"), "{backend}");
        let (_, out, _) = stats(&server, &["-o", "json"]);
        let got: StatsResponse = serde_json::from_str(&out).expect("stats JSON");
        assert_eq!(got.routes_folded, Some(1), "{backend}: counted since this start");
    }
}

#[test]
fn a_bad_route_pattern_stops_the_server_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(liteobs_integration::bin("liteobs-server"))
        .args(["-db-type", "sqlite", "-listen", "127.0.0.1:0", "-route", "/users/{name"])
        .arg("-db-path")
        .arg(dir.path().join("bad.sqlite"))
        .output()
        .expect("run liteobs-server");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-route: route pattern \"/users/{name\" has an unclosed"), "{err}");
    assert!(!dir.path().join("bad.sqlite").exists(), "refused before the store is opened");
}
