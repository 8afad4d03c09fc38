//! The download endpoint: the file's bytes with `Content-Length` and
//! `Content-Disposition`, paced to the store's bandwidth cap, cut or shortened by a
//! body fault the API gate attached to the request.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::Instant;

use super::{message, App, BodyFault};
use crate::fake::store::Fault;

/// How long a cut body waits before failing, so that what was sent gets flushed.
const CUT_FLUSH_PAUSE: Duration = Duration::from_millis(100);
/// Download body chunk size when not throttled.
const CHUNK: usize = 64 * 1024;

/// `attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>`.
fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

pub(super) async fn download(State(app): State<App>, Path(id): Path<String>, req: Request) -> Response {
    let Some(file) = app.store.file(&id) else {
        tracing::debug!("fake server: download of unknown file");
        return message(StatusCode::NOT_FOUND, "File not found");
    };
    let fault = req.extensions().get::<BodyFault>().map(|f| f.0.clone());
    let data = file.data;
    let full = data.len();
    let (declared, send, cut) = match fault {
        Some(Fault::CutBody { bytes }) => (full, (bytes as usize).min(full), true),
        Some(Fault::ShortBody { bytes }) => {
            let n = full.saturating_sub(bytes as usize);
            (n, n, false)
        }
        _ => (full, full, false),
    };
    let bandwidth = app.store.lock().bandwidth.filter(|b| *b > 0);
    let body = Body::from_stream(paced_body(data, send, cut, bandwidth));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
    headers.insert(header::CONTENT_DISPOSITION, content_disposition(&file.name));
    (StatusCode::OK, headers, body).into_response()
}

struct Pacer {
    data: Bytes,
    off: usize,
    end: usize,
    cut: bool,
    bandwidth: Option<u64>,
    chunk: usize,
    start: Instant,
}

/// The first `end` bytes of `data` as slices, paced to `bandwidth` bytes/s; if `cut`,
/// an error follows them, which makes hyper abort the connection.
fn paced_body(
    data: Bytes,
    end: usize,
    cut: bool,
    bandwidth: Option<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let chunk = match bandwidth {
        Some(b) => (b / 16).clamp(1024, CHUNK as u64) as usize,
        None => CHUNK,
    };
    let st = Pacer {
        data,
        off: 0,
        end,
        cut,
        bandwidth,
        chunk,
        start: Instant::now(),
    };
    futures_util::stream::unfold(st, |mut st| async move {
        if st.off >= st.end {
            if st.cut {
                st.cut = false;
                // Give hyper a pause to flush the headers and the bytes so far: an
                // error while they are still buffered would discard them.
                tokio::time::sleep(CUT_FLUSH_PAUSE).await;
                let err = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "body cut by an injected fault");
                return Some((Err(err), st));
            }
            return None;
        }
        if let Some(bw) = st.bandwidth {
            let due = st.start + Duration::from_secs_f64(st.off as f64 / bw as f64);
            tokio::time::sleep_until(due).await;
        }
        let n = st.chunk.min(st.end - st.off);
        let piece = st.data.slice(st.off..st.off + n);
        st.off += n;
        Some((Ok(piece), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_always_a_valid_header() {
        let v = content_disposition("Ünïcødé 表格.pdf");
        let s = v.to_str().unwrap();
        assert!(s.starts_with("attachment; filename=\""));
        assert!(s.contains("filename*=UTF-8''%C3%9C"));
        assert!(content_disposition("a\"b\\c\nd").to_str().is_ok());
    }
}
