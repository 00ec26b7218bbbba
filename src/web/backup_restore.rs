//! `/api/backups/...` for restores: a job's snapshots, a snapshot's files,
//! restoring onto the box, downloading as a tar.

use super::auth::Actor;
use super::{json_body, ApiError, ApiQuery, ApiResult, AppState};
use crate::backup::RestoreRequest;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::io::Read;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/backups/jobs/{name}/snapshots", get(snapshots))
        .route("/api/backups/jobs/{name}/files", get(files))
        .route("/api/backups/jobs/{name}/restore", post(restore))
        .route("/api/backups/jobs/{name}/download", get(download))
        .route("/api/backups/restores", get(restores))
        .route("/api/backups/restores/{id}", get(restore_status))
}

async fn snapshots(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(app.backups.snapshots(&name).await?).into_response())
}

#[derive(Deserialize)]
struct FilesQuery {
    snapshot: String,
    /// A directory (`/` when left out).
    path: Option<String>,
}

async fn files(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> ApiResult {
    let path = q.path.as_deref().unwrap_or("/");
    Ok(Json(app.backups.files(&name, &q.snapshot, path).await?).into_response())
}

async fn restore(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: RestoreRequest = json_body(&body)?;
    let status = app.backups.restore(&name, request, &actor.0).await?;
    app.store.audit(
        &actor.0,
        "backup.restore",
        &format!(
            "{name} {} {} to {}",
            status.snapshot,
            status.paths.join(" "),
            status.target
        ),
    )?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

async fn restores(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.backups.restores()?).into_response())
}

async fn restore_status(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no restore {id}")))?;
    Ok(Json(app.backups.restore_status(id)?).into_response())
}

#[derive(Deserialize)]
struct DownloadQuery {
    snapshot: String,
    path: String,
}

/// Streams the tar as it is made; a download cut short stops its making.
async fn download(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> ApiResult {
    let stream = app
        .backups
        .download(&name, &q.snapshot, &q.path, &actor.0)
        .await?;
    app.store.audit(
        &actor.0,
        "backup.download",
        &format!("{name} {} {}", q.snapshot, q.path),
    )?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut stream = stream;
        loop {
            let mut chunk = vec![0; 64 << 10];
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk.into())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let base = q
        .path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(&name);
    let file: String = base
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
            _ => '_',
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.tar\""),
            ),
        ],
        body,
    )
        .into_response())
}
