//! The admin API under `/_admin/` (uncounted, loopback only, with the server's random
//! admin token in `X-Admin-Token`): request counts, the
//! fault plan, bandwidth, request budget, profile, and test data, for the tests and
//! the benchmark script.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{file_json, message, param, App, Peer};
use crate::fake::demo::pseudo_random_bytes;
use crate::fake::profile::Profile;
use crate::fake::store::{Endpoint, Fault, UnknownClientFiles};
use crate::remote::ClientId;

pub(super) async fn admin_gate(State(app): State<App>, req: Request, next: Next) -> Response {
    let loopback = req.extensions().get::<Peer>().is_some_and(|p| p.0.ip().is_loopback());
    if !loopback {
        return message(StatusCode::FORBIDDEN, "admin API is loopback only");
    }
    let sent = req
        .headers()
        .get(super::ADMIN_TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_token(sent, app.admin_token.as_bytes()) {
        return message(
            StatusCode::UNAUTHORIZED,
            "admin API needs the token the server printed at start, in X-Admin-Token",
        );
    }
    next.run(req).await
}

/// Compare tokens in time that does not depend on where they differ.
fn same_token(sent: &[u8], token: &[u8]) -> bool {
    sent.len() == token.len() && sent.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

fn bad_json(e: JsonRejection) -> Response {
    message(StatusCode::BAD_REQUEST, &e.body_text())
}

pub(super) async fn admin_counts(State(app): State<App>) -> Response {
    let s = app.store.lock();
    let mut out = serde_json::Map::new();
    let mut total = 0;
    for e in Endpoint::ALL {
        let n = s.counts.get(&e).copied().unwrap_or(0);
        total += n;
        out.insert(e.name().into(), n.into());
    }
    out.insert("total".into(), total.into());
    Json(serde_json::Value::Object(out)).into_response()
}

/// The counted requests since the last reset, in arrival order:
/// `[{"endpoint": "upload", "client": "12"}, ...]` (`client` null when none is named).
pub(super) async fn admin_requests(State(app): State<App>) -> Response {
    let s = app.store.lock();
    let rows: Vec<serde_json::Value> = s
        .requests
        .iter()
        .map(|(e, c)| serde_json::json!({ "endpoint": e.name(), "client": c }))
        .collect();
    Json(serde_json::Value::Array(rows)).into_response()
}

pub(super) async fn admin_reset_counts(State(app): State<App>) -> StatusCode {
    app.store.reset_counts();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(super) struct FaultReq {
    endpoint: Option<String>,
    times: Option<u32>,
    status: Option<u16>,
    retry_after: Option<u64>,
    delay_ms: Option<u64>,
    #[serde(default)]
    drop: bool,
    #[serde(default)]
    drop_after_effect: bool,
    cut_body: Option<u64>,
    short_body: Option<u64>,
    #[serde(default)]
    hang: bool,
}

pub(super) async fn admin_fault(State(app): State<App>, body: Result<Json<FaultReq>, JsonRejection>) -> Response {
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e),
    };
    let endpoint = match r.endpoint.as_deref() {
        None => None,
        Some(name) => match Endpoint::from_name(name) {
            Some(e) => Some(e),
            None => return message(StatusCode::BAD_REQUEST, "unknown endpoint"),
        },
    };
    let mut kinds = Vec::new();
    if let Some(status) = r.status {
        kinds.push(Fault::Status {
            status,
            retry_after: r.retry_after,
        });
    }
    if let Some(ms) = r.delay_ms {
        kinds.push(Fault::Delay(Duration::from_millis(ms)));
    }
    if r.drop {
        kinds.push(Fault::Drop);
    }
    if r.drop_after_effect {
        kinds.push(Fault::DropAfterEffect);
    }
    if let Some(bytes) = r.cut_body {
        kinds.push(Fault::CutBody { bytes });
    }
    if let Some(bytes) = r.short_body {
        kinds.push(Fault::ShortBody { bytes });
    }
    if r.hang {
        kinds.push(Fault::Hang);
    }
    if kinds.len() != 1 || (r.retry_after.is_some() && r.status.is_none()) {
        return message(
            StatusCode::BAD_REQUEST,
            "give exactly one of status, delay_ms, drop, drop_after_effect, cut_body, \
             short_body, hang (retry_after only with status)",
        );
    }
    if let Some(fault) = kinds.pop() {
        app.store.push_fault(endpoint, fault, r.times);
    }
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn admin_clear_faults(State(app): State<App>) -> StatusCode {
    app.store.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(super) struct BandwidthReq {
    /// Downloads; `null` or absent: no cap.
    bytes_per_sec: Option<u64>,
    /// Uploads; `null` or absent: no cap.
    #[serde(default)]
    upload_bytes_per_sec: Option<u64>,
}

pub(super) async fn admin_bandwidth(
    State(app): State<App>,
    body: Result<Json<BandwidthReq>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(r)) => {
            app.store.set_bandwidth(r.bytes_per_sec);
            app.store.set_upload_bandwidth(r.upload_bytes_per_sec);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

#[derive(Deserialize)]
pub(super) struct BudgetReq {
    requests: Option<u64>,
    retry_after: Option<u64>,
}

pub(super) async fn admin_budget(State(app): State<App>, body: Result<Json<BudgetReq>, JsonRejection>) -> Response {
    match body {
        Ok(Json(r)) => {
            app.store.set_request_budget(r.requests, r.retry_after);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

#[derive(Deserialize)]
pub(super) struct ProfileReq {
    /// `"contract"` or `"alt"`.
    profile: String,
}

pub(super) async fn admin_profile(State(app): State<App>, body: Result<Json<ProfileReq>, JsonRejection>) -> Response {
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e),
    };
    match Profile::from_name(&r.profile) {
        Some(p) => {
            app.store.set_profile(p);
            StatusCode::NO_CONTENT.into_response()
        }
        None => message(StatusCode::BAD_REQUEST, "profile is \"contract\" or \"alt\""),
    }
}

#[derive(Deserialize)]
pub(super) struct UnknownClientReq {
    /// `"empty"` or `"not_found"`.
    mode: String,
}

pub(super) async fn admin_unknown_client(
    State(app): State<App>,
    body: Result<Json<UnknownClientReq>, JsonRejection>,
) -> Response {
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e),
    };
    let mode = match r.mode.as_str() {
        "empty" => UnknownClientFiles::EmptyList,
        "not_found" => UnknownClientFiles::NotFound,
        _ => return message(StatusCode::BAD_REQUEST, "mode is \"empty\" or \"not_found\""),
    };
    app.store.lock().unknown_client_files = mode;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub(super) struct ClientReq {
    id: ClientId,
    first_name: String,
    last_name: String,
}

pub(super) async fn admin_client(State(app): State<App>, body: Result<Json<ClientReq>, JsonRejection>) -> Response {
    match body {
        Ok(Json(r)) => {
            app.store.add_client(r.id, &r.first_name, &r.last_name);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

#[derive(Deserialize)]
pub(super) struct BulkReq {
    client_id: ClientId,
    n: usize,
    size: usize,
}

pub(super) async fn admin_bulk_client(State(app): State<App>, body: Result<Json<BulkReq>, JsonRejection>) -> Response {
    match body {
        Ok(Json(r)) => {
            crate::fake::demo::add_bulk_client(&app.store, r.client_id, r.n, r.size);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

#[derive(Deserialize)]
pub(super) struct AddFileReq {
    client_id: ClientId,
    name: String,
    folder_id: Option<String>,
    size: usize,
    /// Seed for the contents; defaults to one derived from the name and size.
    seed: Option<u64>,
}

pub(super) async fn admin_add_file(State(app): State<App>, body: Result<Json<AddFileReq>, JsonRejection>) -> Response {
    let r = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e),
    };
    if !app.store.has_client(r.client_id) {
        return message(StatusCode::NOT_FOUND, "Client not found");
    }
    let seed = r.seed.unwrap_or_else(|| {
        // FNV-1a over the name, mixed with the size.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in r.name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h ^ r.size as u64
    });
    let id = app.store.add_file(
        r.client_id,
        &r.name,
        r.folder_id.as_deref(),
        pseudo_random_bytes(seed, r.size),
    );
    Json(serde_json::json!({ "Id": id })).into_response()
}

pub(super) async fn admin_file_bytes(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.store.file(&id) {
        Some(f) => {
            let ct = HeaderValue::from_str(&f.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            ([(header::CONTENT_TYPE, ct)], Body::from(f.data)).into_response()
        }
        None => message(StatusCode::NOT_FOUND, "File not found"),
    }
}

pub(super) async fn admin_files(
    State(app): State<App>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let client = q
        .ok()
        .and_then(|Query(q)| param(&q, "clientId").and_then(|v| v.parse::<ClientId>().ok()));
    let Some(client) = client else {
        return message(StatusCode::BAD_REQUEST, "clientId is required");
    };
    let files = app.store.files_of(client);
    Json(files.iter().map(file_json).collect::<Vec<_>>()).into_response()
}
