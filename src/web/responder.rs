//! `/responder`: the responder's documents (architecture, dashboard
//! inventory, alert catalog, backup validation runbook, SLO policy), made
//! from the running configuration at each request, as pages and as one
//! download (`/api/responder/bundle`, a tar of their Markdown and the SVG);
//! and the monthly reliability report (`/responder/report?month=YYYY-MM`).

use super::manual::Shelf;
use super::{ApiError, ApiQuery, ApiResult, AppState};
use crate::responder::{self, Document, Inputs, NAMES};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::borrow::Cow;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/responder", get(index))
        .route("/responder/{name}", get(page))
        .route("/api/responder/bundle", get(bundle))
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
    let budget_left = budget_left(&settings, None).await;
    Inputs {
        backups: app.backups.status().await.ok(),
        made_at: jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string(),
        settings,
        rule_files,
        dashboards,
        budget_left,
    }
}

/// The error budget left per SLO, now or at Unix second `at`; empty where
/// Prometheus is off or does not answer.
async fn budget_left(
    settings: &crate::settings::Settings,
    at: Option<i64>,
) -> std::collections::BTreeMap<String, f64> {
    if !settings.services.prometheus.enabled {
        return Default::default();
    }
    let time = at.map(|t| format!("&time={t}")).unwrap_or_default();
    let path = format!("/api/v1/query?query=obsbox%3Aslo_error_budget_remaining%3Aratio{time}");
    crate::scrape_status::get(settings.services.prometheus.port, &path)
        .await
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let slo = s["metric"]["slo"].as_str()?.to_string();
            Some((slo, s["value"][1].as_str()?.parse().ok()?))
        })
        .collect()
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

/// Records reach this far back: enough for a month of a busy box.
const REPORT_RECORDS: u32 = 10_000;

/// The report of `month` (`YYYY-MM`; the last whole month when none).
async fn monthly_report(app: &AppState, month: Option<&str>) -> Result<String, ApiError> {
    use crate::report::{JobObjectives, Month, ReportInputs};
    let zone = jiff::tz::TimeZone::system();
    let month = match month {
        None => Month::before(&jiff::Zoned::now()),
        Some(text) => Month::parse(text).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "month must be YYYY-MM".to_string())
        })?,
    };
    let (start, end) = month
        .bounds(&zone)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no such month here".to_string()))?;
    let settings = app.services.with_current(Clone::clone);
    let status = app.backups.status().await.ok();
    let jobs = status
        .iter()
        .flat_map(|s| &s.jobs)
        .map(|j| JobObjectives {
            name: j.name.clone(),
            rpo_seconds: j.rpo_seconds,
            rto_seconds: j.rto_seconds,
            created_at: j.created_at,
        })
        .collect();
    // The error budget as Prometheus had it at the month's end, if it still holds it.
    let at = end.min(jiff::Timestamp::now().as_millisecond()) / 1000;
    let budget_left = budget_left(&settings, Some(at)).await;
    let inputs = ReportInputs {
        month,
        start,
        end,
        jobs,
        runs: app
            .backups
            .history(None, REPORT_RECORDS)
            .unwrap_or_default(),
        alerts: crate::alerts::history::list(&app.store, None, REPORT_RECORDS).unwrap_or_default(),
        audit: app.store.audit_log(REPORT_RECORDS).unwrap_or_default(),
        power: app.power.history(REPORT_RECORDS).unwrap_or_default(),
        budget_left,
        slos: settings.slos.clone(),
        zone,
    };
    Ok(crate::report::report(&inputs))
}
