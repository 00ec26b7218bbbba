//! `/api/logs/`: searching the logs in Loki for the Logs page (lines, a
//! histogram, the label browser, a live tail as server-sent events). The
//! work is in `crate::logs::query`; this only translates HTTP.

use super::{ApiError, ApiQuery, ApiResult, AppState};
use crate::logs::query::{self, Loki, QueryError, Range};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/logs/search", get(search))
        .route("/api/logs/histogram", get(histogram))
        .route("/api/logs/labels", get(labels))
        .route("/api/logs/labels/{name}/values", get(label_values))
        .route("/api/logs/tail", get(tail))
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            // Loki's own words on a bad query are what the user needs.
            QueryError::Refused { status, .. } if (400..500).contains(&status) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            QueryError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            QueryError::Disabled => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            QueryError::Unreachable(_) => {
                tracing::warn!(error = %e, "querying Loki");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Loki is not reachable; see its state on the Services page".into(),
                )
            }
            QueryError::Refused { .. } | QueryError::Garbled(_) | QueryError::Tail(_) => {
                tracing::warn!(error = %e, "querying Loki");
                ApiError::new(StatusCode::BAD_GATEWAY, format!("Loki failed: {e}"))
            }
        }
    }
}

/// A query and its time range (Unix nanoseconds; default: the last hour).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    query: String,
    start: Option<i64>,
    end: Option<i64>,
    limit: Option<u32>,
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn loki(app: &AppState) -> Result<Loki, ApiError> {
    Ok(Loki::from_settings(&app.services.settings()?)?)
}

fn needs_query(query: &str) -> Result<(), ApiError> {
    if query.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a query is needed, e.g. {service=\"loki\"}".into(),
        ));
    }
    Ok(())
}

async fn search(State(app): State<Arc<AppState>>, ApiQuery(q): ApiQuery<Search>) -> ApiResult {
    needs_query(&q.query)?;
    let range = Range::new(q.start, q.end, now_ns())?;
    let result = loki(&app)?
        .search(&q.query, range, q.limit.unwrap_or(1000))
        .await?;
    let mut body = json!(result);
    body["explore"] = json!(query::explore_url(&q.query, range));
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ranged {
    query: String,
    start: Option<i64>,
    end: Option<i64>,
}

async fn histogram(State(app): State<Arc<AppState>>, ApiQuery(q): ApiQuery<Ranged>) -> ApiResult {
    needs_query(&q.query)?;
    let range = Range::new(q.start, q.end, now_ns())?;
    Ok(Json(loki(&app)?.histogram(&q.query, range).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Labels {
    start: Option<i64>,
    end: Option<i64>,
    /// For values: only streams this selector picks.
    query: Option<String>,
}

async fn labels(State(app): State<Arc<AppState>>, ApiQuery(q): ApiQuery<Labels>) -> ApiResult {
    let range = Range::new(q.start, q.end, now_ns())?;
    Ok(Json(json!({"labels": loki(&app)?.labels(range).await?})).into_response())
}

async fn label_values(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<Labels>,
) -> ApiResult {
    let range = Range::new(q.start, q.end, now_ns())?;
    let values = loki(&app)?
        .label_values(&name, range, q.query.as_deref())
        .await?;
    Ok(Json(json!({"label": name, "values": values})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tail {
    query: String,
}

/// New matching lines as server-sent events, one line (JSON) per event; an
/// `error` event says why the tail ended, if it failed.
async fn tail(State(app): State<Arc<AppState>>, ApiQuery(q): ApiQuery<Tail>) -> ApiResult {
    needs_query(&q.query)?;
    let lines = loki(&app)?.tail(&q.query, now_ns()).await?;
    let events = lines.flat_map(|batch| {
        let events: Vec<Event> = match batch {
            Ok(lines) => lines
                .iter()
                .map(|line| Event::default().data(json!(line).to_string()))
                .collect(),
            Err(e) => vec![Event::default()
                .event("error")
                .data(json!({"error": e.to_string()}).to_string())],
        };
        futures_util::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
