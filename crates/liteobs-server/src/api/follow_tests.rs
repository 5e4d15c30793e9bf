//! `GET /query?follow=1` over the fake store: where a stream starts (now, a backlog, a
//! cursor), what it sends as rows are committed, heartbeats, the follower cap, the token, the
//! stop signal, and that it reads no page before the last chunk was taken (backpressure).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{App, test, web};
use liteobs_model::follow::{FollowLine, parse_line};
use tokio::sync::watch;

use super::tests::{FakeStore, record};
use super::*;

/// The state of a server over `store` with `max` followers, a heartbeat every `heartbeat` and
/// the stop signal `stop`.
fn state(
    store: &Arc<FakeStore>,
    token: Option<&str>,
    max: usize,
    heartbeat: Duration,
    stop: watch::Receiver<bool>,
) -> web::Data<ApiState> {
    web::Data::new(ApiState {
        store: store.clone(),
        routes: Arc::default(),
        token: token.map(str::to_owned),
        max_body: 1 << 20,
        body_timeout: Duration::from_secs(30),
        budget: MemoryBudget::new(64 << 20),
        follow: FollowSettings::new(max, heartbeat, stop),
        metrics: Arc::new(crate::metrics::ServerMetrics::new(store.clone())),
    })
}

/// The next chunk of a streaming body, within 5 s; `None` at its end.
async fn chunk<B: MessageBody + Unpin>(body: &mut B) -> Option<Bytes> {
    let next = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx));
    match tokio::time::timeout(Duration::from_secs(5), next).await {
        Ok(Some(Ok(bytes))) => Some(bytes),
        Ok(Some(Err(_))) => panic!("the stream failed"),
        Ok(None) => None,
        Err(_) => panic!("no chunk within 5 s"),
    }
}

fn lines(chunk: &[u8]) -> Vec<FollowLine> {
    assert_eq!(chunk.last(), Some(&b'\n'), "a chunk holds whole lines");
    chunk[..chunk.len() - 1].split(|b| *b == b'\n').map(|l| parse_line(l).expect("a follow line")).collect()
}

fn seqs(lines: &[FollowLine]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| match l {
            FollowLine::Record { seq, .. } => Some(*seq),
            FollowLine::Cursor { .. } => None,
        })
        .collect()
}

fn cursor(line: &FollowLine) -> (u64, bool) {
    match line {
        FollowLine::Cursor { cursor, heartbeat } => (*cursor, *heartbeat),
        other => panic!("not a cursor line: {other:?}"),
    }
}

fn upload(store: &FakeStore, range: std::ops::Range<u32>) {
    let batch: Vec<_> = range.map(record).collect();
    crate::store::Store::insert(store, &batch, None).expect("insert");
}

#[actix_web::test]
async fn a_stream_starts_now_then_sends_each_commit_once_in_order_with_its_cursor_and_heartbeats() {
    let store = Arc::new(FakeStore::default());
    upload(&store, 0..5);
    let (_stop, stopping) = watch::channel(false);
    let app = test::init_service(App::new().configure(configure(state(
        &store,
        None,
        4,
        Duration::from_millis(100),
        stopping,
    ))))
    .await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/query?follow=1").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().to_owned();
    assert_eq!(ct, "application/x-ndjson");
    let mut body = resp.into_body();
    let first = lines(&chunk(&mut body).await.unwrap());
    assert_eq!(first, [FollowLine::Cursor { cursor: 5, heartbeat: false }], "from now: no backlog");

    upload(&store, 5..8);
    let got = lines(&chunk(&mut body).await.unwrap());
    assert_eq!(seqs(&got), [6, 7, 8]);
    let FollowLine::Record { record: r, update, .. } = &got[0] else { panic!("{got:?}") };
    assert_eq!((r, *update), (&record(5), false));
    assert_eq!(cursor(got.last().unwrap()), (8, false), "each page ends with its cursor");

    // Nothing committed: a heartbeat with the same cursor.
    let started = std::time::Instant::now();
    let beat = lines(&chunk(&mut body).await.unwrap());
    assert_eq!(beat.iter().map(cursor).collect::<Vec<_>>(), [(8, true)]);
    assert!(started.elapsed() >= Duration::from_millis(90), "not before the heartbeat is due");
    upload(&store, 8..9);
    assert_eq!(seqs(&lines(&chunk(&mut body).await.unwrap())), [9]);
}

#[actix_web::test]
async fn a_backlog_a_cursor_and_the_filter_decide_what_comes_first() {
    let store = Arc::new(FakeStore::default());
    upload(&store, 0..12);
    let (_stop, stopping) = watch::channel(false);
    let app = test::init_service(App::new().configure(configure(state(
        &store,
        None,
        4,
        Duration::from_secs(15),
        stopping,
    ))))
    .await;
    let first_lines = |uri: &'static str| {
        let app = &app;
        async move {
            let resp = test::call_service(app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.status(), StatusCode::OK, "{uri}");
            lines(&chunk(&mut resp.into_body()).await.unwrap())
        }
    };
    // `limit`: the newest 3 stored, oldest of them first, then the cursor at "now".
    let got = first_lines("/query?follow=1&limit=3").await;
    assert_eq!((seqs(&got), cursor(got.last().unwrap())), (vec![10, 11, 12], (12, false)));
    // The filter applies to the backlog (pid 101 is every 4th record from 1).
    let got = first_lines("/query?follow=1&limit=2&pid=101").await;
    assert_eq!(seqs(&got), [6, 10]);
    // A cursor resumes: nothing before it, and no backlog.
    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/query?follow=1&cursor=9&limit=3").to_request(),
    )
    .await;
    let mut body = resp.into_body();
    assert_eq!(lines(&chunk(&mut body).await.unwrap()), [FollowLine::Cursor { cursor: 9, heartbeat: false }]);
    let rest = lines(&chunk(&mut body).await.unwrap());
    assert_eq!((seqs(&rest), cursor(rest.last().unwrap())), (vec![10, 11, 12], (12, false)));
    // A cursor past the store's end (another file) starts from now.
    let got = first_lines("/query?follow=1&cursor=999").await;
    assert_eq!(got, [FollowLine::Cursor { cursor: 12, heartbeat: false }]);
}

#[actix_web::test]
async fn bad_parameters_the_cap_and_the_token_are_refused_before_streaming() {
    let store = Arc::new(FakeStore::default());
    let (_stop, stopping) = watch::channel(false);
    let data = state(&store, Some("t0k"), 1, Duration::from_secs(15), stopping);
    let settings = data.follow.clone();
    let app = test::init_service(App::new().configure(configure(data))).await;
    let get = |uri: &str, token: bool| {
        let mut req = test::TestRequest::get().uri(uri);
        if token {
            req = req.insert_header((header::AUTHORIZATION, "Bearer t0k"));
        }
        req.to_request()
    };
    let resp = test::call_service(&app, get("/query?follow=1", false)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for (uri, param) in [
        ("/query?follow=1&cursor=x", "cursor"),
        ("/query?follow=0", "follow"),
        ("/query?follow=1&pid=x", "pid"),
        ("/query?follow=1&nope=1", "nope"),
    ] {
        let resp = test::call_service(&app, get(uri, true)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
        assert_eq!(v["param"], param, "{uri}: {v}");
    }
    assert_eq!(settings.followers.open(), 0, "refused requests hold no slot");

    let open = test::call_service(&app, get("/query?follow=1", true)).await;
    assert_eq!(open.status(), StatusCode::OK);
    let refused = test::call_service(&app, get("/query?follow=1", true)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers().get(header::RETRY_AFTER).unwrap(), &RETRY_AFTER_SECS.to_string());
    let v: serde_json::Value = serde_json::from_slice(&test::read_body(refused).await).unwrap();
    assert!(v["error"].as_str().unwrap().contains("-max-followers"), "{v}");
    let plain = test::call_service(&app, get("/query", true)).await;
    assert_eq!(plain.status(), StatusCode::OK, "queries are not followers");
    assert_eq!(settings.followers.open(), 1);
    drop(open);
    assert_eq!(settings.followers.open(), 0, "a closed stream gives its slot back");
    let again = test::call_service(&app, get("/query?follow=1", true)).await;
    assert_eq!(again.status(), StatusCode::OK, "a closed stream gives its slot back");
}

#[actix_web::test]
async fn the_stop_signal_ends_every_stream_with_its_cursor() {
    let store = Arc::new(FakeStore::default());
    upload(&store, 0..2);
    let (stop, stopping) = watch::channel(false);
    let data = state(&store, None, 4, Duration::from_secs(15), stopping);
    let settings = data.follow.clone();
    let app = test::init_service(App::new().configure(configure(data))).await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/query?follow=1&cursor=1").to_request()).await;
    let mut body = resp.into_body();
    assert_eq!(lines(&chunk(&mut body).await.unwrap()), [FollowLine::Cursor { cursor: 1, heartbeat: false }]);
    assert_eq!(seqs(&lines(&chunk(&mut body).await.unwrap())), [2]);
    assert_eq!(settings.followers.open(), 1);
    stop.send(true).unwrap();
    assert_eq!(lines(&chunk(&mut body).await.unwrap()), [FollowLine::Cursor { cursor: 2, heartbeat: false }]);
    assert_eq!(chunk(&mut body).await, None, "then the stream ends");
    drop(body);
    assert_eq!(settings.followers.open(), 0);
}

#[actix_web::test]
async fn no_page_is_read_before_the_last_chunk_is_taken() {
    let store = Arc::new(FakeStore::default());
    let rows = 3 * follow::PAGE_ROWS as u32 + 7;
    upload(&store, 0..rows);
    let (_stop, stopping) = watch::channel(false);
    let app = test::init_service(App::new().configure(configure(state(
        &store,
        None,
        4,
        Duration::from_secs(15),
        stopping,
    ))))
    .await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/query?follow=1&cursor=0").to_request()).await;
    let mut body = resp.into_body();
    let pages = || store.pages.lock().unwrap().len();
    assert_eq!(lines(&chunk(&mut body).await.unwrap()).len(), 1, "the cursor line");
    assert_eq!(pages(), 0, "nothing read before the first page is asked for");
    let mut seen = Vec::new();
    for n in 1..=4 {
        let got = lines(&chunk(&mut body).await.unwrap());
        seen.extend(seqs(&got));
        assert_eq!(pages(), n, "one page read per chunk taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pages(), n, "and none while the chunk is not taken");
    }
    assert_eq!(seen, (1..=u64::from(rows)).collect::<Vec<_>>(), "every row once, in order");
}
