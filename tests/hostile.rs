//! The hostile-server tier: `HttpRemote` against small local servers that answer
//! whatever they like (redirects to another port, absurd `Retry-After`, endless or
//! dripped bodies, odd listing rows, a peer that reads an upload slowly), asserting
//! that the key stays home, nothing panics or freezes, and bounds hold. The fake
//! IntakeQ server stays faithful; these servers live only here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use intakeq_fs::limiter::Limiter;
use intakeq_fs::remote::http::{HttpOptions, HttpRemote, MAX_RETRY_AFTER};
use intakeq_fs::remote::{Priority, Remote, RemoteError};

const KEY: &str = "sk-hostile-5b1d-SECRET-KEY";
const P: Priority = Priority::User;

/// One request as the hostile server saw it (head only; the body is left to the handler).
#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn content_length(&self) -> usize {
        self.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

type Handler = Arc<dyn Fn(Req, TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A server on loopback that records every request head and hands the connection to
/// `handler`, one connection per request.
struct Hostile {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Hostile {
    async fn start<F, Fut>(handler: F) -> Hostile
    where
        F: Fn(Req, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r, s| Box::pin(handler(r, s)));
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        // A small receive buffer, so a slow reader really slows the sender.
        sock.set_recv_buffer_size(64 * 1024).unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener: TcpListener = sock.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (handler, rec) = (handler.clone(), rec.clone());
                tokio::spawn(async move {
                    if let Some(req) = read_head(&mut s).await {
                        rec.lock().unwrap().push(req.clone());
                        handler(req, s).await;
                    }
                });
            }
        });
        Hostile { addr, seen }
    }

    fn base(&self) -> String {
        format!("http://{}/api/v1/", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

/// Read the request head byte by byte (so no body byte is consumed).
async fn read_head(s: &mut TcpStream) -> Option<Req> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Req { method, path, headers })
}

/// Read and discard the request's body.
async fn skip_body(req: &Req, s: &mut TcpStream) {
    let mut left = req.content_length();
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        match s.read(&mut buf[..left.min(64 * 1024)]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n,
        }
    }
}

/// Answer with a status line, extra header lines and a body, then close.
async fn answer(s: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.shutdown().await;
}

fn opts() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        backoff_base: Duration::from_millis(20),
        ..HttpOptions::default()
    }
}

fn remote_at(base: &str, o: HttpOptions) -> HttpRemote {
    HttpRemote::new(base, KEY.into(), Arc::new(Limiter::unlimited()), o).unwrap()
}

/// A server that must never be contacted: it records who did.
async fn bystander() -> Hostile {
    Hostile::start(|_, mut s| async move { answer(&mut s, "200 OK", "", b"[]").await }).await
}

async fn redirector(to: SocketAddr, status: &'static str) -> Hostile {
    Hostile::start(move |req, mut s| async move {
        skip_body(&req, &mut s).await;
        let loc = format!("Location: http://{to}{}\r\n", req.path);
        answer(&mut s, status, &loc, b"").await;
    })
    .await
}

#[tokio::test]
async fn redirects_are_never_followed_and_the_key_stays_home() {
    let other = bystander().await;
    for status in [
        "302 Found",
        "307 Temporary Redirect",
        "301 Moved Permanently",
        "308 Permanent Redirect",
    ] {
        let evil = redirector(other.addr, status).await;
        let r = remote_at(&evil.base(), opts());
        let err = r.list_folders(P).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RemoteError::Protocol(_)), "{err:?}");
        assert!(text.contains(&format!("127.0.0.1:{}", other.addr.port())), "{text}");
        assert!(!text.contains(KEY), "{text}");

        // A redirected DELETE is an error, never a success.
        let err = r.delete("f1", P).await.unwrap_err();
        assert!(matches!(err, RemoteError::Protocol(_)), "{err:?}");
        assert!(
            !err.is_ambiguous(),
            "nothing to check: the redirect is the whole answer"
        );

        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), b"record").unwrap();
        let err = r.upload(1, "a.txt", "text/plain", tmp.path(), P).await.unwrap_err();
        assert!(matches!(err, RemoteError::Protocol(_)), "{err:?}");

        let seen = evil.requests();
        assert_eq!(seen.len(), 3, "{status}: one request each, not retried: {seen:?}");
        assert_eq!(seen[1].method, "DELETE");
        assert!(seen.iter().all(|r| r.header("x-auth-key") == Some(KEY)));
    }
    assert!(
        other.requests().is_empty(),
        "the redirect target was contacted: {:?}",
        other.requests()
    );
}

#[tokio::test]
async fn plain_http_is_refused_unless_loopback_or_opted_in() {
    let lim = || Arc::new(Limiter::unlimited());
    for base in [
        "http://example.com/api/v1/",
        "http://10.0.0.5/",
        "http://intakeq.com/api/v1/",
    ] {
        let err = HttpRemote::new(base, KEY.into(), lim(), HttpOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("refusing plain http://") && text.contains("--insecure-plain-http"),
            "{text}"
        );
        assert!(!text.contains(KEY));
        let opted = HttpOptions {
            allow_plain_http: true,
            ..HttpOptions::default()
        };
        HttpRemote::new(base, KEY.into(), lim(), opted).unwrap();
    }
    for base in [
        "http://127.0.0.1:1/",
        "http://127.9.8.7/api/v1/",
        "http://localhost:8080/api/v1/",
        "http://[::1]:8080/",
        "https://example.com/api/v1/",
    ] {
        HttpRemote::new(base, KEY.into(), lim(), HttpOptions::default()).unwrap();
    }
}

#[tokio::test]
async fn absurd_retry_after_neither_panics_nor_freezes_the_mount() {
    for value in ["18446744073709551615", "99999999999", "999999999999999999999999999999"] {
        let srv = Hostile::start(move |_, mut s| async move {
            let h = format!("Retry-After: {value}\r\n");
            answer(&mut s, "429 Too Many Requests", &h, b"").await;
        })
        .await;
        // The pause is capped at 5 minutes: with --max-wait 10 min the retry waits it out
        // (not tested here), with 60 s it fails at once saying how long it would wait.
        let limiter = Arc::new(Limiter::new(1000, 1000, Duration::from_secs(60)));
        let r = HttpRemote::new(&srv.base(), KEY.into(), limiter, opts()).unwrap();
        let t0 = Instant::now();
        let err = r.list_folders(P).await.unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        match err {
            RemoteError::WouldWait { wait_secs } => {
                assert!(
                    wait_secs <= MAX_RETRY_AFTER.as_secs() && wait_secs >= 290,
                    "{value}: {wait_secs}"
                )
            }
            other => panic!("{value}: {other:?}"),
        }
        assert_eq!(srv.requests().len(), 1);
    }
}

/// A 200 whose JSON body of file rows is streamed (chunked) forever, or at least
/// `rows` rows.
async fn endless_listing(rows: Option<usize>) -> Hostile {
    Hostile::start(move |_, mut s| async move {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let row = br#"{"Id":"f1","Size":1,"FileName":"x","DateCreated":1},"#;
        let chunk: Vec<u8> = row.iter().copied().cycle().take(row.len() * 1000).collect();
        let mut sent = 0usize;
        let _ = s.write_all(b"1\r\n[\r\n").await;
        while rows.is_none_or(|t| sent < t) {
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if s.write_all(&framed).await.is_err() {
                return;
            }
            sent += 1000;
        }
        let _ = s.write_all(b"2\r\n{}\r\n1\r\n]\r\n0\r\n\r\n").await;
    })
    .await
}

#[tokio::test]
async fn an_endless_listing_body_stops_at_the_byte_cap() {
    let srv = endless_listing(None).await;
    let r = remote_at(&srv.base(), opts());
    let t0 = Instant::now();
    let err = r.list_files(1, P).await.map(|v| v.len()).unwrap_err();
    assert!(err.to_string().contains("larger than 67108864 bytes"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(srv.requests().len(), 1, "a refused body is not fetched again");

    // An announced length over the cap is refused before reading it.
    let big = Hostile::start(|_, mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n[")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let t0 = Instant::now();
    let err = remote_at(&big.base(), opts()).list_folders(P).await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_listing_with_too_many_rows_is_a_clear_error() {
    // 101,001 rows of about 50 bytes: 5 MB, under the byte cap, over the row cap.
    let srv = endless_listing(Some(101_000)).await;
    let err = remote_at(&srv.base(), opts())
        .list_files(1, P)
        .await
        .map(|v| v.len())
        .unwrap_err();
    assert!(err.to_string().contains("more than 100000 rows"), "{err}");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn a_dripped_listing_ends_at_the_answer_deadline() {
    // One byte every 300 ms: never idle for the 1 s inactivity timeout, never done.
    let srv = Hostile::start(|_, mut s| async move {
        let body = br#"[{"Id":"f1","Size":1,"FileName":"x","DateCreated":1}]"#;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = s.write_all(head.as_bytes()).await;
        for b in body {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    let o = HttpOptions {
        read_timeout: Duration::from_secs(1),
        answer_deadline: Duration::from_secs(2),
        max_retries: 4,
        ..opts()
    };
    let t0 = Instant::now();
    let err = remote_at(&srv.base(), o).list_files(1, P).await.unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(&err, RemoteError::Network(t) if t.contains("no complete answer within 2")),
        "{err:?}"
    );
    // The whole body would take 16 s; the deadline is 2 s and it is not retried.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(srv.requests().len(), 1);
}

/// A server that reads an upload's body at `bytes_per_sec`, then answers 200 (or
/// never, with `answer: false`); records how many body bytes it got.
async fn slow_reader(bytes_per_sec: usize, answer_after: bool, got: Arc<Mutex<usize>>) -> Hostile {
    Hostile::start(move |req, mut s| {
        let got = got.clone();
        async move {
            let mut left = req.content_length();
            let step = (bytes_per_sec / 20).max(1);
            let mut buf = vec![0u8; step];
            while left > 0 {
                match s.read(&mut buf[..step.min(left)]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        left -= n;
                        *got.lock().unwrap() += n;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if answer_after {
                answer(&mut s, "200 OK", "", b"").await;
            } else {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_slow_upload_lands_although_it_takes_longer_than_the_timeout() {
    let got = Arc::new(Mutex::new(0));
    // 4 MiB/s: the kernel wakes the sender each time about 1.4 MB of its 4 MiB send
    // buffer has drained (0.35 s here), well inside the 1 s inactivity timeout.
    let srv = slow_reader(4 << 20, true, got.clone()).await;
    let size = 16 << 20;
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), vec![b'x'; size]).unwrap();
    let o = HttpOptions {
        read_timeout: Duration::from_secs(1),
        ..opts()
    };
    let r = remote_at(&srv.base(), o);
    let t0 = Instant::now();
    r.upload(1, "scan.pdf", "application/pdf", tmp.path(), P).await.unwrap();
    // About 4 s at 4 MiB/s, at least 3 s even if the kernel buffers 4 MiB: longer than
    // the 1 s timeout, which used to count from the start of the request.
    assert!(t0.elapsed() > Duration::from_secs(2), "{:?}", t0.elapsed());
    let req = &srv.requests()[0];
    assert_eq!(*got.lock().unwrap(), req.content_length());
    assert!(req.content_length() > size);
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn an_upload_that_stalls_or_gets_no_answer_times_out() {
    // The server reads nothing at all.
    let stalled = Hostile::start(|_, s| async move {
        let _keep_open = s;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), vec![b'x'; 16 << 20]).unwrap();
    let o = HttpOptions {
        read_timeout: Duration::from_secs(1),
        ..opts()
    };
    let t0 = Instant::now();
    let err = remote_at(&stalled.base(), o.clone())
        .upload(1, "a.pdf", "application/pdf", tmp.path(), P)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteError::Network(t) if t.contains("made no progress")),
        "{err:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // The server reads everything and never answers.
    let got = Arc::new(Mutex::new(0));
    let mute = slow_reader(64 << 20, false, got).await;
    std::fs::write(tmp.path(), b"small").unwrap();
    let t0 = Instant::now();
    let err = remote_at(&mute.base(), o)
        .upload(1, "a.pdf", "application/pdf", tmp.path(), P)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteError::Network(t) if t.contains("no answer after the file was sent")),
        "{err:?}"
    );
    assert!(err.is_ambiguous());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn odd_rows_are_skipped_and_the_rest_of_the_directory_is_shown() {
    let srv = Hostile::start(|req, mut s| async move {
        let body: &[u8] = if req.path.starts_with("/api/v1/files") {
            br#"[{"Id":"ok1","Size":3,"FileName":"a.txt","DateCreated":"2021-04-20T17:32:12Z","FolderId":null},
                 {"Id":"..","Size":3,"FileName":"dotdot","DateCreated":1},
                 {"Id":".","Size":3,"FileName":"dot","DateCreated":1},
                 {"Id":"a/b","Size":3,"FileName":"slash","DateCreated":1},
                 {"Id":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","Size":3,"FileName":"long id","DateCreated":1},
                 {"Id":7,"Size":-1,"FileName":"negative","DateCreated":1},
                 null,
                 {"Id":8,"Size":4.0,"FileName":null,"DateCreated":1618939932507.9}]"#
        } else {
            br#"[{"Name":"Ada Lovelace","Email":"a@example.com","ClientNumber":12},{"ClientId":"13","Name":"B"},{"Name":"no id"}]"#
        };
        answer(&mut s, "200 OK", "Content-Type: application/json\r\n", body).await;
    })
    .await;
    let r = remote_at(&srv.base(), opts());
    let files = r.list_files(1, P).await.unwrap();
    let ids: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["ok1", "8"]);
    assert_eq!(files[0].created_ms, 1_618_939_932_000);
    assert_eq!(files[1].size, 4);
    assert_eq!(files[1].name, "");
    let clients = r.list_clients(None, 1, P).await.unwrap();
    assert_eq!(clients.iter().map(|c| c.id).collect::<Vec<_>>(), [12, 13]);
    assert_eq!(srv.requests().len(), 2);
}

#[tokio::test]
async fn ids_that_would_become_dot_segments_never_reach_the_server() {
    let srv = bystander().await;
    let r = remote_at(&srv.base(), opts());
    for bad in ["", ".", "..", "a/../b", "../files", &"x".repeat(129)] {
        let err = r.delete(bad, P).await.unwrap_err();
        assert!(matches!(err, RemoteError::Protocol(_)), "{bad:?}: {err:?}");
        assert!(r.download(bad, 1, P).await.is_err(), "{bad:?}");
    }
    assert!(srv.requests().is_empty(), "{:?}", srv.requests());
    // An ordinary id with characters that need encoding is one path segment.
    let _ = r.delete("a b%2F?c", P).await;
    assert_eq!(srv.requests()[0].path, "/api/v1/files/a%20b%252F%3Fc");
}

#[tokio::test]
async fn the_client_walk_stops_after_a_thousand_pages() {
    let srv = Hostile::start(|_, mut s| async move {
        let rows: Vec<String> = (1..=100).map(|i| format!(r#"{{"ClientId":{i}}}"#)).collect();
        answer(&mut s, "200 OK", "", format!("[{}]", rows.join(",")).as_bytes()).await;
    })
    .await;
    let r = remote_at(&srv.base(), opts());
    assert_eq!(r.list_clients(None, 1000, P).await.unwrap().len(), 100);
    assert!(r.list_clients(None, 1001, P).await.unwrap().is_empty());
    assert_eq!(srv.requests().len(), 1, "page 1001 is not asked for");
    assert!(srv.requests()[0].path.contains("page=1000"));
}
