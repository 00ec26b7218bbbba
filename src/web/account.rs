//! First-boot setup, login (with a TOTP code for a user who enrolled),
//! logout and the user's own password.

use super::auth::{self, Actor, PageContext, SessionToken};
use super::configuration::ImportRequest;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::accounts::{Accounts, AccountsError, Credentials};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/setup", post(setup))
        .route("/api/timezones", get(timezones))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
        .route("/api/account/password", post(change_password))
        .route("/api/invite/check", post(check_invite))
        .route("/api/invite/accept", post(accept_invite))
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> ApiError {
        match e {
            AccountsError::AlreadySetUp => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AccountsError::WrongPassword => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            // The login form shows the code field on the first, and says
            // what is wrong with it on the second.
            AccountsError::CodeNeeded | AccountsError::WrongCode => ApiError {
                problems: vec![crate::settings::Problem {
                    field: "code".into(),
                    message: e.to_string(),
                }],
                ..ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
            },
            AccountsError::InviteClosed(_) => ApiError::new(StatusCode::GONE, e.to_string()),
            AccountsError::NoSuchUser(_)
            | AccountsError::NoSuchToken(_)
            | AccountsError::NoSuchInvite(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            AccountsError::UserExists(_) | AccountsError::LastAdmin(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            AccountsError::Refused(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AccountsError::RateLimited(wait) => ApiError {
                retry_after: Some(wait.as_secs().max(1)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            },
            AccountsError::Invalid(problems) => {
                ApiError::refused("refused; see what is wrong with each field", problems)
            }
            AccountsError::Store(e) => e.into(),
            other => ApiError::internal("the account store failed", other),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    password: String,
    confirm: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    timezone: String,
    /// Where the watchdog's heartbeat goes (`alerting.heartbeat.url`); empty: nowhere yet.
    #[serde(default)]
    heartbeat_url: String,
    /// Restore from a configuration file (and its secrets bundle) instead:
    /// the host name, time zone and heartbeat come from the file.
    #[serde(default)]
    restore: Option<ImportRequest>,
}

/// Sets the admin password, the host name and the time zone, all checked
/// before anything is written.
async fn setup(State(app): State<Arc<AppState>>, body: Bytes) -> ApiResult {
    let request: Setup = json_body(&body)?;
    let mut problems = Accounts::password_problems(&request.password, &request.confirm);
    if let Some(restore) = &request.restore {
        return restore_at_setup(&app, &request, restore, problems).await;
    }
    let mut general = app.services.settings()?.general;
    general.hostname = request.hostname.trim().to_string();
    general.timezone = request.timezone.trim().to_string();
    let general = serde_json::to_value(general)
        .map_err(|e| ApiError::internal("cannot encode the settings", e))?;
    if let Err(crate::store::StoreError::Invalid(found)) =
        app.store.propose("general", general.clone())
    {
        problems.extend(found);
    }
    let heartbeat_url = request.heartbeat_url.trim();
    let alerting = if heartbeat_url.is_empty() {
        None
    } else {
        let mut alerting = app.services.settings()?.alerting;
        alerting.heartbeat = Some(crate::settings::Heartbeat::new(heartbeat_url));
        let alerting = serde_json::to_value(alerting)
            .map_err(|e| ApiError::internal("cannot encode the settings", e))?;
        if let Err(crate::store::StoreError::Invalid(found)) =
            app.store.propose("alerting", alerting.clone())
        {
            problems.extend(found);
        }
        Some(alerting)
    };
    if !problems.is_empty() {
        return Err(ApiError::refused("setup refused", problems));
    }
    app.accounts
        .create_admin(&request.password, &request.confirm)
        .await?;
    app.services.update("general", general, "setup").await?;
    if let Some(alerting) = alerting {
        app.services.update("alerting", alerting, "setup").await?;
    }
    app.store
        .audit("setup", "account.create", crate::accounts::ADMIN)?;
    Ok((StatusCode::CREATED, Json(json!({"next": "/login"}))).into_response())
}

/// First boot from a configuration file: the admin's password and the whole
/// file are checked before anything is written (every problem together);
/// then the account is made and the file imported as `obsbox settings
/// import` would.
async fn restore_at_setup(
    app: &AppState,
    request: &Setup,
    restore: &ImportRequest,
    mut problems: Vec<crate::settings::Problem>,
) -> ApiResult {
    if restore.dry_run {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "setup has no dry run; use POST /api/settings/import after setup".into(),
        ));
    }
    if let Err(found) = crate::config::parse(&restore.config, &app.store.reserved()) {
        problems.extend(found);
    }
    if !problems.is_empty() {
        return Err(ApiError::refused("setup refused", problems));
    }
    // A wrong passphrase is refused before the account exists.
    if let Some(bundle) = restore.bundle()? {
        crate::config::bundle::open(&bundle, restore.passphrase.as_deref().unwrap_or_default())
            .map_err(crate::config::ConfigError::from)?;
    }
    app.accounts
        .create_admin(&request.password, &request.confirm)
        .await?;
    app.store
        .audit("setup", "account.create", crate::accounts::ADMIN)?;
    let plan = restore.run(app, "setup").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"next": "/login", "plan": plan})),
    )
        .into_response())
}

async fn timezones() -> ApiResult {
    let mut zones: Vec<String> = jiff::tz::db()
        .available()
        .map(|name| name.as_str().to_string())
        .collect();
    zones.sort();
    Ok(Json(zones).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    /// The first admin's name when none is given (scripts written for the
    /// box of one user keep working).
    #[serde(default = "first_admin")]
    user: String,
    password: String,
    /// The TOTP code or a recovery code, for a user who enrolled.
    #[serde(default)]
    code: Option<String>,
}

fn first_admin() -> String {
    crate::accounts::ADMIN.to_string()
}

/// The client's address, for counting failed password checks. Requests
/// that did not come through a socket (in-process tests) count as loopback.
pub(super) fn peer(connection: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    connection.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| info.0.ip())
}

/// Refused logins from one address within this long share one audit entry.
const REFUSALS_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

async fn login(State(app): State<Arc<AppState>>, req: Request) -> ApiResult {
    let peer = peer(req.extensions().get());
    let secure = auth::served_over_tls(&req);
    let body = axum::body::to_bytes(req.into_body(), 64 << 10)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
    let login: Login = json_body(&body)?;
    let credentials = Credentials {
        user: login.user.trim(),
        password: &login.password,
        code: login.code.as_deref(),
        peer,
    };
    let new = match app.accounts.login(&credentials).await {
        Ok(new) => new,
        // The first step of a login with TOTP, not a failure.
        Err(e @ AccountsError::CodeNeeded) => return Err(e.into()),
        Err(e) => {
            app.store.audit_repeated(
                &crate::store::Repeated {
                    actor: "anonymous",
                    action: "account.login_failed",
                    subject: &format!("from {peer}"),
                    reason: &e.to_string(),
                },
                REFUSALS_WINDOW,
            )?;
            return Err(e.into());
        }
    };
    app.store
        .audit(&new.session.user, "account.login", &format!("from {peer}"))?;
    let mut response =
        Json(json!({"user": new.session.user, "role": new.session.role, "csrf": new.session.csrf}))
            .into_response();
    auth::start_session(&mut response, &new.token, secure);
    Ok(response)
}

async fn logout(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    token: SessionToken,
    req: Request,
) -> ApiResult {
    app.accounts.logout(&token.0)?;
    app.store.audit(&actor.0, "account.logout", "")?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    auth::end_session(&mut response, auth::served_over_tls(&req));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

async fn session(page: PageContext) -> ApiResult {
    Ok(Json(json!({"user": page.user, "role": page.role, "csrf": page.csrf})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    password: String,
    confirm: String,
}

async fn change_password(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    token: SessionToken,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> ApiResult {
    let change: PasswordChange = json_body(&body)?;
    app.accounts
        .change_password(&crate::accounts::PasswordChange {
            user: &actor.0,
            current: &change.current,
            password: &change.password,
            confirm: &change.confirm,
            keep: &token.0,
            peer: peer(connection.as_ref().map(|c| &c.0)),
        })
        .await?;
    app.store.audit(&actor.0, "account.password", "")?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteLink {
    token: String,
}

/// What an invite link offers (its role, until when), or why it is closed
/// (`410`), before the invitee types anything.
async fn check_invite(State(app): State<Arc<AppState>>, body: Bytes) -> ApiResult {
    let InviteLink { token } = json_body(&body)?;
    let invite = app.accounts.open_invite(token.trim())?;
    Ok(Json(json!({"role": invite.role, "expires_at": invite.expires_at})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptInvite {
    token: String,
    name: String,
    password: String,
    confirm: String,
}

/// Makes the invitee's account and signs it in, as a login does.
async fn accept_invite(State(app): State<Arc<AppState>>, req: Request) -> ApiResult {
    let secure = auth::served_over_tls(&req);
    let body = axum::body::to_bytes(req.into_body(), 64 << 10)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
    let request: AcceptInvite = json_body(&body)?;
    let (invite, new) = app
        .accounts
        .accept_invite(&crate::accounts::Acceptance {
            token: request.token.trim(),
            name: request.name.trim(),
            password: &request.password,
            confirm: &request.confirm,
        })
        .await?;
    app.store.audit(
        &new.session.user,
        "invite.accept",
        &format!("invite {} ({})", invite.id, invite.role.as_str()),
    )?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"user": new.session.user, "role": new.session.role, "csrf": new.session.csrf})),
    )
        .into_response();
    auth::start_session(&mut response, &new.token, secure);
    Ok(response)
}
