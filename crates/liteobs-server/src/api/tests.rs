//! The API over a fake in-memory store: every query path and every error path (the original
//! design's test plan). The real backends are covered by the store conformance suite and by the
//! integration tests that run the real binaries.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use actix_web::http::{StatusCode, header};
use actix_web::{App, test};
use liteobs_model::{QueryResponse, TrafficLog};
use serde_json::{Value, json};

use super::*;
use crate::store::Result as StoreResult;

/// Keeps records in a Vec and answers with the reference semantics; remembers batch ids without
/// a bound; can be told to fail.
#[derive(Default)]
struct FakeStore {
    records: Mutex<Vec<TrafficLog>>,
    /// Committed batch ids and their counts.
    ids: Mutex<HashMap<BatchId, usize>>,
    fail: bool,
    /// The last filter a query received, to check what the API asked for.
    last_filter: Mutex<Option<Filter>>,
}

impl Store for FakeStore {
    fn insert(&self, batch: &[TrafficLog], id: Option<&BatchId>) -> StoreResult<Receipt> {
        if self.fail {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        let mut ids = self.ids.lock().unwrap();
        if let Some(&accepted) = id.and_then(|i| ids.get(i)) {
            return Ok(Receipt { accepted, duplicate: true });
        }
        if let Some(i) = id {
            ids.insert(i.clone(), batch.len());
        }
        self.records.lock().unwrap().extend_from_slice(batch);
        Ok(Receipt { accepted: batch.len(), duplicate: false })
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
}

fn record(i: u32) -> TrafficLog {
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

fn ndjson(records: &[TrafficLog]) -> String {
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
}

impl Harness {
    fn new() -> Self {
        Harness { store: Arc::new(FakeStore::default()), token: None, max_body: 1 << 20 }
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
        let state = web::Data::new(ApiState {
            store: self.store.clone(),
            token: self.token.clone(),
            max_body: self.max_body,
        });
        let app = test::init_service(App::new().configure(configure(state))).await;
        let resp = test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let body = test::read_body(resp).await;
        assert_eq!(ct.as_deref(), Some("application/json"), "every answer is JSON");
        (status, serde_json::from_slice(&body).expect("JSON body"))
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
