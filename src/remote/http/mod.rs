//! `HttpRemote`: the real IntakeQ client over reqwest. Owns URL building, the
//! `X-Auth-Key` header (sensitive, never logged, sent to the base URL's origin only:
//! redirects are never followed), status-to-error mapping, retries of idempotent calls
//! with backoff, 429 handling through the shared limiter (with a capped pause), bounded
//! listing bodies with an overall deadline, streamed uploads whose deadline starts once
//! the body is sent, and length-checked streamed downloads. reqwest types never leave
//! this module; listing rows are parsed in `parse.rs`.
//!
//! Here: options, construction, base-URL rules, URL building and the `Remote` impl.
//! Sending with retries is in `send`, error mapping in `errors`, the upload in
//! `upload` and the length-checked download in `download`.

pub mod base;
mod download;
mod errors;
mod send;
mod upload;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};

use super::{parse, ByteStream, Client, ClientId, Folder, Priority, Remote, RemoteError, RemoteFile};
use crate::limiter::Limiter;

pub use download::LengthCheck;
pub use send::{parse_retry_after, MAX_RETRY_AFTER};

pub use base::{install_crypto_provider, is_loopback, parse_base_url, BaseUrlError};
use download::checked_stream;
use errors::chain;
use send::{Answer, Failed, Want};

/// Characters left alone when percent-encoding a path segment or query value.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The client list is walked at most this many pages (100 clients each); later pages
/// are answered empty, which ends the walk.
pub const MAX_CLIENT_PAGES: u32 = 1000;

/// Timeouts, retry policy and bounds on what the server may send.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// TCP + TLS connect.
    pub connect_timeout: Duration,
    /// Inactivity: the longest wait for any read (answer headers or body bytes) and,
    /// for uploads, for the body to make progress and then for the answer once the
    /// body is sent.
    pub read_timeout: Duration,
    /// Overall deadline of one attempt of a metadata call (listings, deletes): the
    /// whole answer must have arrived by then, however it trickles. Not retried.
    pub answer_deadline: Duration,
    /// Retries of idempotent calls after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles per retry, plus up to 50 % jitter.
    pub backoff_base: Duration,
    /// Largest listing body accepted, bytes.
    pub max_listing_bytes: usize,
    /// Most rows a listing may have.
    pub max_listing_rows: usize,
    /// Accept a plain `http://` base URL to a host that is not loopback
    /// (`--insecure-plain-http`).
    pub allow_plain_http: bool,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            answer_deadline: Duration::from_secs(60),
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            max_listing_bytes: 64 << 20,
            max_listing_rows: 100_000,
            allow_plain_http: false,
        }
    }
}

/// The IntakeQ API over HTTP(S).
pub struct HttpRemote {
    /// Metadata and downloads: inactivity timeout from the request on.
    client: reqwest::Client,
    /// Uploads: no built-in read timeout (it would count from the start of a slow
    /// upload); `upload` watches progress and the answer itself.
    upload_client: reqwest::Client,
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

/// Check a base URL (`base::parse_base_url`, with `opts.allow_plain_http`).
pub fn check_base_url(base_url: &str, opts: &HttpOptions) -> Result<Url, RemoteError> {
    parse_base_url(base_url, opts.allow_plain_http).map_err(|e| RemoteError::Protocol(e.to_string()))
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
        let base = check_base_url(base_url, &opts)?;
        let mut key = HeaderValue::from_str(&api_key).map_err(|_| {
            RemoteError::Protocol("the API key contains characters that cannot be sent in a header".into())
        })?;
        key.set_sensitive(true);
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(opts.connect_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("intakeq-fs/", env!("CARGO_PKG_VERSION")))
        };
        let setup = |e: reqwest::Error| RemoteError::Network(format!("cannot set up HTTP: {}", chain(&e)));
        let client = builder().read_timeout(opts.read_timeout).build().map_err(setup)?;
        let upload_client = builder().build().map_err(setup)?;
        Ok(HttpRemote {
            client,
            upload_client,
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

    /// `files/<id>`: the id percent-encoded as one segment; ids that could still be
    /// normalised into another path (`.`, `..`, empty, with `/`, overlong) are refused
    /// before anything is sent.
    fn file_url(&self, id: &str) -> Result<Url, RemoteError> {
        if !parse::valid_id(id) {
            return Err(RemoteError::Protocol(format!(
                "refusing an invalid file id ({} bytes)",
                id.len()
            )));
        }
        self.url(&format!("files/{}", utf8_percent_encode(id, ENCODE)), None)
    }
}

impl Remote for HttpRemote {
    fn limiter(&self) -> Option<&Limiter> {
        Some(&self.limiter)
    }

    async fn list_folders(&self, prio: Priority) -> Result<Vec<Folder>, RemoteError> {
        let url = self.url("folders", None)?;
        let body = self.get_body(url, "GET folders", prio).await?;
        self.rows("GET folders", parse::folders(&body, self.opts.max_listing_rows))
    }

    async fn list_files(&self, client: ClientId, prio: Priority) -> Result<Vec<RemoteFile>, RemoteError> {
        let url = self.url("files", Some(&format!("clientId={client}")))?;
        let body = self.get_body(url, "GET files", prio).await?;
        self.rows("GET files", parse::files(&body, self.opts.max_listing_rows))
    }

    async fn list_clients(&self, search: Option<&str>, page: u32, prio: Priority) -> Result<Vec<Client>, RemoteError> {
        if page > MAX_CLIENT_PAGES {
            tracing::warn!(
                "GET clients: stopping after {MAX_CLIENT_PAGES} pages ({} clients); later clients are not listed \
                 (each still opens by its id)",
                MAX_CLIENT_PAGES as usize * super::CLIENT_PAGE_SIZE
            );
            return Ok(Vec::new());
        }
        // Profiles are asked for because only that form documents `ClientId`; their
        // other fields are dropped unread. Rows without it fall back to `ClientNumber`.
        let mut query = format!("includeProfile=true&page={}", page.max(1));
        if let Some(s) = search.filter(|s| !s.is_empty()) {
            query.push_str("&search=");
            query.extend(utf8_percent_encode(s, ENCODE));
        }
        let url = self.url("clients", Some(&query))?;
        let body = self.get_body(url, "GET clients", prio).await?;
        self.rows("GET clients", parse::clients(&body, self.opts.max_listing_rows))
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
        self.upload_file(client, file_name, content_type, path, prio).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_with_a_user_or_password_is_refused_without_echoing_it() {
        for url in [
            "https://user:s3cret-pass@intakeq.com/api/v1/",
            "https://user@intakeq.com/api/v1/",
            "http://:s3cret-pass@127.0.0.1:9/",
        ] {
            let err = check_base_url(url, &HttpOptions::default()).unwrap_err().to_string();
            assert!(err.contains("user name or password"), "{err}");
            assert!(!err.contains("s3cret") && !err.contains("user@"), "{err}");
        }
    }

    #[test]
    fn base_urls_must_be_https_unless_loopback() {
        let o = HttpOptions::default();
        assert!(check_base_url("http://127.0.0.1:9/api/v1", &o).is_ok());
        assert_eq!(
            check_base_url("http://localhost/x", &o).unwrap().as_str(),
            "http://localhost/x/"
        );
        assert!(check_base_url("http://[::ffff:127.0.0.1]/", &o).is_ok());
        assert!(check_base_url("http://127.0.0.1.example.com/", &o).is_err());
        assert!(check_base_url("http://localhost.example.com/", &o).is_err());
        assert!(check_base_url("http://192.168.1.2/", &o).is_err());
    }
}
