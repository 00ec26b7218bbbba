//! `/grafana/`, `/prometheus/` and `/alertmanager/`: the children's own UIs
//! and APIs at obsbox's address, behind obsbox's login. A request goes to the
//! child on loopback with the prefix stripped; bodies stream both ways and are
//! never buffered. Hop-by-hop headers and obsbox's own cookies stay behind.
//! The child learns where the request came from in `X-Forwarded-*`, and who
//! made it, with their role, in the auth proxy headers Grafana signs users in
//! with (whatever the client sent under those names is dropped).
//!
//! Prometheus and Loki are also reachable with an API token (a box acting as
//! the central Grafana for others queries them so); the token stays here.
//!
//! The children render links under these prefixes (`render::proxied_url`);
//! obsbox itself still reaches them at `/` on loopback.

use super::auth::{Caller, CSRF_COOKIE, SESSION_COOKIE};
use super::{ApiError, AppState};
use crate::accounts::TOKEN_PREFIX;
use crate::services::render::{grafana_org_role, GRAFANA_ROLE_HEADER, GRAFANA_USER_HEADER};
use crate::settings::Settings;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, EXPECT, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, MethodRouter};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The children served under `/<name>/`.
const PROXIED: [&str; 4] = ["grafana", "prometheus", "alertmanager", "loki"];
/// Those that also take an API token instead of a session.
const TAKE_TOKENS: [&str; 2] = ["prometheus", "loki"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a child may take to start its answer. Prometheus gives up on a
/// query after 2 minutes (its default `--query.timeout`); wait a little longer.
const HEAD_TIMEOUT: Duration = Duration::from_secs(130);

type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    let client: Client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .build(connector);
    let forward = |child: &'static str| -> MethodRouter<Arc<AppState>> {
        let upstream = Upstream {
            client: client.clone(),
            child,
        };
        any(
            move |State(app): State<Arc<AppState>>, caller: Caller, request: Request| {
                upstream.clone().forward(app, caller, request)
            },
        )
    };
    let prometheus = forward("prometheus");
    PROXIED
        .into_iter()
        .fold(Router::new(), |router, child| {
            router
                .route(
                    &format!("/{child}"),
                    any(move |uri: Uri| async move { with_slash(child, &uri) }),
                )
                .route(&format!("/{child}/"), forward(child))
                .route(&format!("/{child}/{{*rest}}"), forward(child))
        })
        // Prometheus' read-only calls that Grafana sends by POST (its
        // default), routes of their own so that their rule can let a viewer
        // send them (`accounts::roles`).
        .route("/prometheus/api/v1/query", prometheus.clone())
        .route("/prometheus/api/v1/query_range", prometheus.clone())
        .route("/prometheus/api/v1/query_exemplars", prometheus.clone())
        .route("/prometheus/api/v1/series", prometheus.clone())
        .route("/prometheus/api/v1/labels", prometheus)
}

/// Whether `path` goes to a child that takes an API token as well as a session.
pub(super) fn takes_tokens(path: &str) -> bool {
    TAKE_TOKENS.iter().any(|child| is_under(child, path))
}

fn is_under(child: &str, path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(child))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` goes to a child through the proxy.
pub(super) fn is_proxied(path: &str) -> bool {
    PROXIED.iter().any(|child| is_under(child, path))
}

/// Parts of a child that no page may reach through obsbox: Prometheus's
/// admin API deletes series and the whole TSDB. (obsbox itself uses it on
/// loopback for the TSDB snapshots of appliance backups, hence the flag.)
/// The path is read as the child reads it: escapes decoded, empty and dot
/// segments resolved.
fn is_off_limits(child: &str, upstream_path: &str) -> bool {
    let decoded = percent_decoded(upstream_path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    child == "prometheus" && segments.starts_with(&["api", "v1", "admin"])
}

fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/grafana` → `grafana/`, relative so it holds behind another proxy too.
fn with_slash(child: &str, uri: &Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::permanent(&format!("{child}/{query}")).into_response()
}

#[derive(Clone)]
struct Upstream {
    client: Client,
    child: &'static str,
}

impl Upstream {
    async fn forward(
        self,
        app: Arc<AppState>,
        caller: Caller,
        request: Request,
    ) -> Result<Response, ApiError> {
        let child = self.child;
        let port = app
            .services
            .with_current(|settings| enabled_port(settings, child))
            .ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!("{child} is not enabled"))
            })?;
        let user = HeaderValue::from_str(&caller.user).map_err(|e| {
            ApiError::internal(&format!("the user's name cannot be passed to {child}"), e)
        })?;
        let (mut parts, body) = request.into_parts();
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = Forwarded {
            client,
            proto: if parts
                .extensions
                .get::<super::tls::ServedOverTls>()
                .is_some()
            {
                "https"
            } else {
                "http"
            },
            user,
            role: HeaderValue::from_static(grafana_org_role(caller.role)),
        };
        let mut upstream = Request::new(body);
        *upstream.method_mut() = parts.method;
        *upstream.version_mut() = Version::HTTP_11;
        *upstream.uri_mut() = upstream_uri(child, port, &parts.uri).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "this address cannot be passed on".into(),
            )
        })?;
        if is_off_limits(child, upstream.uri().path()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{child}'s admin API is not reachable through obsbox"),
            ));
        }
        forward_headers(&mut parts.headers, &forwarded);
        *upstream.headers_mut() = parts.headers;

        let answer = tokio::time::timeout(HEAD_TIMEOUT, self.client.request(upstream)).await;
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                tracing::warn!(child, port, error = ?e, "the proxied request failed");
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("{child} is not answering on 127.0.0.1:{port}; see its state in /api/services"),
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("{child} did not answer within {} s", HEAD_TIMEOUT.as_secs()),
                ))
            }
        };
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// The loopback port of `child` when it is enabled.
fn enabled_port(settings: &Settings, child: &str) -> Option<u16> {
    settings
        .services
        .by_name()
        .into_iter()
        .find(|(name, service)| *name == child && service.enabled)
        .map(|(_, service)| service.port)
}

/// `/grafana/api/health?x=1` → `http://127.0.0.1:<port>/api/health?x=1`.
fn upstream_uri(child: &str, port: u16, uri: &Uri) -> Option<Uri> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = path.strip_prefix('/')?.strip_prefix(child)?;
    let rest = if rest.starts_with('/') { rest } else { "/" };
    format!("http://127.0.0.1:{port}{rest}").parse().ok()
}

/// What obsbox tells a child about a request it passes on.
struct Forwarded<'a> {
    client: Option<IpAddr>,
    proto: &'a str,
    user: HeaderValue,
    /// The user's Grafana org role.
    role: HeaderValue,
}

/// Turns the headers a client sent into those its child gets. obsbox is the
/// box's front door, so `X-Forwarded-*` and the user and role headers a
/// client sent are replaced, never trusted. An obsbox API token is for
/// obsbox: it is not passed on.
fn forward_headers(headers: &mut HeaderMap, forwarded: &Forwarded) {
    let host = headers.get(HOST).cloned();
    remove_hop_by_hop(headers);
    keep_foreign_cookies(headers);
    // obsbox's server has already answered `Expect: 100-continue`.
    headers.remove(EXPECT);
    let set = |headers: &mut HeaderMap, name: &'static str, value: Option<HeaderValue>| {
        let name = HeaderName::from_static(name);
        headers.remove(&name);
        if let Some(value) = value {
            headers.insert(name, value);
        }
    };
    let client = forwarded
        .client
        .and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok());
    set(headers, "x-forwarded-for", client);
    set(
        headers,
        "x-forwarded-proto",
        HeaderValue::from_str(forwarded.proto).ok(),
    );
    set(headers, "x-forwarded-host", host);
    for (name, value) in [
        (GRAFANA_USER_HEADER, &forwarded.user),
        (GRAFANA_ROLE_HEADER, &forwarded.role),
    ] {
        if let Ok(name) = HeaderName::try_from(name) {
            // Replaces every value the client sent.
            headers.insert(name, value.clone());
        }
    }
    let obsbox_token = |value: &HeaderValue| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && token.trim().starts_with(TOKEN_PREFIX)
            })
    };
    if headers.get_all(AUTHORIZATION).iter().any(obsbox_token) {
        headers.remove(AUTHORIZATION);
    }
}

/// Drops the headers that belong to one connection (RFC 9110 7.6.1): the
/// fixed set, `Proxy-*`, and any named in `Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let fixed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            matches!(
                name.as_str(),
                "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
            ) || name.as_str().starts_with("proxy-")
        })
        .cloned()
        .collect();
    for name in named.into_iter().chain(fixed) {
        headers.remove(name);
    }
}

/// Keeps every cookie but obsbox's own session and CSRF cookies.
fn keep_foreign_cookies(headers: &mut HeaderMap) {
    let kept: Vec<&[u8]> = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|cookie| {
            let name = cookie.split(|&b| b == b'=').next().unwrap_or(cookie);
            let name = name.trim_ascii();
            !cookie.is_empty()
                && name != SESSION_COOKIE.as_bytes()
                && name != CSRF_COOKIE.as_bytes()
        })
        .collect();
    let kept = HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok();
    headers.remove(COOKIE);
    if let Some(kept) = kept.filter(|v| !v.is_empty()) {
        headers.insert(COOKIE, kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn forwarded() -> Forwarded<'static> {
        Forwarded {
            client: Some("192.0.2.7".parse().unwrap()),
            proto: "http",
            user: HeaderValue::from_static("ann"),
            role: HeaderValue::from_static("Viewer"),
        }
    }

    fn names(map: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        names.sort();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut map = headers(&[
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Sum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Private", "1"),
            ("Accept", "application/json"),
            ("Content-Length", "12"),
        ]);
        remove_hop_by_hop(&mut map);
        assert_eq!(names(&map), ["accept", "content-length"]);
    }

    #[test]
    fn the_child_gets_the_real_client_and_user_not_forged_ones() {
        let mut map = headers(&[
            ("Host", "obsbox.lan:8080"),
            ("X-Forwarded-For", "10.9.9.9"),
            ("X-Forwarded-Host", "evil"),
            ("X-WEBAUTH-USER", "admin"),
            ("x-webauth-user", "root"),
            ("X-WEBAUTH-ROLE", "Admin"),
            ("Expect", "100-continue"),
        ]);
        forward_headers(&mut map, &forwarded());
        assert_eq!(map["host"], "obsbox.lan:8080");
        assert_eq!(map["x-forwarded-host"], "obsbox.lan:8080");
        assert_eq!(map["x-forwarded-for"], "192.0.2.7");
        assert_eq!(map["x-forwarded-proto"], "http");
        let users: Vec<_> = map.get_all("x-webauth-user").iter().collect();
        assert_eq!(users, ["ann"]);
        let roles: Vec<_> = map.get_all("x-webauth-role").iter().collect();
        assert_eq!(roles, ["Viewer"]);
        assert!(map.get("expect").is_none());

        // Without a known peer, no client address is made up either.
        let mut map = headers(&[("X-Forwarded-For", "10.9.9.9")]);
        let anonymous = Forwarded {
            client: None,
            ..forwarded()
        };
        forward_headers(&mut map, &anonymous);
        assert!(map.get("x-forwarded-for").is_none());
        assert!(map.get("x-forwarded-host").is_none());
    }

    #[test]
    fn obsbox_cookies_are_removed_and_the_others_kept() {
        let mut map = headers(&[
            ("Cookie", "obsbox_session=s3cret; grafana_session=g1"),
            (
                "Cookie",
                " obsbox_csrf=t0ken ;theme=dark; obsbox_session_x=keep",
            ),
        ]);
        forward_headers(&mut map, &forwarded());
        let cookies: Vec<_> = map.get_all(COOKIE).iter().collect();
        assert_eq!(
            cookies,
            ["grafana_session=g1; theme=dark; obsbox_session_x=keep"]
        );

        let mut map = headers(&[("Cookie", "obsbox_session=s3cret; obsbox_csrf=t")]);
        forward_headers(&mut map, &forwarded());
        assert!(map.get(COOKIE).is_none());
    }

    #[test]
    fn an_obsbox_token_stays_here_and_other_credentials_pass() {
        let mut map = headers(&[("Authorization", "Bearer obx_0123")]);
        forward_headers(&mut map, &forwarded());
        assert!(map.get(AUTHORIZATION).is_none());
        let mut map = headers(&[("Authorization", "bearer  obx_0123")]);
        forward_headers(&mut map, &forwarded());
        assert!(map.get(AUTHORIZATION).is_none());
        // Grafana's own service account tokens are Grafana's business.
        let mut map = headers(&[("Authorization", "Bearer glsa_abc")]);
        forward_headers(&mut map, &forwarded());
        assert_eq!(map[AUTHORIZATION], "Bearer glsa_abc");
    }

    #[test]
    fn only_prometheus_and_loki_take_tokens() {
        assert!(takes_tokens("/prometheus/api/v1/query"));
        assert!(takes_tokens("/loki/api/v1/query_range"));
        assert!(!takes_tokens("/grafana/api/ds/query"));
        assert!(!takes_tokens("/alertmanager/api/v2/silences"));
        assert!(!takes_tokens("/prometheusx/"));
        assert!(!takes_tokens("/prometheus"));
    }

    #[test]
    fn the_prefix_is_stripped_and_the_query_kept() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        for (from, to) in [
            ("/grafana/", "http://127.0.0.1:3000/"),
            ("/grafana/api/health", "http://127.0.0.1:3000/api/health"),
            (
                "/grafana/d/x%20y/z?orgId=1&var=a%2Fb",
                "http://127.0.0.1:3000/d/x%20y/z?orgId=1&var=a%2Fb",
            ),
        ] {
            assert_eq!(upstream_uri("grafana", 3000, &uri(from)), Some(uri(to)));
        }
        assert_eq!(upstream_uri("grafana", 3000, &uri("/prometheus/")), None);
    }

    #[test]
    fn proxied_paths_and_what_stays_off_limits() {
        assert!(is_proxied("/grafana/api/ds/query"));
        assert!(is_proxied("/alertmanager/"));
        assert!(!is_proxied("/grafana"));
        assert!(!is_proxied("/grafanax/"));
        assert!(!is_proxied("/api/settings"));
        assert!(is_off_limits(
            "prometheus",
            "/api/v1/admin/tsdb/delete_series"
        ));
        assert!(is_off_limits("prometheus", "/api/v1/admin/tsdb/snapshot"));
        assert!(is_off_limits(
            "prometheus",
            "/api/v1/%61dmin/tsdb/clean_tombstones"
        ));
        assert!(is_off_limits(
            "prometheus",
            "//api/./v1/x/../admin/tsdb/snapshot"
        ));
        assert!(!is_off_limits("prometheus", "/api/v1/query"));
        assert!(!is_off_limits("prometheus", "/api/v1/query%"));
        assert!(!is_off_limits("grafana", "/api/v1/admin/x"));
    }

    #[test]
    fn only_an_enabled_child_has_a_port() {
        let mut settings = Settings::default();
        assert_eq!(enabled_port(&settings, "grafana"), Some(3000));
        settings.services.grafana.enabled = false;
        assert_eq!(enabled_port(&settings, "grafana"), None);
        assert_eq!(enabled_port(&settings, "loki"), Some(3100));
        assert_eq!(enabled_port(&settings, "nothing"), None);
    }
}
