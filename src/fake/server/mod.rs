//! The fake IntakeQ HTTP server: the Files and Clients API over a [`Store`], faithful
//! to the API contract, with the store's fault plan applied at the connection level
//! (dropped connections, cut bodies, hangs), download and upload bandwidth caps, and a small
//! uncounted `/_admin/` API for tests and the benchmark script. Where the contract is
//! unconfirmed, the store's [`Profile`](super::profile::Profile) picks the answer's shape.
//!
//! axum handlers cannot close a connection without answering, so the server runs its
//! own accept loop and serves the Router through a hyper service that turns a
//! response marked [`DropConnection`] into a service error: hyper then closes the
//! connection without writing a byte.
//!
//! Here: spawning, the accept loop, the router and the state and helpers the handlers
//! share. The API endpoints are in `api` and `download`, the counting, fault and
//! key middleware in `gate`, the admin API in `admin`.

mod admin;
mod api;
mod download;
mod gate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;

use super::store::{Fault, Store, StoredFile};

/// The API's base URL for a server bound at `addr`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/api/v1/")
}

/// The header every `/_admin/` request must carry, with the server's admin token.
pub const ADMIN_TOKEN_HEADER: &str = "X-Admin-Token";

/// A fresh random admin token: 32 hex digits from the kernel's random source.
pub fn random_token() -> std::io::Result<String> {
    let mut buf = [0u8; 16];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Bind `addr` (port 0 allowed) and serve `store` in a background task; `/_admin/`
/// answers only requests from loopback that carry `admin_token` in
/// [`ADMIN_TOKEN_HEADER`] (another local user must not read or change the fake's
/// files). Returns the bound address and the accept loop's handle (abort it to stop
/// accepting).
pub async fn spawn(
    store: Store,
    addr: SocketAddr,
    api_key: String,
    admin_token: String,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = router(store, api_key, admin_token);
    let handle = tokio::spawn(accept_loop(listener, router));
    tracing::debug!("fake IntakeQ server listening on {bound}");
    Ok((bound, handle))
}

async fn accept_loop(listener: TcpListener, router: Router) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("fake server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inner = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                let call = hyper::service::Service::call(&inner, req);
                async move {
                    let resp = match call.await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if resp.extensions().get::<DropConnection>().is_some() {
                        return Err(DroppedOnPurpose);
                    }
                    Ok(resp)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!("fake server: connection from {peer} ended: {e}");
            }
        });
    }
}

/// The peer of the connection a request came on.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// Response extension: close the connection instead of sending this response.
#[derive(Clone, Copy, Debug)]
pub struct DropConnection;

/// The service error that makes hyper close a connection without answering.
#[derive(Debug)]
struct DroppedOnPurpose;

impl std::fmt::Display for DroppedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DroppedOnPurpose {}

/// Request extension: a body fault for the download handler.
#[derive(Clone, Debug)]
struct BodyFault(Fault);

#[derive(Clone)]
struct App {
    store: Store,
    key: Arc<str>,
    /// What `/_admin/` requests must send in [`ADMIN_TOKEN_HEADER`].
    admin_token: Arc<str>,
}

fn router(store: Store, api_key: String, admin_token: String) -> Router {
    let app = App {
        store,
        key: Arc::from(api_key),
        admin_token: Arc::from(admin_token),
    };
    let api = Router::new()
        .route("/api/v1/folders", get(api::list_folders))
        .route("/api/v1/files", get(api::list_files))
        .route(
            "/api/v1/files/{id}",
            get(download::download).post(api::upload).delete(api::delete_file),
        )
        .route("/api/v1/clients", get(api::list_clients))
        .layer(middleware::from_fn_with_state(app.clone(), gate::api_gate))
        .layer(DefaultBodyLimit::disable());
    let admin = Router::new()
        .route("/_admin/counts", get(admin::admin_counts))
        .route("/_admin/requests", get(admin::admin_requests))
        .route("/_admin/reset-counts", post(admin::admin_reset_counts))
        .route("/_admin/fault", post(admin::admin_fault))
        .route("/_admin/clear-faults", post(admin::admin_clear_faults))
        .route("/_admin/bandwidth", post(admin::admin_bandwidth))
        .route("/_admin/budget", post(admin::admin_budget))
        .route("/_admin/profile", post(admin::admin_profile))
        .route("/_admin/unknown-client-files", post(admin::admin_unknown_client))
        .route("/_admin/client", post(admin::admin_client))
        .route("/_admin/bulk-client", post(admin::admin_bulk_client))
        .route("/_admin/file", post(admin::admin_add_file))
        .route("/_admin/file/{id}", get(admin::admin_file_bytes))
        .route("/_admin/files", get(admin::admin_files))
        .layer(middleware::from_fn_with_state(app.clone(), admin::admin_gate));
    api.merge(admin).with_state(app)
}

// ----- helpers -----

fn message(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "Message": msg }))).into_response()
}

fn dropped() -> Response {
    let mut resp = Response::new(Body::empty());
    resp.extensions_mut().insert(DropConnection);
    resp
}

/// A query parameter, name compared case-insensitively (as ASP.NET does).
fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct FileJson<'a> {
    id: &'a str,
    date_created: i64,
    size: u64,
    file_name: &'a str,
    content_type: &'a str,
    folder_id: Option<&'a str>,
}

fn file_json(f: &StoredFile) -> FileJson<'_> {
    FileJson {
        id: &f.id,
        date_created: f.created_ms,
        size: f.data.len() as u64,
        file_name: &f.name,
        content_type: &f.content_type,
        folder_id: f.folder_id.as_deref(),
    }
}
