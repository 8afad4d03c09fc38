//! The HTTP tier of `intakeq-fs check`: the check against the fake server in each
//! profile (as a library call and as the real binary), against canned servers for
//! redirects and odd field types, asserting the exact deviations it reports, the exact
//! number of calls it makes, what the write round trip touches, and that no name or
//! key ever reaches its report.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use intakeq_fs::check::{self, CheckError, CheckOptions, Report, Severity};
use intakeq_fs::fake::profile::Profile;
use intakeq_fs::fake::server::{base_url, spawn};
use intakeq_fs::fake::store::{Endpoint, Fault, Store, UnknownClientFiles};

const KEY: &str = common::KEY;
/// Names that must never appear in a report.
const SECRETS: [&str; 5] = ["Jane", "Doe", "secret", "Intake Forms", common::KEY];

/// Client 1 ("Jane Doe") with a folder and three files, client 2 with one file.
fn seeded_store(profile: Profile) -> Store {
    let s = Store::new();
    s.set_profile(profile);
    s.add_client(1, "Jane", "Doe");
    s.add_client(2, "Ada", "Lovelace");
    s.add_folder("fo1", "Intake Forms");
    s.add_file(1, "Jane Doe secret.pdf", None, vec![7u8; 300]);
    s.add_file(1, "Jane Doe intake.pdf", Some("fo1"), vec![9u8; 120]);
    s.add_file(1, "empty.txt", None, Vec::new());
    s.add_file(2, "Ada notes.txt", None, &b"hello"[..]);
    s
}

async fn serve(store: &Store) -> String {
    let (addr, _task) = spawn(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        KEY.into(),
        "check-admin-token".into(),
    )
    .await
    .unwrap();
    base_url(addr)
}

fn opts(base: &str, client: Option<u64>, write: bool) -> CheckOptions {
    let mut o = CheckOptions::new(base, KEY.to_string());
    o.client = client;
    o.write = write;
    o.rate_per_minute = 0;
    o
}

async fn run(o: &CheckOptions) -> (Report, Vec<String>) {
    let mut lines = Vec::new();
    let mut progress = |l: &str| lines.push(l.to_string());
    let report = check::run(o, &mut progress).await.unwrap();
    (report, lines)
}

fn counts(s: &Store) -> BTreeMap<&'static str, u64> {
    Endpoint::ALL
        .into_iter()
        .map(|e| (e.name(), s.count(e)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Every file of the account: id → (client, name, folder, bytes).
fn snapshot(s: &Store) -> BTreeMap<String, (u64, String, Option<String>, Bytes)> {
    s.lock()
        .files
        .values()
        .map(|f| {
            (
                f.id.clone(),
                (f.client_id, f.name.clone(), f.folder_id.clone(), f.data.clone()),
            )
        })
        .collect()
}

fn assert_no_secrets(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{s:?} leaked into:\n{text}");
    }
}

/// A write check that found nothing, finished, left the account exactly as before,
/// and made the read-only calls plus `round_trips` upload round trips (each: upload,
/// list, download, delete, list).
fn assert_clean_write_run(
    r: &Report,
    s: &Store,
    before: &BTreeMap<String, (u64, String, Option<String>, Bytes)>,
    round_trips: u64,
) {
    assert_eq!(r.codes(), Vec::<&str>::new(), "{}", r.to_text());
    assert_eq!((r.incomplete.as_deref(), r.leftover.as_deref()), (None, None));
    assert_eq!(r.exit_code(), check::EXIT_SAFE);
    assert_eq!(&snapshot(s), before, "the account is exactly as before");
    let n = round_trips;
    assert_eq!(
        counts(s),
        BTreeMap::from([
            ("delete", n),
            ("download", 1 + n),
            ("list_clients", 1),
            ("list_files", 2 + 2 * n),
            ("list_folders", 2),
            ("upload", n)
        ])
    );
}

/// The round trip whose upload is step `at` stored marker `id` as sent, read it back
/// byte-exact, deleted it and only it.
fn assert_clean_round_trip(r: &Report, at: usize, id: &str) {
    let obs = |i: usize| r.steps[i].observations.join("\n");
    assert_eq!(r.steps[at].request, "POST files/1");
    let listed = obs(at + 1);
    assert!(
        listed.contains(&format!("1 not listed before\nmarker file id: {id}")),
        "{listed}"
    );
    assert!(listed.contains("stored FileName: byte-exact as sent"), "{listed}");
    assert!(
        listed.contains("stored Size: 74; FolderId: null; ContentType: text/plain"),
        "{listed}"
    );
    assert!(
        obs(at + 2).contains("bytes: identical to the ones sent"),
        "{}",
        obs(at + 2)
    );
    assert_eq!(r.steps[at + 3].request, format!("DELETE files/{id}"));
    assert!(
        obs(at + 4).contains("the marker file is gone\nevery file listed before the check is still listed"),
        "{}",
        obs(at + 4)
    );
}

fn sorted_codes(r: &Report) -> Vec<&'static str> {
    let mut c = r.codes();
    c.sort_unstable();
    c
}

#[tokio::test]
async fn contract_profile_read_only_check_finds_nothing_in_exactly_six_calls() {
    let s = seeded_store(Profile::Contract);
    let base = serve(&s).await;
    let before = snapshot(&s);
    let (r, lines) = run(&opts(&base, None, false)).await;

    assert_eq!(r.codes(), Vec::<&str>::new(), "{}", r.to_text());
    assert_eq!(r.incomplete, None);
    assert_eq!(r.exit_code(), check::EXIT_SAFE);
    assert_eq!((r.calls, r.budget), (6, 6));
    assert_eq!(
        counts(&s),
        BTreeMap::from([
            ("download", 1),
            ("list_clients", 1),
            ("list_files", 2),
            ("list_folders", 2)
        ])
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(
        lines[0],
        format!(
            "intakeq-fs check: at most 6 API calls (read-only) to {}",
            &base[7..base.len() - 8]
        )
    );
    // The smallest non-empty file was downloaded, and matched its Size.
    let dl = &r.steps[3];
    assert_eq!(dl.request, "GET files/<id of the smallest file>");
    assert!(
        dl.observations
            .contains(&"received 120 bytes; listed Size 120".to_string()),
        "{dl:?}"
    );
    let text = r.to_text();
    assert!(
        text.contains("result:  OK: every answer matches the contract (exit 0)"),
        "{text}"
    );
    assert_no_secrets(&text);
    assert_no_secrets(&r.to_json());
}

#[tokio::test]
async fn alt_profile_reports_exactly_the_three_plausible_variants() {
    let s = seeded_store(Profile::Alt);
    let base = serve(&s).await;
    let (r, _) = run(&opts(&base, Some(1), true)).await;

    assert_eq!(
        sorted_codes(&r),
        vec!["client-rows-short-form", "unauthorized-empty-body", "upload-answer-id"],
        "{}",
        r.to_text()
    );
    let severity: BTreeMap<&str, Severity> = r.findings.iter().map(|f| (f.code, f.severity)).collect();
    assert_eq!(severity["upload-answer-id"], Severity::Handled);
    assert_eq!(severity["unauthorized-empty-body"], Severity::Handled);
    assert_eq!(severity["client-rows-short-form"], Severity::Degraded);
    assert_eq!(r.exit_code(), check::EXIT_SAFE);
    assert_eq!(r.leftover, None);
    let upload = r.findings.iter().find(|f| f.code == "upload-answer-id").unwrap();
    assert_eq!(
        upload.meaning,
        "uploads answer {Id}: confirmation listings can be skipped"
    );
    assert!(
        upload.observed.contains("{\"Id\": string(9 chars, hex)}"),
        "{}",
        upload.observed
    );
    assert_eq!((r.calls, r.budget), (11, 11));
    assert_eq!(s.total_requests(), 11);
    assert_no_secrets(&r.to_text());
}

#[tokio::test]
async fn write_round_trip_touches_only_its_own_file_and_reports_each_step() {
    let s = seeded_store(Profile::Contract);
    let base = serve(&s).await;
    let before = snapshot(&s);
    let (r, lines) = run(&opts(&base, Some(1), true)).await;

    assert_clean_write_run(&r, &s, &before, 1);
    assert!(
        lines[0].starts_with("intakeq-fs check: at most 11 API calls (write)"),
        "{lines:?}"
    );
    assert!(r.steps[6].observations.join("\n").contains("body: empty"));
    // The file the check created had id f00000005 (4 seeded before it).
    assert_clean_round_trip(&r, 6, "f00000005");
    assert_no_secrets(&r.to_text());
}

#[tokio::test]
async fn a_lost_upload_answer_is_listed_reported_and_cleaned_up() {
    let s = seeded_store(Profile::Contract);
    s.push_fault(Some(Endpoint::Upload), Fault::DropAfterEffect, Some(1));
    let base = serve(&s).await;
    let before = snapshot(&s);
    let (r, _) = run(&opts(&base, Some(1), true)).await;
    assert_eq!(r.codes(), vec!["upload-error-but-stored"], "{}", r.to_text());
    assert!(
        r.incomplete.as_deref().unwrap().starts_with("POST files/1: "),
        "{:?}",
        r.incomplete
    );
    assert_eq!(r.leftover, None);
    assert_eq!(r.exit_code(), check::EXIT_ERROR);
    assert_eq!(
        snapshot(&s),
        before,
        "the stored marker was deleted, nothing else touched"
    );
    assert_eq!((s.count(Endpoint::Upload), s.count(Endpoint::Delete)), (1, 1));
    assert_eq!(r.calls, 11);
}

#[tokio::test]
async fn an_upload_answered_500_that_stored_nothing_leaves_nothing_to_delete() {
    let s = seeded_store(Profile::Contract);
    s.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        Some(1),
    );
    let base = serve(&s).await;
    let before = snapshot(&s);
    let (r, _) = run(&opts(&base, Some(1), true)).await;
    assert_eq!(r.codes(), Vec::<&str>::new(), "{}", r.to_text());
    assert_eq!(
        r.incomplete.as_deref(),
        Some("server error (500) at POST files/1; not retried")
    );
    assert_eq!(r.leftover, None);
    assert_eq!(r.exit_code(), check::EXIT_ERROR);
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.count(Endpoint::Delete), 0);
    assert_eq!(r.calls, 8);
    assert_eq!(
        r.steps[7].observations.last().map(String::as_str),
        Some("nothing was stored")
    );
}

#[tokio::test]
async fn chunked_round_trip_stores_reads_back_and_deletes_only_its_own_marker_in_sixteen_calls() {
    let s = seeded_store(Profile::Contract);
    let base = serve(&s).await;
    let before = snapshot(&s);
    let mut o = opts(&base, Some(1), true);
    o.chunked = true;
    let (r, lines) = run(&o).await;

    assert_clean_write_run(&r, &s, &before, 2);
    assert_eq!((r.calls, r.budget), (16, 16));
    assert!(
        lines[0].starts_with("intakeq-fs check: at most 16 API calls (write, chunked)"),
        "{lines:?}"
    );
    let obs = |i: usize| r.steps[i].observations.join("\n");
    // Steps 6..=10 are the first round trip; 11..=15 the one without a length, whose
    // marker is the next id (the first is gone by then).
    assert_clean_round_trip(&r, 6, "f00000005");
    assert_clean_round_trip(&r, 11, "f00000006");
    assert!(obs(11).contains("\"intakeq-fs check chunked.txt\""), "{}", obs(11));
    assert!(obs(11).contains("no Content-Length"), "{}", obs(11));
    assert!(!obs(6).contains("no Content-Length"), "{}", obs(6));
    assert!(
        obs(13).contains("streamed while a file is written would work"),
        "{}",
        obs(13)
    );
    assert_no_secrets(&r.to_text());
}

#[tokio::test]
async fn a_first_marker_left_by_an_ineffective_delete_stops_the_check_before_a_second_upload() {
    let s = seeded_store(Profile::Contract);
    s.push_fault(Some(Endpoint::Delete), Fault::Discard, Some(1));
    let base = serve(&s).await;
    let before = snapshot(&s);
    let mut o = opts(&base, Some(1), true);
    o.chunked = true;
    let (r, _) = run(&o).await;
    assert_eq!(r.codes(), vec!["delete-not-effective"], "{}", r.to_text());
    assert_eq!(r.calls, 11, "no second upload");
    assert_eq!(s.count(Endpoint::Upload), 1);
    assert!(
        r.incomplete
            .as_deref()
            .unwrap()
            .starts_with("the round trip without Content-Length did not run: the first marker (id f00000005)"),
        "{:?}",
        r.incomplete
    );
    assert!(r.leftover.as_deref().unwrap().contains("f00000005"), "{:?}", r.leftover);
    assert_eq!(r.exit_code(), check::EXIT_UNSAFE, "the unsafe finding decides");
    // What is left is the first marker, which the report names for the person to delete.
    let mut after = snapshot(&s);
    let left = after.remove("f00000005").expect("the first marker is still stored");
    assert_eq!((left.0, left.1.as_str()), (1, check::MARKER_NAME));
    assert_eq!(after, before);
    assert_no_secrets(&r.to_text());
}

#[tokio::test]
async fn an_upload_without_content_length_refused_411_is_reported_and_nothing_else_is_touched() {
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = log.clone();
    let (base, _) = canned(move |c: Call| {
        let mut log = l.lock().unwrap();
        let uploaded = log.iter().any(|x| x.starts_with("POST"));
        let deleted = log.iter().any(|x| x.starts_with("DELETE"));
        log.push(format!("{} {} sized={}", c.method, c.target, c.sized));
        if !c.key_ok {
            return (StatusCode::UNAUTHORIZED, json(r#"{"Message": "bad key"}"#)).into_response();
        }
        match (c.method.as_str(), c.target.as_str()) {
            ("GET", "/api/v1/folders") => json("[]"),
            ("GET", t) if t.starts_with("/api/v1/clients") => json(r#"[{"ClientId": 1, "Name": "Jane Doe"}]"#),
            ("GET", "/api/v1/files?clientId=1") if uploaded && !deleted => json(&format!(
                r#"[{{"Id": "m1", "DateCreated": 1700000000000, "Size": 74, "FileName": {},
                     "ContentType": "text/plain", "FolderId": null}}]"#,
                serde_json::to_string(check::MARKER_NAME).unwrap()
            )),
            ("GET", t) if t.starts_with("/api/v1/files?") => json("[]"),
            ("POST", "/api/v1/files/1") if !c.sized => StatusCode::LENGTH_REQUIRED.into_response(),
            ("POST", "/api/v1/files/1") => StatusCode::OK.into_response(),
            ("GET", "/api/v1/files/m1") => check::MARKER_BYTES.into_response(),
            ("DELETE", _) => StatusCode::OK.into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    let mut o = opts(&base, Some(1), true);
    o.chunked = true;
    let (r, _) = run(&o).await;
    assert_eq!(r.codes(), vec!["upload-chunked-refused"], "{}", r.to_text());
    assert_eq!(r.findings[0].severity, Severity::Handled);
    assert_eq!(r.findings[0].observed, "answered 411 with empty");
    assert_eq!(r.exit_code(), check::EXIT_SAFE);
    assert_eq!((r.incomplete.as_deref(), r.leftover.as_deref()), (None, None));
    // Read-only 5 (no file to download), the first round trip 5, then upload + list.
    assert_eq!(r.calls, 12);
    assert_eq!(r.steps[10].request, "POST files/1");
    assert_eq!(
        r.steps[11].observations.last().map(String::as_str),
        Some("nothing was stored")
    );
    let log = log.lock().unwrap();
    let sent: Vec<&str> = log
        .iter()
        .filter(|x| x.starts_with("POST") || x.starts_with("DELETE"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        sent,
        vec![
            "POST /api/v1/files/1 sized=true",
            "DELETE /api/v1/files/m1 sized=false",
            "POST /api/v1/files/1 sized=false"
        ]
    );
}

#[tokio::test]
async fn chunked_without_write_is_refused_before_any_call() {
    let s = seeded_store(Profile::Contract);
    let base = serve(&s).await;
    let mut o = opts(&base, Some(1), false);
    o.chunked = true;
    let mut progress = |_: &str| {};
    let err = check::run(&o, &mut progress).await.unwrap_err();
    assert_eq!(err, CheckError::ChunkedNeedsWrite);
    assert_eq!(s.total_requests(), 0);
}

#[tokio::test]
async fn write_without_a_client_is_refused_before_any_call() {
    let s = seeded_store(Profile::Contract);
    let base = serve(&s).await;
    let mut progress = |_: &str| {};
    let err = check::run(&opts(&base, None, true), &mut progress).await.unwrap_err();
    assert_eq!(err, CheckError::WriteNeedsClient);
    assert_eq!(s.total_requests(), 0);
}

#[tokio::test]
async fn unknown_client_404_is_reported_as_handled() {
    let s = seeded_store(Profile::Contract);
    s.lock().unknown_client_files = UnknownClientFiles::NotFound;
    let base = serve(&s).await;
    let (r, _) = run(&opts(&base, None, false)).await;
    assert_eq!(r.codes(), vec!["unknown-client-404"], "{}", r.to_text());
    assert_eq!(r.findings[0].severity, Severity::Handled);
    assert_eq!(r.exit_code(), check::EXIT_SAFE);
    assert_eq!(r.calls, 6);
}

#[tokio::test]
async fn a_body_shorter_than_size_is_unsafe() {
    let s = seeded_store(Profile::Contract);
    s.push_fault(Some(Endpoint::Download), Fault::ShortBody { bytes: 20 }, Some(1));
    let base = serve(&s).await;
    let (r, _) = run(&opts(&base, None, false)).await;
    assert_eq!(r.codes(), vec!["size-mismatch"], "{}", r.to_text());
    assert_eq!(
        r.findings[0].observed,
        "the body has 100 bytes, the listing's Size says 120"
    );
    assert_eq!(r.exit_code(), check::EXIT_UNSAFE);
    assert_eq!(r.calls, 6);
}

#[tokio::test]
async fn a_429_is_reported_with_its_header_shape_and_not_retried() {
    let s = seeded_store(Profile::Contract);
    s.push_fault(
        Some(Endpoint::ListClients),
        Fault::Status {
            status: 429,
            retry_after: Some(30),
        },
        None,
    );
    let base = serve(&s).await;
    let (r, _) = run(&opts(&base, None, false)).await;
    assert_eq!(r.exit_code(), check::EXIT_ERROR);
    assert!(r
        .incomplete
        .as_deref()
        .unwrap()
        .starts_with("rate limited (429) at GET clients"));
    assert_eq!(r.calls, 2);
    assert_eq!(s.total_requests(), 2);
    assert_eq!(r.steps[1].status, Some(429));
    assert_eq!(
        r.steps[1].observations,
        vec![
            "Retry-After: 30 seconds; other rate headers: none".to_string(),
            "Content-Type: application/json; body: JSON {\"Message\": string(23 chars, printable ASCII)}".to_string()
        ]
    );
}

#[tokio::test]
async fn a_rejected_account_key_stops_after_one_call() {
    let s = seeded_store(Profile::Alt);
    let base = serve(&s).await;
    let mut o = opts(&base, None, false);
    o.api_key = "wrong-key-5e1f".into();
    let (r, _) = run(&o).await;
    assert_eq!(r.exit_code(), check::EXIT_ERROR);
    assert_eq!(r.calls, 1);
    assert_eq!(s.total_requests(), 1);
    assert!(r
        .incomplete
        .as_deref()
        .unwrap()
        .starts_with("the key was rejected (401) at GET folders"));
    assert_eq!(
        r.steps[0].observations,
        vec!["Content-Type: text/plain; body: empty".to_string()]
    );
    assert!(!r.to_text().contains("wrong-key-5e1f"));
}

// ----- canned servers: answers the fake cannot give -----

/// One request as a canned server sees it.
struct Call {
    /// `GET`, `POST`, ...
    method: String,
    /// Path and query, e.g. `/api/v1/files?clientId=1`.
    target: String,
    /// Whether it carried the test key.
    key_ok: bool,
    /// Whether it carried a `Content-Length` (a chunked body has none).
    sized: bool,
}

/// A server answering every request with `answer`, counting requests.
async fn canned<F>(answer: F) -> (String, Arc<AtomicU64>)
where
    F: Fn(Call) -> Response + Clone + Send + Sync + 'static,
{
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (h, answer) = (h.clone(), answer.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let call = Call {
                method: req.method().to_string(),
                target: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                key_ok: req
                    .headers()
                    .get("x-auth-key")
                    .is_some_and(|v| v.as_bytes() == KEY.as_bytes()),
                sized: req.headers().contains_key(header::CONTENT_LENGTH),
            };
            answer(call)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/api/v1/"), hits)
}

fn json(body: &str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[tokio::test]
async fn redirects_are_reported_with_the_host_only_and_never_followed() {
    let (elsewhere, elsewhere_hits) = canned(|_| StatusCode::OK.into_response()).await;
    let target = format!("{elsewhere}steal?name=Jane%20Doe");
    let (base, hits) = canned(move |_| {
        let mut r = StatusCode::FOUND.into_response();
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_str(&target).unwrap());
        r
    })
    .await;
    let (r, _) = run(&opts(&base, None, false)).await;
    // folders, clients, unknown client, bad key: each redirected, none followed.
    assert_eq!(r.calls, 4);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
    assert_eq!(r.codes(), vec!["redirect"; 4]);
    let host = &elsewhere[7..elsewhere.len() - 8];
    assert_eq!(
        r.findings[0].observed,
        format!("answered 302 redirecting to host {host}")
    );
    assert_eq!(r.exit_code(), check::EXIT_UNSAFE);
    let text = r.to_text();
    assert!(!text.contains("steal") && !text.contains("Jane"), "{text}");
}

/// A client 1 whose only files are whatever the round trip's upload makes appear:
/// `after_upload` is the listing once the upload was received (until the delete).
async fn round_trip_server(after_upload: &'static str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = log.clone();
    let (base, _) = canned(move |c: Call| {
        let mut log = l.lock().unwrap();
        let uploaded = log.iter().any(|x| x.starts_with("POST"));
        let deleted = log.iter().any(|x| x.starts_with("DELETE"));
        log.push(format!("{} {}", c.method, c.target));
        if !c.key_ok {
            return (StatusCode::UNAUTHORIZED, json(r#"{"Message": "bad key"}"#)).into_response();
        }
        match (c.method.as_str(), c.target.as_str()) {
            ("GET", "/api/v1/folders") => json("[]"),
            ("GET", t) if t.starts_with("/api/v1/clients") => json(r#"[{"ClientId": 1, "Name": "Jane Doe"}]"#),
            ("GET", "/api/v1/files?clientId=1") if uploaded && !deleted => json(after_upload),
            ("GET", t) if t.starts_with("/api/v1/files?") => json("[]"),
            ("POST", "/api/v1/files/1") => StatusCode::OK.into_response(),
            ("GET", "/api/v1/files/m1") => check::MARKER_BYTES.into_response(),
            ("DELETE", _) => StatusCode::OK.into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    (base, log)
}

#[tokio::test]
async fn a_stored_name_that_differs_is_unsafe_and_shown_exactly_as_it_is_the_marker() {
    let (base, log) = round_trip_server(
        r#"[{"Id": "m1", "DateCreated": 1700000000000, "Size": 74, "FileName": "intakeq-fs check _quoted_ e u __.txt",
             "ContentType": "text/plain", "FolderId": null}]"#,
    )
    .await;
    let (r, _) = run(&opts(&base, Some(1), true)).await;
    assert_eq!(r.codes(), vec!["stored-name-differs"], "{}", r.to_text());
    assert_eq!(
        r.findings[0].observed,
        "sent \"intakeq-fs check \\\"quoted\\\" \\u{e9} \\u{fc} \\u{65e5}\\u{672c}.txt\", \
         stored \"intakeq-fs check _quoted_ e u __.txt\""
    );
    assert_eq!(r.exit_code(), check::EXIT_UNSAFE);
    assert_eq!(r.leftover, None);
    // No download in the read-only part: the client had no files.
    assert_eq!(r.calls, 10);
    let log = log.lock().unwrap();
    assert_eq!(
        log.iter()
            .filter(|x| x.starts_with("DELETE"))
            .cloned()
            .collect::<Vec<_>>(),
        vec!["DELETE /api/v1/files/m1".to_string()]
    );
}

#[tokio::test]
async fn new_files_that_are_not_recognisably_the_marker_are_never_deleted() {
    let (base, log) = round_trip_server(
        r#"[{"Id": "x1", "DateCreated": 1700000000000, "Size": 74, "FileName": "Jane Doe scan.pdf",
             "ContentType": "application/pdf", "FolderId": null},
            {"Id": "x2", "DateCreated": 1700000000001, "Size": 10, "FileName": "other.pdf",
             "ContentType": "application/pdf", "FolderId": null}]"#,
    )
    .await;
    let (r, _) = run(&opts(&base, Some(1), true)).await;
    assert_eq!(r.exit_code(), check::EXIT_ERROR, "{}", r.to_text());
    assert!(r
        .incomplete
        .as_deref()
        .unwrap()
        .starts_with("2 new file(s) appeared and none is recognisably the marker"));
    assert!(r.leftover.as_deref().unwrap().contains("may have left its marker file"));
    assert_eq!(r.calls, 7);
    let log = log.lock().unwrap();
    assert!(!log.iter().any(|x| x.starts_with("DELETE")), "{log:?}");
    assert_no_secrets(&r.to_text());
}

#[tokio::test]
async fn numbers_for_ids_and_dates_in_seconds_are_told_apart_by_severity() {
    let (base, _) = canned(|c: Call| {
        if !c.key_ok {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let path = c.target.split('?').next().unwrap_or("").to_string();
        let body = match path.as_str() {
            "/api/v1/folders" => r#"[{"Id": 5, "Name": "Jane Doe"}]"#,
            "/api/v1/clients" => r#"[{"ClientId": "7", "Name": "Jane Doe"}]"#,
            "/api/v1/files" => {
                r#"[{"Id": 11, "DateCreated": 1700000000, "Size": 3.5, "FileName": "Jane Doe.pdf",
                     "ContentType": null, "FolderId": 5}]"#
            }
            _ => return (StatusCode::NOT_FOUND, "").into_response(),
        };
        json(body)
    })
    .await;
    let (r, _) = run(&opts(&base, None, false)).await;
    let got: BTreeMap<&str, Severity> = r.findings.iter().map(|f| (f.code, f.severity)).collect();
    assert_eq!(
        got,
        BTreeMap::from([
            ("folder-id-number", Severity::Handled),
            ("client-id-string", Severity::Handled),
            ("file-id-number", Severity::Handled),
            ("file-size-unreadable", Severity::Unsafe),
            ("date-seconds", Severity::Degraded),
            ("content-type-missing", Severity::Handled),
            ("file-folder-id-number", Severity::Handled),
            ("unauthorized-empty-body", Severity::Handled),
        ]),
        "{}",
        r.to_text()
    );
    // No integer Size: no download; the "unknown" client answers rows too; 5 calls.
    assert_eq!(r.calls, 5);
    assert_no_secrets(&r.to_text());
}

// ----- the real binary -----

fn check_bin(base: &str, args: &[&str]) -> Output {
    Command::new(common::bin())
        .arg("check")
        .args(["--base-url", base, "--rate-limit", "0"])
        .args(args)
        .env("INTAKEQ_API_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn binary_prints_the_budget_first_and_a_json_report_with_exit_0() {
    let srv = common::server(seeded_store(Profile::Contract));
    let out = check_bin(&srv.base, &["--json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.starts_with("intakeq-fs check: at most 6 API calls (read-only) to 127.0.0.1:"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["calls"], 6);
    assert_eq!(v["findings"], serde_json::json!([]));
    assert_eq!(srv.store.total_requests(), 6);
    assert_no_secrets(&stdout);
    assert_no_secrets(&stderr);
}

#[test]
fn binary_exits_1_with_a_text_report_on_an_unsafe_deviation() {
    let store = seeded_store(Profile::Contract);
    store.push_fault(Some(Endpoint::Download), Fault::ShortBody { bytes: 1 }, Some(1));
    let srv = common::server(store);
    let out = check_bin(&srv.base, &[]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("result:  UNSAFE"), "{stdout}");
    assert!(
        stdout.contains("- [UNSAFE] size-mismatch (GET files/<id of the smallest file>)"),
        "{stdout}"
    );
    assert_no_secrets(&stdout);
}

#[test]
fn binary_refuses_write_without_client_and_makes_no_call() {
    let srv = common::server(seeded_store(Profile::Contract));
    let out = check_bin(&srv.base, &["--write"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--client <CLIENT>"), "{stderr}");
    assert_eq!(srv.store.total_requests(), 0);
}

#[test]
fn binary_without_a_key_is_an_error_and_makes_no_call() {
    let srv = common::server(seeded_store(Profile::Contract));
    let out = Command::new(common::bin())
        .args(["check", "--base-url", &srv.base])
        .env_remove("INTAKEQ_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(srv.store.total_requests(), 0);
}

#[test]
fn binary_reads_the_key_from_api_key_file_like_mount() {
    let srv = common::server(seeded_store(Profile::Contract));
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    // Like ssh, a key file others can read is refused: the check reads it as mount does.
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--base-url", &srv.base, "--rate-limit", "0", "--api-key-file"])
        .arg(&key_file)
        .env_remove("INTAKEQ_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("calls:   6 of at most 6"), "{stdout}");
    assert_eq!(srv.store.total_requests(), 6);
    assert_no_secrets(&stdout);
}

#[test]
fn binary_check_against_mock_server_profile_alt_replays_the_variants() {
    let mut server = Command::new(common::bin())
        .args([
            "mock-server",
            "--listen",
            "127.0.0.1:0",
            "--demo",
            "--profile",
            "alt",
            "--api-key",
            KEY,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = server.stdout.take().unwrap();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    }
    let base = line.trim().to_string();
    let out = check_bin(&base, &["--json", "--write", "--client", "1001"]);
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        vec!["client-rows-short-form", "unauthorized-empty-body", "upload-answer-id"]
    );
    assert_eq!(v["calls"], 11);
    assert_eq!(v["leftover"], serde_json::Value::Null);
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn server_ids_the_mount_refuses_never_reach_a_url_of_the_check() {
    // `..` as the smallest file's id (the read probe downloads it) and as the id the
    // marker's upload comes back as (the round trip deletes it): joined as `files/..`
    // either would address the base URL itself.
    let (base, log) = round_trip_server(
        r#"[{"Id": "..", "DateCreated": 1700000000000, "Size": 74, "FileName": "intakeq-fs check marker.txt",
             "ContentType": "text/plain", "FolderId": null}]"#,
    )
    .await;
    let (r, _) = run(&opts(&base, Some(1), true)).await;
    let seen = log.lock().unwrap().clone();
    for req in &seen {
        let path = req.split(' ').nth(1).unwrap_or("");
        assert!(
            !(path == "/api/v1/"
                || path == "/api/v1"
                || path.starts_with("/api/v1/files/..")
                || path.contains("%2E%2E")),
            "{req} in {seen:?}"
        );
        assert!(!req.starts_with("DELETE"), "nothing deleted: {seen:?}");
    }
    // Like the mount, the check does not take a row it cannot address for its upload.
    assert_eq!(r.codes(), vec!["upload-not-listed"]);
    assert_eq!(r.exit_code(), check::EXIT_UNSAFE);

    // The same id in a read-only run's listing of the client.
    let (base, hits_log) = canned_listing(
        r#"[{"Id": "..", "DateCreated": 1700000000000, "Size": 5, "FileName": "a.txt", "ContentType": "text/plain", "FolderId": null}]"#,
    )
    .await;
    let (r, _) = run(&opts(&base, Some(1), false)).await;
    let seen = hits_log.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|t| t != "/api/v1/" && !t.starts_with("/api/v1/files/..")),
        "{seen:?}"
    );
    assert!(r.codes().contains(&"file-id-invalid"), "{:?}", r.codes());
}

/// A read-only account: client 1 lists `files`; every request target is logged.
async fn canned_listing(files: &'static str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = log.clone();
    let (base, _) = canned(move |c: Call| {
        l.lock().unwrap().push(c.target.clone());
        if !c.key_ok {
            return (StatusCode::UNAUTHORIZED, json(r#"{"Message": "bad key"}"#)).into_response();
        }
        match c.target.as_str() {
            "/api/v1/folders" => json("[]"),
            t if t.starts_with("/api/v1/clients") => json(r#"[{"ClientId": 1, "Name": "Jane Doe"}]"#),
            "/api/v1/files?clientId=1" => json(files),
            t if t.starts_with("/api/v1/files?") => json("[]"),
            _ => json(r#"[{"Id": "x"}]"#),
        }
    })
    .await;
    (base, log)
}
