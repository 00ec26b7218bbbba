//! `/runbooks`: one page per alert, where each alert's `runbook_url` points,
//! saying what the alert means and what to check and fix on an obsbox box.
//! The pages are the Markdown files of `web/runbooks/`, built into the binary
//! so they are there even when nothing else works.

use super::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use std::borrow::Cow;
use std::sync::Arc;

#[derive(rust_embed::Embed)]
#[folder = "web/runbooks/"]
struct Files;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runbooks", get(index))
        .route("/runbooks/{name}", get(page))
}

/// Whether the alert `name` has a runbook page.
pub fn has_runbook(name: &str) -> bool {
    source(name).is_some()
}

/// The Markdown of the runbook for `name`. Alert names are letters and
/// digits; anything else (`..`, `/`, a `.md` suffix) is refused before it
/// reaches the file lookup.
fn source(name: &str) -> Option<Cow<'static, [u8]>> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Files::get(&format!("{name}.md")).map(|file| file.data)
}

/// Every runbook's name, sorted. Files whose names could never be asked for
/// (not an alert name) are left out, so every link on the index works.
fn names() -> Vec<String> {
    let mut names: Vec<String> = Files::iter()
        .filter_map(|path| path.strip_suffix(".md").map(str::to_string))
        .filter(|name| has_runbook(name))
        .collect();
    names.sort();
    names
}

/// The text of the first heading.
fn title(markdown: &str) -> Option<String> {
    let mut title: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { .. }) => title = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => return title,
            Event::Text(text) | Event::Code(text) => {
                if let Some(title) = &mut title {
                    title.push_str(&text);
                }
            }
            _ => {}
        }
    }
    None
}

fn to_html(markdown: &str) -> String {
    let events = Parser::new_ext(markdown, Options::ENABLE_TABLES).map(|event| match event {
        // A placeholder such as <host> written outside a code span is meant
        // to be read, not taken as a tag.
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// `text` escaped for HTML, by the same code that escapes the Markdown's text.
fn escape(text: &str) -> String {
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, std::iter::once(Event::Text(text.into())));
    html
}

const BACK: &str = r#"<nav><a href="/runbooks">&larr; All runbooks</a></nav>"#;

fn document(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} - obsbox runbooks</title>\n<link rel=\"stylesheet\" href=\"{style}\">\n</head>\n\
         <body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        title = escape(title),
        style = super::pages::asset_url("runbooks.css"),
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

async fn index() -> Response {
    let items: String = names()
        .into_iter()
        .map(|name| {
            let markdown = source(&name).unwrap_or_default();
            let markdown = String::from_utf8_lossy(&markdown);
            let title = title(&markdown).unwrap_or_else(|| name.clone());
            format!(
                "<li><a href=\"/runbooks/{name}\">{}</a></li>\n",
                escape(&title)
            )
        })
        .collect();
    let body = format!(
        "<h1>Runbooks</h1>\n<p>One page for each alert obsbox sends: what it means, \
         what to check and how to fix it.</p>\n<ul>\n{items}</ul>\n"
    );
    document(StatusCode::OK, "Runbooks", &body)
}

/// A name the path extractor cannot decode is as unknown as any other.
async fn page(name: Result<Path<String>, PathRejection>) -> Response {
    let Some(markdown) = name.ok().and_then(|Path(name)| source(&name)) else {
        return not_found();
    };
    let markdown = String::from_utf8_lossy(&markdown);
    let title = title(&markdown).unwrap_or_else(|| "Runbook".into());
    document(
        StatusCode::OK,
        &title,
        &format!("{BACK}\n{}", to_html(&markdown)),
    )
}

fn not_found() -> Response {
    document(
        StatusCode::NOT_FOUND,
        "No such runbook",
        &format!(
            "{BACK}\n<h1>No such runbook</h1>\n<p>There is no runbook by that name; \
             the index lists every one.</p>\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alert catalog, including alerts whose rules are still to come.
    const ALERTS: &[&str] = &[
        "HostDown",
        "DiskUsageCritical",
        "DiskUsageHigh",
        "MemoryUsageCritical",
        "CPUUsageHigh",
        "ChildCrashLooping",
        "ConfigReloadFailed",
        "LogErrorRateSpike",
        "LogLinesRefused",
        "LogLinesLost",
        "LogShippingStalled",
        "TargetDown",
        "TargetCoverageLow",
        "ProbeFailed",
        "TLSCertificateExpiresSoon",
        "BackupFailed",
        "BackupRPOExceeded",
        "BackupSlowerThanUsual",
        "BackupDrillFailed",
        "BackupRTOExceeded",
        "AlertEscalated",
        "SLOBurnRateFast",
        "SLOBurnRateSlow",
        "ObsboxTestAlert",
    ];

    const SECTIONS: &[&str] = &[
        "What it means",
        "Why it matters",
        "What to check",
        "How to fix",
        "When it resolves",
    ];

    fn markdown(name: &str) -> String {
        String::from_utf8(source(name).unwrap().into_owned()).unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn content_type(response: &Response) -> &str {
        response.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[test]
    fn every_alert_has_a_runbook() {
        for alert in ALERTS {
            assert!(has_runbook(alert), "{alert} has no runbook");
        }
    }

    #[test]
    fn every_runbook_is_titled_by_its_file_name_and_has_the_five_sections() {
        let names = names();
        assert_eq!(names.len(), Files::iter().count(), "stray files: {names:?}");
        for name in names {
            let markdown = markdown(&name);
            assert_eq!(markdown.lines().next(), Some(format!("# {name}").as_str()));
            assert_eq!(title(&markdown).as_deref(), Some(name.as_str()));
            let mut sections = Vec::new();
            let mut in_section = false;
            for event in Parser::new(&markdown) {
                match event {
                    Event::Start(Tag::Heading { level, .. }) => {
                        in_section = level == pulldown_cmark::HeadingLevel::H2;
                        if in_section {
                            sections.push(String::new());
                        }
                    }
                    Event::End(TagEnd::Heading(_)) => in_section = false,
                    Event::Text(text) if in_section => {
                        sections.last_mut().unwrap().push_str(&text);
                    }
                    // Placeholders such as <host> belong in code spans.
                    Event::Html(raw) | Event::InlineHtml(raw) => {
                        panic!("{name} has raw HTML: {raw}")
                    }
                    _ => {}
                }
            }
            assert_eq!(sections, SECTIONS, "{name}");
            let html = to_html(&markdown);
            assert!(html.starts_with(&format!("<h1>{name}</h1>")), "{name}");
            assert!(html.contains("<h2>When it resolves</h2>"), "{name}");
        }
    }

    #[test]
    fn names_other_than_letters_and_digits_are_refused() {
        for name in [
            "",
            "../etc",
            "..",
            "HostDown.md",
            "Host Down",
            "HostDown/",
            "/HostDown",
        ] {
            assert!(!has_runbook(name), "{name:?}");
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a <b> & c"), "a &lt;b&gt; &amp; c");
        assert_eq!(
            to_html("check `<host>` or <host>"),
            "<p>check <code>&lt;host&gt;</code> or &lt;host&gt;</p>\n"
        );
    }

    #[tokio::test]
    async fn a_page_is_a_complete_html_document() {
        let response = page(Ok(Path("HostDown".into()))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(&response), "text/html; charset=utf-8");
        let html = body(response).await;
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("<title>HostDown - obsbox runbooks</title>"));
        assert!(html.contains("<a href=\"/runbooks\">"));
        assert!(html.contains("<h2>What to check</h2>"));
    }

    #[tokio::test]
    async fn unknown_and_bad_names_are_an_html_404() {
        for name in ["NoSuchAlert", "../etc", "HostDown.md", ""] {
            let response = page(Ok(Path(name.into()))).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name:?}");
            assert_eq!(content_type(&response), "text/html; charset=utf-8");
            assert!(body(response).await.contains("<h1>No such runbook</h1>"));
        }
    }

    #[tokio::test]
    async fn the_index_links_every_runbook_under_its_title() {
        let response = index().await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = body(response).await;
        for alert in ALERTS {
            assert!(
                html.contains(&format!("<a href=\"/runbooks/{alert}\">{alert}</a>")),
                "{alert}"
            );
        }
    }
}
