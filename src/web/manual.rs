//! Markdown pages built into the binary and served as HTML: the runbooks
//! (`/runbooks`, one per alert) and the manual (`/docs`, one per
//! capability). They are there even when nothing else on the box works, and
//! offline, beside the pages they explain.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use std::borrow::Cow;

/// One collection of Markdown pages under one path.
pub(super) struct Shelf {
    /// Where it is served: `/runbooks`, `/docs`.
    pub path: &'static str,
    /// The index page's heading, and the suffix of every page's title.
    pub title: &'static str,
    /// The index page's first paragraph.
    pub intro: &'static str,
    /// A page's Markdown by file name (`<name>.md`).
    pub file: fn(&str) -> Option<Cow<'static, [u8]>>,
    /// Every file name.
    pub files: fn() -> Vec<String>,
    /// Whether `name` may be asked for; anything else (`..`, `/`, a `.md`
    /// suffix) is refused before it reaches the file lookup.
    pub valid_name: fn(&str) -> bool,
    /// The admin UI page (path, name) that does what an API call in a code
    /// span does, linked after it, so a reader can do it from the UI.
    pub ui_page: fn(&str) -> Option<(&'static str, &'static str)>,
}

impl Shelf {
    /// The Markdown of page `name`.
    pub fn source(&self, name: &str) -> Option<Cow<'static, [u8]>> {
        if !(self.valid_name)(name) {
            return None;
        }
        (self.file)(&format!("{name}.md"))
    }

    /// Every page's name, sorted. Files whose names could never be asked for
    /// are left out, so every link on the index works.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.files)()
            .into_iter()
            .filter_map(|path| path.strip_suffix(".md").map(str::to_string))
            .filter(|name| (self.valid_name)(name))
            .collect();
        names.sort();
        names
    }

    pub fn index(&self) -> Response {
        let items: String = self
            .names()
            .into_iter()
            .map(|name| {
                let markdown = self.source(&name).unwrap_or_default();
                let title = title(&String::from_utf8_lossy(&markdown)).unwrap_or(name.clone());
                format!(
                    "<li><a href=\"{}/{name}\">{}</a></li>\n",
                    self.path,
                    escape(&title)
                )
            })
            .collect();
        let body = format!(
            "<h1>{}</h1>\n<p>{}</p>\n<ul>\n{items}</ul>\n",
            escape(self.title),
            escape(self.intro)
        );
        self.document(StatusCode::OK, self.title, &body)
    }

    pub fn page(&self, name: Option<&str>) -> Response {
        let Some(markdown) = name.and_then(|name| self.source(name)) else {
            return self.document(
                StatusCode::NOT_FOUND,
                "No such page",
                &format!(
                    "{}\n<h1>No such page</h1>\n<p>There is no page by that name here; \
                     the index lists every one.</p>\n",
                    self.back()
                ),
            );
        };
        self.page_of(&String::from_utf8_lossy(&markdown))
    }

    /// A page of this shelf made of `markdown`, however it was come by.
    pub fn page_of(&self, markdown: &str) -> Response {
        let title = title(markdown).unwrap_or_else(|| self.title.into());
        let body = format!(
            "{}\n{}",
            self.back(),
            to_html_linked(markdown, self.ui_page)
        );
        self.document(StatusCode::OK, &title, &body)
    }

    fn back(&self) -> String {
        format!(
            "<nav><a href=\"{}\">&larr; All {}</a> &middot; <a href=\"/\">The admin UI</a></nav>",
            self.path,
            escape(&self.title.to_lowercase())
        )
    }

    fn document(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title} - obsbox {shelf}</title>\n<link rel=\"stylesheet\" href=\"{style}\">\n</head>\n\
             <body>\n<main>\n{body}</main>\n</body>\n</html>\n",
            title = escape(title),
            shelf = escape(&self.title.to_lowercase()),
            style = super::pages::asset_url("runbooks.css"),
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response()
    }
}

/// The text of the first heading.
pub(super) fn title(markdown: &str) -> Option<String> {
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

/// Markdown as HTML (runbooks' tests check the pages' structure with it).
#[cfg(test)]
pub(super) fn to_html(markdown: &str) -> String {
    to_html_linked(markdown, |_| None)
}

/// [`to_html`], with a link to the UI page `ui_page` names after each code
/// span it knows (an API call).
fn to_html_linked(
    markdown: &str,
    ui_page: fn(&str) -> Option<(&'static str, &'static str)>,
) -> String {
    let mut events: Vec<Event> = Parser::new_ext(markdown, Options::ENABLE_TABLES)
        .map(|event| match event {
            // A placeholder such as <host> written outside a code span is meant
            // to be read, not taken as a tag.
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Code(code) => match ui_page(&code) {
                Some((href, name)) => Event::InlineHtml(
                    format!(
                        "<code>{}</code> (or on the <a href=\"{href}\">{name}</a> page)",
                        escape(&code)
                    )
                    .into(),
                ),
                None => Event::Code(code),
            },
            other => other,
        })
        .collect();
    // Headings get the ids GitHub gives them, so a link to `page#section`
    // works on the box as in the repository.
    let mut heading_text: Option<(usize, String)> = None;
    for i in 0..events.len() {
        match &events[i] {
            Event::Start(Tag::Heading { .. }) => heading_text = Some((i, String::new())),
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, heading)) = &mut heading_text {
                    heading.push_str(text);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((start, heading)) = heading_text.take() {
                    if let Event::Start(Tag::Heading { id, .. }) = &mut events[start] {
                        *id = Some(slug(&heading).into());
                    }
                }
            }
            _ => {}
        }
    }
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

/// A heading's anchor as GitHub makes it: lower case, spaces as `-`, other
/// punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `text` escaped for HTML, by the same code that escapes the Markdown's text.
fn escape(text: &str) -> String {
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, std::iter::once(Event::Text(text.into())));
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a <b> & c"), "a &lt;b&gt; &amp; c");
        assert_eq!(
            to_html("check `<host>` or <host>"),
            "<p>check <code>&lt;host&gt;</code> or &lt;host&gt;</p>\n"
        );
    }

    #[test]
    fn api_calls_link_to_the_page_that_does_the_same() {
        let page = |code: &str| (code.contains("/api/backups")).then_some(("/backups", "Backups"));
        assert_eq!(
            to_html_linked("Run it: `POST /api/backups/jobs/<job>/run`, or `x`.", page),
            "<p>Run it: <code>POST /api/backups/jobs/&lt;job&gt;/run</code> \
             (or on the <a href=\"/backups\">Backups</a> page), or <code>x</code>.</p>\n"
        );
    }

    #[test]
    fn headings_get_githubs_anchors() {
        assert_eq!(
            to_html("## Grafana, Prometheus and Alertmanager at obsbox's address"),
            "<h2 id=\"grafana-prometheus-and-alertmanager-at-obsboxs-address\">\
             Grafana, Prometheus and Alertmanager at obsbox's address</h2>\n"
        );
        assert_eq!(slug("Commit or roll back"), "commit-or-roll-back");
        assert_eq!(slug("`LIST CMD` answers"), "list-cmd-answers");
    }
}
