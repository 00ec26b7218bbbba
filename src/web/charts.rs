//! `/api/metrics/query` and `/api/metrics/query_range`: the admin UI's charts
//! read Prometheus through these, behind the session, read-only, with every
//! question checked by `crate::prometheus_query`. This only translates HTTP.

use super::{ApiError, ApiQuery, ApiResult, AppState};
use crate::prometheus_query::{InstantParams, Prometheus, QueryError, Question, RangeParams};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/metrics/query", get(instant))
        .route("/api/metrics/query_range", get(range))
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            QueryError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            // Prometheus' own words on a bad PromQL expression are what the user needs.
            QueryError::Refused { status, .. } if (400..500).contains(&status) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            QueryError::Disabled => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            QueryError::Unreachable(_) => {
                tracing::warn!(error = %e, "querying Prometheus");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Prometheus is not reachable; see its state on the Services page".into(),
                )
            }
            QueryError::Refused { .. } | QueryError::Garbled(_) => {
                tracing::warn!(error = %e, "querying Prometheus");
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
        }
    }
}

fn now() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

async fn ask(app: &AppState, question: Question) -> ApiResult {
    let prometheus = Prometheus::from_settings(&app.services.settings()?)?;
    Ok(Json(prometheus.ask(&question).await?).into_response())
}

async fn instant(
    State(app): State<Arc<AppState>>,
    ApiQuery(params): ApiQuery<InstantParams>,
) -> ApiResult {
    ask(&app, Question::instant(&params, now())?).await
}

async fn range(
    State(app): State<Arc<AppState>>,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> ApiResult {
    ask(&app, Question::range(&params, now())?).await
}
