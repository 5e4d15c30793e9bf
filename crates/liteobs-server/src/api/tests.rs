//! The API over a fake in-memory store: every query path and every error path (the original
//! design's test plan). The real backends are covered by the store conformance suite and by the
//! integration tests that run the real binaries.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{App, test};
use chrono::Utc;
use liteobs_model::{BATCH_ID_HEADER, Filter, QueryResponse, TrafficLog};
use serde_json::{Value, json};

use super::*;
use crate::store::{BatchId, Receipt, Result as StoreResult, StoreError};

/// Keeps records in a Vec and answers with the reference semantics; remembers batch ids without
/// a bound; can be told to fail. A record's `seq` is its place in the Vec, from 1.
#[derive(Default)]
pub(super) struct FakeStore {
    pub(super) records: Mutex<Vec<TrafficLog>>,
    /// Committed batch ids and their counts.
    ids: Mutex<HashMap<BatchId, usize>>,
    fail: bool,
    /// The last filter a query received, to check what the API asked for.
    last_filter: Mutex<Option<Filter>>,
    /// The count of records, announced after each insert.
    committed: Committed,
    /// The pages followers asked for, to check what the API read.
    pub(super) pages: Mutex<Vec<crate::store::SeqPage>>,
}

/// A watch of the last `seq` (a newtype for `Default`).
pub(super) struct Committed(tokio::sync::watch::Sender<u64>);

impl Default for Committed {
    fn default() -> Self {
        Committed(tokio::sync::watch::channel(0).0)
    }
}

impl Store for FakeStore {
    fn insert(&self, batch: &[TrafficLog], id: Option<&BatchId>) -> StoreResult<Receipt> {
        if self.fail {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        let mut ids = self.ids.lock().unwrap();
        if let Some(&accepted) = id.and_then(|i| ids.get(i)) {
            return Ok(Receipt { accepted, duplicate: true, merged: 0 });
        }
        if let Some(i) = id {
            ids.insert(i.clone(), batch.len());
        }
        let mut records = self.records.lock().unwrap();
        records.extend_from_slice(batch);
        self.committed.0.send_replace(records.len() as u64);
        Ok(Receipt { accepted: batch.len(), duplicate: false, merged: 0 })
    }

    fn rows_after(
        &self,
        filter: &Filter,
        page: crate::store::SeqPage,
    ) -> StoreResult<Vec<crate::store::SeqRecord>> {
        if self.fail {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        self.pages.lock().unwrap().push(page);
        let recs = self.records.lock().unwrap();
        let mut rows: Vec<crate::store::SeqRecord> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r))
            .filter(|(seq, r)| *seq > page.after && *seq <= page.upto && filter.matches(r))
            .map(|(seq, r)| crate::store::SeqRecord { seq, record: r.clone(), update: false })
            .collect();
        if page.newest {
            rows = rows.split_off(rows.len().saturating_sub(page.limit));
        } else {
            rows.truncate(page.limit);
        }
        Ok(rows)
    }

    fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.0.subscribe()
    }

    fn query(&self, filter: &Filter) -> StoreResult<Vec<TrafficLog>> {
        if self.fail {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        *self.last_filter.lock().unwrap() = Some(filter.clone());
        let recs = self.records.lock().unwrap();
        let mut out: Vec<TrafficLog> = recs.iter().rev().filter(|r| filter.matches(r)).cloned().collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.ts));
        out.truncate(filter.limit);
        Ok(out)
    }

    fn stats(
        &self,
        query: &liteobs_model::stats::StatsQuery,
        now: chrono::DateTime<Utc>,
    ) -> StoreResult<liteobs_model::stats::StatsResponse> {
        if self.fail {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        Ok(liteobs_model::stats::reference(&self.records.lock().unwrap(), query, now))
    }

    /// Echoes the statement and limit; `busy` and `timeout` stand for the engine's answers.
    fn sql(
        &self,
        query: &crate::store::SqlQuery,
    ) -> std::result::Result<crate::store::SqlAnswer, crate::store::SqlError> {
        use crate::store::{SqlError, SqlErrorKind, sandbox};
        match query.sql.as_str() {
            "busy" => Err(SqlError { kind: SqlErrorKind::Busy, message: "2 SQL queries are running".into() }),
            "timeout" => Err(SqlError::timeout(Duration::from_secs(10))),
            sql => {
                let sql = sandbox::precheck(sql)?;
                Ok(crate::store::SqlAnswer {
                    columns: vec![sandbox::SqlColumn { name: "sql".into(), ty: "VARCHAR".into() }],
                    rows: vec![vec![json!(sql)]],
                    limit: query.limit.min(10_000),
                    truncated: false,
                    elapsed_ms: 0,
                })
            }
        }
    }

    fn map(
        &self,
        query: &liteobs_model::stats::StatsQuery,
        now: chrono::DateTime<Utc>,
    ) -> StoreResult<liteobs_model::map::MapResponse> {
        let (since, until) = query.window(now);
        let filter = query.bounded_filter(now);
        Ok(liteobs_model::map::reference(&self.records.lock().unwrap(), &filter, since, until))
    }
}

pub(super) fn record(i: u32) -> TrafficLog {
    let status = [200, 404, 503][i as usize % 3];
    serde_json::from_value(json!({
        "ts": format!("2026-11-25T10:00:{:02}.000001Z", i % 60),
        "src_ip": if i.is_multiple_of(2) { "10.1.0.1" } else { "::1" },
        "src_port": 40000 + i,
        "dst_ip": "10.1.0.2", "dst_port": 8080,
        "method": if i.is_multiple_of(3) { "POST" } else { "GET" },
        "path": format!("/api/{i}"),
        "status": status,
        "latency_us": 100, "req_bytes": 0, "resp_bytes": 10,
        "src_pid": 100 + i % 4, "dst_pid": 900,
        "node": "n1"
    }))
    .unwrap()
}

pub(super) fn ndjson(records: &[TrafficLog]) -> String {
    records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

struct Harness {
    store: Arc<FakeStore>,
    token: Option<String>,
    max_body: usize,
    budget: Arc<MemoryBudget>,
    metrics: Arc<crate::metrics::ServerMetrics>,
}

impl Harness {
    fn new() -> Self {
        let store = Arc::new(FakeStore::default());
        Harness {
            metrics: Arc::new(crate::metrics::ServerMetrics::new(store.clone())),
            store,
            token: None,
            max_body: 1 << 20,
            budget: MemoryBudget::new(64 << 20),
        }
    }

    fn with_token(mut self, t: &str) -> Self {
        self.token = Some(t.into());
        self
    }

    fn failing(mut self) -> Self {
        self.store = Arc::new(FakeStore { fail: true, ..FakeStore::default() });
        self
    }

    /// Sends one request to a fresh service over this harness's store; returns status and JSON.
    async fn send(&self, req: test::TestRequest) -> (StatusCode, Value) {
        let (status, _, body) = self.send_with_headers(req).await;
        (status, body)
    }

    /// [`Harness::send`], with the answer's headers.
    /// The API's state over this harness's store, limits and token.
    fn state(&self) -> web::Data<ApiState> {
        web::Data::new(ApiState {
            store: self.store.clone(),
            routes: Arc::default(),
            token: self.token.clone(),
            max_body: self.max_body,
            body_timeout: Duration::from_secs(30),
            budget: self.budget.clone(),
            metrics: self.metrics.clone(),
            follow: FollowSettings::new(64, Duration::from_secs(15), tokio::sync::watch::channel(false).1),
        })
    }

    async fn send_with_headers(&self, req: test::TestRequest) -> (StatusCode, header::HeaderMap, Value) {
        let app = test::init_service(App::new().configure(configure(self.state()))).await;
        let resp = test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let body = test::read_body(resp).await;
        assert_eq!(ct.as_deref(), Some("application/json"), "every answer is JSON");
        assert_eq!(self.budget.in_use(), 0, "every answered upload gives its memory back");
        (status, headers, serde_json::from_slice(&body).expect("JSON body"))
    }

    async fn post(&self, body: impl Into<Vec<u8>>, content_type: &str, gzipped: bool) -> (StatusCode, Value) {
        let mut req =
            test::TestRequest::post().uri("/upload").insert_header((header::CONTENT_TYPE, content_type));
        if gzipped {
            req = req.insert_header((header::CONTENT_ENCODING, "gzip"));
        }
        self.send(req.set_payload(body.into())).await
    }

    async fn upload(&self, records: &[TrafficLog]) {
        let (s, v) = self
            .send(test::TestRequest::post().uri("/upload").set_json(records).insert_header(self.auth()))
            .await;
        assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": records.len() })));
    }

    fn auth(&self) -> (header::HeaderName, String) {
        (header::AUTHORIZATION, format!("Bearer {}", self.token.clone().unwrap_or_default()))
    }

    async fn query(&self, qs: &str) -> (StatusCode, Value) {
        self.send(test::TestRequest::get().uri(&format!("/query{qs}")).insert_header(self.auth())).await
    }

    fn stored(&self) -> usize {
        self.store.records.lock().unwrap().len()
    }
}

#[actix_web::test]
async fn healthz_answers_ok() {
    let h = Harness::new();
    let (s, v) = h.send(test::TestRequest::get().uri("/healthz")).await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "status": "ok" })));
}

#[actix_web::test]
async fn upload_json_array_ndjson_and_gzip() {
    let h = Harness::new();
    h.upload(&[record(1), record(2)]).await;
    let nd = ndjson(&[record(3), record(4), record(5)]);
    let (s, v) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
                .set_payload(nd.clone()),
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })));
    let (s, v) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
                .insert_header((header::CONTENT_ENCODING, "gzip"))
                .set_payload(gzip(nd.as_bytes())),
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })));
    // No Content-Type: sniffed.
    let (s, _) = h.send(test::TestRequest::post().uri("/upload").set_payload(nd)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.stored(), 11);
}

#[actix_web::test]
async fn malformed_record_is_400_naming_index_and_field_and_stores_nothing() {
    let h = Harness::new();
    let mut bad = serde_json::to_value([record(1), record(2), record(3)]).unwrap();
    bad[2]["status"] = json!("two hundred");
    let (s, v) = h.send(test::TestRequest::post().uri("/upload").set_json(&bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!((v["index"].clone(), v["field"].clone()), (json!(2), json!("status")));
    assert!(v["error"].as_str().unwrap().contains("record 2"), "{v}");
    let mut missing = serde_json::to_value(record(1)).unwrap();
    missing.as_object_mut().unwrap().remove("dst_ip");
    let body = format!("{}\n{}\n", serde_json::to_string(&record(2)).unwrap(), missing);
    let (s, v) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
                .set_payload(body),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!((v["index"].clone(), v["field"].clone()), (json!(1), json!("dst_ip")));
    assert_eq!(h.stored(), 0, "nothing of a rejected batch is stored");
}

#[actix_web::test]
async fn garbage_bodies_are_400() {
    let h = Harness::new();
    for body in [&b"hello"[..], b"[{]", b"\x1f\x8b garbage", b"{\"ts\":1}"] {
        let (s, v) = h.send(test::TestRequest::post().uri("/upload").set_payload(body.to_vec())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (s, v) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_ENCODING, "gzip"))
                .set_payload(b"not gzip at all".to_vec()),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("gzip"));
    assert_eq!(h.stored(), 0);
}

#[actix_web::test]
async fn unsupported_encoding_and_type_are_415() {
    let h = Harness::new();
    let (s, _) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_ENCODING, "br"))
                .set_payload("[]"),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_TYPE, "text/csv"))
                .set_payload("[]"),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[actix_web::test]
async fn body_over_the_limit_is_413_raw_and_after_gzip() {
    let mut h = Harness::new();
    h.max_body = 4096;
    let big = ndjson(&(0..100).map(record).collect::<Vec<_>>());
    assert!(big.len() > 4096);
    let (s, v) = h.send(test::TestRequest::post().uri("/upload").set_payload(big.clone())).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Compresses under the limit, inflates over it.
    let zipped = gzip(big.as_bytes());
    assert!(zipped.len() < 4096);
    let (s, _) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header((header::CONTENT_ENCODING, "gzip"))
                .set_payload(zipped),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.stored(), 0);
}

/// The page's files need no token (the page asks for it and sends it with its API calls), come
/// gzipped when asked, revalidate by `ETag`, and carry a policy that keeps the page to its own
/// files and server; a name that is not one of them is a JSON 404.
#[actix_web::test]
async fn the_page_is_public_gzipped_revalidated_and_confined() {
    let h = Harness::new().with_token("s3cret");
    let app = test::init_service(App::new().configure(configure(h.state()))).await;
    let get = |uri: &str| test::TestRequest::get().uri(uri);
    let resp = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/html; charset=utf-8");
    assert!(
        headers
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("connect-src 'self'")
    );
    assert!(headers.get(header::CONTENT_ENCODING).is_none(), "not gzipped unless asked");
    let html = test::read_body(resp).await;
    assert!(std::str::from_utf8(&html).unwrap().contains("<title>LiteObs</title>"));

    let resp = test::call_service(
        &app,
        get("/ui/app.js").insert_header((header::ACCEPT_ENCODING, "gzip, br")).to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get(header::CONTENT_ENCODING).unwrap(), "gzip");
    let etag = resp.headers().get(header::ETAG).unwrap().clone();
    let gz = test::read_body(resp).await;
    let mut js = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut js).unwrap();
    assert!(js.contains("TrafficView"), "the app's own code, gzipped");

    let resp =
        test::call_service(&app, get("/ui/app.js").insert_header((header::IF_NONE_MATCH, etag)).to_request())
            .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let resp = test::call_service(&app, get("/ui/../Cargo.toml").to_request()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = test::call_service(&app, get("/ui/vendor/LICENSE").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK, "the vendored code's licence is served beside it");
    // The API behind it still needs the token.
    let resp = test::call_service(&app, get("/query").to_request()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn token_is_required_everywhere_but_healthz() {
    let h = Harness::new().with_token("s3cret");
    for req in [
        test::TestRequest::get().uri("/query"),
        test::TestRequest::post().uri("/upload").set_payload("[]"),
        test::TestRequest::get().uri("/query").insert_header((header::AUTHORIZATION, "Bearer wrong")),
        test::TestRequest::get().uri("/query").insert_header((header::AUTHORIZATION, "s3cret")),
        test::TestRequest::get().uri("/nope"),
    ] {
        let (s, v) = h.send(req).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }
    let (s, _) = h.send(test::TestRequest::get().uri("/healthz")).await;
    assert_eq!(s, StatusCode::OK);
    h.upload(&[record(1)]).await;
    let (s, v) = h.query("").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["records"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn every_query_parameter_reaches_the_store() {
    let h = Harness::new();
    h.upload(&(0..12).map(record).collect::<Vec<_>>()).await;
    let cases: [(&str, usize); 9] = [
        ("", 12),
        ("?ip=::1", 6),
        ("?pid=101", 3),
        ("?pid=900", 12),
        ("?method=post", 4),
        ("?status=5xx", 4),
        ("?status=404", 4),
        ("?path=/api/1", 3),
        ("?since=2026-11-25T10:00:06Z&until=2026-11-25T10:00:09Z", 3),
    ];
    for (qs, n) in cases {
        let (s, v) = h.query(qs).await;
        assert_eq!(s, StatusCode::OK, "{qs}: {v}");
        let resp: QueryResponse = serde_json::from_value(v).unwrap();
        assert_eq!(resp.records.len(), n, "{qs}");
        assert!(!resp.truncated);
        assert!(resp.records.windows(2).all(|w| w[0].ts >= w[1].ts), "newest first");
    }
    let (_, v) = h.query("?ip=10.1.0.1&method=GET&status=2xx&path=%2Fapi&limit=50").await;
    let f = h.store.last_filter.lock().unwrap().clone().unwrap();
    assert_eq!(f.limit, 51, "the API asks for one more row than the limit");
    assert_eq!(f.ip, Some("10.1.0.1".parse().unwrap()));
    assert_eq!(f.path_prefix.as_deref(), Some("/api"));
    assert_eq!(v["limit"], json!(50));
}

#[actix_web::test]
async fn relative_since_is_accepted() {
    let h = Harness::new();
    let (s, _) = h.query("?since=15m").await;
    assert_eq!(s, StatusCode::OK);
    let f = h.store.last_filter.lock().unwrap().clone().unwrap();
    let age = Utc::now() - f.since.unwrap();
    assert!(age.num_minutes() >= 14 && age.num_minutes() <= 16, "{age}");
}

#[actix_web::test]
async fn limit_and_truncation() {
    let h = Harness::new();
    h.upload(&(0..12).map(record).collect::<Vec<_>>()).await;
    let (_, v) = h.query("?limit=5").await;
    let resp: QueryResponse = serde_json::from_value(v).unwrap();
    assert_eq!((resp.records.len(), resp.limit, resp.truncated), (5, 5, true));
    let (_, v) = h.query("?limit=12").await;
    let resp: QueryResponse = serde_json::from_value(v).unwrap();
    assert_eq!((resp.records.len(), resp.truncated), (12, false));
    let (_, v) = h.query("").await;
    assert_eq!(v["limit"], json!(100), "default limit");
}

#[actix_web::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let h = Harness::new();
    for (qs, param) in [
        ("?ip=300.1.1.1", "ip"),
        ("?pid=x", "pid"),
        ("?status=2x", "status"),
        ("?since=tomorrow", "since"),
        ("?until=5y", "until"),
        ("?limit=0", "limit"),
        ("?limit=10001", "limit"),
        ("?method=G%20T", "method"),
        ("?colour=red", "colour"),
    ] {
        let (s, v) = h.query(qs).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{qs}");
        assert_eq!(v["param"], json!(param), "{qs}: {v}");
        assert!(v["error"].as_str().unwrap().contains(param));
    }
}

#[actix_web::test]
async fn store_failure_is_500_json_and_not_acknowledged() {
    let h = Harness::new().failing();
    let (s, v) = h.send(test::TestRequest::post().uri("/upload").set_json([record(1)])).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(v["error"].as_str().unwrap().contains("disk on fire"));
    assert!(v.get("accepted").is_none());
    let (s, _) = h.query("").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
}

#[actix_web::test]
async fn unknown_route_and_wrong_method_are_json_404() {
    let h = Harness::new();
    let (s, v) = h.send(test::TestRequest::get().uri("/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("/nope"));
    let (s, _) = h.send(test::TestRequest::delete().uri("/upload")).await;
    assert!(s.is_client_error());
}

const ARRAY: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

#[actix_web::test]
async fn data_after_the_body_is_400_and_stores_nothing() {
    let h = Harness::new();
    let one = serde_json::to_string(&record(1)).unwrap();
    for (body, ct) in [
        ("[]]".to_owned(), ARRAY),
        (format!("[{one}] {{garbage"), ARRAY),
        (format!("[{one}][{one}]"), ARRAY),
        (format!("{one}\n{one} }}{{\n"), NDJSON),
        (format!("{one}{one}\n"), NDJSON),
    ] {
        for gzipped in [false, true] {
            let payload = if gzipped { gzip(body.as_bytes()) } else { body.clone().into_bytes() };
            let (s, v) = h.post(payload, ct, gzipped).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
            assert!(v["error"].as_str().unwrap().contains("data after"), "{body}: {v}");
        }
    }
    assert_eq!(h.stored(), 0);
}

#[actix_web::test]
async fn values_a_column_cannot_hold_exactly_are_400_naming_index_and_field() {
    let h = Harness::new();
    let good = serde_json::to_string(&record(1)).unwrap();
    for (field, value) in [
        ("latency_us", "18446744073709551615"),
        ("req_bytes", "9223372036854775808"),
        ("status", "200.0"),
        ("src_port", "-1"),
        ("ts", r#""9999-12-31T23:59:59-23:59""#),
        ("ts", r#""2026-11-25T10:00:00.0000001Z""#),
    ] {
        let bad = format!(
            r#"{},"{field}":{value}}}"#,
            good.trim_end_matches('}').replacen(&format!(r#""{field}":"#), r#""was":"#, 1)
        );
        let (s, v) = h.post(format!("{good}\n{bad}\n"), NDJSON, false).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}={value}: {v}");
        assert_eq!((v["index"].clone(), v["field"].clone()), (json!(1), json!(field)), "{v}");
    }
    assert_eq!(h.stored(), 0);
    let mut max = serde_json::to_value(record(1)).unwrap();
    max["latency_us"] = json!(i64::MAX);
    let (s, v) = h.post(format!("[{max}]"), ARRAY, false).await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 1 })));
}

/// A valid body of exactly `len` bytes: records, then JSON whitespace up to the length.
fn body_of_len(len: usize, ct: &str) -> Vec<u8> {
    let records = (0..3).map(record).collect::<Vec<_>>();
    let mut body =
        if ct == ARRAY { serde_json::to_vec(&records).unwrap() } else { ndjson(&records).into_bytes() };
    assert!(body.len() <= len);
    let close = if ct == ARRAY { body.pop() } else { None };
    body.resize(len - usize::from(close.is_some()), b' ');
    body.extend(close);
    assert_eq!(body.len(), len);
    body
}

#[actix_web::test]
async fn a_body_of_exactly_max_body_is_accepted_and_one_byte_more_is_413() {
    let mut h = Harness::new();
    h.max_body = 4096;
    for ct in [ARRAY, NDJSON] {
        let (s, v) = h.post(body_of_len(4096, ct), ct, false).await;
        assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })), "{ct}: identity, exactly the limit");
        let (s, _) = h.post(body_of_len(4097, ct), ct, false).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{ct}: identity, one byte over");
        let (s, v) = h.post(gzip(&body_of_len(4096, ct)), ct, true).await;
        assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })), "{ct}: inflates to exactly the limit");
        let (s, _) = h.post(gzip(&body_of_len(4097, ct)), ct, true).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{ct}: inflates to one byte over");
    }
    assert_eq!(h.stored(), 12);
}

#[actix_web::test]
async fn an_upload_past_the_memory_budget_is_503_with_retry_after_and_stores_nothing() {
    let mut h = Harness::new();
    h.max_body = 1 << 20;
    let body = body_of_len(200_000, NDJSON);
    // Another upload holds most of the budget.
    h.budget = MemoryBudget::new(300_000);
    let mut held = h.budget.reservation();
    held.grow(150_000).unwrap();
    let req = test::TestRequest::post().uri("/upload").insert_header((header::CONTENT_TYPE, NDJSON));
    let state_check = h.budget.clone();
    let (s, headers, v) = {
        // send_with_headers asserts the budget is empty afterwards: release the other upload's
        // share only after checking this one gave everything back.
        let state = web::Data::new(ApiState {
            store: h.store.clone(),
            routes: Arc::default(),
            token: None,
            max_body: h.max_body,
            body_timeout: Duration::from_secs(30),
            budget: h.budget.clone(),
            metrics: h.metrics.clone(),
            follow: FollowSettings::new(64, Duration::from_secs(15), tokio::sync::watch::channel(false).1),
        });
        let app = test::init_service(App::new().configure(configure(state))).await;
        let resp = test::call_service(&app, req.set_payload(body.clone()).to_request()).await;
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, serde_json::from_slice::<Value>(&test::read_body(resp).await).unwrap())
    };
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), &RETRY_AFTER_SECS.to_string());
    assert!(v["error"].as_str().unwrap().contains("retry later"), "{v}");
    assert_eq!(state_check.in_use(), 150_000, "the refused upload gave back what it took");
    drop(held);
    let (s, v) = h.post(body, NDJSON, false).await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })), "fits once the budget is free");
    assert_eq!(h.stored(), 3);
}

#[actix_web::test]
async fn a_declared_length_is_not_trusted_for_memory() {
    // A Content-Length at the limit with a small body: memory is reserved as bytes arrive, not
    // from the promise (a budget far below the declared length still takes it).
    let mut h = Harness::new();
    h.max_body = 1 << 20;
    h.budget = MemoryBudget::new(100_000);
    let body = body_of_len(1000, NDJSON);
    let req = test::TestRequest::post()
        .uri("/upload")
        .insert_header((header::CONTENT_TYPE, NDJSON))
        .set_payload(body)
        .insert_header((header::CONTENT_LENGTH, (1u64 << 20).to_string()));
    let (s, v) = h.send(req).await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })));
    let (s, _) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .set_payload("[]")
                .insert_header((header::CONTENT_LENGTH, ((1u64 << 20) + 1).to_string())),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "a declared length over the limit is refused unread");
}

#[actix_web::test]
async fn limit_boundaries() {
    let h = Harness::new();
    h.upload(&[record(1)]).await;
    for (qs, ok) in [
        ("?limit=1", true),
        ("?limit=10000", true),
        ("?limit=10001", false),
        ("?limit=0", false),
        ("?limit=-1", false),
        ("?limit=18446744073709551616", false),
    ] {
        let (s, v) = h.query(qs).await;
        assert_eq!(s == StatusCode::OK, ok, "{qs}: {v}");
    }
    let f = h.store.last_filter.lock().unwrap().clone().unwrap();
    assert_eq!(f.limit, 10_001, "limit=10000 asks the store for 10001 rows");
    for (qs, ok) in
        [("?pid=4294967295", true), ("?pid=4294967296", false), ("?pid=-1", false), ("?status=599", true)]
    {
        let (s, v) = h.query(qs).await;
        assert_eq!(s == StatusCode::OK, ok, "{qs}: {v}");
    }
}

#[actix_web::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let h = Harness::new().with_token("s3cret");
    for value in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
        let (s, v) = h
            .send(test::TestRequest::get().uri("/query").insert_header((header::AUTHORIZATION, value)))
            .await;
        assert_eq!(s, StatusCode::OK, "{value}: {v}");
    }
}

fn with_id(req: test::TestRequest, id: &str) -> test::TestRequest {
    req.insert_header((BATCH_ID_HEADER, id))
}

#[actix_web::test]
async fn repeated_batch_id_is_acknowledged_and_not_stored_again() {
    let h = Harness::new();
    let batch = [record(1), record(2), record(3)];
    let post = || test::TestRequest::post().uri("/upload").set_json(batch.clone());
    let (s, v) = h.send(with_id(post(), "0f8c2d3e-6a1b-4c9d-8e7f-001122334455")).await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3 })));
    let (s, v) = h.send(with_id(post(), "0f8c2d3e-6a1b-4c9d-8e7f-001122334455")).await;
    assert_eq!((s, v), (StatusCode::OK, json!({ "accepted": 3, "duplicate": true })));
    assert_eq!(h.stored(), 3, "a repeat is not stored");
    // Gzip NDJSON with an id, as the agent sends it, twice.
    let nd = gzip(ndjson(&batch).as_bytes());
    let gz = || {
        test::TestRequest::post()
            .uri("/upload")
            .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .set_payload(nd.clone())
    };
    let (s, _) = h.send(with_id(gz(), "agent-7:42")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = h.send(with_id(gz(), "agent-7:42")).await;
    assert_eq!((s, v["duplicate"].clone()), (StatusCode::OK, json!(true)));
    assert_eq!(h.stored(), 6);
    // Without the header, every upload is stored.
    h.upload(&batch).await;
    h.upload(&batch).await;
    assert_eq!(h.stored(), 12);
}

#[actix_web::test]
async fn batch_id_reused_for_another_batch_is_409_and_stores_nothing() {
    let h = Harness::new();
    let post = |n: u32| {
        with_id(
            test::TestRequest::post().uri("/upload").set_json((0..n).map(record).collect::<Vec<_>>()),
            "b-1",
        )
    };
    assert_eq!(h.send(post(4)).await.0, StatusCode::OK);
    let (s, v) = h.send(post(2)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("b-1"), "{v}");
    assert_eq!(h.stored(), 4);
}

#[actix_web::test]
async fn malformed_batch_id_is_400_and_stores_nothing() {
    let h = Harness::new();
    let long = "a".repeat(129);
    for id in ["", "has space", "a/b", "é", long.as_str(), "a\tb", "%00"] {
        let req = test::TestRequest::post().uri("/upload").set_json([record(1)]);
        let (s, v) = h.send(with_id(req, id)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{id:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains(BATCH_ID_HEADER), "{v}");
    }
    let raw = header::HeaderValue::from_bytes(b"a\xffb").unwrap();
    let req =
        test::TestRequest::post().uri("/upload").set_json([record(1)]).insert_header((BATCH_ID_HEADER, raw));
    assert_eq!(h.send(req).await.0, StatusCode::BAD_REQUEST);
    let req = test::TestRequest::post()
        .uri("/upload")
        .set_json([record(1)])
        .append_header((BATCH_ID_HEADER, "one"))
        .append_header((BATCH_ID_HEADER, "two"));
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(h.stored(), 0);
}

#[actix_web::test]
async fn path_prefix_reaches_the_store_byte_for_byte() {
    let h = Harness::new();
    for (qs, want) in [
        ("?path=/a%00", "/a\0"),
        ("?path=/a%25_", "/a%_"),
        ("?path=%5C%2A", "\\*"),
        ("?path=/%FF", "/\u{FFFD}"),
    ] {
        let (s, v) = h.query(qs).await;
        assert_eq!(s, StatusCode::OK, "{qs}: {v}");
        let f = h.store.last_filter.lock().unwrap().clone().unwrap();
        assert_eq!(f.path_prefix.as_deref(), Some(want), "{qs}");
    }
}

#[actix_web::test]
async fn stats_group_and_name_bad_parameters() {
    let h = Harness::new();
    let records: Vec<TrafficLog> = (0..30).map(record).collect();
    h.upload(&records).await;
    let qs = "?group_by=method,status&since=2026-11-25T10:00:00Z&until=2026-11-25T10:01:00Z&sort=errors";
    let (s, v) = h.send(test::TestRequest::get().uri(&format!("/stats{qs}")).insert_header(h.auth())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let groups = v["groups"].as_array().unwrap();
    // 30 records: GET/POST by i % 3 == 0, statuses 200/404/503 by i % 3: POST is always 200.
    assert_eq!(groups.len(), 3, "{v}");
    assert_eq!(groups[0]["key"], json!({ "method": "GET", "status": 503 }));
    assert_eq!((groups[0]["count"].clone(), groups[0]["errors"].clone()), (json!(10), json!(10)));
    assert_eq!(groups[0]["rate"], json!(10.0 / 60.0));
    assert_eq!(groups[0]["p99_us"], json!(100));
    assert_eq!(
        (v["since"].clone(), v["truncated"].clone()),
        (json!("2026-11-25T10:00:00.000000Z"), json!(false))
    );
    for (qs, param) in
        [("?group_by=pod", "group_by"), ("?sort=slow", "sort"), ("?limit=0", "limit"), ("?x=1", "x")]
    {
        let (s, v) =
            h.send(test::TestRequest::get().uri(&format!("/stats{qs}")).insert_header(h.auth())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{qs}: {v}");
        assert!(v["error"].as_str().unwrap().contains(param), "{qs}: {v}");
    }
    let (s, _) = Harness::new().with_token("t").send(test::TestRequest::get().uri("/stats")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "behind the token like everything else");
}

#[actix_web::test]
async fn sql_takes_json_or_text_and_answers_columns_and_rows() {
    let h = Harness::new().with_token("t");
    let post = || test::TestRequest::post().uri("/sql").insert_header(h.auth());
    let (s, v) = h.send(post().set_json(json!({"sql": "SELECT 1;", "limit": 5}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["columns"], json!([{"name": "sql", "type": "VARCHAR"}]));
    assert_eq!(
        (v["rows"].clone(), v["limit"].clone(), v["truncated"].clone()),
        (json!([["SELECT 1"]]), json!(5), json!(false))
    );
    assert!(v["elapsed_ms"].is_u64());
    let text = post().insert_header((header::CONTENT_TYPE, "text/plain")).set_payload("SELECT 2");
    let (s, v) = h.send(text).await;
    assert_eq!(
        (s, v["rows"].clone(), v["limit"].clone()),
        (StatusCode::OK, json!([["SELECT 2"]]), json!(10_000))
    );
    let text = test::TestRequest::post().uri("/sql?limit=3").insert_header(h.auth()).set_payload("SELECT 3");
    assert_eq!(h.send(text).await.1["limit"], json!(3));
    // Without the token: 401, as everywhere.
    let (s, _) = h.send(test::TestRequest::post().uri("/sql").set_payload("SELECT 1")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn sql_refusals_are_400_with_a_kind_and_busy_is_503() {
    let h = Harness::new();
    let post = |body: Value| test::TestRequest::post().uri("/sql").set_json(body);
    let (s, v) = h.send(post(json!({"sql": "DELETE FROM traffic_logs"}))).await;
    assert_eq!((s, v["kind"].clone()), (StatusCode::BAD_REQUEST, json!("refused")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("DELETE"), "{v}");
    let (s, v) = h.send(post(json!({"sql": "timeout"}))).await;
    assert_eq!((s, v["kind"].clone()), (StatusCode::BAD_REQUEST, json!("timeout")), "{v}");
    let (s, headers, v) = h.send_with_headers(post(json!({"sql": "busy"}))).await;
    assert_eq!((s, v["kind"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("busy")), "{v}");
    assert_eq!(headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned()), Some("2".into()));
    let (s, v) = h.send(post(json!({"sql": "SELECT 1", "limit": 0}))).await;
    assert_eq!((s, v["kind"].clone()), (StatusCode::BAD_REQUEST, json!("refused")), "{v}");
    for bad in [json!({"limit": 5}), json!({"sql": 5}), json!({"sql": "SELECT 1", "extra": true}), json!([1])]
    {
        let (s, v) = h.send(post(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let xml = test::TestRequest::post()
        .uri("/sql")
        .insert_header((header::CONTENT_TYPE, "text/xml"))
        .set_payload("x");
    assert_eq!(h.send(xml).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = test::TestRequest::post().uri("/sql").set_payload(vec![b' '; 2 << 20]);
    assert_eq!(h.send(huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, v) = h.send(test::TestRequest::post().uri("/sql").set_payload(vec![0xff, 0xfe])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = h.send(test::TestRequest::get().uri("/sql")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "GET is not a route");
}

/// The API's counters, as a scrape shows them: each upload once by its outcome (a refused
/// token and a bad body included), records and bytes of committed uploads only, and every
/// request timed under its route (an unknown path under `other`).
#[actix_web::test]
async fn uploads_are_counted_by_outcome_and_requests_timed_by_route() {
    let h = Harness::new().with_token("t0k");
    let records: Vec<TrafficLog> = (0..3).map(record).collect();
    let body = serde_json::to_vec(&records).unwrap();
    let (s, _) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header(h.auth())
                .insert_header((BATCH_ID_HEADER, "b-1"))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header(h.auth())
                .insert_header((BATCH_ID_HEADER, "b-1"))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(body.clone()),
        )
        .await;
    assert_eq!((s, &v["duplicate"]), (StatusCode::OK, &json!(true)));
    let (s, _) = h.send(test::TestRequest::post().uri("/upload").set_payload(body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h
        .send(
            test::TestRequest::post()
                .uri("/upload")
                .insert_header(h.auth())
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload("[{\"nope\": 1}]"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(h.query("").await.0, StatusCode::OK);
    assert_eq!(
        h.send(test::TestRequest::get().uri("/nowhere/123").insert_header(h.auth())).await.0,
        StatusCode::NOT_FOUND
    );
    let text = h.metrics.encode();
    for line in [
        "liteobs_server_uploads_total{outcome=\"stored\"} 1\n".to_owned(),
        "liteobs_server_uploads_total{outcome=\"duplicate\"} 1\n".to_owned(),
        "liteobs_server_uploads_total{outcome=\"unauthorized\"} 1\n".to_owned(),
        "liteobs_server_uploads_total{outcome=\"bad_request\"} 1\n".to_owned(),
        "liteobs_server_uploads_total{outcome=\"error\"} 0\n".to_owned(),
        "liteobs_server_ingest_records_total 3\n".to_owned(),
        format!("liteobs_server_ingest_bytes_total {}\n", body.len()),
        "liteobs_server_request_duration_seconds_count{route=\"/upload\"} 4\n".to_owned(),
        "liteobs_server_request_duration_seconds_count{route=\"/query\"} 1\n".to_owned(),
        "liteobs_server_request_duration_seconds_count{route=\"other\"} 1\n".to_owned(),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
}
