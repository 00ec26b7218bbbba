//! Several users over HTTP: roles enforced for sessions and API tokens, API
//! tokens (bearer, no CSRF, scoped, revocable, expiring), and TOTP at login
//! with codes computed here as an authenticator app would.

mod common;

use common::*;
use serde_json::{json, Value};

fn services() -> Vec<(&'static str, Value)> {
    vec![("services", services_only(&[]))]
}

fn add_user(obsbox: &Obsbox, name: &str, role: &str) -> UserSession {
    let password = format!("{name}'s password");
    let (status, body) = obsbox.send(
        "POST",
        "/api/users",
        &json!({"name": name, "role": role, "password": password, "confirm": password}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    obsbox.log_in_as(name, &password, None).unwrap()
}

fn refused(answer: &(u16, Value), status: u16) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert!(
        answer.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        answer.1
    );
}

#[test]
fn each_role_does_what_it_may_and_no_more() {
    let obsbox = Obsbox::start(&services());
    let viewer = add_user(&obsbox, "vic", "viewer");
    let operator = add_user(&obsbox, "olga", "operator");
    let general = obsbox.get("/api/settings/general").to_string();

    // Reading is for everyone.
    for session in [&viewer, &operator] {
        assert_eq!(obsbox.send_as(session, "GET", "/api/overview", "").0, 200);
        let (_, me) = obsbox.send_as(session, "GET", "/api/session", "");
        assert!(me["role"] == "viewer" || me["role"] == "operator", "{me}");
    }
    // Settings, users and the data in backups are not.
    for session in [&viewer, &operator] {
        refused(
            &obsbox.send_as(session, "PUT", "/api/settings/general", &general),
            403,
        );
        refused(&obsbox.send_as(session, "GET", "/api/users", ""), 403);
        refused(
            &obsbox.send_as(session, "POST", "/api/users", r#"{"name": "x"}"#),
            403,
        );
        refused(
            &obsbox.send_as(session, "GET", "/api/system/diagnostics", ""),
            403,
        );
    }
    // Running things now is for operators: past the guard, the job is unknown.
    refused(
        &obsbox.send_as(&viewer, "POST", "/api/backups/jobs/nope/run", ""),
        403,
    );
    refused(
        &obsbox.send_as(&operator, "POST", "/api/backups/jobs/nope/run", ""),
        404,
    );
    refused(&obsbox.send_as(&viewer, "POST", "/api/silences", "{}"), 403);
    refused(
        &obsbox.send_as(&operator, "POST", "/api/silences", "{}"),
        422,
    );
    // Everyone changes their own password.
    let (status, body) = obsbox.send_as(
        &viewer,
        "POST",
        "/api/account/password",
        &json!({"current": "vic's password", "password": "vic's new password",
                "confirm": "vic's new password"})
        .to_string(),
    );
    assert_eq!(status, 204, "{body}");

    // The admin changes a role: it applies to the open session at once.
    let (status, _) = obsbox.send("PUT", "/api/users/vic", r#"{"role": "operator"}"#);
    assert_eq!(status, 204);
    refused(
        &obsbox.send_as(&viewer, "POST", "/api/backups/jobs/nope/run", ""),
        404,
    );
    // Disabling ends the session and refuses the login.
    let (status, _) = obsbox.send("PUT", "/api/users/vic", r#"{"disabled": true}"#);
    assert_eq!(status, 204);
    refused(&obsbox.send_as(&viewer, "GET", "/api/overview", ""), 401);
    assert_eq!(
        obsbox
            .log_in_as("vic", "vic's new password", None)
            .unwrap_err()
            .0,
        401
    );
    // The last admin stays.
    refused(&obsbox.send("DELETE", "/api/users/admin", ""), 409);
    refused(
        &obsbox.send("PUT", "/api/users/admin", r#"{"role": "viewer"}"#),
        409,
    );
    let (status, _) = obsbox.send("DELETE", "/api/users/olga", "");
    assert_eq!(status, 204);
    refused(&obsbox.send_as(&operator, "GET", "/api/overview", ""), 401);

    let users = obsbox.get("/api/users");
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "vic"]);
    let audit = obsbox.get("/api/audit");
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "admin")
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for action in ["user.create", "user.role", "user.disable", "user.delete"] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
}

fn make_token(obsbox: &Obsbox, name: &str, role: &str) -> (i64, String) {
    let (status, body) = obsbox.send(
        "POST",
        "/api/account/tokens",
        &json!({"name": name, "role": role}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_i64().unwrap(),
        body["token"].as_str().unwrap().to_string(),
    )
}

#[test]
fn api_tokens_work_on_the_api_within_their_role_until_revoked_or_expired() {
    let obsbox = Obsbox::start(&services());
    let (viewer_id, viewer) = make_token(&obsbox, "dashboard", "viewer");
    let (_, operator) = make_token(&obsbox, "backup script", "operator");
    let general = obsbox.get("/api/settings/general").to_string();

    assert_eq!(
        obsbox
            .send_with_token(&viewer, "GET", "/api/overview", "")
            .0,
        200
    );
    refused(
        &obsbox.send_with_token(&viewer, "PUT", "/api/settings/general", &general),
        403,
    );
    refused(
        &obsbox.send_with_token(&operator, "PUT", "/api/settings/general", &general),
        403,
    );
    // No CSRF token needed: no cookie is involved.
    refused(
        &obsbox.send_with_token(&operator, "POST", "/api/backups/jobs/nope/run", ""),
        404,
    );
    // Only on the API: a page with a token is sent to login.
    assert_eq!(
        obsbox.send_with_token(&viewer, "GET", "/backups", "").0,
        303
    );
    // A token cannot make a stronger one.
    refused(
        &obsbox.send_with_token(
            &viewer,
            "POST",
            "/api/account/tokens",
            r#"{"name": "more", "role": "admin"}"#,
        ),
        422,
    );
    // Shown once, listed without the secret, with when it was last used.
    let listed = obsbox.get("/api/account/tokens");
    assert!(!listed.to_string().contains(&viewer[4..]), "{listed}");
    let dashboard = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "dashboard")
        .unwrap();
    assert!(dashboard["last_used_at"].is_i64(), "{dashboard}");

    // Wrong, revoked, expired: 401 with a JSON error.
    refused(
        &obsbox.send_with_token("obx_0000", "GET", "/api/overview", ""),
        401,
    );
    let (status, _) = obsbox.send("DELETE", &format!("/api/account/tokens/{viewer_id}"), "");
    assert_eq!(status, 204);
    refused(
        &obsbox.send_with_token(&viewer, "GET", "/api/overview", ""),
        401,
    );
    let (status, body) = obsbox.send(
        "POST",
        "/api/account/tokens",
        r#"{"name": "short", "role": "viewer", "expires_days": 1}"#,
    );
    assert_eq!(status, 201, "{body}");
    let short = body["token"].as_str().unwrap();
    assert_eq!(
        obsbox.send_with_token(short, "GET", "/api/overview", "").0,
        200
    );
    let db = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    db.execute(
        "UPDATE api_tokens SET expires_at = 1 WHERE name = 'short'",
        [],
    )
    .unwrap();
    refused(
        &obsbox.send_with_token(short, "GET", "/api/overview", ""),
        401,
    );

    // Changes through a token are audited as its user's, naming it.
    let audit = obsbox.get("/api/audit");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor"] == "admin" && a["action"] == "token.revoke"),
        "{audit}"
    );
}

/// The code an authenticator app shows for `secret` (base32) at `unix` seconds.
fn app_code(secret: &str, unix: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x".into())
        .unwrap()
        .generate(unix)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_user_with_totp_signs_in_with_a_fresh_code_or_a_recovery_code() {
    let obsbox = Obsbox::start(&services());
    let (status, enrolment) = obsbox.send("POST", "/api/account/totp", "");
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap();
    assert!(enrolment["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/obsbox:admin%40obsbox?secret="));
    assert!(enrolment["qr_svg"].as_str().unwrap().contains("<svg"));
    // A wrong code does not turn it on.
    refused(
        &obsbox.send("POST", "/api/account/totp/confirm", r#"{"code": "000000"}"#),
        422,
    );
    assert_eq!(obsbox.get("/api/account/totp")["enabled"], false);
    let start = now();
    let (status, body) = obsbox.send(
        "POST",
        "/api/account/totp/confirm",
        &json!({"code": app_code(secret, start)}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let recovery: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    assert_eq!(obsbox.get("/api/account/totp")["enabled"], true);

    // The password alone asks for the code; a wrong one is refused.
    let (status, body) = obsbox.log_in_as("admin", PASSWORD, None).unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(body["problems"][0]["field"], "code", "{body}");
    assert_eq!(
        obsbox
            .log_in_as("admin", PASSWORD, Some("123456"))
            .unwrap_err()
            .0,
        401
    );
    // The next step's code works once; the one used to confirm never again.
    assert!(obsbox
        .log_in_as("admin", PASSWORD, Some(&app_code(secret, start)))
        .is_err());
    let next = app_code(secret, start + 30);
    let session = obsbox.log_in_as("admin", PASSWORD, Some(&next)).unwrap();
    assert_eq!(obsbox.send_as(&session, "GET", "/api/overview", "").0, 200);
    assert!(obsbox.log_in_as("admin", PASSWORD, Some(&next)).is_err());
    // A recovery code works once.
    assert!(obsbox
        .log_in_as("admin", PASSWORD, Some(&recovery[0]))
        .is_ok());
    assert!(obsbox
        .log_in_as("admin", PASSWORD, Some(&recovery[0]))
        .is_err());

    // An admin removes a user's lost second factor; then the password is enough.
    let (status, _) = obsbox.send("DELETE", "/api/users/admin/totp", "");
    assert_eq!(status, 204);
    assert!(obsbox.log_in_as("admin", PASSWORD, None).is_ok());
}

/// `path` asked for with `session` and `accept`: (status, content type, CSP, body).
fn fetch_as(
    obsbox: &Obsbox,
    session: &UserSession,
    path: &str,
    accept: &str,
) -> (u16, String, Option<String>, String) {
    let request = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .get(&obsbox.url(path))
        .set("Accept", accept);
    let response = match with_session(request, Some(session)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let header = |name| response.header(name).map(str::to_string);
    let (content_type, csp) = (
        header("content-type").unwrap_or_default(),
        header("content-security-policy"),
    );
    (
        response.status(),
        content_type,
        csp,
        response.into_string().unwrap(),
    )
}

#[test]
fn a_page_refused_to_a_role_is_an_html_page_and_the_api_stays_json() {
    let obsbox = Obsbox::start(&services());
    let viewer = add_user(&obsbox, "vic", "viewer");
    let browser = "text/html,application/xhtml+xml,*/*;q=0.8";

    let (status, content_type, csp, body) = fetch_as(&obsbox, &viewer, "/system/users", browser);
    assert_eq!(status, 403, "{body}");
    assert!(
        content_type.starts_with("text/html"),
        "{content_type}: {body}"
    );
    assert!(
        csp.is_some_and(|csp| csp.contains("frame-ancestors 'none'")),
        "the page has the UI's headers"
    );
    assert!(body.contains("<h1>Not for your role</h1>"), "{body}");
    assert!(
        body.contains("Your role <strong>viewer</strong> cannot open <code>/system/users</code>")
            && body.contains("ask an admin"),
        "{body}"
    );
    assert!(
        body.contains(r#"href="/services""#),
        "the navigation is there: {body}"
    );

    // The API, and a client not asking for HTML, get JSON.
    for (path, accept) in [
        ("/api/users", browser),
        ("/system/users", "application/json"),
    ] {
        let (status, content_type, _, body) = fetch_as(&obsbox, &viewer, path, accept);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {body}"
        );
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("role viewer"),
            "{body}"
        );
    }
    // A page the role may open is the page itself.
    let (status, _, _, body) = fetch_as(&obsbox, &viewer, "/system", browser);
    assert_eq!(status, 200, "{body}");
}

/// A request before any session, with the pre-session CSRF cookie and token
/// (as the invite page sends it): (status, JSON body, the session cookie set).
fn entry(obsbox: &Obsbox, path: &str, body: &Value) -> (u16, Value, Option<String>) {
    let request = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .post(&obsbox.url(path));
    let response = match with_session(request, None).send_string(&body.to_string()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let cookie = session_set_by(&response);
    (
        response.status(),
        response.into_json().unwrap_or(Value::Null),
        cookie,
    )
}

#[test]
fn an_invite_link_makes_one_account_of_its_role_and_is_refused_once_used_or_revoked() {
    let obsbox = Obsbox::start(&services());
    let (status, made) = obsbox.send(
        "POST",
        "/api/invites",
        r#"{"role": "operator", "expires_hours": 48}"#,
    );
    assert_eq!(status, 201, "{made}");
    let link = made["link"].as_str().unwrap();
    let token = link
        .strip_prefix("/invite#")
        .expect("the token is in the fragment");
    assert_eq!(token.len(), 64, "{link}");
    let hours =
        (made["expires_at"].as_i64().unwrap() - made["created_at"].as_i64().unwrap()) / 3_600_000;
    assert_eq!(hours, 48);
    // The list never shows the token again.
    let listed = obsbox.get("/api/invites");
    assert!(!listed.to_string().contains(token), "{listed}");
    assert_eq!(listed[0]["role"], "operator");
    assert_eq!(listed[0]["created_by"], "admin");

    // The invitee sees what it offers, then takes it.
    let (status, offer, _) = entry(&obsbox, "/api/invite/check", &json!({"token": token}));
    assert_eq!(status, 200, "{offer}");
    assert_eq!(offer["role"], "operator");
    let password = "olga's own password";
    let accept = json!({"token": token, "name": "olga", "password": password, "confirm": "typo"});
    let (status, mismatch, _) = entry(&obsbox, "/api/invite/accept", &accept);
    assert_eq!(status, 422, "{mismatch}");
    assert_eq!(mismatch["problems"][0]["field"], "confirm", "{mismatch}");
    // A name taken already leaves the link usable.
    let taken = json!({"token": token, "name": "admin", "password": password, "confirm": password});
    let (status, body, _) = entry(&obsbox, "/api/invite/accept", &taken);
    assert_eq!(status, 409, "{body}");
    let accept = json!({"token": token, "name": "olga", "password": password, "confirm": password});
    let (status, signed_in, cookie) = entry(&obsbox, "/api/invite/accept", &accept);
    assert_eq!(status, 201, "{signed_in}");
    assert_eq!(signed_in["role"], "operator");
    // Signed in at once, with the invite's role.
    let session = (
        cookie.expect("a session cookie"),
        signed_in["csrf"].as_str().unwrap().to_string(),
    );
    let (_, me) = obsbox.send_as(&session, "GET", "/api/session", "");
    assert_eq!(me["user"], "olga", "{me}");
    assert_eq!(me["role"], "operator", "{me}");
    assert!(obsbox.log_in_as("olga", password, None).is_ok());

    // One use only.
    let again = json!({"token": token, "name": "olga2", "password": password, "confirm": password});
    for (path, body) in [
        ("/api/invite/check", json!({"token": token})),
        ("/api/invite/accept", again),
    ] {
        let (status, body, cookie) = entry(&obsbox, path, &body);
        assert_eq!(status, 410, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("used already"),
            "{body}"
        );
        assert!(cookie.is_none());
    }
    let listed = obsbox.get("/api/invites");
    assert_eq!(listed[0]["used_by"], "olga", "{listed}");

    // A revoked link is refused as unknown.
    let (_, second) = obsbox.send(
        "POST",
        "/api/invites",
        r#"{"role": "admin", "expires_hours": 1}"#,
    );
    let token = second["link"]
        .as_str()
        .unwrap()
        .strip_prefix("/invite#")
        .unwrap();
    let (status, _) = obsbox.send("DELETE", &format!("/api/invites/{}", second["id"]), "");
    assert_eq!(status, 204);
    let (status, body, _) = entry(&obsbox, "/api/invite/check", &json!({"token": token}));
    assert_eq!(status, 410, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not known"),
        "{body}"
    );
    // Only admins make invites.
    refused(
        &obsbox.send_as(
            &session,
            "POST",
            "/api/invites",
            r#"{"role": "admin", "expires_hours": 1}"#,
        ),
        403,
    );
    refused(&obsbox.send_as(&session, "GET", "/api/invites", ""), 403);

    // Kept only hashed; every step audited.
    let database = std::fs::read(obsbox.data.join("obsbox.db")).unwrap();
    assert!(!String::from_utf8_lossy(&database).contains(token));
    let audit = obsbox.get("/api/audit").to_string();
    for action in ["invite.create", "invite.accept", "invite.revoke"] {
        assert!(audit.contains(action), "{action} not in {audit}");
    }
}
