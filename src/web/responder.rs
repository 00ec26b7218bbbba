//! `/responder`: the responder's documents (architecture, dashboard
//! inventory, alert catalog, backup validation runbook, SLO policy), made
//! from the running configuration at each request, as pages and as one
//! download (`/api/responder/bundle`, a tar of their Markdown and the SVG);
//! and the monthly reliability report (`/responder/report?month=YYYY-MM`).

use super::auth::Actor;
use super::manual::Shelf;
use super::{json_body, ApiError, ApiQuery, ApiResult, AppState};
use crate::report::monthly::MailError;
use crate::responder::{self, Document, Inputs, NAMES};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde_json::json;
use std::borrow::Cow;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/responder", get(index))
        .route("/responder/{name}", get(page))
        .route("/api/responder/bundle", get(bundle))
        .route(
            "/api/responder/report/mail",
            get(mail_status).post(mail_now),
        )
}

const SHELF: Shelf = Shelf {
    path: "/responder",
    title: "Responder's documents",
    intro: "",
    file: |_| None::<Cow<'static, [u8]>>,
    files: Vec::new,
    valid_name: |name| NAMES.contains(&name) || name == "report",
    ui_page: super::runbooks::ui_page,
};

/// Everything the documents are made of, read now.
async fn inputs(app: &AppState) -> Inputs {
    let settings = app.services.with_current(Clone::clone);
    let rendered = |child| app.services.rendered(child);
    let rule_files = rendered("prometheus")
        .into_iter()
        .chain(rendered("loki"))
        .filter(|(path, _)| path.contains("rules"))
        .map(|(_, text)| text)
        .collect();
    let dashboards = rendered("grafana")
        .into_iter()
        .filter(|(path, _)| path.ends_with(".json"))
        .collect();
    let budget_left = crate::report::gather::budget_left(&settings, None).await;
    Inputs {
        backups: app.backups.status().await.ok(),
        made_at: jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string(),
        settings,
        rule_files,
        dashboards,
        budget_left,
    }
}

async fn index() -> Response {
    let items: String = NAMES
        .iter()
        .map(|name| format!("- [{}](/responder/{name})\n", title_of(name)))
        .chain(std::iter::once(
            "- [Monthly reliability report](/responder/report): last month; \
             `?month=YYYY-MM` for another\n"
                .to_string(),
        ))
        .collect();
    SHELF.page_of(&format!(
        "# Responder's documents\n\nMade from this box's running configuration each time \
         they are opened, so they are never out of date:\n\n{items}\n\
         Download them all (Markdown and the SVG) for a wiki or a printout: \
         [responder-documents.tar](/api/responder/bundle).\n"
    ))
}

fn title_of(name: &str) -> &'static str {
    match name {
        "architecture" => "Architecture: the box's data flow",
        "dashboards" => "Dashboard inventory",
        "alerts" => "Alert catalog",
        "backups" => "Backup validation runbook",
        _ => "SLO and error-budget policy",
    }
}

#[derive(serde::Deserialize)]
struct ReportQuery {
    month: Option<String>,
}

async fn page(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Response {
    if name == "report" {
        return match monthly_report(&app, query.month.as_deref()).await {
            Ok(markdown) => SHELF.page_of(&markdown),
            Err(e) => e.into_response(),
        };
    }
    let inputs = inputs(&app).await;
    if name == "architecture.svg" {
        return svg(responder::architecture_svg(&inputs.settings));
    }
    match responder::documents(&inputs)
        .into_iter()
        .find(|d| d.name == name)
    {
        Some(doc) => SHELF.page_of(&doc.markdown),
        None => SHELF.page(None),
    }
}

fn svg(text: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], text).into_response()
}

async fn bundle(State(app): State<Arc<AppState>>) -> ApiResult {
    let inputs = inputs(&app).await;
    let files = responder::documents(&inputs)
        .into_iter()
        .map(|Document { name, markdown }| (format!("{name}.md"), markdown))
        .chain(std::iter::once((
            "architecture.svg".to_string(),
            responder::architecture_svg(&inputs.settings),
        )));
    let mut tar = tar::Builder::new(Vec::new());
    for (name, text) in files {
        // Links between the pages point at the files beside them.
        let text = text.replace("(/responder/architecture.svg)", "(architecture.svg)");
        let mut head = tar::Header::new_gnu();
        head.set_size(text.len() as u64);
        head.set_mode(0o644);
        head.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        tar.append_data(&mut head, format!("responder/{name}"), text.as_bytes())
            .map_err(|e| ApiError::internal("the documents could not be packed", e))?;
    }
    let bytes = tar
        .into_inner()
        .map_err(|e| ApiError::internal("the documents could not be packed", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"responder-documents.tar\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `?month=YYYY-MM`, or the last whole month.
fn month_of(query: Option<&str>) -> Result<crate::report::Month, ApiError> {
    crate::report::gather::month_or_last(query)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The report of `month` (`YYYY-MM`; the last whole month when none).
async fn monthly_report(app: &AppState, month: Option<&str>) -> Result<String, ApiError> {
    app.reports
        .markdown(month_of(month)?)
        .await
        .map_err(mail_error)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MailRequest {
    /// `YYYY-MM`; the last whole month when none.
    month: Option<String>,
}

/// `POST /api/responder/report/mail`: mails a month's report now to the
/// report receiver.
async fn mail_now(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    // An empty body asks for last month.
    let request: MailRequest = if body.is_empty() {
        MailRequest { month: None }
    } else {
        json_body(&body)?
    };
    let month = month_of(request.month.as_deref())?;
    let to = app
        .reports
        .send(month, &actor.0)
        .await
        .map_err(mail_error)?;
    Ok(Json(json!({"month": month.label(), "sent_to": to})).into_response())
}

/// `GET /api/responder/report/mail`: the report receiver and the newest
/// attempts to mail reports.
async fn mail_status(State(app): State<Arc<AppState>>) -> ApiResult {
    let receiver = app
        .services
        .with_current(|s| s.alerting.report_receiver.clone());
    let attempts = app.reports.attempts(24).map_err(mail_error)?;
    Ok(Json(json!({"receiver": receiver, "attempts": attempts})).into_response())
}

fn mail_error(e: MailError) -> ApiError {
    let status = match &e {
        MailError::NoReceiver | MailError::NotEmail(_) | MailError::NoPassword(_) => {
            StatusCode::CONFLICT
        }
        MailError::Month(_) => StatusCode::BAD_REQUEST,
        MailError::Smtp { .. } => StatusCode::BAD_GATEWAY,
        MailError::Message(_) | MailError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}
