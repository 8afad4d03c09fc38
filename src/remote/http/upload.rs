//! The multipart upload of a file from disk: never retried (a lost answer may mean
//! the file landed), bounded by a watchdog on the body's progress and then on the
//! answer, never by the file's size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use tokio::time::Instant;

use super::errors::LocalRead;
use super::send::Want;
use super::{ClientId, HttpRemote, Priority, RemoteError};

/// Progress of an upload body, watched by `upload` to bound it by inactivity while the
/// body is sent and by `read_timeout` once it is.
#[derive(Default)]
struct SendProgress {
    /// Bytes handed to the connection so far.
    sent: std::sync::atomic::AtomicU64,
    /// The whole body has been handed over.
    done: std::sync::atomic::AtomicBool,
}

/// Most bytes the kernel may still hold in its send buffer once the body has been
/// handed over, and the slowest link they are assumed to drain through: after the
/// hand-over the answer may take `idle` plus that long (at most 64 s more).
/// Bytes read from the staged file per step of the body: each step is a round trip to
/// the blocking pool, so 64 KiB steps cost a 64 MiB upload a thousand of them.
const UPLOAD_CHUNK: usize = 1 << 20;

const SEND_BUFFER_BOUND: u64 = 8 << 20;
const MIN_LINK_BYTES_PER_SEC: u64 = 128 << 10;

/// How long to wait for the answer once a body of `len` bytes has been handed over.
fn answer_grace(len: u64, idle: Duration) -> Duration {
    idle + Duration::from_secs(len.min(SEND_BUFFER_BOUND) / MIN_LINK_BYTES_PER_SEC)
}

/// Wait until the upload's body makes no progress for `idle`, or its answer takes
/// longer than `grace` once the body was handed over; returns which. So an upload is
/// never cut short by its size: only a stall or a missing answer ends it. Progress is
/// seen as the kernel takes bytes, which it does each time about a third of its send
/// buffer (up to 4 MiB) has drained: with the default 30 s, links down to about
/// 50 kB/s count as moving.
async fn upload_watchdog(progress: &SendProgress, idle: Duration, grace: Duration) -> &'static str {
    use std::sync::atomic::Ordering::Relaxed;
    let tick = (idle / 4).max(Duration::from_millis(10));
    let mut last = progress.sent.load(Relaxed);
    let mut last_change = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        if progress.done.load(Relaxed) {
            let at = *done_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= grace {
                return "no answer after the file was sent";
            }
            continue;
        }
        let now = progress.sent.load(Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= idle {
            return "sending the file made no progress";
        }
    }
}

impl HttpRemote {
    /// `Remote::upload`: POST `path`'s bytes to `files/<client>` as the multipart part
    /// `file`, named `file_name`.
    pub(super) async fn upload_file(
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
        let progress = Arc::new(SendProgress::default());
        let body = {
            let sent = progress.clone();
            let done = progress.clone();
            tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK)
                .map_err(LocalRead)
                .inspect_ok(move |chunk| {
                    sent.sent
                        .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                })
                .chain(futures_util::stream::poll_fn(move |_| {
                    done.done.store(true, std::sync::atomic::Ordering::Relaxed);
                    std::task::Poll::Ready(None)
                }))
        };
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), len)
            .file_name(file_name.to_string())
            .mime_str(content_type)
            .map_err(|_| RemoteError::LocalIo(format!("invalid content type {content_type:?}")))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = self.url(&format!("files/{client}"), None)?;

        // Never retried: a lost answer may mean the file landed.
        self.limiter.acquire(prio, what).await?;
        let rb = self.upload_client.post(url).multipart(form);
        let idle = self.opts.read_timeout;
        let result = tokio::select! {
            r = self.attempt(rb, what, Want::Nothing) => r,
            why = upload_watchdog(&progress, idle, answer_grace(len, idle)) => Err(RemoteError::Network(format!(
                "timed out: {why} in time"
            ))),
        };
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                if err == RemoteError::NotFound {
                    tracing::debug!("{what}: client not found");
                } else {
                    tracing::warn!("{what} of {} failed: {err}", crate::phi::Name(file_name));
                }
                Err(err)
            }
        }
    }
}
