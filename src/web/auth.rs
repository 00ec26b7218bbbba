//! Who is asking, and whether they may: one middleware in front of every
//! route. It sorts paths into open ones (probes, assets), Alertmanager's
//! hooks (they check a bearer token themselves), the entry pages (setup and
//! login, guarded by a pre-session CSRF cookie) and everything else, which
//! needs a session and, for anything that changes state, its CSRF token, or
//! under `/api/`, `/prometheus/` and `/loki/` an API token (`Authorization:
//! Bearer obx_...`, no cookie, so no CSRF token either). Then the user's (or token's) role must permit
//! the route (`accounts::roles`, the one table of rules).

use super::AppState;
use crate::accounts::{constant_time_eq as equal, roles, Bearer, Role, Session, SESSION_LIFETIME};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

/// The cookie holding a signed-in browser's session.
pub const SESSION_COOKIE: &str = "obsbox_session";
/// Before login, forms carry a token matching this cookie (double submit).
pub const CSRF_COOKIE: &str = "obsbox_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The user a change is attributed to in the audit log.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Who is asking and with what role (a token's, for an API token): for
/// handlers that act on the caller's own account.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: Role,
}

/// The session cookie of the request, for logout and password changes.
#[derive(Debug, Clone)]
pub struct SessionToken(pub String);

/// What every page template needs: the signed-in user (none on setup and
/// login) and the CSRF token its forms and scripts send back.
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    pub user: Option<String>,
    pub role: Option<Role>,
    pub csrf: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// Probes and static assets: no session, nothing changes.
    Open,
    /// Alertmanager's webhooks and Loki pushes from the LAN, which check
    /// their bearer token themselves.
    Hook,
    /// Setup and login: no session yet, but a pre-session CSRF token.
    Entry,
    /// Everything else.
    Session,
}

fn access(path: &str) -> Access {
    match path {
        "/healthz" | "/metrics" | "/api/timezones" => Access::Open,
        "/api/alerts/notify" => Access::Hook,
        // Log senders authenticate with their push token.
        "/loki/api/v1/push" => Access::Hook,
        "/setup" | "/api/setup" | "/login" | "/api/login" => Access::Entry,
        // First-boot setup's restore from a backup.
        "/api/setup/backup/snapshots" | "/api/setup/backup/restore" => Access::Entry,
        // Whoever holds an invite link has no account yet.
        "/invite" | "/api/invite/check" | "/api/invite/accept" => Access::Entry,
        p if p.starts_with("/static/") => Access::Open,
        p if p.starts_with("/api/alerts/relay/") => Access::Hook,
        _ => Access::Session,
    }
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn guard(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let access = access(&path);
    if access == Access::Open || access == Access::Hook {
        return next.run(req).await;
    }
    let set_up = match app.accounts.is_set_up() {
        Ok(set_up) => set_up,
        Err(e) => return super::ApiError::from(e).into_response(),
    };
    if access == Access::Session && (is_api(&path) || super::proxy::takes_tokens(&path)) {
        if let Some(token) = bearer_token(req.headers()) {
            return match app.accounts.bearer(token) {
                Ok(Some(bearer)) => with_token(bearer, req, next).await,
                Ok(None) => refuse(
                    StatusCode::UNAUTHORIZED,
                    "the API token is wrong, revoked or expired",
                ),
                Err(e) => super::ApiError::from(e).into_response(),
            };
        }
    }
    let session = match cookie(req.headers(), SESSION_COOKIE) {
        Some(token) => match app.accounts.session(token) {
            Ok(found) => found.map(|s| (token.to_string(), s)),
            Err(e) => return super::ApiError::from(e).into_response(),
        },
        None => None,
    };
    if changes_state(req.method()) && !same_origin(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, "cross-site requests are refused");
    }
    match access {
        Access::Entry => entry(set_up, session.is_some(), &path, req, next).await,
        _ => match session {
            Some((token, session)) => signed_in(&app, token, session, req, next).await,
            None => {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                turned_away(set_up, &path, req.method(), target)
            }
        },
    }
}

/// Setup and login: the right one for the box's state, with a pre-session
/// CSRF token carried in a cookie and sent back by the form.
async fn entry(
    set_up: bool,
    signed_in: bool,
    path: &str,
    mut req: Request,
    next: Next,
) -> Response {
    let setup_path = path == "/setup" || path == "/api/setup" || path.starts_with("/api/setup/");
    if setup_path && set_up {
        return if is_api(path) {
            refuse(
                StatusCode::CONFLICT,
                "obsbox is already set up; log in instead",
            )
        } else {
            Redirect::to("/login").into_response()
        };
    }
    if !setup_path && !set_up {
        return if is_api(path) {
            refuse(
                StatusCode::CONFLICT,
                "obsbox is not set up yet; open /setup",
            )
        } else {
            Redirect::to("/setup").into_response()
        };
    }
    if !is_api(path) && signed_in {
        return Redirect::to("/").into_response();
    }
    let existing = cookie(req.headers(), CSRF_COOKIE).map(str::to_string);
    if changes_state(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !matches!((&existing, sent), (Some(want), Some(got)) if equal(want, got)) {
            return csrf_refused();
        }
    }
    let (csrf, fresh) = match existing {
        Some(token) => (token, false),
        None => match crate::store::random_token() {
            Ok(token) => (token, true),
            Err(e) => return super::ApiError::from(e).into_response(),
        },
    };
    let secure = served_over_tls(&req);
    req.extensions_mut().insert(PageContext {
        user: None,
        role: None,
        csrf: csrf.clone(),
    });
    let mut response = next.run(req).await;
    if fresh {
        set_cookie(&mut response, CSRF_COOKIE, &csrf, None, secure);
    }
    response
}

/// A signed-in request. One that changes state must carry the session's
/// CSRF token; through the proxy, where Grafana's and Alertmanager's own
/// pages never send it, naming this site as its `Origin` (or `Referer`)
/// will do instead: the session cookie is `SameSite=Strict`, and a
/// cross-site page cannot forge either header.
async fn signed_in(
    app: &AppState,
    token: String,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if changes_state(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let has_token = sent.is_some_and(|got| equal(&session.csrf, got));
        if !has_token {
            if !super::proxy::is_proxied(&path) {
                return csrf_refused();
            }
            if !named_this_site(req.headers()) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "a change through the proxy must come from a page of this site \
                     (Origin or Referer)",
                );
            }
        }
    }
    let context = PageContext {
        user: Some(session.user.clone()),
        role: Some(session.role),
        csrf: session.csrf,
    };
    if let Some(refused) = not_permitted(session.role, &req) {
        // A page a browser asked for: refused in words, in the UI's layout.
        let page = !changes_state(req.method()) && !super::proxy::is_proxied(&path);
        if page && super::pages::wants_page(&path, req.headers()) {
            return super::pages::forbidden(app, context, &path);
        }
        return refused;
    }
    let extensions = req.extensions_mut();
    extensions.insert(Actor(session.user.clone()));
    extensions.insert(Caller {
        user: session.user.clone(),
        role: session.role,
    });
    extensions.insert(SessionToken(token));
    extensions.insert(context);
    next.run(req).await
}

/// An API request with a token: no cookie is involved, so there is nothing
/// to forge and no CSRF token to check. Changes are audited as the user's,
/// naming the token.
async fn with_token(bearer: Bearer, mut req: Request, next: Next) -> Response {
    if let Some(refused) = not_permitted(bearer.role, &req) {
        return refused;
    }
    let extensions = req.extensions_mut();
    extensions.insert(Actor(format!(
        "{} (token {})",
        bearer.user, bearer.token_name
    )));
    extensions.insert(Caller {
        user: bearer.user.clone(),
        role: bearer.role,
    });
    extensions.insert(PageContext {
        user: Some(bearer.user),
        role: Some(bearer.role),
        csrf: String::new(),
    });
    next.run(req).await
}

/// The refusal for a role the rules do not permit this route, if so. A path
/// that matched no route (a 404 page) is left to answer for itself.
fn not_permitted(role: Role, req: &Request) -> Option<Response> {
    let route = req.extensions().get::<MatchedPath>()?.as_str();
    if roles::permits(role, req.method(), route) {
        return None;
    }
    Some(refuse(
        StatusCode::FORBIDDEN,
        &format!(
            "a user with the role {} may not do this; ask an admin",
            role.as_str()
        ),
    ))
}

/// The token of an `Authorization: Bearer ...` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// No session: pages go to setup or login (and back afterwards), the API
/// answers with a status.
fn turned_away(set_up: bool, path: &str, method: &Method, target: &str) -> Response {
    match (set_up, is_api(path) || changes_state(method)) {
        (false, true) => refuse(
            StatusCode::FORBIDDEN,
            "obsbox is not set up yet; open /setup",
        ),
        (false, false) => Redirect::to("/setup").into_response(),
        (true, true) => refuse(StatusCode::UNAUTHORIZED, "log in first"),
        (true, false) => {
            Redirect::to(&format!("/login?next={}", percent_encode(target))).into_response()
        }
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn csrf_refused() -> Response {
    refuse(
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token; reload the page and try again",
    )
}

/// A state-changing request that names where it came from must come from
/// this site (defence in depth next to SameSite cookies and the token).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    is_this_site(headers, origin)
}

/// Whether the request names this site as where it came from: its `Origin`,
/// or without one its `Referer` (a missing or `null` origin names nothing).
fn named_this_site(headers: &HeaderMap) -> bool {
    let named = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match named(header::ORIGIN).or_else(|| named(header::REFERER)) {
        Some(url) => is_this_site(headers, url),
        None => false,
    }
}

/// Whether `url` (an origin or a whole address) is on the host and port the
/// request was sent to.
fn is_this_site(headers: &HeaderMap, url: &str) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let site = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(rest));
    matches!((site, host), (Some(s), Some(h)) if s.eq_ignore_ascii_case(h))
}

pub fn served_over_tls(req: &Request) -> bool {
    req.extensions()
        .get::<super::tls::ServedOverTls>()
        .is_some()
}

/// The value of one cookie of the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Adds a cookie only this site's pages send back: HttpOnly, SameSite=Strict,
/// and Secure over TLS. `max_age` None lasts for the browser session;
/// Some(0) removes the cookie.
pub fn set_cookie(
    response: &mut Response,
    name: &str,
    value: &str,
    max_age: Option<std::time::Duration>,
    secure: bool,
) {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Sets the session cookie after a login.
pub fn start_session(response: &mut Response, token: &str, secure: bool) {
    set_cookie(
        response,
        SESSION_COOKIE,
        token,
        Some(SESSION_LIFETIME),
        secure,
    );
}

/// Clears the session cookie after a logout.
pub fn end_session(response: &mut Response, secure: bool) {
    set_cookie(
        response,
        SESSION_COOKIE,
        "",
        Some(std::time::Duration::ZERO),
        secure,
    );
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the guard put in the request for a signed-in user, or a 401.
fn signed_in_only<T: Clone + Send + Sync + 'static>(parts: &Parts) -> Result<T, super::ApiError> {
    parts
        .extensions
        .get::<T>()
        .cloned()
        .ok_or_else(|| super::ApiError::new(StatusCode::UNAUTHORIZED, "log in first".into()))
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = super::ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, super::ApiError> {
        signed_in_only(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = super::ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, super::ApiError> {
        signed_in_only(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = super::ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<SessionToken, super::ApiError> {
        signed_in_only(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<PageContext, Infallible> {
        Ok(parts
            .extensions
            .get::<PageContext>()
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_sorted_by_who_may_reach_them() {
        for (path, want) in [
            ("/healthz", Access::Open),
            ("/metrics", Access::Open),
            ("/static/app.css", Access::Open),
            ("/api/timezones", Access::Open),
            ("/api/alerts/notify", Access::Hook),
            ("/api/alerts/relay/matrix", Access::Hook),
            ("/loki/api/v1/push", Access::Hook),
            ("/setup", Access::Entry),
            ("/api/login", Access::Entry),
            ("/api/setup/backup/restore", Access::Entry),
            ("/", Access::Session),
            ("/api/alerts", Access::Session),
            ("/api/alerts/relay", Access::Session),
            ("/grafana/", Access::Session),
            ("/runbooks/HostDown", Access::Session),
            ("/static", Access::Session),
        ] {
            assert_eq!(access(path), want, "{path}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; obsbox_session_x=2; obsbox_session=tok; e="),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "e"), None);
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn only_same_origin_or_unlabelled_requests_change_state() {
        let headers = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("box.lan:8080"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            h
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("https://box.lan:8080"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("null"))));
    }

    #[test]
    fn a_proxied_change_must_name_this_site() {
        let headers = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("box.lan:8080"));
            for (name, value) in pairs {
                h.insert(name.clone(), HeaderValue::from_static(value));
            }
            h
        };
        assert!(!named_this_site(&headers(&[])));
        assert!(named_this_site(&headers(&[(
            header::ORIGIN,
            "http://box.lan:8080"
        )])));
        assert!(named_this_site(&headers(&[(
            header::REFERER,
            "http://box.lan:8080/grafana/d/x?orgId=1"
        )])));
        assert!(!named_this_site(&headers(&[(
            header::REFERER,
            "http://box.lan:8080.evil.example/grafana/"
        )])));
        assert!(!named_this_site(&headers(&[(
            header::ORIGIN,
            "https://evil.example"
        )])));
        assert!(!named_this_site(&headers(&[(header::ORIGIN, "null")])));
        // The origin decides when both are sent.
        assert!(!named_this_site(&headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::REFERER, "http://box.lan:8080/grafana/"),
        ])));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let with = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            h
        };
        assert_eq!(bearer_token(&with("Bearer obx_1")), Some("obx_1"));
        assert_eq!(bearer_token(&with("bearer  obx_2 ")), Some("obx_2"));
        assert_eq!(bearer_token(&with("Basic abc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(equal("abc", "abc"));
        assert!(!equal("abc", "abd"));
        assert!(!equal("abc", "ab"));
    }
}
