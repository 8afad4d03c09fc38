//! The API middleware: counts every API request, applies the store's planned fault
//! (status, delay, dropped connection, hang, discarded upload, or a body fault handed
//! to the download handler), then checks the key.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::{dropped, message, App, BodyFault};
use crate::fake::profile::Profile;
use crate::fake::store::{Admission, Endpoint, Fault};

/// How long a `Hang` fault holds a request before giving up and dropping it.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// The endpoint an API request is for, from its method and path.
fn classify(method: &Method, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/api/v1/")?;
    match (method, rest) {
        (&Method::GET, "folders") => Some(Endpoint::ListFolders),
        (&Method::GET, "files") => Some(Endpoint::ListFiles),
        (&Method::GET, "clients") => Some(Endpoint::ListClients),
        (m, r) => {
            let id = r.strip_prefix("files/")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            match *m {
                Method::GET => Some(Endpoint::Download),
                Method::POST => Some(Endpoint::Upload),
                Method::DELETE => Some(Endpoint::Delete),
                _ => None,
            }
        }
    }
}

/// The client a request names, for the ordered log: an upload's path, a file
/// listing's `clientId`, a client search's `search`.
fn client_of(endpoint: Endpoint, req: &Request) -> Option<String> {
    let param = |key: &str| {
        req.uri().query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.eq_ignore_ascii_case(key).then(|| v.to_string())
        })
    };
    match endpoint {
        Endpoint::Upload => req.uri().path().rsplit('/').next().map(str::to_string),
        Endpoint::ListFiles => param("clientId"),
        Endpoint::ListClients => param("search"),
        _ => None,
    }
}

/// Counts every API request, applies the planned fault, checks the key.
pub(super) async fn api_gate(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let Some(endpoint) = classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let mut drop_after = false;
    let client = client_of(endpoint, &req);
    if let Admission::Fault(fault) = app.store.admit_for(endpoint, client) {
        tracing::debug!("fake server: {fault:?} on {}", endpoint.name());
        match fault {
            Fault::Status { status, retry_after } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let text = match status.as_u16() {
                    429 => "API rate limit exceeded",
                    500..=599 => "An error has occurred (injected fault)",
                    _ => "Request rejected (injected fault)",
                };
                drain_body(req).await;
                let mut resp = message(status, text);
                if let Some(secs) = retry_after {
                    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                return resp;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Drop => return dropped(),
            Fault::Hang => {
                tokio::time::sleep(HANG_FOR).await;
                return dropped();
            }
            Fault::DropAfterEffect => drop_after = true,
            Fault::Discard => {
                drain_body(req).await;
                return StatusCode::OK.into_response();
            }
            f @ (Fault::CutBody { .. } | Fault::ShortBody { .. }) => {
                req.extensions_mut().insert(BodyFault(f));
            }
        }
    }
    let authorized = req
        .headers()
        .get("x-auth-key")
        .is_some_and(|v| v.as_bytes() == app.key.as_bytes());
    let resp = if authorized {
        next.run(req).await
    } else {
        drain_body(req).await;
        unauthorized(app.store.profile())
    };
    if drop_after {
        return dropped();
    }
    resp
}

/// A rejected key: `{"Message": ...}`, or (alt profile) an empty `text/plain` body.
fn unauthorized(profile: Profile) -> Response {
    match profile {
        Profile::Contract => message(StatusCode::UNAUTHORIZED, "Invalid or missing API key"),
        Profile::Alt => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            Body::empty(),
        )
            .into_response(),
    }
}

/// Read and discard a request body before answering early, as a server that reads
/// the whole request first would: answering mid-upload and closing makes the client
/// see a broken pipe instead of the status.
async fn drain_body(req: Request) {
    let mut body = req.into_body().into_data_stream();
    while let Some(Ok(_)) = body.next().await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_maps_paths_to_endpoints() {
        assert_eq!(classify(&Method::GET, "/api/v1/files"), Some(Endpoint::ListFiles));
        assert_eq!(classify(&Method::GET, "/api/v1/files/f1"), Some(Endpoint::Download));
        assert_eq!(classify(&Method::POST, "/api/v1/files/12"), Some(Endpoint::Upload));
        assert_eq!(classify(&Method::DELETE, "/api/v1/files/f1"), Some(Endpoint::Delete));
        assert_eq!(classify(&Method::GET, "/api/v1/files/a/b"), None);
        assert_eq!(classify(&Method::GET, "/_admin/counts"), None);
        assert_eq!(classify(&Method::PUT, "/api/v1/files/f1"), None);
    }
}
