//! The fake IntakeQ HTTP server: the Files and Clients API over a [`Store`], faithful
//! to the API contract, with the store's fault plan applied at the connection level
//! (dropped connections, cut bodies, hangs), a download bandwidth cap, and a small
//! uncounted `/_admin/` API for tests and the benchmark script. Where the contract is
//! unconfirmed, the store's [`Profile`](super::profile::Profile) picks the answer's shape.
//!
//! axum handlers cannot close a connection without answering, so the server runs its
//! own accept loop and serves the Router through a hyper service that turns a
//! response marked [`DropConnection`] into a service error: hyper then closes the
//! connection without writing a byte.
//!
//! Split out: the counting, fault and key middleware in `gate`; the download in `download`; the admin API in `admin`.

mod admin;
mod download;
mod gate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;

use super::profile::Profile;
use super::store::{Fault, Store, StoredClient, StoredFile, UnknownClientFiles};
use crate::remote::{ClientId, CLIENT_PAGE_SIZE};

/// The API's base URL for a server bound at `addr`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/api/v1/")
}

/// Bind `addr` (port 0 allowed) and serve `store` in a background task. Returns the
/// bound address and the accept loop's handle (abort it to stop accepting).
pub async fn spawn(
    store: Store,
    addr: SocketAddr,
    api_key: String,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = router(store, api_key);
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
}

fn router(store: Store, api_key: String) -> Router {
    let app = App {
        store,
        key: Arc::from(api_key),
    };
    let api = Router::new()
        .route("/api/v1/folders", get(list_folders))
        .route("/api/v1/files", get(list_files))
        .route(
            "/api/v1/files/{id}",
            get(download::download).post(upload).delete(delete_file),
        )
        .route("/api/v1/clients", get(list_clients))
        .layer(middleware::from_fn_with_state(app.clone(), gate::api_gate))
        .layer(DefaultBodyLimit::disable());
    let admin = Router::new()
        .route("/_admin/counts", get(admin::admin_counts))
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
        .layer(middleware::from_fn(admin::admin_gate));
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

async fn list_folders(State(app): State<App>) -> Response {
    let folders: Vec<serde_json::Value> = app
        .store
        .folders()
        .into_iter()
        .map(|(id, name)| serde_json::json!({ "Id": id, "Name": name }))
        .collect();
    Json(folders).into_response()
}

async fn list_files(
    State(app): State<App>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return message(StatusCode::BAD_REQUEST, "The request is invalid.");
    };
    let Some(client) = param(&q, "clientId").and_then(|v| v.parse::<ClientId>().ok()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "The request is invalid: clientId is required and must be a number.",
        );
    };
    if !app.store.has_client(client) && app.store.lock().unknown_client_files == UnknownClientFiles::NotFound {
        return message(StatusCode::NOT_FOUND, "Client not found");
    }
    let files = app.store.files_of(client);
    Json(files.iter().map(file_json).collect::<Vec<_>>()).into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ClientProfileJson {
    client_id: ClientId,
    first_name: String,
    last_name: String,
    name: String,
    email: String,
    phone: String,
    date_created: i64,
    archived: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ClientRowJson {
    name: String,
    email: String,
    phone: String,
    client_number: ClientId,
}

async fn list_clients(
    State(app): State<App>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return message(StatusCode::BAD_REQUEST, "The request is invalid.");
    };
    let page = match param(&q, "page") {
        None | Some("") => 1,
        Some(p) => match p.parse::<u32>() {
            Ok(p) => p.max(1),
            Err(_) => return message(StatusCode::BAD_REQUEST, "page must be a number"),
        },
    };
    // The alt profile answers the short form whatever the query says.
    let profile = param(&q, "includeProfile").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        && app.store.profile() == Profile::Contract;
    let rows = app.store.clients_page(param(&q, "search"), page, CLIENT_PAGE_SIZE);
    if profile {
        let rows: Vec<ClientProfileJson> = rows
            .into_iter()
            .map(|c: StoredClient| ClientProfileJson {
                client_id: c.id,
                name: c.name(),
                first_name: c.first_name,
                last_name: c.last_name,
                email: c.email,
                phone: c.phone,
                date_created: c.created_ms,
                archived: c.archived,
            })
            .collect();
        Json(rows).into_response()
    } else {
        let rows: Vec<ClientRowJson> = rows
            .into_iter()
            .map(|c| ClientRowJson {
                name: c.name(),
                email: c.email,
                phone: c.phone,
                client_number: c.id,
            })
            .collect();
        Json(rows).into_response()
    }
}

async fn upload(
    State(app): State<App>,
    Path(client): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let Ok(client) = client.parse::<ClientId>() else {
        return message(StatusCode::BAD_REQUEST, "clientId must be a number");
    };
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(_) => return message(StatusCode::BAD_REQUEST, "Expected multipart/form-data"),
    };
    let mut found: Option<(String, String, Bytes)> = None;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("fake server: bad multipart body: {e}");
                return message(StatusCode::BAD_REQUEST, "Malformed multipart body");
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        let Some(name) = field.file_name().map(str::to_string) else {
            return message(StatusCode::BAD_REQUEST, "The file part has no filename");
        };
        let ct = field.content_type().unwrap_or("application/octet-stream").to_string();
        let mut buf = BytesMut::new();
        loop {
            match field.chunk().await {
                Ok(Some(c)) => buf.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("fake server: upload body failed: {e}");
                    return message(StatusCode::BAD_REQUEST, "Malformed multipart body");
                }
            }
        }
        found = Some((name, ct, buf.freeze()));
        break;
    }
    let Some((name, ct, data)) = found else {
        return message(StatusCode::BAD_REQUEST, "No file part named 'file'");
    };
    match app.store.upload(client, &name, &ct, data) {
        Some(id) => match app.store.profile() {
            Profile::Contract => StatusCode::OK.into_response(),
            Profile::Alt => Json(serde_json::json!({ "Id": id })).into_response(),
        },
        None => message(StatusCode::NOT_FOUND, "Client not found"),
    }
}

async fn delete_file(State(app): State<App>, Path(id): Path<String>) -> Response {
    if app.store.delete(&id) {
        StatusCode::OK.into_response()
    } else {
        message(StatusCode::NOT_FOUND, "File not found")
    }
}
