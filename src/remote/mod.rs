//! The remote boundary: the `Remote` trait the filesystem core talks through, the
//! API's data types as the core sees them, and the remote layer's one error type.
//!
//! Three implementations exist: [`http::HttpRemote`] (the real API over reqwest),
//! [`memory::MemRemote`] (in-process, over the fake store, for core tests) and, through
//! the fake HTTP server, the HTTP client again. reqwest types never leave `http/`.

pub mod http;
pub mod memory;
pub mod parse;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// A client's numeric id, as used in paths and in `files?clientId=`.
pub type ClientId = u64;

/// One file as the API lists it (`GET files?clientId=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub id: String,
    pub name: String,
    pub size: u64,
    /// `DateCreated`, Unix milliseconds.
    pub created_ms: i64,
    pub content_type: String,
    pub folder_id: Option<String>,
}

/// One account-wide folder (`GET folders`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    pub id: String,
    pub name: String,
}

/// One client row of the Clients API (`includeProfile=true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
}

pub use crate::limiter::{Priority, WouldWait};

/// The remote layer's error. Every variant is mapped to a core error in exactly one
/// place (`core::error`), and from there to an errno in the FUSE adapter.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteError {
    /// 404: the file (or client) does not exist.
    #[error("not found")]
    NotFound,
    /// 401/403: the key was rejected.
    #[error("the API key was rejected (HTTP {status})")]
    Unauthorized { status: u16 },
    /// 400 and other 4xx that retrying cannot fix.
    #[error("request rejected (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// 429 after the retries the layer allows itself.
    #[error("rate limited by the server")]
    RateLimited,
    /// 5xx after retries.
    #[error("server error (HTTP {status})")]
    Server { status: u16 },
    /// Connection refused/reset, DNS failure, TLS failure, timeout.
    #[error("network error: {0}")]
    Network(String),
    /// A body that ended early or disagrees with the listed size.
    #[error("download truncated: got {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    /// The server answered something we could not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The local limiter would make this request wait longer than allowed.
    #[error("rate limit: request would wait {wait_secs} s, more than --max-wait")]
    WouldWait { wait_secs: u64 },
    /// Reading the local file to upload failed.
    #[error("local I/O error: {0}")]
    LocalIo(String),
}

impl From<WouldWait> for RemoteError {
    fn from(w: WouldWait) -> RemoteError {
        RemoteError::WouldWait { wait_secs: w.wait_secs }
    }
}

impl RemoteError {
    /// True for failures where the request may or may not have taken effect on the
    /// server (the answer was lost), so a non-idempotent call must be checked, not retried.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, RemoteError::Network(_) | RemoteError::Server { .. })
    }
}

/// A download in progress: chunks of the body as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, RemoteError>> + Send>>;

/// What the filesystem core needs from IntakeQ. Implementations do their own
/// rate limiting and retries of idempotent calls.
pub trait Remote: Send + Sync + 'static {
    /// `GET folders`.
    fn list_folders(&self, prio: Priority) -> impl Future<Output = Result<Vec<Folder>, RemoteError>> + Send;

    /// `GET files?clientId=`.
    fn list_files(
        &self,
        client: ClientId,
        prio: Priority,
    ) -> impl Future<Output = Result<Vec<RemoteFile>, RemoteError>> + Send;

    /// One page (from 1) of `GET clients?includeProfile=true`, optionally with `search`.
    /// A page shorter than [`CLIENT_PAGE_SIZE`] is the last.
    fn list_clients(
        &self,
        search: Option<&str>,
        page: u32,
        prio: Priority,
    ) -> impl Future<Output = Result<Vec<Client>, RemoteError>> + Send;

    /// `GET files/<id>`: the body as a stream. `expected_size` is the listed size; the
    /// stream ends with [`RemoteError::Truncated`] if the body disagrees with it.
    fn download(
        &self,
        file_id: &str,
        expected_size: u64,
        prio: Priority,
    ) -> impl Future<Output = Result<ByteStream, RemoteError>> + Send;

    /// `POST files/<clientId>`, multipart field `file`, body read from `path`.
    /// Answers nothing: the API does not return the new id.
    fn upload(
        &self,
        client: ClientId,
        file_name: &str,
        content_type: &str,
        path: &Path,
        prio: Priority,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;

    /// `DELETE files/<id>`.
    fn delete(&self, file_id: &str, prio: Priority) -> impl Future<Output = Result<(), RemoteError>> + Send;

    /// The limiter this remote's requests wait at, if any: the core asks it whether a
    /// listing would have to wait (then it serves a stale one) and a status display
    /// reads the budget from it. No call.
    fn limiter(&self) -> Option<&crate::limiter::Limiter> {
        None
    }
}

/// Rows per page of the Clients API.
pub const CLIENT_PAGE_SIZE: usize = 100;

/// A content type for an upload, from the file name's extension.
pub fn content_type_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "application/pdf",
        Some("txt") | Some("log") => "text/plain",
        Some("csv") => "text/csv",
        Some("html") | Some("htm") => "text/html",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("tif") | Some("tiff") => "image/tiff",
        Some("heic") => "image/heic",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xls") => "application/vnd.ms-excel",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Read a whole upload body from disk (used by the in-memory fake).
pub(crate) fn read_local(path: &Path) -> Result<Vec<u8>, RemoteError> {
    std::fs::read(path).map_err(|e| RemoteError::LocalIo(e.to_string()))
}
