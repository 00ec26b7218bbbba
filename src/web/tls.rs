//! `/api/system/tls`: the HTTPS certificate (shown, replaced by the user's
//! own, or back to a self-signed one); and what serving over HTTPS changes:
//! requests over TLS are marked, and plain HTTP from other hosts is
//! redirected to HTTPS.

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::tls::{Tls, TlsError};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// Marks a request that came over HTTPS (so, e.g., cookies get `Secure`).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/system/tls", get(show).put(install).delete(self_sign))
}

/// The router as served over HTTPS.
pub fn over_tls(router: Router) -> Router {
    router.layer(Extension(ServedOverTls))
}

/// The router as served over plain HTTP: when HTTPS is on (`https_port`),
/// requests from other hosts are redirected there, except `/healthz` and
/// `/metrics`. Loopback keeps plain HTTP: the local Prometheus and
/// Alertmanager call obsbox that way. Serve it with `ConnectInfo<SocketAddr>`.
pub fn plain_http(router: Router, https_port: Option<u16>) -> Router {
    match https_port {
        Some(port) => router.layer(axum::middleware::from_fn_with_state(port, redirect)),
        None => router,
    }
}

impl From<TlsError> for ApiError {
    fn from(e: TlsError) -> ApiError {
        match e {
            TlsError::Generate(_) | TlsError::Io { .. } => {
                ApiError::internal("the TLS certificate could not be stored", e)
            }
            input => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, input.to_string()),
        }
    }
}

fn tls(app: &AppState) -> Result<&Tls, ApiError> {
    app.tls.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "HTTPS is off: start obsbox with --https-listen".into(),
        )
    })
}

async fn show(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(tls(&app)?.info()).into_response())
}

/// A user's own certificate chain and key, both PEM.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    certificate: String,
    key: String,
}

async fn install(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let upload: Upload = json_body(&body)?;
    let info = tls(&app)?.install(&upload.certificate, &upload.key)?;
    app.store
        .audit(&actor.0, "system.tls.install", &info.sha256_fingerprint)?;
    Ok(Json(info).into_response())
}

async fn self_sign(State(app): State<Arc<AppState>>, actor: Actor) -> ApiResult {
    let hostname = app.store.settings()?.general.hostname;
    let info = tls(&app)?.self_sign(&hostname)?;
    app.store
        .audit(&actor.0, "system.tls.self_sign", &info.sha256_fingerprint)?;
    Ok(Json(info).into_response())
}

async fn redirect(
    State(https_port): State<u16>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if !must_redirect(peer, request.uri().path()) {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match host.and_then(|host| https_location(host, https_port, request.uri())) {
        Some(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "use HTTPS (this request names no host to send it to)".into(),
        )
        .into_response(),
    }
}

fn must_redirect(peer: SocketAddr, path: &str) -> bool {
    !peer.ip().to_canonical().is_loopback() && path != "/healthz" && path != "/metrics"
}

/// The same place on the HTTPS port: `Host` without its port, then the path and query.
fn https_location(host: &str, https_port: u16, uri: &Uri) -> Option<String> {
    let name = match host.strip_prefix('[') {
        Some(v6) => &host[..v6.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let plausible = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if name.is_empty() || !name.chars().all(plausible) {
        return None;
    }
    let rest = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(match https_port {
        443 => format!("https://{name}{rest}"),
        port => format!("https://{name}:{port}{rest}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn the_location_keeps_host_path_and_query() {
        let at = |host| https_location(host, 8443, &uri("/api/x?a=1"));
        assert_eq!(
            at("box.lan:8080").unwrap(),
            "https://box.lan:8443/api/x?a=1"
        );
        assert_eq!(at("192.0.2.5").unwrap(), "https://192.0.2.5:8443/api/x?a=1");
        assert_eq!(
            at("[fd00::2]:8080").unwrap(),
            "https://[fd00::2]:8443/api/x?a=1"
        );
        assert_eq!(
            https_location("box.lan", 443, &uri("/")).unwrap(),
            "https://box.lan/"
        );
        assert_eq!(at(""), None);
        assert_eq!(at("evil.example/x@"), None);
        assert_eq!(at("[fd00::2"), None);
    }

    #[test]
    fn loopback_and_probes_keep_plain_http() {
        let peer = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 40000);
        assert!(must_redirect(peer("192.0.2.9"), "/api/settings"));
        assert!(must_redirect(peer("fd00::9"), "/"));
        assert!(!must_redirect(peer("192.0.2.9"), "/healthz"));
        assert!(!must_redirect(peer("192.0.2.9"), "/metrics"));
        assert!(!must_redirect(peer("127.0.0.1"), "/api/alerts/notify"));
        assert!(!must_redirect(peer("::1"), "/"));
        assert!(!must_redirect(peer("::ffff:127.0.0.1"), "/"));
    }

    async fn status_and_location(router: &Router, peer: &str, path: &str) -> (u16, String) {
        let mut request = Request::builder()
            .uri(path)
            .header(header::HOST, "box.lan:8080")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        let response = router.clone().oneshot(request).await.unwrap();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (response.status().as_u16(), location)
    }

    #[tokio::test]
    async fn requests_over_tls_are_marked() {
        let app = Router::new().route(
            "/",
            get(|tls: Option<Extension<ServedOverTls>>| async move { tls.is_some().to_string() }),
        );
        let marked = |router: Router| async move {
            let response = router
                .oneshot(Request::builder().uri("/").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let body = axum::body::to_bytes(response.into_body(), 100)
                .await
                .unwrap();
            body == "true"
        };
        assert!(marked(over_tls(app.clone())).await);
        assert!(!marked(app).await);
    }

    #[tokio::test]
    async fn plain_http_from_other_hosts_is_redirected() {
        let app = Router::new()
            .route("/api/x", get(|| async { "x" }))
            .route("/healthz", get(|| async { "ok" }));
        let redirecting = plain_http(app.clone(), Some(8443));
        assert_eq!(
            status_and_location(&redirecting, "192.0.2.9:5000", "/api/x?y=1").await,
            (308, "https://box.lan:8443/api/x?y=1".into())
        );
        assert_eq!(
            status_and_location(&redirecting, "192.0.2.9:5000", "/healthz").await,
            (200, String::new())
        );
        assert_eq!(
            status_and_location(&redirecting, "127.0.0.1:5000", "/api/x").await,
            (200, String::new())
        );
        let plain = plain_http(app, None);
        assert_eq!(
            status_and_location(&plain, "192.0.2.9:5000", "/api/x").await,
            (200, String::new())
        );
    }
}
