//! The IntakeQ endpoints other than the download: folder, file and client listings,
//! the multipart upload and the delete, answered as the API contract (or the store's
//! [`Profile`]) says.

use std::collections::HashMap;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use serde::Serialize;

use super::{file_json, message, param, App};
use crate::fake::profile::Profile;
use crate::fake::store::{StoredClient, UnknownClientFiles};
use crate::remote::{ClientId, CLIENT_PAGE_SIZE};

pub(super) async fn list_folders(State(app): State<App>) -> Response {
    let folders: Vec<serde_json::Value> = app
        .store
        .folders()
        .into_iter()
        .map(|(id, name)| serde_json::json!({ "Id": id, "Name": name }))
        .collect();
    Json(folders).into_response()
}

pub(super) async fn list_files(
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

pub(super) async fn list_clients(
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

pub(super) async fn upload(
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
        let (start, cap) = (
            tokio::time::Instant::now(),
            app.store.lock().upload_bandwidth.filter(|b| *b > 0),
        );
        loop {
            if let Some(bw) = cap {
                // Read no faster than the cap: the client's sending slows to it too.
                let due = start + std::time::Duration::from_secs_f64(buf.len() as f64 / bw as f64);
                tokio::time::sleep_until(due).await;
            }
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

pub(super) async fn delete_file(State(app): State<App>, Path(id): Path<String>) -> Response {
    if app.store.delete(&id) {
        StatusCode::OK.into_response()
    } else {
        message(StatusCode::NOT_FOUND, "File not found")
    }
}
