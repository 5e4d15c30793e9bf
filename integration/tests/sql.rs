//! `POST /sql` through the real liteobs-server (each backend) and the real liteobs-client:
//! good queries answered from the uploaded rows in every output format, hostile statements
//! refused over HTTP with 400 and their kind (the rows unchanged after them and no file
//! written), the time limit, the token, and the client's one-line refusal.

use std::collections::BTreeMap;

use liteobs_integration::{Server, backends, client, http, upload_gzip_ndjson, with_routes};
use liteobs_model::TrafficLog;
use liteobs_model::sql::SqlAnswer;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret";

fn sample() -> Vec<TrafficLog> {
    let records: Vec<TrafficLog> = (0..40u32)
        .map(|i| {
            serde_json::from_value(json!({
                "ts": format!("2026-11-25T10:00:{:02}.{:06}Z", i, i * 11),
                "src_ip": "10.0.0.1", "src_port": 40000 + i,
                "dst_ip": "10.0.0.2", "dst_port": 8080,
                "method": if i % 4 == 0 { "POST" } else { "GET" },
                "path": if i % 3 == 0 { format!("/items/{i}") } else { "/health".to_owned() },
                "status": if i % 10 == 9 { 503 } else { 200 },
                "latency_us": 100 * i, "req_bytes": i, "resp_bytes": 2 * i,
                "src_pid": 1000 + i % 2, "src_comm": "curl",
                "node": "node-1"
            }))
            .expect("record")
        })
        .collect();
    with_routes(records)
}

/// `POST /sql` with a JSON body; the status and the JSON answer.
fn post(server: &Server, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = http().post(&format!("{}/sql", server.url)).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req.send(&serde_json::to_vec(body).expect("json")[..]).expect("request");
    let status = resp.status().as_u16();
    (status, resp.into_body().read_json().expect("JSON answer"))
}

fn sql(server: &Server, query: &str) -> (u16, Value) {
    post(server, Some(TOKEN), &json!({ "sql": query, "limit": 1000 }))
}

fn count_rows(server: &Server) -> usize {
    let resp = http()
        .get(&format!("{}/query?limit=10000", server.url))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("query");
    let v: Value = resp.into_body().read_json().expect("json");
    v["records"].as_array().map_or(0, Vec::len)
}

#[test]
fn sql_through_the_real_server_and_client_with_each_backend() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::try_start_with(
            backend,
            &dir.path().join(format!("sql.{backend}")),
            Some(TOKEN),
            None,
            &["-sql-timeout", "500ms", "-sql-max-rows", "25"],
        )
        .expect("server");
        let records = sample();
        assert_eq!(upload_gzip_ndjson(&server, Some(TOKEN), &records).0, 200, "{backend}");

        // The issue's query, against a brute-force count of what was uploaded.
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for r in &records {
            *want.entry(r.route.clone().unwrap_or_default()).or_default() += 1;
        }
        let want: Vec<Value> = want.into_iter().map(|(k, n)| json!([k, n])).collect();
        let (status, v) = sql(&server, "SELECT route, count(*) FROM traffic GROUP BY 1 ORDER BY 1");
        assert_eq!(status, 200, "{backend}: {v}");
        let answer: SqlAnswer = serde_json::from_value(v).expect("an SqlAnswer");
        assert_eq!(serde_json::to_value(&answer.rows).unwrap(), json!(want), "{backend}");
        assert_eq!(answer.columns[0].name, "route");
        assert!(!answer.truncated);

        // The server's row cap wins over a larger limit; `truncated` says more matched.
        let (_, v) = sql(&server, "SELECT ts, ts_us FROM traffic ORDER BY ts_us");
        assert_eq!((v["limit"].clone(), v["truncated"].clone()), (json!(25), json!(true)), "{backend}");
        assert_eq!(
            v["rows"][0],
            json!(["2026-11-25T10:00:00.000000Z", 1_795_600_800_000_000i64]),
            "{backend}"
        );

        // The client: table, csv, json.
        let base = ["-server", server.url.as_str(), "-token", TOKEN];
        let run = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
            client(&args)
        };
        let q = "SELECT method, count(*) AS n FROM traffic GROUP BY 1 ORDER BY 1";
        let (code, table, err) = run(&["sql", q]);
        assert_eq!(code, 0, "{backend}: {err}");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["method", "n"], "{backend}: {table}");
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["GET", "30"], "{backend}: {table}");
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["POST", "10"], "{backend}: {table}");
        assert!(lines[3].starts_with("2 rows in "), "{backend}: {table}");
        let (code, csv, _) = run(&["-o", "csv", "sql", q]);
        assert_eq!((code, csv.as_str()), (0, "method,n\nGET,30\nPOST,10\n"), "{backend}");
        let (code, out, _) = run(&["sql", "SELECT path FROM traffic", "-limit", "3", "-o", "json"]);
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!((v["rows"].as_array().map(Vec::len), v["truncated"].clone()), (Some(3), json!(true)));
        let (code, _, err) = run(&["sql", "DELETE FROM traffic_logs"]);
        assert_eq!(code, 1, "{backend}");
        assert!(err.contains("(400): refused: only queries are answered"), "{backend}: {err}");

        // Hostile statements over HTTP: 400, their kind, nothing changed, no file written.
        let d = dir.path().display();
        let hostile = [
            ("DELETE FROM traffic_logs".to_owned(), "refused"),
            ("DROP TABLE traffic_logs".to_owned(), "refused"),
            ("INSERT INTO traffic_logs (seq) VALUES (1)".to_owned(), "refused"),
            (format!("ATTACH '{d}/x.db' AS x"), "refused"),
            (format!("COPY traffic_logs TO '{d}/out.csv'"), "refused"),
            ("PRAGMA writable_schema = 1".to_owned(), "refused"),
            ("SELECT 1; DELETE FROM traffic_logs".to_owned(), "refused"),
            (format!("SELECT '{}'", "x".repeat(100_001)), "refused"),
            ("SELECT nope FROM traffic".to_owned(), "engine"),
            (
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
                    .to_owned(),
                "timeout",
            ),
        ];
        for (q, kind) in &hostile {
            let (status, v) = sql(&server, q);
            let shown: String = q.chars().take(60).collect();
            assert_eq!((status, v["kind"].as_str()), (400, Some(*kind)), "{backend}: {shown}: {v}");
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        // Reading a file is refused by DuckDB's sandbox (external access off); SQLite has no such
        // function (kind `engine`).
        let (status, v) = sql(&server, "SELECT * FROM read_csv('/etc/passwd')");
        let kinds: &[&str] = if backend == "duckdb" { &["refused"] } else { &["refused", "engine"] };
        assert_eq!(status, 400, "{backend}: {v}");
        assert!(v["kind"].as_str().is_some_and(|k| kinds.contains(&k)), "{backend}: {v}");
        assert!(!v.to_string().contains("root:"), "{backend}: no line of the file in {v}");
        assert_eq!(count_rows(&server), records.len(), "{backend}: the rows are all there");
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("sql."))
            .collect();
        assert!(files.is_empty(), "{backend}: files written: {files:?}");

        // Behind the token like everything else; a text body works too.
        assert_eq!(post(&server, None, &json!({ "sql": "SELECT 1" })).0, 401, "{backend}");
        let resp = http()
            .post(&format!("{}/sql?limit=2", server.url))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", "text/plain")
            .send("SELECT status FROM traffic")
            .expect("text body");
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.into_body().read_json().expect("json");
        assert_eq!(v["rows"].as_array().map(Vec::len), Some(2), "{backend}");
        assert!(server.stop().success(), "{backend}");
    }
}
