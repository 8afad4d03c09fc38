//! The HTTP test tier: `HttpRemote` against the fake IntakeQ server over real
//! loopback sockets, asserting on results and on the server's request counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use intakeq_fs::fake::demo::{add_bulk_client, pseudo_random_bytes};
use intakeq_fs::fake::server::{base_url, spawn, ADMIN_TOKEN_HEADER};
use intakeq_fs::fake::store::{Endpoint, Fault, Store, UnknownClientFiles};
use intakeq_fs::limiter::Limiter;
use intakeq_fs::remote::http::{HttpOptions, HttpRemote};
use intakeq_fs::remote::{ByteStream, Priority, Remote, RemoteError};

const KEY: &str = "sk-test-7f3e9a1c-SECRET-KEY";
const ADMIN_TOKEN: &str = "admin-token-5c2e";
const P: Priority = Priority::User;

fn fast_opts() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        max_retries: 4,
        backoff_base: Duration::from_millis(20),
        ..HttpOptions::default()
    }
}

async fn serve(store: &Store) -> SocketAddr {
    let (addr, _task) = spawn(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        KEY.into(),
        ADMIN_TOKEN.into(),
    )
    .await
    .unwrap();
    addr
}

fn remote_with(addr: SocketAddr, key: &str, limiter: Limiter, opts: HttpOptions) -> HttpRemote {
    HttpRemote::new(&base_url(addr), key.into(), Arc::new(limiter), opts).unwrap()
}

fn remote(addr: SocketAddr) -> HttpRemote {
    remote_with(addr, KEY, Limiter::unlimited(), fast_opts())
}

fn no_retries() -> HttpOptions {
    HttpOptions {
        max_retries: 0,
        ..fast_opts()
    }
}

/// The body's bytes, and the error that ended it if one did.
async fn drain(mut s: ByteStream) -> (Vec<u8>, Option<RemoteError>) {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                assert!(s.next().await.is_none(), "an error must be the last item");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

fn one_client_store() -> Store {
    let s = Store::new();
    s.add_client(1, "Ada", "Lovelace");
    s
}

fn temp_file(data: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    f.flush().unwrap();
    f
}

#[tokio::test]
async fn listing_fields_parse() {
    let s = one_client_store();
    s.add_folder("fo1", "Intake Forms");
    let a = s.add_file(1, "Ünïcødé 表格.pdf", Some("fo1"), &b"%PDF-1.4 x"[..]);
    let b = s.add_file(1, "notes.txt", None, &b"hello"[..]);
    let addr = serve(&s).await;
    let r = remote(addr);

    let folders = r.list_folders(P).await.unwrap();
    assert_eq!(folders.len(), 1);
    assert_eq!(
        (folders[0].id.as_str(), folders[0].name.as_str()),
        ("fo1", "Intake Forms")
    );

    let files = r.list_files(1, P).await.unwrap();
    assert_eq!(files.len(), 2);
    let fa = files.iter().find(|f| f.id == a).unwrap();
    assert_eq!(fa.name, "Ünïcødé 表格.pdf");
    assert_eq!(fa.folder_id.as_deref(), Some("fo1"));
    assert_eq!(fa.content_type, "application/pdf");
    assert_eq!(fa.size, 10);
    assert_eq!(fa.created_ms, s.file(&a).unwrap().created_ms);
    assert!(fa.created_ms > 1_600_000_000_000, "milliseconds, not seconds");
    let fb = files.iter().find(|f| f.id == b).unwrap();
    assert_eq!(fb.folder_id, None);
    assert_eq!(fb.size, 5);
    assert!(fb.created_ms > fa.created_ms);

    assert_eq!(s.count(Endpoint::ListFolders), 1);
    assert_eq!(s.count(Endpoint::ListFiles), 1);
    assert_eq!(s.total_requests(), 2);
}

#[tokio::test]
async fn upload_lands_without_folder_and_names_repeat() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let r = remote(addr);
    let data = pseudo_random_bytes(5, 200_000);
    let f = temp_file(&data);
    let name = "Ünïcødé 表格 \"quoted\".pdf";
    r.upload(1, name, "application/pdf", f.path(), P).await.unwrap();
    let stored = s.files_named(1, name);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].data, data);
    assert_eq!(stored[0].content_type, "application/pdf");
    assert_eq!(stored[0].folder_id, None);

    r.upload(1, name, "application/pdf", f.path(), P).await.unwrap();
    assert_eq!(s.files_named(1, name).len(), 2);
    assert_eq!(s.count(Endpoint::Upload), 2);
}

#[tokio::test]
async fn the_fake_logs_each_request_with_the_client_it_names_in_order_until_a_reset() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let r = remote(addr);
    let f = temp_file(b"x");
    r.list_files(1, P).await.unwrap();
    r.upload(1, "a.txt", "text/plain", f.path(), P).await.unwrap();
    r.list_folders(P).await.unwrap();
    r.list_clients(Some("1"), 1, P).await.unwrap();
    let client = |c: &str| Some(c.to_string());
    assert_eq!(
        s.lock().requests,
        vec![
            (Endpoint::ListFiles, client("1")),
            (Endpoint::Upload, client("1")),
            (Endpoint::ListFolders, None),
            (Endpoint::ListClients, client("1")),
        ]
    );
    s.reset_counts();
    assert!(s.lock().requests.is_empty());
}

#[tokio::test]
async fn upload_of_empty_file_and_to_unknown_client() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let r = remote(addr);
    let f = temp_file(b"");
    r.upload(1, "empty.txt", "text/plain", f.path(), P).await.unwrap();
    assert!(s.files_named(1, "empty.txt")[0].data.is_empty());

    let err = r.upload(99, "x.txt", "text/plain", f.path(), P).await.unwrap_err();
    assert_eq!(err, RemoteError::NotFound);
    assert!(!err.is_ambiguous());

    let missing = std::path::Path::new("/nonexistent/intakeq-fs-test");
    let err = r.upload(1, "x.txt", "text/plain", missing, P).await.unwrap_err();
    assert!(matches!(err, RemoteError::LocalIo(_)), "{err:?}");
    assert_eq!(s.count(Endpoint::Upload), 2, "a local error sends nothing");
}

#[tokio::test]
async fn delete_removes_and_unknown_is_not_found() {
    let s = one_client_store();
    let id = s.add_file(1, "a.txt", None, &b"a"[..]);
    let addr = serve(&s).await;
    let r = remote(addr);
    r.delete(&id, P).await.unwrap();
    assert!(s.file(&id).is_none());
    assert_eq!(r.delete(&id, P).await.unwrap_err(), RemoteError::NotFound);
    assert_eq!(s.count(Endpoint::Delete), 2);
}

#[tokio::test]
async fn delete_whose_answer_was_lost_succeeds_on_retry() {
    let s = one_client_store();
    let id = s.add_file(1, "a.txt", None, &b"a"[..]);
    s.push_fault(Some(Endpoint::Delete), Fault::DropAfterEffect, Some(1));
    let addr = serve(&s).await;
    remote(addr).delete(&id, P).await.unwrap();
    assert!(s.file(&id).is_none());
    assert_eq!(s.count(Endpoint::Delete), 2);
}

#[tokio::test]
async fn bad_key_is_unauthorized_after_one_request() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let r = remote_with(addr, "wrong-key", Limiter::unlimited(), fast_opts());
    let err = r.list_files(1, P).await.unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized { status: 401 }), "{err:?}");
    assert_eq!(s.count(Endpoint::ListFiles), 1);
    assert_eq!(s.total_requests(), 1);

    // An upload with a bad key gets the status, not a broken pipe.
    let f = temp_file(&pseudo_random_bytes(4, 1 << 20));
    let err = r
        .upload(1, "a.bin", "application/octet-stream", f.path(), P)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized { status: 401 }), "{err:?}");
    assert!(!err.is_ambiguous());
    assert!(s.files_of(1).is_empty());
}

#[tokio::test]
async fn missing_or_non_numeric_client_id_is_400() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let http = reqwest_client();
    for q in ["", "?clientId=", "?clientId=abc", "?other=1"] {
        let resp = http
            .get(format!("{}files{q}", base_url(addr)))
            .header("X-Auth-Key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{q}");
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(body["Message"].is_string());
    }
    // Without a key: 401, and still counted.
    let resp = http
        .get(format!("{}files?clientId=1", base_url(addr)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(s.count(Endpoint::ListFiles), 5);
}

fn reqwest_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A client that sends the fake's admin token with every request.
fn admin_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(ADMIN_TOKEN_HEADER, ADMIN_TOKEN.parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

#[tokio::test]
async fn unknown_client_files_in_both_modes() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let r = remote(addr);
    assert_eq!(r.list_files(42, P).await.unwrap(), vec![]);
    s.lock().unknown_client_files = UnknownClientFiles::NotFound;
    assert_eq!(r.list_files(42, P).await.unwrap_err(), RemoteError::NotFound);
    assert_eq!(r.list_files(1, P).await.unwrap(), vec![]);
    assert_eq!(s.count(Endpoint::ListFiles), 3, "404 is not retried");
}

#[tokio::test]
async fn clients_page_by_100_and_search() {
    let s = Store::new();
    for i in 1..=250u64 {
        s.add_client(i, &format!("Given{i}"), "Family");
    }
    let addr = serve(&s).await;
    let r = remote(addr);
    let mut all = Vec::new();
    for page in 1..=3 {
        let rows = r.list_clients(None, page, P).await.unwrap();
        all.extend(rows);
    }
    assert_eq!(all.len(), 250);
    assert_eq!(all[0].id, 1);
    assert_eq!(all[0].name, "Given1 Family");
    assert_eq!(all[249].id, 250);
    assert_eq!(r.list_clients(None, 3, P).await.unwrap().len(), 50);

    let by_id = r.list_clients(Some("123"), 1, P).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].id, 123);
    assert_eq!(by_id[0].name, "Given123 Family");

    // Part of a name, with a space and a character that needs encoding.
    let by_name = r.list_clients(Some("Given12 Fam"), 1, P).await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].id, 12);
    assert!(r.list_clients(Some("a&b=c"), 1, P).await.unwrap().is_empty());
    assert_eq!(s.count(Endpoint::ListClients), 7);
}

#[tokio::test]
async fn clients_rows_without_profile_have_no_client_id() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let http = reqwest_client();
    let get = |q: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("{}clients{q}", base_url(addr)))
                .header("X-Auth-Key", KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            serde_json::from_slice::<serde_json::Value>(&resp.bytes().await.unwrap()).unwrap()
        }
    };
    let plain = get("?page=1").await;
    assert!(plain[0].get("ClientId").is_none());
    assert_eq!(plain[0]["Name"], "Ada Lovelace");
    let profile = get("?page=1&includeProfile=true").await;
    assert_eq!(profile[0]["ClientId"], 1);
    assert_eq!(profile[0]["FirstName"], "Ada");
    assert_eq!(profile[0]["Archived"], false);
}

#[tokio::test]
async fn download_of_5_mib_is_byte_exact() {
    let s = one_client_store();
    let data = pseudo_random_bytes(77, 5 * 1024 * 1024);
    let id = s.add_file(1, "big.bin", None, data.clone());
    let addr = serve(&s).await;
    let r = remote(addr);
    let stream = r.download(&id, data.len() as u64, P).await.unwrap();
    let (got, err) = drain(stream).await;
    assert!(err.is_none(), "{err:?}");
    assert!(got == data, "bytes differ");
    assert_eq!(s.count(Endpoint::Download), 1);

    assert_eq!(r.download("f99999999", 1, P).await.err(), Some(RemoteError::NotFound));
    assert_eq!(s.count(Endpoint::Download), 2);
}

#[tokio::test]
async fn download_headers_follow_the_stored_file() {
    let s = one_client_store();
    let id = s.add_file(1, "Ünïcødé 表格.pdf", None, &b"%PDF-1.4"[..]);
    let addr = serve(&s).await;
    let resp = reqwest_client()
        .get(format!("{}files/{id}", base_url(addr)))
        .header("X-Auth-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["content-length"], "8");
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(cd.starts_with("attachment; filename="), "{cd}");
    assert!(cd.contains("filename*=UTF-8''"), "{cd}");
}

#[tokio::test]
async fn cut_and_short_bodies_never_complete() {
    let s = one_client_store();
    let data = pseudo_random_bytes(3, 300_000);
    let id = s.add_file(1, "x.bin", None, data.clone());
    let addr = serve(&s).await;
    let r = remote(addr);
    let len = data.len() as u64;

    s.push_fault(Some(Endpoint::Download), Fault::CutBody { bytes: 100_000 }, Some(1));
    let (got, err) = drain(r.download(&id, len, P).await.unwrap()).await;
    assert!(got.len() <= 100_000, "{} {err:?}", got.len());
    assert!(
        matches!(err, Some(RemoteError::Network(_)) | Some(RemoteError::Truncated { .. })),
        "{err:?}"
    );

    s.push_fault(Some(Endpoint::Download), Fault::ShortBody { bytes: 10 }, Some(1));
    let (got, err) = drain(r.download(&id, len, P).await.unwrap()).await;
    assert_eq!(got.len() as u64, len - 10);
    assert_eq!(
        err,
        Some(RemoteError::Truncated {
            got: len - 10,
            expected: len
        })
    );

    // A listed size larger than the body is caught too, and a smaller one.
    let (_, err) = drain(r.download(&id, len + 1, P).await.unwrap()).await;
    assert!(matches!(err, Some(RemoteError::Truncated { .. })));
    let (_, err) = drain(r.download(&id, len - 1, P).await.unwrap()).await;
    assert!(matches!(err, Some(RemoteError::Truncated { .. })));
    assert_eq!(s.count(Endpoint::Download), 4);
}

#[tokio::test]
async fn listing_retries_500_then_succeeds() {
    let s = one_client_store();
    s.push_fault(
        Some(Endpoint::ListFiles),
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        Some(2),
    );
    let addr = serve(&s).await;
    let limiter = Arc::new(Limiter::unlimited());
    let r = HttpRemote::new(&base_url(addr), KEY.into(), limiter.clone(), fast_opts()).unwrap();
    assert_eq!(r.list_files(1, P).await.unwrap(), vec![]);
    assert_eq!(s.count(Endpoint::ListFiles), 3);
    assert_eq!(limiter.granted(), 3, "every attempt goes through the limiter");
}

#[tokio::test]
async fn listing_gives_up_after_max_retries() {
    let s = one_client_store();
    s.push_fault(
        Some(Endpoint::ListFolders),
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        None,
    );
    let addr = serve(&s).await;
    let opts = HttpOptions {
        max_retries: 2,
        ..fast_opts()
    };
    let r = remote_with(addr, KEY, Limiter::unlimited(), opts);
    assert_eq!(
        r.list_folders(P).await.unwrap_err(),
        RemoteError::Server { status: 503 }
    );
    assert_eq!(s.count(Endpoint::ListFolders), 3);
}

#[tokio::test]
async fn other_4xx_is_rejected_with_the_message() {
    let s = one_client_store();
    s.push_fault(
        Some(Endpoint::ListFolders),
        Fault::Status {
            status: 422,
            retry_after: None,
        },
        Some(1),
    );
    let addr = serve(&s).await;
    let err = remote(addr).list_folders(P).await.unwrap_err();
    match err {
        RemoteError::Rejected { status, message } => {
            assert_eq!(status, 422);
            assert!(message.contains("injected"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.count(Endpoint::ListFolders), 1);
}

#[tokio::test]
async fn upload_with_500_is_not_retried_and_ambiguous() {
    let s = one_client_store();
    s.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        Some(1),
    );
    let addr = serve(&s).await;
    let f = temp_file(b"data");
    let err = remote(addr)
        .upload(1, "a.txt", "text/plain", f.path(), P)
        .await
        .unwrap_err();
    assert_eq!(err, RemoteError::Server { status: 500 });
    assert!(err.is_ambiguous());
    assert_eq!(s.count(Endpoint::Upload), 1);
}

#[tokio::test]
async fn dropped_upload_is_a_network_error_and_stores_nothing() {
    let s = one_client_store();
    s.push_fault(Some(Endpoint::Upload), Fault::Drop, Some(1));
    let addr = serve(&s).await;
    let f = temp_file(&pseudo_random_bytes(1, 100_000));
    let err = remote(addr)
        .upload(1, "a.txt", "text/plain", f.path(), P)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Network(_)), "{err:?}");
    assert!(err.is_ambiguous());
    assert!(s.files_of(1).is_empty());
    assert_eq!(s.count(Endpoint::Upload), 1);
}

#[tokio::test]
async fn upload_dropped_after_effect_is_ambiguous_but_stored() {
    let s = one_client_store();
    s.push_fault(Some(Endpoint::Upload), Fault::DropAfterEffect, Some(1));
    let addr = serve(&s).await;
    let data = pseudo_random_bytes(2, 50_000);
    let f = temp_file(&data);
    let err = remote(addr)
        .upload(1, "a.txt", "text/plain", f.path(), P)
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    let stored = s.files_named(1, "a.txt");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].data, data);
    assert_eq!(s.count(Endpoint::Upload), 1);
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_byte() {
    let s = one_client_store();
    s.push_fault(Some(Endpoint::ListFolders), Fault::Drop, Some(1));
    let addr = serve(&s).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /api/v1/folders HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Key: {KEY}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("the server must close the connection");
    // Either a clean close or a reset, but never a status line.
    if read.is_ok() {
        assert!(buf.is_empty(), "got {:?}", String::from_utf8_lossy(&buf));
    }

    // The client sees a connection error, not a status.
    s.push_fault(Some(Endpoint::ListFolders), Fault::Drop, Some(1));
    let err = remote_with(addr, KEY, Limiter::unlimited(), no_retries())
        .list_folders(P)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Network(_)), "{err:?}");
    assert_eq!(s.count(Endpoint::ListFolders), 2);
}

#[tokio::test]
async fn dropped_listing_is_retried() {
    let s = one_client_store();
    s.push_fault(Some(Endpoint::ListFiles), Fault::Drop, Some(2));
    let addr = serve(&s).await;
    assert!(remote(addr).list_files(1, P).await.is_ok());
    assert_eq!(s.count(Endpoint::ListFiles), 3);
}

#[tokio::test]
async fn rate_limit_with_retry_after_waits_then_succeeds() {
    let s = one_client_store();
    s.push_fault(
        Some(Endpoint::ListFolders),
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
        Some(1),
    );
    let addr = serve(&s).await;
    let t0 = Instant::now();
    remote(addr).list_folders(P).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(s.count(Endpoint::ListFolders), 2);
}

#[tokio::test]
async fn rate_limit_without_retry_after_pauses_a_minute_through_the_limiter() {
    let s = one_client_store();
    s.set_request_budget(Some(1), None);
    let addr = serve(&s).await;
    // The limiter will not wait 60 s: the retry ends at once with WouldWait.
    let limiter = Limiter::new(1000, 1000, Duration::from_secs(5));
    let r = remote_with(addr, KEY, limiter, fast_opts());
    r.list_folders(P).await.unwrap();
    let t0 = Instant::now();
    let err = r.list_folders(P).await.unwrap_err();
    assert!(
        matches!(err, RemoteError::WouldWait { wait_secs } if wait_secs >= 50),
        "{err:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(s.count(Endpoint::ListFolders), 2);
}

#[tokio::test]
async fn hang_times_out() {
    let s = one_client_store();
    s.push_fault(Some(Endpoint::ListFolders), Fault::Hang, None);
    let addr = serve(&s).await;
    let opts = HttpOptions {
        read_timeout: Duration::from_secs(1),
        max_retries: 1,
        backoff_base: Duration::from_millis(50),
        ..fast_opts()
    };
    let r = remote_with(addr, KEY, Limiter::unlimited(), opts);
    let t0 = Instant::now();
    let err = r.list_folders(P).await.unwrap_err();
    assert!(matches!(err, RemoteError::Network(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(s.count(Endpoint::ListFolders), 2);
}

#[tokio::test]
async fn delay_is_served_normally() {
    let s = one_client_store();
    s.push_fault(
        Some(Endpoint::ListFolders),
        Fault::Delay(Duration::from_millis(300)),
        Some(1),
    );
    let addr = serve(&s).await;
    let t0 = Instant::now();
    remote(addr).list_folders(P).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(s.count(Endpoint::ListFolders), 1);
}

#[tokio::test]
async fn bandwidth_cap_slows_downloads() {
    let s = one_client_store();
    let size = 400 * 1024;
    let id = s.add_file(1, "x.bin", None, pseudo_random_bytes(9, size));
    let bytes_per_sec = 200 * 1024;
    s.set_bandwidth(Some(bytes_per_sec));
    let addr = serve(&s).await;
    let r = remote(addr);
    let t0 = Instant::now();
    let mut stream = r.download(&id, size as u64, P).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let ttfb = t0.elapsed();
    let (rest, err) = drain(stream).await;
    assert!(err.is_none());
    assert_eq!(first.len() + rest.len(), size);
    let expected = Duration::from_secs_f64(size as f64 / bytes_per_sec as f64);
    assert!(t0.elapsed() >= expected / 2, "{:?}", t0.elapsed());
    assert!(ttfb < expected, "first byte after {ttfb:?}");
}

/// The store's download and upload caps, read under one lock.
fn caps(s: &Store) -> (Option<u64>, Option<u64>) {
    let st = s.lock();
    (st.bandwidth, st.upload_bandwidth)
}

#[tokio::test]
async fn upload_bandwidth_cap_slows_uploads_and_keeps_the_bytes() {
    let s = one_client_store();
    let size = 800 * 1024;
    let data = pseudo_random_bytes(11, size);
    let f = temp_file(&data);
    let bytes_per_sec = 400 * 1024;
    s.set_upload_bandwidth(Some(bytes_per_sec));
    let addr = serve(&s).await;
    let r = remote(addr);
    let t0 = Instant::now();
    r.upload(1, "slow.bin", "application/octet-stream", f.path(), P)
        .await
        .unwrap();
    let expected = Duration::from_secs_f64(size as f64 / bytes_per_sec as f64);
    assert!(t0.elapsed() >= expected / 2, "{:?}", t0.elapsed());
    assert_eq!(s.files_named(1, "slow.bin")[0].data, data);
    assert_eq!(s.count(Endpoint::Upload), 1);
}

#[tokio::test]
async fn stalled_body_hits_the_inactivity_timeout() {
    let s = one_client_store();
    let id = s.add_file(1, "x.bin", None, pseudo_random_bytes(9, 5000));
    // 100 B/s: the first 1 KiB chunk comes at once, the next ~10 s later.
    s.set_bandwidth(Some(100));
    let addr = serve(&s).await;
    let opts = HttpOptions {
        read_timeout: Duration::from_secs(1),
        ..fast_opts()
    };
    let r = remote_with(addr, KEY, Limiter::unlimited(), opts);
    let t0 = Instant::now();
    let (got, err) = drain(r.download(&id, 5000, P).await.unwrap()).await;
    assert!(got.len() < 5000);
    assert!(matches!(err, Some(RemoteError::Network(_))), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert_eq!(s.count(Endpoint::Download), 1, "a body failure is not retried here");
}

#[tokio::test]
async fn admin_api_counts_and_injects_faults() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let http = admin_client();
    let admin = |p: &str| format!("http://{addr}/_admin/{p}");
    let post_json = |p: &str, body: serde_json::Value| {
        http.post(admin(p))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };

    let resp = post_json(
        "fault",
        serde_json::json!({"endpoint": "list_folders", "status": 503, "times": 1}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let r = remote_with(addr, KEY, Limiter::unlimited(), no_retries());
    assert_eq!(
        r.list_folders(P).await.unwrap_err(),
        RemoteError::Server { status: 503 }
    );
    r.list_folders(P).await.unwrap();

    let counts: serde_json::Value =
        serde_json::from_slice(&http.get(admin("counts")).send().await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(counts["list_folders"], 2);
    assert_eq!(counts["download"], 0);
    assert_eq!(counts["total"], 2);

    let resp = http.post(admin("reset-counts")).send().await.unwrap();
    assert!(resp.status().is_success());
    assert_eq!(s.total_requests(), 0);

    // Bad fault descriptions are refused.
    for bad in [
        serde_json::json!({"endpoint": "nope", "drop": true}),
        serde_json::json!({"drop": true, "hang": true}),
        serde_json::json!({"times": 1}),
    ] {
        let resp = post_json("fault", bad).await.unwrap();
        assert_eq!(resp.status().as_u16(), 400);
    }
    for good in [
        serde_json::json!({"endpoint": null, "delay_ms": 10}),
        serde_json::json!({"drop": true}),
        serde_json::json!({"drop_after_effect": true}),
        serde_json::json!({"cut_body": 5}),
        serde_json::json!({"short_body": 5}),
        serde_json::json!({"hang": true}),
    ] {
        let resp = post_json("fault", good).await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
    assert_eq!(s.lock().faults.len(), 6);
    http.post(admin("clear-faults")).send().await.unwrap();
    assert!(s.lock().faults.is_empty());

    let resp = post_json("bandwidth", serde_json::json!({"bytes_per_sec": 1000}))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(caps(&s), (Some(1000), None));
    post_json(
        "bandwidth",
        serde_json::json!({"bytes_per_sec": null, "upload_bytes_per_sec": 2000}),
    )
    .await
    .unwrap();
    assert_eq!(caps(&s), (None, Some(2000)));
    post_json("bandwidth", serde_json::json!({"bytes_per_sec": null}))
        .await
        .unwrap();
    assert_eq!(caps(&s), (None, None));
    post_json("budget", serde_json::json!({"requests": 10, "retry_after": 3}))
        .await
        .unwrap();
    assert_eq!(s.lock().request_budget, Some(10));
    assert_eq!(s.lock().budget_retry_after, Some(3));

    // Files added through the admin API, and read back raw, uncounted.
    let resp = post_json(
        "file",
        serde_json::json!({"client_id": 1, "name": "x.bin", "folder_id": null, "size": 1000}),
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let id = v["Id"].as_str().unwrap().to_string();
    let raw = http
        .get(admin(&format!("file/{id}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw.len(), 1000);
    assert_eq!(raw, s.file(&id).unwrap().data);
    let listed: serde_json::Value = serde_json::from_slice(
        &http
            .get(admin("files?clientId=1"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed[0]["Id"], id.as_str());
    assert_eq!(listed[0]["FolderId"], serde_json::Value::Null);

    post_json("bulk-client", serde_json::json!({"client_id": 7, "n": 3, "size": 10}))
        .await
        .unwrap();
    assert_eq!(s.files_of(7).len(), 3);
    assert_eq!(s.total_requests(), 0, "admin requests are not counted");
}

#[tokio::test]
async fn bulk_client_lists_over_http() {
    let s = Store::new();
    add_bulk_client(&s, 500, 300, 16);
    let addr = serve(&s).await;
    let files = remote(addr).list_files(500, P).await.unwrap();
    assert_eq!(files.len(), 300);
    assert_eq!(files[0].name, "doc-0001.txt");
}

#[tokio::test]
async fn connection_refused_is_a_network_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let limiter = Arc::new(Limiter::unlimited());
    let opts = HttpOptions {
        max_retries: 2,
        ..fast_opts()
    };
    let r = HttpRemote::new(&base_url(addr), KEY.into(), limiter.clone(), opts).unwrap();
    let err = r.list_folders(P).await.unwrap_err();
    assert!(matches!(err, RemoteError::Network(_)), "{err:?}");
    assert_eq!(limiter.granted(), 3);
}

#[tokio::test]
async fn base_url_is_normalised_and_checked() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let no_slash = format!("http://{addr}/api/v1");
    let r = HttpRemote::new(&no_slash, KEY.into(), Arc::new(Limiter::unlimited()), fast_opts()).unwrap();
    r.list_folders(P).await.unwrap();
    assert_eq!(s.count(Endpoint::ListFolders), 1);

    // An https client can be built (the TLS provider is installed).
    HttpRemote::new(
        "https://intakeq.com/api/v1/",
        KEY.into(),
        Arc::new(Limiter::unlimited()),
        HttpOptions::default(),
    )
    .unwrap();
    for bad in ["not a url", "ftp://example.com/", "mailto:x@example.com", ""] {
        let err = HttpRemote::new(bad, KEY.into(), Arc::new(Limiter::unlimited()), HttpOptions::default()).unwrap_err();
        assert!(err.to_string().contains("base URL"), "{err}");
    }
}

#[tokio::test]
async fn the_key_never_leaks() {
    let s = one_client_store();
    let addr = serve(&s).await;
    let r = remote_with(addr, KEY, Limiter::unlimited(), no_retries());
    let dbg = format!("{r:?}");
    assert!(!dbg.contains(KEY), "{dbg}");
    assert!(dbg.contains("redacted"));

    let mut errors = Vec::new();
    let wrong = remote_with(addr, "another-SECRET", Limiter::unlimited(), no_retries());
    errors.push(wrong.list_folders(P).await.unwrap_err());
    for fault in [
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        Fault::Drop,
    ] {
        s.push_fault(None, fault, Some(1));
        errors.push(r.list_files(1, P).await.unwrap_err());
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let refused = remote_with(closed_addr, KEY, Limiter::unlimited(), no_retries());
    errors.push(refused.list_folders(P).await.unwrap_err());
    let bad_key = HttpRemote::new(
        "http://127.0.0.1:1/",
        "bad\nSECRET".into(),
        Arc::new(Limiter::unlimited()),
        HttpOptions::default(),
    )
    .unwrap_err();
    errors.push(bad_key);
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(KEY), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }
    assert_eq!(errors.len(), 6);
}

// ----- the core over HTTP against servers that read upload names their own way -----

use intakeq_fs::core::status::GIVEN_UP;
use intakeq_fs::core::{Core, CoreError, OpenMode, Options, ROOT_INO};
use intakeq_fs::fake::profile::Profile;
use intakeq_fs::fake::store::UploadNames;

/// A core over the HTTP client and the fake server at `addr`, its spool and cache in
/// `dir`: the account mounted (again, with the same `dir`).
fn core_over_http(addr: SocketAddr, dir: &std::path::Path) -> Core<HttpRemote> {
    let o = Options {
        read_only: false,
        metadata_ttl: Duration::from_secs(60),
        cache_bytes: 64 << 20,
        allow_other: false,
        spool_dir: dir.join("spool"),
        cache_dir: dir.join("cache"),
        disk_cache_bytes: 1 << 30,
        account: "test-account".into(),
        client_list_ttl: Duration::from_secs(3600),
        state_dir: None,
        previews: true,
        listings_key: [7; 32],
        keep_listings_for: Duration::from_secs(30 * 86_400),
    };
    Core::new(remote(addr), o).unwrap()
}

/// The inode of `/clients/<client>/<name>`.
async fn file_ino(core: &Core<HttpRemote>, client: u64, name: &str) -> u64 {
    let mut ino = ROOT_INO;
    for part in ["clients", &client.to_string(), name] {
        ino = core.lookup(ino, part).await.unwrap().ino;
    }
    ino
}

/// Names a multipart header cannot carry verbatim, each with the server that reads it
/// differently: CR/LF (the header breaks), a backslash (kept escaped), a trailing
/// space (stripped).
const UNCARRIABLE: [(&str, UploadNames); 3] = [
    ("evil\r\nX-Injected: 1.txt", UploadNames::Verbatim),
    ("C:\\fakepath\\scan.pdf", UploadNames::KeepEscapes),
    ("scan.pdf ", UploadNames::StripSpaces),
];

#[tokio::test]
async fn overwriting_a_listed_file_whose_name_the_upload_cannot_carry_is_refused_and_leaves_it_untouched() {
    for profile in [Profile::Contract, Profile::Alt] {
        for (name, reads) in UNCARRIABLE {
            let s = one_client_store();
            s.set_profile(profile);
            s.lock().upload_names = reads;
            let id = s.add_file(1, name, None, &b"original"[..]);
            let addr = serve(&s).await;
            let dir = tempfile::tempdir().unwrap();
            let core = core_over_http(addr, dir.path());
            let ino = file_ino(&core, 1, name).await;
            let how = format!("{profile:?} {name:?}");
            for mode in [
                OpenMode {
                    write: true,
                    truncate: false,
                },
                OpenMode {
                    write: true,
                    truncate: true,
                },
            ] {
                let err = core.open(ino, mode).await.err();
                assert!(matches!(err, Some(CoreError::Invalid(_))), "{how} {mode:?}: {err:?}");
            }
            let err = core.setattr(ino, None, Some(0)).await.err();
            assert!(matches!(err, Some(CoreError::Invalid(_))), "{how} truncate: {err:?}");
            // Nothing was staged, sent or deleted: the file is as it was, and reads.
            assert_eq!(core.pending_uploads(), 0, "{how}");
            core.retry_failed_uploads().await;
            core.confirm_due(true).await;
            assert_eq!(s.count(Endpoint::Upload), 0, "{how}");
            assert_eq!(s.count(Endpoint::Delete), 0, "{how}");
            let files = s.files_of(1);
            assert_eq!(files.len(), 1, "{how}");
            assert_eq!(
                (files[0].id.as_str(), files[0].name.as_str()),
                (id.as_str(), name),
                "{how}"
            );
            assert_eq!(&files[0].data[..], b"original", "{how}");
            let o = core.open(ino, OpenMode::default()).await.unwrap();
            assert_eq!(core.read(o.fh, 0, 100).await.unwrap(), b"original", "{how}");
            core.release(o.fh);
            assert!(staged(dir.path()).is_empty(), "{how}: nothing staged");
        }
    }
}

/// Create `name` in client 1, write `data` and close it (the close's upload goes out).
async fn create_and_close(core: &Core<HttpRemote>, name: &str, data: &[u8]) -> u64 {
    let clients = core.lookup(ROOT_INO, "clients").await.unwrap().ino;
    let parent = core.lookup(clients, "1").await.unwrap().ino;
    let (_, o) = core.create(parent, name).await.unwrap();
    core.write(o.fh, 0, data).await.unwrap();
    core.flush(o.fh).await.unwrap();
    o.fh
}

/// The bytes of every staged file in the spool under `dir`.
fn staged(dir: &std::path::Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "data"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect()
}

/// One round of the mount's background work, as fast as the test wants it: confirm
/// what was accepted, send what is due again, retry what failed.
async fn background_round(core: &Core<HttpRemote>) {
    core.confirm_due(true).await;
    core.upload_due(true).await;
    core.retry_failed_uploads().await;
}

/// Every log line of this test binary at the default level, from one global
/// subscriber (a per-thread one misses events whose callsite interest another test's
/// thread cached meanwhile). Tests pick their own lines by something unique to them.
fn logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static std::sync::Mutex<Vec<u8>> = Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        struct Sink(&'static std::sync::Mutex<Vec<u8>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || Sink(buf))
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
}

#[tokio::test]
async fn a_server_that_renames_every_upload_gets_three_uploads_then_the_file_is_failed_and_kept() {
    logs();
    let mut spools = Vec::new();
    for profile in [Profile::Contract, Profile::Alt] {
        let s = one_client_store();
        s.set_profile(profile);
        s.lock().upload_names = UploadNames::Rename;
        let addr = serve(&s).await;
        let dir = tempfile::tempdir().unwrap();
        spools.push(dir.path().join("spool").display().to_string());
        let core = core_over_http(addr, dir.path());
        let fh = create_and_close(&core, "a.txt", b"the note").await;
        core.release(fh);
        for _ in 0..8 {
            background_round(&core).await;
        }
        assert_eq!(
            s.count(Endpoint::Upload),
            3,
            "{profile:?}: the first upload and 2 re-sends"
        );
        let st = core.status();
        assert_eq!(st.uploads.len(), 1, "{profile:?} {st:?}");
        assert_eq!(
            (st.uploads[0].name.as_str(), st.uploads[0].state.as_str()),
            ("a.txt", GIVEN_UP)
        );
        assert_eq!(core.pending_uploads(), 0, "not retried");
        // Still readable through the mount, from the spool.
        let ino = file_ino(&core, 1, "a.txt").await;
        let r = core.open(ino, OpenMode::default()).await.unwrap();
        assert_eq!(core.read(r.fh, 0, 100).await.unwrap(), b"the note");
        core.release(r.fh);
        drop(core);

        // A later mount keeps it, shows it failed and does not send it again.
        let calls = s.total_requests();
        let again = core_over_http(addr, dir.path());
        assert_eq!(again.resume_pending().await, 0);
        for _ in 0..3 {
            background_round(&again).await;
        }
        assert_eq!(s.count(Endpoint::Upload), 3, "{profile:?}: not sent by a later mount");
        assert_eq!(
            s.total_requests(),
            calls,
            "{profile:?}: a given-up upload costs no call"
        );
        let st = again.status();
        assert_eq!(st.uploads.len(), 1, "{st:?}");
        assert_eq!(st.uploads[0].state, GIVEN_UP);
        assert_eq!(staged(dir.path()), vec![b"the note".to_vec()], "kept in the spool");
        let names: Vec<String> = s.files_of(1).into_iter().map(|f| f.name).collect();
        assert_eq!(names, vec!["renamed-a.txt"; 3]);
    }
    let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    for spool in &spools {
        let given_up: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("given up after") && l.contains(spool.as_str()))
            .collect();
        assert_eq!(given_up.len(), 1, "one warning for the file: {logs}");
        assert!(given_up[0].contains("WARN"), "{given_up:?}");
    }
    assert!(!logs.contains("a.txt"), "no name at the default level: {logs}");
}

#[tokio::test]
async fn a_resumed_upload_the_server_renames_is_sent_at_most_three_times_across_remounts() {
    let s = one_client_store();
    s.lock().upload_names = UploadNames::Rename;
    let addr = serve(&s).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let core = core_over_http(addr, dir.path());
        create_and_close(&core, "b.txt", b"bytes").await;
        // The process dies before any confirming listing: the journal is all there is.
    }
    for _ in 0..5 {
        let core = core_over_http(addr, dir.path());
        core.resume_pending().await;
    }
    assert_eq!(s.count(Endpoint::Upload), 3);
    let core = core_over_http(addr, dir.path());
    let st = core.status();
    assert_eq!(st.uploads.len(), 1, "{st:?}");
    assert_eq!(st.uploads[0].state, GIVEN_UP);
}

#[tokio::test]
async fn the_admin_api_answers_only_with_the_token_the_server_was_given() {
    let s = one_client_store();
    let id = s.add_file(1, "notes.txt", None, &b"a patient's notes"[..]);
    let addr = serve(&s).await;
    let admin = |p: &str| format!("http://{addr}/_admin/{p}");
    for sent in [
        None,
        Some("wrong"),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        Some(""),
    ] {
        let http = reqwest_client();
        let with = |rb: reqwest::RequestBuilder| match sent {
            Some(t) => rb.header(ADMIN_TOKEN_HEADER, t),
            None => rb,
        };
        for (rb, what) in [
            (with(http.get(admin(&format!("file/{id}")))), "file bytes"),
            (with(http.get(admin("files?clientId=1"))), "listing"),
            (with(http.get(admin("counts"))), "counts"),
            (
                with(http.post(admin("file")))
                    .header("content-type", "application/json")
                    .body(r#"{"client_id": 1, "name": "planted.txt", "size": 3}"#),
                "add a file",
            ),
            (with(http.post(admin("reset-counts"))), "reset"),
        ] {
            let resp = rb.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{sent:?} {what}");
            let body = resp.text().await.unwrap();
            assert!(!body.contains("patient"), "{body}");
        }
    }
    assert_eq!(s.files_of(1).len(), 1, "nothing added");
    let resp = admin_client().get(admin(&format!("file/{id}"))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"a patient's notes");
}

#[tokio::test]
async fn a_journaled_upload_whose_name_cannot_be_carried_is_never_sent_by_a_resume() {
    use intakeq_fs::core::spool::{Journal, Spool};
    let s = one_client_store();
    let addr = serve(&s).await;
    let dir = tempfile::tempdir().unwrap();
    // What an older version journaled for a file named with CR/LF, then died.
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let sf = spool.create().unwrap();
    std::io::Write::write_all(&mut &sf.file, b"bytes").unwrap();
    let j = Journal {
        account: "test-account".into(),
        client: 1,
        name: "evil\r\nX-Injected: 1.txt".into(),
        replaces: Vec::new(),
        size: 5,
        attempts: None,
        abandoned: false,
        sends: 0,
        given_up: false,
    };
    spool.commit(&sf.file, &sf.path, &j).await.unwrap();
    drop(spool);
    for _ in 0..2 {
        let core = core_over_http(addr, dir.path());
        assert_eq!(core.resume_pending().await, 0);
        let st = core.status();
        assert_eq!(st.uploads.len(), 1, "{st:?}");
        assert_eq!(st.uploads[0].state, GIVEN_UP);
    }
    assert_eq!(s.total_requests(), 0, "no upload, and no call spent on it");
    assert_eq!(staged(dir.path()), vec![b"bytes".to_vec()], "kept");
}

#[tokio::test]
async fn a_given_up_file_renamed_onto_another_name_is_tried_again_under_it() {
    let s = one_client_store();
    s.lock().upload_names = UploadNames::Rename;
    let addr = serve(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let core = core_over_http(addr, dir.path());
    let fh = create_and_close(&core, "a.txt", b"the note").await;
    core.release(fh);
    for _ in 0..5 {
        background_round(&core).await;
    }
    assert_eq!(core.status().uploads[0].state, GIVEN_UP);
    // The server is fixed; the user renames the file.
    s.lock().upload_names = UploadNames::Verbatim;
    let uploads = s.count(Endpoint::Upload);
    let parent = core
        .lookup(core.lookup(ROOT_INO, "clients").await.unwrap().ino, "1")
        .await
        .unwrap()
        .ino;
    core.rename(parent, "a.txt", parent, "b.txt", false).await.unwrap();
    background_round(&core).await;
    assert_eq!(s.count(Endpoint::Upload), uploads + 1);
    assert_eq!(&s.files_named(1, "b.txt")[0].data[..], b"the note");
    assert!(core.status().uploads.is_empty(), "{:?}", core.status());
    assert!(staged(dir.path()).is_empty(), "landed: nothing left in the spool");
}
