//! `/api/alerts` and `/api/silences`: the alert history and acknowledgements,
//! test alerts, receivers, silences, and the two endpoints Alertmanager
//! posts to (the history and the Matrix relay), which take its bearer token
//! instead of a login.

use super::auth::Actor;
use super::{json_body, same_name, writer, ApiError, ApiQuery, ApiResult, AppState};
use crate::alerts::{AlertsError, Notification, SilenceRequest};
use crate::settings::Receiver;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/alerts", get(history))
        .route("/api/alerts/notify", post(notify))
        .route("/api/alerts/relay/{receiver}", post(relay))
        .route("/api/alerts/test", post(test))
        .route(
            "/api/alerts/receivers",
            get(receivers).post(create_receiver),
        )
        .route(
            "/api/alerts/receivers/{name}",
            put(replace_receiver).delete(delete_receiver),
        )
        .route("/api/alerts/{id}/ack", post(acknowledge))
        .route("/api/alerts/{id}/mark", post(mark))
        .route("/api/alerting/drills", get(drills).post(drill))
        .route("/api/silences", get(silences).post(silence))
        .route("/api/silences/{id}", delete(expire))
}

impl From<AlertsError> for ApiError {
    fn from(e: AlertsError) -> ApiError {
        match e {
            AlertsError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            AlertsError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            AlertsError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AlertsError::Alertmanager(_) | AlertsError::Relay(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            AlertsError::Store(e) => e.into(),
            AlertsError::Services(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    status: Option<String>,
    limit: Option<u32>,
}

async fn history(
    State(app): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult {
    let alerts = app
        .alerts
        .history(q.status.as_deref(), q.limit.unwrap_or(100))?;
    let stats = app.alerts.stats()?;
    let precision = json!({
        "target": crate::alerts::precision::TARGET,
        "rules": app.alerts.precision()?,
    });
    Ok(Json(json!({"stats": stats, "alerts": alerts, "precision": precision})).into_response())
}

fn from_alertmanager(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if app.alerts.authorized(given) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this endpoint takes Alertmanager's bearer token".into(),
        ))
    }
}

async fn notify(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    from_alertmanager(&app, &headers)?;
    let notification: Notification = json_body(&body)?;
    let alerts = app.alerts.notify(&notification)?;
    Ok(Json(json!({"recorded": alerts})).into_response())
}

async fn relay(
    State(app): State<Arc<AppState>>,
    Path(receiver): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    from_alertmanager(&app, &headers)?;
    let notification: Notification = json_body(&body)?;
    app.alerts.relay(&receiver, notification).await?;
    Ok(Json(json!({"relayed": receiver})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    receiver: String,
}

async fn test(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: TestRequest = json_body(&body)?;
    let delivery = app.alerts.send_test(&request.receiver, &actor.0).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "sent": crate::alerts::TEST_ALERT,
            "receiver": request.receiver,
            "delivery": delivery,
        })),
    )
        .into_response())
}

async fn acknowledge(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no alert '{id}'")))?;
    Ok(Json(app.alerts.acknowledge(id, &actor.0).await?).into_response())
}

async fn drills(
    State(app): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult {
    let (routes, drills) = app.drills.overview(q.limit.unwrap_or(50))?;
    Ok(Json(json!({"routes": routes, "drills": drills})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillRequest {
    /// `<severity>:<service>:<receiver>`, as `GET` lists the routes.
    route: String,
}

async fn drill(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: DrillRequest = json_body(&body)?;
    app.drills.run_now(&request.route, &actor.0).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": request.route}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    /// `actionable` or `noise`.
    mark: String,
}

async fn mark(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no alert '{id}'")))?;
    let request: MarkRequest = json_body(&body)?;
    Ok(Json(app.alerts.mark(id, &request.mark, &actor.0)?).into_response())
}

async fn receivers(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.alerts.receivers().await?).into_response())
}

/// A receiver with its secret, which is stored apart and never shown back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiverRequest {
    receiver: Receiver,
    /// Unset keeps the stored secret; "" removes it.
    #[serde(default)]
    secret: Option<String>,
}

async fn create_receiver(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request: ReceiverRequest = json_body(&body)?;
    let name = request.receiver.name.clone();
    let writer = writer(&actor, &headers)?;
    app.alerts
        .save_receiver(request.receiver, request.secret, false, writer)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"created": name}))).into_response())
}

async fn replace_receiver(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request: ReceiverRequest = json_body(&body)?;
    same_name("receiver", &request.receiver.name, &name)?;
    let writer = writer(&actor, &headers)?;
    app.alerts
        .save_receiver(request.receiver, request.secret, true, writer)
        .await?;
    Ok(Json(json!({"replaced": name})).into_response())
}

async fn delete_receiver(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    app.alerts
        .delete_receiver(&name, writer(&actor, &headers)?)
        .await?;
    Ok(Json(json!({"deleted": name})).into_response())
}

async fn silences(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.alerts.silences().await?).into_response())
}

async fn silence(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: SilenceRequest = json_body(&body)?;
    let id = app.alerts.silence(request, &actor.0).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn expire(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult {
    app.alerts.expire_silence(&id, &actor.0).await?;
    Ok(Json(json!({"expired": id})).into_response())
}
