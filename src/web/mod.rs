//! The HTTP face of obsbox: `/healthz` and `/metrics` for probes and the local
//! Prometheus, the JSON API under `/api/`, the admin UI's pages, and
//! Grafana, Prometheus and Alertmanager under `/grafana/`, `/prometheus/`
//! and `/alertmanager/`. Handlers only translate between HTTP and the
//! modules; they hold no logic of their own.

mod account;
mod alerts;
mod attention;
pub mod auth;
mod backup_keys;
pub(crate) use backup_keys::{paper_key_page, PaperKeyStyle};
mod backup_restore;
mod backups;
mod charts;
mod configuration;
mod dashboard_imports;
mod disks;
mod docs;
mod exporters;
mod log_sources;
mod logs;
mod manual;
mod metrics;
mod overview;
mod pages;
mod power;
mod proxy;
pub mod recovery;
mod responder;
mod runbooks;
pub mod serve;
mod setup_restore;
mod system;
pub mod tls;
mod update;
mod upstream;
mod users;

use crate::services::{Services, ServicesError};
use crate::store::{Store, StoreError};
use crate::supervisor::{Control, Supervisor, SupervisorError};
use auth::Actor;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

/// What the handlers reach.
pub struct AppState {
    pub accounts: crate::accounts::Accounts,
    pub alerts: Arc<crate::alerts::Alerts>,
    pub drills: Arc<crate::alerts::drills::Drills>,
    /// The monthly reliability report, and its mailing.
    pub reports: Arc<crate::report::monthly::Reports>,
    pub backups: crate::backup::Backups,
    pub power: crate::power::Power,
    pub disks: crate::disks::Disks,
    pub services: Arc<Services>,
    pub supervisor: Supervisor,
    pub store: Store,
    /// When obsbox started, for its uptime.
    pub started: std::time::Instant,
    pub diagnostics: crate::diagnostics::Diagnostics,
    /// Where handlers ask for a reboot or a factory reset.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// The HTTPS certificate; `None` when obsbox serves plain HTTP only.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Firmware updates (off on a machine that is not an obsbox image).
    pub ota: crate::ota::Ota,
    /// Log shipping to Loki, for its counters.
    pub shipper: crate::logs::Shipper,
    /// Log forwarding to central Lokis, for their counters.
    pub forwarders: crate::logs::Forwarders,
    /// Logs coming in from the LAN (syslog, Loki push).
    pub logs_in: crate::logs::Ingest,
    /// Dashboards imported from other Grafanas.
    pub dashboard_imports: crate::grafana_import::Imports,
}

pub fn router(state: Arc<AppState>) -> Router {
    let own = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/services", get(services))
        .route("/api/services/{name}/logs", get(logs))
        .route("/api/services/{name}/logs/stream", get(log_stream))
        .route("/api/services/{name}/config", get(config))
        .route("/api/services/{name}/{action}", post(control))
        .route("/api/settings", get(settings))
        .route("/api/settings-defaults", get(settings_defaults))
        .route(
            "/api/settings/{section}",
            get(settings_section).put(update_settings),
        )
        .route("/api/audit", get(audit))
        .merge(attention::routes())
        .merge(configuration::routes())
        .merge(dashboard_imports::routes())
        .merge(backups::routes())
        .merge(backup_keys::routes())
        .merge(backup_restore::routes())
        .merge(charts::routes())
        .merge(disks::routes())
        .merge(logs::routes())
        .merge(log_sources::routes())
        .merge(alerts::routes())
        .merge(runbooks::routes())
        .merge(docs::routes())
        .merge(exporters::routes())
        .merge(responder::routes())
        .merge(account::routes())
        .merge(setup_restore::routes())
        .merge(overview::routes())
        .merge(power::routes())
        .merge(pages::routes())
        .merge(system::routes())
        .merge(tls::routes())
        .merge(users::routes())
        .merge(upstream::routes());
    Router::new()
        // The proxy has its own timeouts, and the children's pages their own headers.
        .merge(with_security_headers(own.layer(
            TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT),
        )))
        // Uploads and downloads of updates take as long as they take.
        .merge(with_security_headers(update::routes()))
        .merge(with_proxied_headers(proxy::routes()))
        // Unknown paths: a page for people, under the same headers as the others.
        .merge(with_security_headers(
            Router::new().fallback(pages::not_found),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            strict_transport_security,
        ))
        .layer(RequestBodyTimeoutLayer::new(serve::BODY_IDLE_TIMEOUT))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Longest a handler may take to start its response (streams may then run on).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Over HTTPS with a certificate browsers can check, browsers are told to
/// use nothing else for a year. Never with a self-signed one: the box would
/// be unreachable in every browser that once saw the header.
async fn strict_transport_security(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let pinned = auth::served_over_tls(&request)
        && app.tls.as_ref().is_some_and(|tls| !tls.is_self_signed());
    let mut response = next.run(request).await;
    if pinned {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Headers for the children's pages, where they send none of their own:
/// they may be framed by this site only (Grafana's panels in its own
/// dashboards), and their scripts and styles load from this site only; inline
/// ones and `eval` stay allowed because Grafana's and Prometheus's pages
/// need them. No external images, fonts or connections (Grafana's avatars
/// and news feed stay blank).
fn with_proxied_headers(routes: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    let header = |name, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    routes
        .layer(header(header::CONTENT_SECURITY_POLICY, PROXIED_CSP))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "SAMEORIGIN"))
        .layer(header(header::REFERRER_POLICY, "same-origin"))
}

/// The policy for the children's pages (see [`with_proxied_headers`]).
const PROXIED_CSP: &str = "default-src 'self'; \
    script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
    worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; \
    frame-ancestors 'self'";

/// Headers for obsbox's own pages and API: a strict policy (no inline
/// scripts, no framing, no caching of what is behind the session).
const OWN_HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "same-origin"),
    (header::CACHE_CONTROL, "no-store"),
];

/// [`OWN_HEADERS`] (and JSON errors) on every response of `routes`.
fn with_security_headers(routes: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    OWN_HEADERS.into_iter().fold(
        routes.layer(middleware::map_response(json_errors)),
        |routes, (name, value)| {
            routes.layer(SetResponseHeaderLayer::if_not_present(
                name,
                HeaderValue::from_static(value),
            ))
        },
    )
}

/// [`OWN_HEADERS`] on a page the guard answers itself, before any route's
/// layers (a page refused to the user's role).
fn add_own_headers(mut response: Response) -> Response {
    for (name, value) in OWN_HEADERS {
        response
            .headers_mut()
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Errors axum or tower answer by themselves (a body too large, a timeout)
/// come as plain text or empty: every error obsbox sends is JSON, or an HTML
/// page made for a person (an unknown runbook or manual page), left as it is.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let made_to_be_read = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || made_to_be_read {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase()
    } else {
        text
    };
    let mut json = ApiError::new(status, message).into_response();
    // Headers that go with the status (a 405's `Allow`) stay.
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    json.headers_mut().extend(parts.headers);
    json
}

/// An error as the API shows it: a status and a clear message; internals
/// are logged, not sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<crate::settings::Problem>,
    /// Seconds before trying again is worth it (429s).
    retry_after: Option<u64>,
    /// What a write lost to another (409s): the section as it is now.
    current: Option<Box<crate::store::Versioned>>,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> ApiError {
        ApiError {
            status,
            message,
            problems: Vec::new(),
            retry_after: None,
            current: None,
        }
    }

    /// Input refused, with what is wrong field by field.
    fn refused(message: &str, problems: Vec<crate::settings::Problem>) -> ApiError {
        ApiError {
            problems,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message.into())
        }
    }

    fn internal(what: &str, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what}; see the obsbox log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        if let Some(current) = &self.current {
            body["current"] = current.value.clone();
            body["version"] = json!(current.version);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(current) = &self.current {
            if let Ok(etag) = HeaderValue::from_str(&current.etag()) {
                response.headers_mut().insert(header::ETAG, etag);
            }
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> ApiError {
        match e {
            SupervisorError::NoSuchChild(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            SupervisorError::CannotRun { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            SupervisorError::Gone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "obsbox is shutting down".into(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::UnknownSection(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Malformed { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            StoreError::Invalid(problems) => ApiError::refused("settings refused", problems),
            StoreError::Stale { section, current } => ApiError {
                current: Some(current),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "'{section}' was changed by someone else since it was read; \
                         nothing was saved. Here is what it is now"
                    ),
                )
            },
            StoreError::Full(_) => {
                tracing::error!(error = %e, "a write failed: the disk is full");
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
            }
            StoreError::Busy(_) => {
                tracing::warn!(error = %e, "a write waited for the database lock in vain");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
            }
            other => ApiError::internal("the settings store failed", other),
        }
    }
}

impl From<ServicesError> for ApiError {
    fn from(e: ServicesError) -> ApiError {
        match e {
            ServicesError::Store(e) => e.into(),
            ServicesError::Supervisor(e) => e.into(),
            ServicesError::Rejected { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            ServicesError::Io { ref source, .. } if crate::store::is_disk_full(source) => {
                StoreError::Full(e.to_string()).into()
            }
            other => ApiError::internal("applying the settings failed", other),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// A PUT names what it replaces twice, in the path and in the body; they must agree.
fn same_name(what: &str, in_body: &str, in_path: &str) -> Result<(), ApiError> {
    if in_body == in_path {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("the {what} in the body is '{in_body}', not '{in_path}'"),
    ))
}

/// Query parameters, or a JSON 400 saying which one does not parse.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<ApiQuery<T>, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A request body as the handler's type, or a 422 saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body is not what this takes: {e}"),
        )
    })
}

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n")
}

async fn services(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.supervisor.status().await?).into_response())
}

#[derive(Deserialize)]
struct TailQuery {
    lines: Option<usize>,
}

async fn logs(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> ApiResult {
    let lines = q.lines.unwrap_or(100).min(10_000);
    match app.supervisor.tail(&name, lines).await? {
        Some(lines) => Ok(Json(json!({"child": name, "lines": lines})).into_response()),
        None => Err(SupervisorError::NoSuchChild(name).into()),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    filter: String,
}

/// How often a live tail looks for new lines.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Lines of history a live tail starts with.
const TAIL_BACKLOG: usize = 100;

/// A child's output as server-sent events: the last lines kept, then each new
/// line as it comes, only those containing `filter` (ignoring case).
async fn log_stream(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult {
    if q.filter.len() > 200 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a filter is at most 200 characters".into(),
        ));
    }
    let Some(reader) = app.supervisor.log(&name).await? else {
        return Err(SupervisorError::NoSuchChild(name).into());
    };
    let filter = q.filter.to_lowercase();
    let (backlog, cursor) = reader.since(0);
    let mut first: Vec<String> = backlog
        .into_iter()
        .filter(|l| l.to_lowercase().contains(&filter))
        .collect();
    first.drain(..first.len().saturating_sub(TAIL_BACKLOG));
    let lines = futures_util::stream::unfold(
        (reader, cursor, std::collections::VecDeque::from(first)),
        move |(reader, mut cursor, mut pending)| {
            let filter = filter.clone();
            async move {
                while pending.is_empty() {
                    tokio::time::sleep(TAIL_POLL).await;
                    let (lines, next) = reader.since(cursor);
                    cursor = next;
                    pending.extend(
                        lines
                            .into_iter()
                            .filter(|l| l.to_lowercase().contains(&filter)),
                    );
                }
                let line = pending.pop_front()?;
                let event = Event::default().data(line.replace('\r', ""));
                Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (reader, cursor, pending),
                ))
            }
        },
    );
    Ok(Sse::new(lines)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn config(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    // Only the built-in children have configs, rendered when enabled.
    let built_in = app
        .services
        .with_current(|settings| settings.services.by_name().iter().any(|(n, _)| *n == name));
    if !built_in {
        return Err(SupervisorError::NoSuchChild(name).into());
    }
    let files: Vec<_> = app
        .services
        .rendered(&name)
        .into_iter()
        .map(|(path, contents)| json!({"path": path, "contents": contents}))
        .collect();
    Ok(Json(json!({"child": name, "files": files})).into_response())
}

async fn control(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult {
    let action: Control = serde_json::from_value(json!(action)).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no action '{action}'; use start, stop or restart"),
        )
    })?;
    app.supervisor.control(&name, action).await?;
    app.store
        .audit(&actor.0, &format!("service.{}", action.as_str()), &name)?;
    Ok(Json(json!({"child": name, "done": action.as_str()})).into_response())
}

async fn settings(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.services.settings()?).into_response())
}

/// Every setting's default, for the pages that show them next to the fields.
async fn settings_defaults() -> ApiResult {
    Ok(Json(crate::settings::Settings::default()).into_response())
}

/// A section with its version as `ETag`, for a later `If-Match`.
fn with_etag(response: impl IntoResponse, section: &crate::store::Versioned) -> Response {
    let mut response = response.into_response();
    if let Ok(etag) = HeaderValue::from_str(&section.etag()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

async fn settings_section(
    State(app): State<Arc<AppState>>,
    Path(section): Path<String>,
) -> ApiResult {
    let section = app.store.section(&section)?;
    Ok(with_etag(Json(&section.value), &section))
}

/// The change a request makes: by whom, and over which version of the
/// section it read (its `If-Match`, if any).
fn writer<'a>(
    actor: &'a Actor,
    headers: &'a axum::http::HeaderMap,
) -> Result<crate::services::Writer<'a>, ApiError> {
    let if_match = match headers.get(header::IF_MATCH).map(|v| v.to_str()) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "If-Match is not text".into(),
            ))
        }
        None => None,
    };
    Ok(crate::services::Writer {
        actor: &actor.0,
        if_match,
    })
}

/// Replaces a section. With `If-Match`, only if nobody changed it since
/// (else `409` with the section as it is now); without, unconditionally.
async fn update_settings(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(section): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult {
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let settings = app
        .services
        .write(&section, value, writer(&actor, &headers)?)
        .await?;
    let now = crate::store::versioned(&settings, &section)?;
    Ok(with_etag(Json(settings), &now))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit(State(app): State<Arc<AppState>>, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult {
    Ok(Json(app.store.audit_log(q.limit.unwrap_or(100).min(1000))?).into_response())
}
