//! `/api/attention`: what the header of every page shows (alerts firing by
//! severity, backups halted, an update waiting for a reboot), and
//! `/api/targets/status`: what Prometheus says of each target and probe.

use super::{ApiResult, AppState};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/attention", get(attention))
        .route("/api/targets/status", get(targets_status))
}

async fn attention(State(app): State<Arc<AppState>>) -> ApiResult {
    let firing = app.alerts.stats()?.firing;
    let halted = app.backups.status().await?.halted;
    Ok(Json(json!({
        "alerts_firing": firing,
        "backups_halted": halted,
        "update_waiting": update_waiting(&app.ota.status()),
    }))
    .into_response())
}

/// The update installed and armed for the next reboot, from the firmware
/// status (`/api/update`): `{"slot", "version"}`, or null.
fn update_waiting(firmware: &Value) -> Value {
    let trial = &firmware["trial"];
    if trial.is_object() && trial["slot"] != firmware["running"]["slot"] {
        json!({"slot": trial["slot"], "version": trial["version"]})
    } else {
        Value::Null
    }
}

async fn targets_status(State(app): State<Arc<AppState>>) -> ApiResult {
    let settings = app.services.with_current(Clone::clone);
    Ok(Json(crate::scrape_status::status(&settings).await).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_waits_only_while_another_slot_is_armed() {
        let running = json!({"slot": "a", "version": "1.0.0"});
        let armed = json!({"running": running, "trial": {"slot": "b", "version": "1.1.0"}});
        assert_eq!(
            update_waiting(&armed),
            json!({"slot": "b", "version": "1.1.0"})
        );
        // Booted into it: on trial, no longer waiting.
        let booted = json!({"running": {"slot": "b"}, "trial": {"slot": "b", "version": "1.1.0"}});
        assert_eq!(update_waiting(&booted), Value::Null);
        assert_eq!(
            update_waiting(&json!({"running": running, "trial": null})),
            Value::Null
        );
        assert_eq!(
            update_waiting(&json!({"enabled": false, "reason": "no firmware.json"})),
            Value::Null
        );
    }
}
