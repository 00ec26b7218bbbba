//! The web admin UI: one HTML page per task, rendered from the askama
//! templates in `web/templates`, and the scripts and styles of `web/static`,
//! built into the binary so the UI works offline and without a CDN. A page
//! carries no data of its own: its script reads and changes everything
//! through the JSON API, like any other client.

use super::auth::PageContext;
use super::{ApiError, AppState};
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

#[derive(rust_embed::Embed)]
#[folder = "web/static/"]
struct Assets;

/// The pages of the main navigation, in order: (path, label).
const NAV: [(&str, &str); 11] = [
    ("/", "Overview"),
    ("/services", "Services"),
    ("/targets", "Targets"),
    ("/alerting", "Alerting"),
    ("/logs", "Logs"),
    ("/logs/sources", "Log sources"),
    ("/backups", "Backups"),
    ("/power", "Power"),
    ("/disks", "Disks"),
    ("/fleet", "Fleet"),
    ("/system", "System"),
];

/// The pages under System, shown as a second row of navigation on each of them.
const SYSTEM_PAGES: [(&str, &str); 4] = [
    ("/system", "Firmware and maintenance"),
    ("/system/general", "General settings"),
    ("/system/users", "Users"),
    ("/system/dashboards", "Imported dashboards"),
];

/// The pages of the signed-in user's own account.
const ACCOUNT_PAGES: [(&str, &str); 2] = [
    ("/account", "Password"),
    ("/account/security", "Two-step sign-in and API tokens"),
];

/// The children's own UIs, behind obsbox's reverse proxy: (path, label).
const TOOLS: [(&str, &str); 3] = [
    ("/grafana/", "Grafana"),
    ("/prometheus/", "Prometheus"),
    ("/alertmanager/", "Alertmanager"),
];

/// What the layout (`base.html`) shows around every page.
struct Layout {
    hostname: String,
    /// The box's time zone (IANA name, or what the system's zone is called):
    /// the pages show every time in it.
    time_zone: String,
    user: Option<String>,
    /// The signed-in user's role: the navigation leaves out what it does not permit.
    role: Option<crate::accounts::Role>,
    csrf: String,
    /// The page's own path, marked as the current one in the navigation.
    path: &'static str,
    title: &'static str,
    /// The page's script in `web/static`, next to the shared `app.js`.
    script: &'static str,
}

/// The URL of a static file, versioned by its content so it can be cached for good.
pub(super) fn asset_url(name: &str) -> String {
    match Assets::get(name) {
        Some(file) => format!("/static/{name}?v={}", version(&file)),
        None => format!("/static/{name}"),
    }
}

/// `required` completed with the serde defaults of `T`, as JSON.
fn complete<T: serde::de::DeserializeOwned + serde::Serialize>(
    required: serde_json::Value,
) -> Option<String> {
    let item: T = serde_json::from_value(required).ok()?;
    serde_json::to_string(&item).ok()
}

impl Layout {
    fn nav(&self) -> &'static [(&'static str, &'static str)] {
        &NAV
    }

    fn tools(&self) -> &'static [(&'static str, &'static str)] {
        &TOOLS
    }

    /// The second row of navigation for the section this page is in,
    /// without the pages the user's role does not permit.
    fn section_nav(&self) -> Vec<&'static (&'static str, &'static str)> {
        let section: &'static [(&str, &str)] = [&SYSTEM_PAGES[..], &ACCOUNT_PAGES[..]]
            .into_iter()
            .find(|pages| pages.iter().any(|(path, _)| *path == self.path))
            .unwrap_or(&[]);
        let role = self.role.unwrap_or(crate::accounts::Role::Viewer);
        section
            .iter()
            .filter(|(path, _)| {
                crate::accounts::roles::permits(role, &axum::http::Method::GET, path)
            })
            .collect()
    }

    /// Whether `href` heads the section this page is in: System for its
    /// sub-pages, and for a page of no navigation of its own the entry its
    /// path lies under (Backups for a backup run).
    fn in_section(&self, href: &str) -> bool {
        if self.path == href {
            return false;
        }
        let heads_sub_pages = self
            .section_nav()
            .first()
            .is_some_and(|(head, _)| *head == href);
        let listed = NAV
            .iter()
            .chain(&SYSTEM_PAGES)
            .any(|(path, _)| *path == self.path);
        heads_sub_pages || (!listed && href != "/" && self.path.starts_with(&format!("{href}/")))
    }

    fn asset(&self, name: &str) -> String {
        asset_url(name)
    }

    /// A new item of a list editor's form (`job`, `receiver`) as JSON: what
    /// the server makes of its required fields alone, so that a blank form
    /// shows the real defaults. Empty for an item it does not know.
    fn blank(&self, item: &str) -> String {
        let completed = match item {
            "job" => complete::<crate::settings::BackupJob>(
                serde_json::json!({"name": "", "repository": ""}),
            ),
            "receiver" => complete::<crate::settings::Receiver>(serde_json::json!({
                "name": "", "kind": "email", "to": "", "from": "", "smarthost": "",
            })),
            _ => None,
        };
        completed.unwrap_or_default()
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    /// Setup, login and invites are shown before anyone has signed in: no navigation.
    fn public(&self) -> bool {
        [Setup::PATH, Login::PATH, Invite::PATH].contains(&self.path)
    }

    /// Whether the user's role permits a POST to `route` (as the router
    /// names it): the page leaves out the controls it does not.
    fn may_post(&self, route: &str) -> bool {
        self.role.is_some_and(|role| {
            crate::accounts::roles::permits(role, &axum::http::Method::POST, route)
        })
    }
}

/// A page: its template, where it is served and what it is called.
trait Page: Template {
    const PATH: &'static str;
    const TITLE: &'static str;
    const SCRIPT: &'static str;
    fn new(layout: Layout) -> Self;
}

/// Declares each page's template type and serves it at its path.
macro_rules! pages {
    ($($page:ident: $path:literal, $template:literal, $script:literal, $title:literal;)*) => {
        $(
            #[derive(Template)]
            #[template(path = $template)]
            struct $page {
                layout: Layout,
            }

            impl Page for $page {
                const PATH: &'static str = $path;
                const TITLE: &'static str = $title;
                const SCRIPT: &'static str = $script;
                fn new(layout: Layout) -> Self {
                    $page { layout }
                }
            }
        )*

        pub(super) fn routes() -> Router<Arc<AppState>> {
            Router::new()
                $(.route($page::PATH, get(page::<$page>)))*
                .route("/static/{*path}", get(asset))
        }
    };
}

pages! {
    Overview: "/", "overview.html", "overview.js", "Overview";
    Services: "/services", "services.html", "services.js", "Services";
    Targets: "/targets", "targets.html", "targets.js", "Targets";
    Alerting: "/alerting", "alerting.html", "alerting.js", "Alerting";
    Logs: "/logs", "logs.html", "logs.js", "Logs";
    Backups: "/backups", "backups.html", "backups.js", "Backups";
    BackupRun: "/backups/runs/{id}", "backup_run.html", "backup_run.js", "Backup run";
    Power: "/power", "power.html", "power.js", "Power";
    DisksPage: "/disks", "disks.html", "disks.js", "Disks";
    Fleet: "/fleet", "fleet.html", "fleet.js", "Fleet";
    Dashboards: "/system/dashboards", "dashboards.html", "dashboards.js", "Imported dashboards";
    LogSources: "/logs/sources", "log_sources.html", "log_sources.js", "Log sources";
    System: "/system", "system.html", "system.js", "System";
    General: "/system/general", "general.html", "general.js", "General settings";
    Account: "/account", "account.html", "account.js", "Account";
    AccountSecurity: "/account/security", "account_security.html", "account_security.js", "Two-step sign-in and API tokens";
    Users: "/system/users", "users.html", "users.js", "Users";
    Setup: "/setup", "setup.html", "setup.js", "First-boot setup";
    Login: "/login", "login.html", "login.js", "Sign in";
    Invite: "/invite", "invite.html", "invite.js", "You are invited";
}

/// The layout of a page at `path`, for the signed-in user (if any).
fn layout(
    app: &AppState,
    context: PageContext,
    (path, title, script): (&'static str, &'static str, &'static str),
) -> Layout {
    let (hostname, zone) = app.services.with_current(|settings| {
        (
            settings.general.hostname.clone(),
            settings.general.time_zone(),
        )
    });
    Layout {
        hostname,
        time_zone: zone.iana_name().unwrap_or("UTC").to_string(),
        user: context.user,
        role: context.role,
        csrf: context.csrf,
        path,
        title,
        script,
    }
}

/// A rendered page as an HTML response with `status`.
fn html(status: StatusCode, page: Result<String, askama::Error>) -> Response {
    match page {
        Ok(html) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => ApiError::internal("rendering the page failed", e).into_response(),
    }
}

async fn page<P: Page>(State(app): State<Arc<AppState>>, context: PageContext) -> Response {
    let layout = layout(&app, context, (P::PATH, P::TITLE, P::SCRIPT));
    html(StatusCode::OK, P::new(layout).render())
}

/// The page for a path that has none: a person gets it with the navigation.
#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound {
    layout: Layout,
    asked: String,
}

/// Whether a request for `path` is a browser finding its way to a page
/// (`Accept: text/html`, not under `/api/`): it gets an HTML answer with the
/// navigation, everything else JSON.
pub(super) fn wants_page(path: &str, headers: &HeaderMap) -> bool {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    wants_html && !path.starts_with("/api/")
}

/// What an unknown path gets: an HTML page for a browser, JSON for everything else.
pub(super) async fn not_found(
    State(app): State<Arc<AppState>>,
    context: PageContext,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if !wants_page(uri.path(), &headers) {
        return ApiError::new(StatusCode::NOT_FOUND, "no such page".into()).into_response();
    }
    let layout = layout(&app, context, ("", "Page not found", "app.js"));
    let page = NotFound {
        layout,
        asked: uri.path().to_string(),
    };
    html(StatusCode::NOT_FOUND, page.render())
}

/// The page a role may not open: it says whose role it is and what to do.
#[derive(Template)]
#[template(path = "forbidden.html")]
struct Forbidden {
    layout: Layout,
    asked: String,
    role: &'static str,
}

/// What a browser gets for a page the user's role does not permit (the
/// caller has checked [`wants_page`]): an HTML page in the layout, status 403.
pub(super) fn forbidden(app: &AppState, context: PageContext, asked: &str) -> Response {
    let role = context
        .role
        .unwrap_or(crate::accounts::Role::Viewer)
        .as_str();
    let page = Forbidden {
        layout: layout(app, context, ("", "Not for your role", "app.js")),
        asked: asked.to_string(),
        role,
    };
    super::add_own_headers(html(StatusCode::FORBIDDEN, page.render()))
}

/// The first 8 bytes of the file's SHA-256, in hex: its version and ETag.
fn version(file: &rust_embed::EmbeddedFile) -> String {
    file.metadata.sha256_hash()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A static file. Asked for with its current version (`?v=`, as the pages
/// link it), it may be cached for good; otherwise it is revalidated by ETag.
async fn asset(
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(file) = Assets::get(&path) else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no file '{path}'")).into_response();
    };
    let version = version(&file);
    let etag = format!("\"{version}\"");
    let cache = if query.as_deref() == Some(&format!("v={version}")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers_out = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, cache.to_string()),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|given| given.as_bytes() == etag.as_bytes());
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers_out).into_response();
    }
    (
        headers_out,
        [
            (header::CONTENT_TYPE, content_type(&path)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        file.data,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_its_script_and_the_shared_files() {
        for script in [
            Overview::SCRIPT,
            Services::SCRIPT,
            Targets::SCRIPT,
            Alerting::SCRIPT,
            Backups::SCRIPT,
            BackupRun::SCRIPT,
            System::SCRIPT,
            General::SCRIPT,
            Account::SCRIPT,
            Setup::SCRIPT,
            Login::SCRIPT,
            "app.js",
            "app.css",
            "favicon.svg",
        ] {
            assert!(Assets::get(script).is_some(), "{script} is missing");
        }
    }

    #[test]
    fn blank_items_carry_the_serde_defaults() {
        let blank = |item| -> serde_json::Value {
            serde_json::from_str(&layout(None).blank(item)).expect("json")
        };
        let job = blank("job");
        assert_eq!(
            job["retention"],
            serde_json::json!({"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3})
        );
        assert_eq!(job["enabled"], true);
        assert_eq!(job["schedule"], "daily");
        assert_eq!(job["backend"], "pbs");
        assert_eq!(job["options"]["one_file_system"], true);
        let receiver = blank("receiver");
        assert_eq!(receiver["require_tls"], true);
        assert_eq!(receiver["send_resolved"], true);
        assert_eq!(layout(None).blank("nothing"), "");
    }

    fn layout(user: Option<&str>) -> Layout {
        Layout {
            hostname: "box<1>".into(),
            time_zone: "Europe/Berlin".into(),
            user: user.map(str::to_string),
            role: None,
            csrf: "tok\"en".into(),
            path: Targets::PATH,
            title: Targets::TITLE,
            script: Targets::SCRIPT,
        }
    }

    #[test]
    fn a_page_escapes_what_it_shows_and_carries_the_csrf_token() {
        let html = Targets::new(layout(Some("admin"))).render().unwrap();
        assert!(html.contains("box&#60;1&#62;"));
        assert!(!html.contains("box<1>"));
        assert!(html.contains(r#"<meta name="csrf-token" content="tok&#34;en">"#));
        assert!(html.contains(r#"name="_csrf" value="tok&#34;en""#));
        assert!(html.contains(r#"<a href="/targets" aria-current="page">Targets</a>"#));
        assert!(html.contains("/static/targets.js?v="));
        // No inline script or style: the pages run under `default-src 'self'`.
        assert!(
            !html.contains("<script>") && !html.contains("<style") && !html.contains(" style=")
        );
        assert!(!html.contains(" onclick=") && !html.contains(" onsubmit="));
    }

    #[test]
    fn system_pages_have_their_own_row_of_navigation_and_the_zone_is_named() {
        let mut layout = layout(Some("admin"));
        layout.path = General::PATH;
        let html = General::new(layout).render().unwrap();
        assert!(
            html.contains(r#"<a href="/system/general" aria-current="page">General settings</a>"#)
        );
        assert!(html.contains(r#"<a href="/system" class="in-section">System</a>"#));
        assert!(html.contains(r#"<meta name="time-zone" content="Europe/Berlin">"#));
        let html = Targets::new(self::layout(Some("admin"))).render().unwrap();
        assert!(!html.contains("General settings"));
    }

    #[test]
    fn a_backup_run_marks_backups_as_its_section() {
        let mut layout = layout(Some("admin"));
        layout.path = BackupRun::PATH;
        let html = BackupRun::new(layout).render().unwrap();
        assert!(html.contains(r#"<a href="/backups" class="in-section">Backups</a>"#));
        // Log sources is a page of its own under /logs, not a part of Logs.
        let mut layout = self::layout(Some("admin"));
        layout.path = LogSources::PATH;
        let html = LogSources::new(layout).render().unwrap();
        assert!(html.contains(r#"<a href="/logs">Logs</a>"#));
    }

    #[test]
    fn setup_login_and_invites_show_no_navigation() {
        let mut layout = layout(None);
        layout.path = Login::PATH;
        let html = Login::new(layout).render().unwrap();
        assert!(!html.contains(r#"href="/services""#));
        assert!(html.contains(r#"name="_csrf""#));
        let mut layout = self::layout(None);
        layout.path = Invite::PATH;
        let html = Invite::new(layout).render().unwrap();
        assert!(!html.contains(r#"href="/services""#));
        assert!(html.contains(r#"name="_csrf""#));
    }

    async fn get(uri: &str, etag: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag {
            headers.insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        }
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (uri, None),
        };
        asset(Path(path.to_string()), RawQuery(query), headers).await
    }

    #[tokio::test]
    async fn static_files_have_their_type_a_content_etag_and_caching_by_version() {
        let file = Assets::get("app.css").unwrap();
        let version = version(&file);

        let fresh = get(&format!("app.css?v={version}"), None).await;
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(
            fresh.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(
            fresh.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let etag = fresh.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(etag, format!("\"{version}\""));

        let unversioned = get("app.js", None).await;
        assert_eq!(unversioned.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            unversioned.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );

        let again = get("app.css", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

        for missing in ["nope.js", "../Cargo.toml", "../../etc/passwd", ""] {
            assert_eq!(
                get(missing, None).await.status(),
                StatusCode::NOT_FOUND,
                "{missing}"
            );
        }
    }
}
