//! `/api/backups/keys/{job}`: a job's encryption key, made on the box; only
//! its metadata is shown, and the key file (or its paper key, or a restic
//! job's password on paper) is handed out only to a user who gives their
//! password again. `/api/backups/restic-keys/{job}`: a restic repository's
//! keys.

use super::account::peer;
use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::accounts::AccountsError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/backups/keys/{name}", get(show).post(create))
        .route("/api/backups/keys/{name}/export", post(export))
        .route("/api/backups/keys/{name}/paperkey", post(paper_key))
        .route(
            "/api/backups/restic-keys/{name}",
            get(restic_keys).post(add_restic_key),
        )
        .route(
            "/api/backups/restic-keys/{name}/{id}",
            axum::routing::delete(remove_restic_key),
        )
        .route(
            "/api/backups/restic-keys/{name}/password",
            axum::routing::put(change_restic_password),
        )
}

async fn restic_keys(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(app.backups.keys(&name)?.restic_keys().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    /// The new restic password; never shown back.
    password: String,
}

async fn add_restic_key(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let asked: NewPassword = json_body(&body)?;
    let keys = app
        .backups
        .keys(&name)?
        .add_restic_key(&actor.0, &asked.password)
        .await?;
    Ok((StatusCode::CREATED, Json(keys)).into_response())
}

async fn remove_restic_key(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let keys = app
        .backups
        .keys(&name)?
        .remove_restic_key(&actor.0, &id)
        .await?;
    Ok(Json(keys).into_response())
}

async fn change_restic_password(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let asked: NewPassword = json_body(&body)?;
    let keys = app
        .backups
        .keys(&name)?
        .change_restic_password(&actor.0, &asked.password)
        .await?;
    Ok(Json(keys).into_response())
}

async fn show(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(app.backups.keys(&name)?.info().await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Create {
    /// Protects the key file (`--kdf scrypt`); none: the file is the key.
    passphrase: Option<String>,
}

async fn create(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let asked: Create = match body.is_empty() {
        true => Create::default(),
        false => json_body(&body)?,
    };
    let passphrase = asked.passphrase.filter(|p| !p.is_empty());
    let info = app
        .backups
        .keys(&name)?
        .create(&actor.0, passphrase.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reauthentication {
    /// The signed-in user's password, asked again.
    password: String,
}

/// Key material goes only to a user who gives their password again (wrong
/// ones count as failed logins).
async fn reauthenticate(
    app: &AppState,
    actor: &Actor,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: &Bytes,
) -> Result<(), ApiError> {
    let asked: Reauthentication = json_body(body)?;
    let from = peer(connection.as_ref().map(|c| &c.0));
    match app
        .accounts
        .reauthenticate(from, &actor.0, &asked.password)
        .await
    {
        // Not 401: the session is still good, only this password is wrong.
        Err(AccountsError::WrongPassword) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the password is wrong".into(),
            ))
        }
        other => other?,
    }
    Ok(())
}

async fn export(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    reauthenticate(&app, &actor, connection, &body).await?;
    let key = app.backups.keys(&name)?.export(&actor.0)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-encryption-key.json\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        key,
    )
        .into_response())
}

/// The printable page of a paper key.
#[derive(askama::Template)]
#[template(path = "paperkey.html")]
struct PaperKeyPage<'a> {
    paper: &'a crate::backup::PaperKey,
    qr_svg: String,
    warning: &'static str,
    /// The stylesheet written into the page, or `None` to link the box's.
    inline_css: Option<&'static str>,
}

/// How the paper key page gets its stylesheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperKeyStyle {
    /// Linked from the box: the web UI opens the page under the box's
    /// content security policy, which refuses inline styles.
    Linked,
    /// Written into the page: a file opened away from the box.
    Inline,
}

/// The printable page of `paper`, as served (`Linked`) and as `obsbox
/// backup key paperkey --output-format html` prints it (`Inline`).
pub fn paper_key_page(
    paper: &crate::backup::PaperKey,
    style: PaperKeyStyle,
) -> Result<String, String> {
    let page = PaperKeyPage {
        qr_svg: paper.qr_svg()?,
        paper,
        warning: crate::backup::KEY_WARNING,
        inline_css: (style == PaperKeyStyle::Inline)
            .then_some(include_str!("../../web/static/paperkey.css")),
    };
    askama::Template::render(&page).map_err(|e| e.to_string())
}

async fn paper_key(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    reauthenticate(&app, &actor, connection, &body).await?;
    let paper = app.backups.keys(&name)?.paper(&actor.0)?;
    let html = paper_key_page(&paper, PaperKeyStyle::Linked)
        .map_err(|e| ApiError::internal("cannot draw the paper key", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response())
}
