//! Who may do what: the one table of rules. A request is named by its method
//! and the route it matched (`/api/users/{name}`, not the path sent), and
//! each route names the least role that may use it. A route without a rule
//! is refused to everyone but an admin, and a test reads the list of every
//! route in `tests/web_routes.rs`, so a new route without a rule fails it.

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// A user's (or an API token's) role, from least to most allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything a page shows; changes nothing but their own account.
    Viewer,
    /// Day-to-day operation: acknowledges alerts, silences, runs backups and
    /// disk tests now, starts and stops children. Changes no settings.
    Operator,
    /// Everything, settings, users, updates and resets included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(text.into())).ok()
    }
}

use Role::{Admin, Operator, Viewer};

/// The API's routes: (methods, route, least role). Reads are open to every
/// signed-in user unless they hand out secrets or the contents of backups.
const API_RULES: &[(&[&str], &str, Role)] = &[
    (&["GET"], "/api/overview", Viewer),
    (&["GET"], "/api/session", Viewer),
    (&["GET"], "/api/services", Viewer),
    (&["GET"], "/api/services/{name}/logs", Viewer),
    (&["GET"], "/api/services/{name}/logs/stream", Viewer),
    // Rendered configurations carry the receivers' passwords.
    (&["GET"], "/api/services/{name}/config", Admin),
    (&["POST"], "/api/services/{name}/{action}", Operator),
    (&["GET"], "/api/settings", Viewer),
    (&["GET"], "/api/settings/{section}", Viewer),
    (&["PUT"], "/api/settings/{section}", Admin),
    (&["GET"], "/api/settings-defaults", Viewer),
    (&["GET"], "/api/settings/export", Viewer),
    (&["POST"], "/api/settings/export/secrets", Admin),
    (&["POST"], "/api/settings/import", Admin),
    // Like a Grafana Editor, an operator may add and remove dashboards.
    (&["POST"], "/api/dashboards/import", Operator),
    (&["GET"], "/api/dashboards/imported", Viewer),
    (&["DELETE"], "/api/dashboards/imported/{uid}", Operator),
    (&["GET"], "/api/metrics/query", Viewer),
    (&["GET"], "/api/metrics/query_range", Viewer),
    (&["GET"], "/api/upstream", Viewer),
    (&["PUT"], "/api/upstream/{kind}/{name}/secret", Admin),
    (&["GET"], "/api/fleet", Viewer),
    (&["GET"], "/api/responder/bundle", Viewer),
    (&["GET"], "/api/responder/report/mail", Viewer),
    // Mails only to the receiver the settings name.
    (&["POST"], "/api/responder/report/mail", Operator),
    (&["GET"], "/api/attention", Viewer),
    (&["GET"], "/api/targets/status", Viewer),
    (&["POST"], "/api/targets/exporters", Admin),
    (&["GET"], "/api/audit", Viewer),
    (&["GET"], "/api/backups", Viewer),
    (&["GET"], "/api/backups/history", Viewer),
    (&["POST"], "/api/backups/jobs", Admin),
    (&["PUT", "DELETE"], "/api/backups/jobs/{name}", Admin),
    (&["GET"], "/api/backups/jobs/{name}/retention", Viewer),
    (&["GET"], "/api/backups/servers", Viewer),
    (
        &["POST"],
        "/api/backups/jobs/{name}/verify-on-server",
        Operator,
    ),
    // run, verify, drill and copy (to the off-site repository) now.
    (&["POST"], "/api/backups/jobs/{name}/{action}", Operator),
    (&["POST"], "/api/backups/repositories/test", Admin),
    (&["POST"], "/api/backups/halt", Operator),
    (&["POST"], "/api/backups/resume", Operator),
    (&["GET"], "/api/backups/jobs/{name}/snapshots", Viewer),
    // The files in backups are the data itself.
    (&["GET"], "/api/backups/jobs/{name}/files", Admin),
    (&["GET"], "/api/backups/jobs/{name}/download", Admin),
    (&["POST"], "/api/backups/jobs/{name}/restore", Admin),
    (&["GET"], "/api/backups/runs/{id}", Viewer),
    (&["GET"], "/api/backups/keys/{name}", Viewer),
    (&["POST"], "/api/backups/keys/{name}", Admin),
    // The key file itself: whoever has it can read the backups.
    (&["POST"], "/api/backups/keys/{name}/export", Admin),
    // The key on paper (PBS's key file, or restic's password): the same.
    (&["POST"], "/api/backups/keys/{name}/paperkey", Admin),
    // restic's passwords are its keys: admin only, even to list them.
    (&["GET", "POST"], "/api/backups/restic-keys/{name}", Admin),
    (&["DELETE"], "/api/backups/restic-keys/{name}/{id}", Admin),
    (&["PUT"], "/api/backups/restic-keys/{name}/password", Admin),
    (&["GET"], "/api/backups/restores", Viewer),
    (&["GET"], "/api/backups/restores/{id}", Viewer),
    (&["GET"], "/api/power", Viewer),
    (&["GET"], "/api/power/dry-run", Viewer),
    (&["PUT"], "/api/power/ups", Admin),
    (&["PUT", "DELETE"], "/api/power/nut-users/{name}", Admin),
    (&["GET"], "/api/disks", Viewer),
    (&["POST"], "/api/disks/refresh", Operator),
    (&["POST"], "/api/disks/{disk}/self-test", Operator),
    (&["GET"], "/api/logs/search", Viewer),
    (&["GET"], "/api/logs/histogram", Viewer),
    (&["GET"], "/api/logs/labels", Viewer),
    (&["GET"], "/api/logs/labels/{name}/values", Viewer),
    (&["GET"], "/api/logs/tail", Viewer),
    (&["GET"], "/api/logs/senders", Viewer),
    (&["DELETE"], "/api/logs/senders/{source}/{sender}", Admin),
    (&["GET"], "/api/logs/sources", Viewer),
    (&["GET", "POST"], "/api/logs/tokens", Admin),
    (&["DELETE"], "/api/logs/tokens/{host}", Admin),
    (&["GET"], "/api/alerts", Viewer),
    (&["POST"], "/api/alerts/test", Operator),
    (&["GET"], "/api/alerts/receivers", Viewer),
    (&["POST"], "/api/alerts/receivers", Admin),
    (&["PUT", "DELETE"], "/api/alerts/receivers/{name}", Admin),
    (&["POST"], "/api/alerts/{id}/ack", Operator),
    (&["POST"], "/api/alerts/{id}/mark", Operator),
    (&["GET"], "/api/alerting/drills", Viewer),
    (&["POST"], "/api/alerting/drills", Operator),
    (&["GET"], "/api/silences", Viewer),
    (&["POST"], "/api/silences", Operator),
    (&["DELETE"], "/api/silences/{id}", Operator),
    (&["GET"], "/api/system/time", Viewer),
    (&["GET"], "/api/system/tls", Viewer),
    (&["PUT", "DELETE"], "/api/system/tls", Admin),
    (&["POST"], "/api/system/reboot", Admin),
    (&["POST"], "/api/system/factory-reset", Admin),
    (&["GET"], "/api/system/diagnostics", Admin),
    (&["GET"], "/api/update", Viewer),
    (&["POST"], "/api/update/install", Admin),
    (&["POST"], "/api/update/install-url", Admin),
    // Each user's own account: password, second factor, tokens, logout.
    (&["POST"], "/api/logout", Viewer),
    (&["POST"], "/api/account/password", Viewer),
    (&["GET", "POST", "DELETE"], "/api/account/totp", Viewer),
    (&["POST"], "/api/account/totp/confirm", Viewer),
    (&["GET", "POST"], "/api/account/tokens", Viewer),
    (&["DELETE"], "/api/account/tokens/{id}", Viewer),
    // Everyone's accounts.
    (&["GET", "POST"], "/api/users", Admin),
    (&["PUT", "DELETE"], "/api/users/{name}", Admin),
    (&["POST"], "/api/users/{name}/password", Admin),
    (&["DELETE"], "/api/users/{name}/totp", Admin),
    (&["GET", "POST"], "/api/invites", Admin),
    (&["DELETE"], "/api/invites/{id}", Admin),
];

/// Pages only an admin is shown (the API behind them is guarded anyway;
/// pages carry no data of their own).
const ADMIN_PAGES: &[&str] = &["/system/users"];

/// The least role that may send `method` to `route` (as the router matched
/// it); `None` for a route with no rule.
pub fn required(method: &Method, route: &str) -> Option<Role> {
    let read = *method == Method::GET || *method == Method::HEAD;
    // HEAD is answered by every GET route.
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    if let Some(need) = proxied(read, route) {
        return Some(need);
    }
    if !route.starts_with("/api/") {
        // Pages, runbooks and docs: there to be read.
        return read.then(|| {
            if ADMIN_PAGES.contains(&route) {
                Admin
            } else {
                Viewer
            }
        });
    }
    API_RULES
        .iter()
        .find(|(methods, r, _)| *r == route && methods.contains(&method))
        .map(|(_, _, need)| *need)
}

/// Whether `role` may send `method` to `route`. An admin may do everything;
/// anyone else only what a rule allows.
pub fn permits(role: Role, method: &Method, route: &str) -> bool {
    role == Admin || required(method, route).is_some_and(|need| role >= need)
}

/// Prometheus' read-only API calls that Grafana sends by POST (the routes
/// `web::proxy` declares for them).
const PROMETHEUS_QUERIES: &[&str] = &[
    "/prometheus/api/v1/query",
    "/prometheus/api/v1/query_range",
    "/prometheus/api/v1/query_exemplars",
    "/prometheus/api/v1/series",
    "/prometheus/api/v1/labels",
];

/// The children's UIs behind the proxy: reading is open to every user, and
/// so are Prometheus' queries sent by POST. In Grafana every user may send
/// anything: obsbox signs them in with their role and Grafana enforces it.
/// Changing something in Alertmanager (silences) needs an operator, in
/// Prometheus and Loki an admin.
fn proxied(read: bool, route: &str) -> Option<Role> {
    let rest = route.strip_prefix('/')?;
    // `/grafana` (no slash) only redirects to `/grafana/`.
    let (child, redirect) = match rest.split_once('/') {
        Some((child, _)) => (child, false),
        None => (rest, true),
    };
    if !["grafana", "prometheus", "alertmanager", "loki"].contains(&child) {
        return None;
    }
    let query = PROMETHEUS_QUERIES.contains(&route);
    Some(match (redirect || read || query, child) {
        (true, _) | (false, "grafana") => Viewer,
        (false, "alertmanager") => Operator,
        _ => Admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (route, method) of the route list in `tests/web_routes.rs`
    /// (which itself must name every route the router declares).
    fn listed_routes() -> Vec<(String, String)> {
        let list = include_str!("../../tests/web_routes.rs");
        let case = regex::Regex::new(r#"case\(\s*"([^"]+)",\s*"([A-Z]+)""#).unwrap();
        case.captures_iter(list)
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect()
    }

    #[test]
    fn every_listed_route_has_a_rule_and_every_rule_a_listed_route() {
        let listed = listed_routes();
        assert!(listed.len() > 80, "{listed:?}");
        for (route, method) in &listed {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(
                required(&method, route).is_some(),
                "{method} {route} has no rule in accounts::roles"
            );
        }
        for (methods, route, _) in API_RULES {
            for method in *methods {
                assert!(
                    listed.iter().any(|(r, m)| r == route && m == method),
                    "{method} {route} has a rule but is not in tests/web_routes.rs"
                );
            }
        }
    }

    #[test]
    fn an_admin_may_do_everything_and_the_others_what_their_rule_says() {
        for (route, method) in listed_routes() {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let need = required(&method, &route).unwrap();
            assert!(permits(Admin, &method, &route));
            assert_eq!(permits(Operator, &method, &route), need <= Operator);
            assert_eq!(permits(Viewer, &method, &route), need == Viewer);
        }
    }

    #[test]
    fn a_viewer_changes_nothing_but_their_own_account() {
        let own = [
            "/api/logout",
            "/api/account/password",
            "/api/account/totp",
            "/api/account/totp/confirm",
            "/api/account/tokens",
            "/api/account/tokens/{id}",
        ];
        for (route, method) in listed_routes() {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            if method != Method::GET && permits(Viewer, &method, &route) {
                let query = PROMETHEUS_QUERIES.contains(&route.as_str());
                assert!(own.contains(&route.as_str()) || query, "{method} {route}");
            }
        }
    }

    #[test]
    fn an_operator_runs_things_but_changes_no_settings_users_or_updates() {
        let post = Method::POST;
        assert!(permits(Operator, &post, "/api/alerts/{id}/ack"));
        assert!(permits(Operator, &post, "/api/silences"));
        assert!(permits(Operator, &Method::DELETE, "/api/silences/{id}"));
        assert!(permits(
            Operator,
            &post,
            "/api/backups/jobs/{name}/{action}"
        ));
        assert!(permits(
            Operator,
            &post,
            "/api/backups/jobs/{name}/verify-on-server"
        ));
        assert!(!permits(
            Viewer,
            &post,
            "/api/backups/jobs/{name}/verify-on-server"
        ));
        assert!(permits(Operator, &post, "/api/services/{name}/{action}"));
        for (method, route) in [
            (Method::PUT, "/api/settings/{section}"),
            (Method::POST, "/api/users"),
            (Method::PUT, "/api/users/{name}"),
            (Method::POST, "/api/update/install"),
            (Method::POST, "/api/system/factory-reset"),
            (Method::POST, "/api/backups/jobs/{name}/restore"),
            (Method::GET, "/api/users"),
            (Method::GET, "/system/users"),
        ] {
            assert!(!permits(Operator, &method, route), "{method} {route}");
        }
    }

    #[test]
    fn unknown_routes_are_for_admins_only_and_pages_are_read_only() {
        assert_eq!(required(&Method::GET, "/api/not-a-route"), None);
        assert!(!permits(Operator, &Method::GET, "/api/not-a-route"));
        assert!(permits(Admin, &Method::GET, "/api/not-a-route"));
        assert!(permits(Viewer, &Method::HEAD, "/backups"));
        assert!(!permits(Operator, &Method::POST, "/backups"));
    }

    #[test]
    fn the_proxied_children_are_read_by_all_and_changed_by_some() {
        let post = Method::POST;
        assert!(permits(Viewer, &Method::GET, "/grafana/{*rest}"));
        assert!(permits(Viewer, &post, "/grafana"));
        // Grafana enforces the role obsbox signs the user in with.
        assert!(permits(Viewer, &post, "/grafana/{*rest}"));
        assert!(permits(Viewer, &Method::DELETE, "/grafana/"));
        assert!(!permits(Viewer, &post, "/alertmanager/{*rest}"));
        assert!(permits(Operator, &post, "/alertmanager/{*rest}"));
        assert!(!permits(Operator, &post, "/prometheus/{*rest}"));
        assert!(permits(Viewer, &post, "/prometheus/api/v1/query_range"));
        assert!(permits(Viewer, &Method::GET, "/loki/{*rest}"));
        assert!(!permits(Operator, &post, "/loki/{*rest}"));
        assert_eq!(required(&Method::GET, "/grafanax/"), Some(Viewer));
    }

    #[test]
    fn roles_read_and_order() {
        for role in [Viewer, Operator, Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert!(Viewer < Operator && Operator < Admin);
    }
}
