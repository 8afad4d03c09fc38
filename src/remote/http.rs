//! `HttpRemote`: the real IntakeQ client over reqwest. Owns URL building, the
//! `X-Auth-Key` header (sensitive, never logged), status-to-error mapping, retries of
//! idempotent calls with backoff, 429 handling through the shared limiter, streamed
//! uploads and length-checked streamed downloads. reqwest types never leave this file.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::{ByteStream, Client, ClientId, Folder, Priority, Remote, RemoteError, RemoteFile};
use crate::limiter::Limiter;

/// Characters left alone when percent-encoding a path segment or query value.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How long to pause everyone after a 429 that carries no `Retry-After`: the
/// per-minute window's length.
const DEFAULT_429_PAUSE: Duration = Duration::from_secs(60);
/// Longest single backoff between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Most bytes of an error body read to find its `Message`.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Longest `Message` carried into an error.
const MAX_MESSAGE_CHARS: usize = 300;
const AUTH_HEADER: &str = "X-Auth-Key";

/// Timeouts and retry policy.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// TCP + TLS connect.
    pub connect_timeout: Duration,
    /// Inactivity: the longest wait for any read (answer headers or body bytes).
    pub read_timeout: Duration,
    /// Retries of idempotent calls after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles per retry, plus up to 50 % jitter.
    pub backoff_base: Duration,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
        }
    }
}

/// The IntakeQ API over HTTP(S).
pub struct HttpRemote {
    client: reqwest::Client,
    base: Url,
    key: HeaderValue,
    limiter: Arc<Limiter>,
    opts: HttpOptions,
}

impl fmt::Debug for HttpRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut base = self.base.clone();
        if base.password().is_some() {
            let _ = base.set_password(Some("redacted"));
        }
        f.debug_struct("HttpRemote")
            .field("base", &base.as_str())
            .field("api_key", &"<redacted>")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

static CRYPTO_PROVIDER: Once = Once::new();

/// reqwest is built without a default rustls provider: install ring once per process
/// (another part of the program may have installed one already; that is fine).
fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// What a successful attempt should hand back.
#[derive(Clone, Copy)]
enum Want {
    /// The whole body (listings).
    Body,
    /// The response, body unread (downloads).
    Stream,
    /// Nothing (deletes, uploads).
    Nothing,
}

enum Answer {
    Body(Bytes),
    Stream(reqwest::Response),
    Done,
}

/// A failed call, with whether an earlier attempt may have taken effect.
struct Failed {
    err: RemoteError,
    earlier_ambiguous: bool,
}

impl HttpRemote {
    /// A client for the API at `base_url` (e.g. `https://intakeq.com/api/v1/`).
    pub fn new(
        base_url: &str,
        api_key: String,
        limiter: Arc<Limiter>,
        opts: HttpOptions,
    ) -> Result<HttpRemote, RemoteError> {
        install_crypto_provider();
        let mut base =
            Url::parse(base_url.trim()).map_err(|e| RemoteError::Protocol(format!("invalid API base URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(RemoteError::Protocol(
                "invalid API base URL: it must be an http:// or https:// URL".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(RemoteError::Protocol(
                "invalid API base URL: it must not have a query or fragment".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut key = HeaderValue::from_str(&api_key).map_err(|_| {
            RemoteError::Protocol("the API key contains characters that cannot be sent in a header".into())
        })?;
        key.set_sensitive(true);
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .user_agent(concat!("intakeq-fs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::Network(format!("cannot set up HTTP: {}", chain(&e))))?;
        Ok(HttpRemote {
            client,
            base,
            key,
            limiter,
            opts,
        })
    }

    /// `base` + `path` (already encoded) + optional query.
    fn url(&self, path: &str, query: Option<&str>) -> Result<Url, RemoteError> {
        let mut u = self
            .base
            .join(path)
            .map_err(|e| RemoteError::Protocol(format!("cannot build a request URL: {e}")))?;
        u.set_query(query);
        Ok(u)
    }

    fn file_url(&self, id: &str) -> Result<Url, RemoteError> {
        self.url(&format!("files/{}", utf8_percent_encode(id, ENCODE)), None)
    }

    /// Exponential backoff with jitter taken from the clock (no RNG needed).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .opts
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut x = u64::from(nanos) ^ (u64::from(attempt) << 32);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let permille = (x % 500) as u32;
        base + base * permille / 1000
    }

    /// One attempt: send, then map the status. 429 pauses the limiter.
    async fn attempt(&self, rb: reqwest::RequestBuilder, what: &str, want: Want) -> Result<Answer, RemoteError> {
        let resp = rb
            .header(AUTH_HEADER, self.key.clone())
            .send()
            .await
            .map_err(|e| network_error(&e))?;
        let status = resp.status();
        if status.is_success() {
            return match want {
                Want::Body => resp.bytes().await.map(Answer::Body).map_err(|e| network_error(&e)),
                Want::Stream => Ok(Answer::Stream(resp)),
                Want::Nothing => {
                    // Read the (small) answer so the connection can be reused; its
                    // content does not matter.
                    let _ = resp.bytes().await;
                    Ok(Answer::Done)
                }
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let pause = retry_after(resp.headers()).unwrap_or(DEFAULT_429_PAUSE);
            tracing::debug!("{what}: HTTP 429, pausing requests for {} s", pause.as_secs());
            self.limiter.pause_until(Instant::now() + pause);
        }
        let message = error_message(resp).await;
        Err(status_error(status, message))
    }

    /// An idempotent call: every attempt goes through the limiter; network errors,
    /// timeouts, 5xx and 429 are retried up to `max_retries` times.
    async fn idempotent(
        &self,
        method: Method,
        url: Url,
        what: &str,
        prio: Priority,
        want: Want,
    ) -> Result<Answer, Failed> {
        let mut attempt = 0u32;
        let mut earlier_ambiguous = false;
        loop {
            if let Err(err) = self.limiter.acquire(prio, what).await {
                tracing::warn!("{what} failed: {err}");
                return Err(Failed { err, earlier_ambiguous });
            }
            let rb = self.client.request(method.clone(), url.clone());
            let err = match self.attempt(rb, what, want).await {
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            let retryable = matches!(
                err,
                RemoteError::Network(_) | RemoteError::Server { .. } | RemoteError::RateLimited
            );
            if !retryable || attempt >= self.opts.max_retries {
                if err == RemoteError::NotFound {
                    tracing::debug!("{what}: not found");
                } else if retryable {
                    tracing::warn!("{what} failed after {} attempts: {err}", attempt + 1);
                } else {
                    tracing::warn!("{what} failed: {err}");
                }
                return Err(Failed { err, earlier_ambiguous });
            }
            earlier_ambiguous |= err.is_ambiguous();
            if err == RemoteError::RateLimited {
                // The limiter was paused; the next acquire waits it out.
                tracing::debug!("{what}: rate limited, retrying after the pause");
            } else {
                let wait = self.backoff(attempt);
                tracing::debug!(
                    "{what}: attempt {} failed ({err}), retrying in {} ms",
                    attempt + 1,
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        what: &str,
        prio: Priority,
    ) -> Result<T, RemoteError> {
        let body = match self.idempotent(Method::GET, url, what, prio, Want::Body).await {
            Ok(Answer::Body(b)) => b,
            Ok(_) => return Err(RemoteError::Protocol(format!("{what}: no body"))),
            Err(f) => return Err(f.err),
        };
        serde_json::from_slice(&body).map_err(|e| {
            let err = RemoteError::Protocol(format!(
                "{what}: malformed JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ));
            tracing::warn!("{err}");
            err
        })
    }
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The `Message` of an error body, if it has one; never other body bytes.
async fn error_message(mut resp: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "Message", alias = "message")]
        message: Option<String>,
    }
    let body: ErrorBody = serde_json::from_slice(&buf).ok()?;
    let msg = body.message?;
    let msg: String = msg
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    Some(msg)
}

fn status_error(status: StatusCode, message: Option<String>) -> RemoteError {
    let code = status.as_u16();
    match code {
        401 | 403 => RemoteError::Unauthorized { status: code },
        404 => RemoteError::NotFound,
        429 => RemoteError::RateLimited,
        500..=599 => RemoteError::Server { status: code },
        _ => RemoteError::Rejected {
            status: code,
            message: message.unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_string()),
        },
    }
}

/// An error and its sources, joined, without the URL.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// A read error of the local file being uploaded, kept distinguishable inside
/// reqwest's error chain.
#[derive(Debug)]
struct LocalRead(std::io::Error);

impl fmt::Display for LocalRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading the file to upload: {}", self.0)
    }
}

impl std::error::Error for LocalRead {}

fn local_read_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(l) = x.downcast_ref::<LocalRead>() {
            return Some(l.to_string());
        }
        cur = x.source();
    }
    None
}

fn network_error(e: &reqwest::Error) -> RemoteError {
    // A failure reading our own upload source is local and left nothing behind.
    if let Some(local) = local_read_in(e) {
        return RemoteError::LocalIo(local);
    }
    // Build the text from a copy without the URL: no query strings in errors.
    let text = if e.is_timeout() {
        format!("timed out ({})", chain(e))
    } else {
        chain(e)
    };
    let text = match e.url() {
        Some(u) => text.replace(u.as_str(), "<url>"),
        None => text,
    };
    RemoteError::Network(text)
}

/// The body of a download as it arrives, checked against the listed size.
fn checked_stream(body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static, expected: u64) -> ByteStream {
    struct St<S> {
        body: std::pin::Pin<Box<S>>,
        got: u64,
        expected: u64,
        done: bool,
    }
    let st = St {
        body: Box::pin(body),
        got: 0,
        expected,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        match st.body.next().await {
            Some(Ok(chunk)) => {
                st.got += chunk.len() as u64;
                if st.got > st.expected {
                    st.done = true;
                    let err = RemoteError::Truncated {
                        got: st.got,
                        expected: st.expected,
                    };
                    tracing::warn!("GET file: body longer than listed: {err}");
                    return Some((Err(err), st));
                }
                Some((Ok(chunk), st))
            }
            Some(Err(e)) => {
                st.done = true;
                let err = network_error(&e);
                tracing::warn!("GET file: body failed after {} of {} bytes: {err}", st.got, st.expected);
                Some((Err(err), st))
            }
            None if st.got != st.expected => {
                st.done = true;
                let err = RemoteError::Truncated {
                    got: st.got,
                    expected: st.expected,
                };
                tracing::warn!("GET file: {err}");
                Some((Err(err), st))
            }
            None => None,
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileRow {
    id: String,
    date_created: i64,
    size: u64,
    file_name: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    folder_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FolderRow {
    id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ClientRow {
    client_id: ClientId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

impl Remote for HttpRemote {
    fn limiter(&self) -> Option<&Limiter> {
        Some(&self.limiter)
    }

    async fn list_folders(&self, prio: Priority) -> Result<Vec<Folder>, RemoteError> {
        let url = self.url("folders", None)?;
        let rows: Vec<FolderRow> = self.get_json(url, "GET folders", prio).await?;
        Ok(rows.into_iter().map(|r| Folder { id: r.id, name: r.name }).collect())
    }

    async fn list_files(&self, client: ClientId, prio: Priority) -> Result<Vec<RemoteFile>, RemoteError> {
        let url = self.url("files", Some(&format!("clientId={client}")))?;
        let rows: Vec<FileRow> = self.get_json(url, "GET files", prio).await?;
        Ok(rows
            .into_iter()
            .map(|r| RemoteFile {
                id: r.id,
                name: r.file_name,
                size: r.size,
                created_ms: r.date_created,
                content_type: r.content_type.unwrap_or_default(),
                folder_id: r.folder_id,
            })
            .collect())
    }

    async fn list_clients(&self, search: Option<&str>, page: u32, prio: Priority) -> Result<Vec<Client>, RemoteError> {
        let mut query = format!("includeProfile=true&page={}", page.max(1));
        if let Some(s) = search.filter(|s| !s.is_empty()) {
            query.push_str("&search=");
            query.extend(utf8_percent_encode(s, ENCODE));
        }
        let url = self.url("clients", Some(&query))?;
        let rows: Vec<ClientRow> = self.get_json(url, "GET clients", prio).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let name = r.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        r.first_name.unwrap_or_default(),
                        r.last_name.unwrap_or_default()
                    )
                    .trim()
                    .to_string()
                });
                Client { id: r.client_id, name }
            })
            .collect())
    }

    async fn download(&self, file_id: &str, expected_size: u64, prio: Priority) -> Result<ByteStream, RemoteError> {
        let url = self.file_url(file_id)?;
        match self.idempotent(Method::GET, url, "GET file", prio, Want::Stream).await {
            Ok(Answer::Stream(resp)) => Ok(checked_stream(resp.bytes_stream(), expected_size)),
            Ok(_) => Err(RemoteError::Protocol("GET file: no body".into())),
            Err(f) => Err(f.err),
        }
    }

    async fn upload(
        &self,
        client: ClientId,
        file_name: &str,
        content_type: &str,
        path: &Path,
        prio: Priority,
    ) -> Result<(), RemoteError> {
        let what = "POST file";
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| RemoteError::LocalIo(e.to_string()))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| RemoteError::LocalIo(e.to_string()))?
            .len();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map_err(LocalRead);
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), len)
            .file_name(file_name.to_string())
            .mime_str(content_type)
            .map_err(|_| RemoteError::LocalIo(format!("invalid content type {content_type:?}")))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = self.url(&format!("files/{client}"), None)?;

        // Never retried: a lost answer may mean the file landed.
        self.limiter.acquire(prio, what).await?;
        let rb = self.client.post(url).multipart(form);
        match self.attempt(rb, what, Want::Nothing).await {
            Ok(_) => Ok(()),
            Err(err) => {
                if err == RemoteError::NotFound {
                    tracing::debug!("{what}: client not found");
                } else {
                    tracing::warn!("{what} failed: {err}");
                }
                Err(err)
            }
        }
    }

    async fn delete(&self, file_id: &str, prio: Priority) -> Result<(), RemoteError> {
        let url = self.file_url(file_id)?;
        match self
            .idempotent(Method::DELETE, url, "DELETE file", prio, Want::Nothing)
            .await
        {
            Ok(_) => Ok(()),
            Err(Failed {
                err: RemoteError::NotFound,
                earlier_ambiguous: true,
            }) => {
                tracing::debug!("DELETE file: gone on retry, an earlier attempt succeeded");
                Ok(())
            }
            Err(f) => Err(f.err),
        }
    }
}
