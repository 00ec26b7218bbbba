//! `/docs`: the manual, one page per capability, from the Markdown files of
//! `web/docs/`, built into the binary so the reference is on the box,
//! offline, beside the pages it explains. The README is the newcomer's
//! overview and links here.

use super::manual::Shelf;
use super::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::borrow::Cow;
use std::sync::Arc;

#[derive(rust_embed::Embed)]
#[folder = "web/docs/"]
struct Files;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/docs", get(index))
        .route("/docs/{name}", get(page))
}

const SHELF: Shelf = Shelf {
    path: "/docs",
    title: "Manual",
    intro: "The reference of each of obsbox's capabilities: what it does, its settings with their defaults and ranges, its API, metrics and alerts, and what it does not do yet.",
    file: |name| Files::get(name).map(|file| file.data),
    files: || Files::iter().map(Cow::into_owned).collect(),
    // Page names are lower-case words joined by '-'.
    valid_name: |name| {
        !name.is_empty()
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    },
    // The manual documents the API itself.
    ui_page: |_| None,
};

async fn index() -> Response {
    SHELF.index()
}

/// A name the path extractor cannot decode is as unknown as any other.
async fn page(name: Result<Path<String>, PathRejection>) -> Response {
    SHELF.page(name.ok().as_ref().map(|Path(name)| name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn every_file_is_a_page_titled_by_its_first_heading() {
        let names = SHELF.names();
        assert_eq!(names.len(), Files::iter().count(), "stray files: {names:?}");
        assert!(!names.is_empty());
        for name in names {
            let markdown = String::from_utf8(SHELF.source(&name).unwrap().into_owned()).unwrap();
            assert!(markdown.starts_with("# "), "{name} starts with its title");
        }
    }

    #[tokio::test]
    async fn the_index_links_every_page_and_bad_names_are_a_404() {
        let html = body(index().await).await;
        for name in SHELF.names() {
            assert!(
                html.contains(&format!("<a href=\"/docs/{name}\">")),
                "{name}"
            );
        }
        for name in ["../Cargo", "Supervision", "supervision.md", "", "-x"] {
            let response = page(Ok(Path(name.into()))).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name:?}");
        }
    }
}
