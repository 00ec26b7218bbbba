//! Who is asking: the session behind a request, as the handlers see it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::convert::Infallible;

/// The cookie holding a signed-in browser's session.
pub const SESSION_COOKIE: &str = "obsbox_session";
/// The cookie holding the token a browser's forms and scripts send back.
pub const CSRF_COOKIE: &str = "obsbox_csrf";

/// The user a change is attributed to in the audit log.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, Infallible> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .unwrap_or_else(|| Actor(super::API_ACTOR.into())))
    }
}

/// What every page template needs: the signed-in user (none on setup and
/// login) and the CSRF token its forms and scripts send back.
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    pub user: Option<String>,
    pub csrf: String,
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
