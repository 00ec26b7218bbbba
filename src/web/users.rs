//! Users and what belongs to each: admins add, change, disable and delete
//! users and reset a password or a lost second factor (`/api/users`); every
//! user keeps their own API tokens and TOTP (`/api/account/...`). Who may
//! call which is decided by `accounts::roles`; every change is audited.

use super::auth::{Actor, Caller};
use super::{json_body, ApiResult, AppState};
use crate::accounts::{NewUser, Role, TokenRequest, UserChange};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/users", get(list).post(add))
        .route("/api/users/{name}", put(change).delete(remove))
        .route("/api/users/{name}/password", post(reset_password))
        .route("/api/users/{name}/totp", delete(reset_totp))
        .route("/api/invites", get(invites).post(create_invite))
        .route("/api/invites/{id}", delete(revoke_invite))
        .route("/api/account/tokens", get(tokens).post(create_token))
        .route("/api/account/tokens/{id}", delete(revoke_token))
        .route(
            "/api/account/totp",
            get(totp_status).post(start_totp).delete(stop_totp),
        )
        .route("/api/account/totp/confirm", post(confirm_totp))
}

async fn list(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.accounts.users()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    name: String,
    role: Role,
    password: String,
    confirm: String,
}

async fn add(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let new: Add = json_body(&body)?;
    app.accounts
        .add_user(&NewUser {
            name: new.name.trim(),
            role: new.role,
            password: &new.password,
            confirm: &new.confirm,
        })
        .await?;
    app.store.audit(
        &actor.0,
        "user.create",
        &format!("{} ({})", new.name.trim(), new.role.as_str()),
    )?;
    Ok((StatusCode::CREATED, Json(json!({"name": new.name.trim()}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    disabled: Option<bool>,
}

async fn change(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let change: Change = json_body(&body)?;
    app.accounts.change_user(
        &name,
        UserChange {
            role: change.role,
            disabled: change.disabled,
        },
    )?;
    if let Some(role) = change.role {
        app.store
            .audit(&actor.0, "user.role", &format!("{name}: {}", role.as_str()))?;
    }
    match change.disabled {
        Some(true) => app.store.audit(&actor.0, "user.disable", &name)?,
        Some(false) => app.store.audit(&actor.0, "user.enable", &name)?,
        None => {}
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult {
    app.accounts.delete_user(&name)?;
    app.store.audit(&actor.0, "user.delete", &name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
    confirm: String,
}

async fn reset_password(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let new: NewPassword = json_body(&body)?;
    app.accounts
        .reset_password(&name, &new.password, &new.confirm)
        .await?;
    app.store.audit(&actor.0, "user.password_reset", &name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset_totp(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult {
    app.accounts.reset_totp(&name)?;
    app.store.audit(&actor.0, "user.totp_reset", &name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn invites(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.accounts.invites()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvite {
    role: Role,
    /// How long the link stays valid.
    expires_hours: u32,
}

/// Answers the invite's link, this once, with what is kept of it.
async fn create_invite(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    caller: Caller,
    body: Bytes,
) -> ApiResult {
    let request: NewInvite = json_body(&body)?;
    let new = app
        .accounts
        .create_invite(&caller.user, request.role, request.expires_hours)?;
    app.store.audit(
        &actor.0,
        "invite.create",
        &format!("invite {} ({})", new.info.id, new.info.role.as_str()),
    )?;
    let mut body = json!(new.info);
    // A fragment never reaches a server's logs, nor a proxy's.
    body["link"] = json!(format!("/invite#{}", new.token));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn revoke_invite(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult {
    // An id that is not a number names no invite either.
    let revoked = app.accounts.revoke_invite(id.parse().unwrap_or(-1))?;
    app.store.audit(
        &actor.0,
        "invite.revoke",
        &format!("invite {} ({})", revoked.id, revoked.role.as_str()),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tokens(State(app): State<Arc<AppState>>, caller: Caller) -> ApiResult {
    Ok(Json(app.accounts.tokens(&caller.user)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    expires_days: Option<u32>,
}

/// Answers the token itself, this once, with what is kept of it.
async fn create_token(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    caller: Caller,
    body: Bytes,
) -> ApiResult {
    let request: NewToken = json_body(&body)?;
    let new = app.accounts.create_token(
        &caller.user,
        caller.role,
        &TokenRequest {
            name: &request.name,
            role: request.role,
            expires_days: request.expires_days,
        },
    )?;
    app.store.audit(
        &actor.0,
        "token.create",
        &format!("{} ({})", new.info.name, new.info.role.as_str()),
    )?;
    let mut body = json!(new.info);
    body["token"] = json!(new.token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn revoke_token(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    // An id that is not a number names no token either.
    let id = id.parse().unwrap_or(-1);
    let name = app.accounts.revoke_token(&caller.user, id)?;
    app.store.audit(&actor.0, "token.revoke", &name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn totp_status(State(app): State<Arc<AppState>>, caller: Caller) -> ApiResult {
    let enabled = app.accounts.totp_enabled(&caller.user)?;
    Ok(Json(json!({"enabled": enabled})).into_response())
}

/// A new secret to scan; TOTP is on only once a code confirms it.
async fn start_totp(State(app): State<Arc<AppState>>, caller: Caller) -> ApiResult {
    let host = app
        .services
        .with_current(|settings| settings.general.hostname.clone());
    Ok(Json(app.accounts.start_totp(&caller.user, &host)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Code {
    code: String,
}

async fn confirm_totp(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    caller: Caller,
    body: Bytes,
) -> ApiResult {
    let Code { code } = json_body(&body)?;
    let recovery_codes = app.accounts.confirm_totp(&caller.user, &code)?;
    app.store.audit(&actor.0, "account.totp_enable", "")?;
    Ok(Json(json!({"recovery_codes": recovery_codes})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

async fn stop_totp(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    caller: Caller,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> ApiResult {
    let Password { password } = json_body(&body)?;
    let peer = super::account::peer(connection.as_ref().map(|c| &c.0));
    match app.accounts.stop_totp(&caller.user, &password, peer).await {
        Err(crate::accounts::AccountsError::WrongPassword) => {
            return Err(super::ApiError::refused(
                "TOTP stays on",
                vec![crate::settings::Problem {
                    field: "password".into(),
                    message: "is not your password".into(),
                }],
            ))
        }
        other => other?,
    }
    app.store.audit(&actor.0, "account.totp_disable", "")?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
