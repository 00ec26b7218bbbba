//! First boot, login, sessions, CSRF and the login rate limit, over HTTP as
//! a browser or a script meets them.

mod common;

use common::*;
use serde_json::{json, Value};

/// A client that does not follow redirects, so they can be checked.
fn raw(method: &str, obsbox: &Obsbox, path: &str) -> ureq::Request {
    ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .request(method, &obsbox.url(path))
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> ureq::Response {
    match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    }
}

fn status_and_location(obsbox: &Obsbox, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = raw("GET", obsbox, path);
    if let Some(cookie) = cookie {
        request = request.set("Cookie", cookie);
    }
    let response = answer(request.call());
    (
        response.status(),
        response.header("location").unwrap_or("").to_string(),
    )
}

fn setup_body(password: &str, confirm: &str, hostname: &str, timezone: &str) -> String {
    json!({"password": password, "confirm": confirm, "hostname": hostname, "timezone": timezone})
        .to_string()
}

#[test]
fn first_boot_leads_to_setup_and_setup_happens_once() {
    let obsbox = Obsbox::start_fresh(&[("services", services_only(&[]))], &[]);

    // Until an admin exists, pages lead to setup and the API is closed.
    for page in ["/", "/services", "/login", "/runbooks/HostDown"] {
        assert_eq!(
            status_and_location(&obsbox, page, None),
            (303, "/setup".into()),
            "{page}"
        );
    }
    let (status, body) = obsbox.send("GET", "/api/services", "");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("/setup"));
    // Probes and the local Prometheus never need a login.
    for open in ["/healthz", "/metrics", "/api/timezones"] {
        assert_eq!(status_and_location(&obsbox, open, None).0, 200, "{open}");
    }
    let zones = obsbox.get("/api/timezones");
    assert!(zones
        .as_array()
        .unwrap()
        .iter()
        .any(|z| z == "Europe/Berlin"));

    // Bad setups are refused field by field and change nothing.
    let no_csrf = answer(
        raw("POST", &obsbox, "/api/setup").send_string(&setup_body(PASSWORD, PASSWORD, "box", "")),
    );
    assert_eq!(no_csrf.status(), 403);
    let mismatched_csrf = answer(
        raw("POST", &obsbox, "/api/setup")
            .set("Cookie", "obsbox_csrf=one")
            .set("X-CSRF-Token", "two")
            .send_string(&setup_body(PASSWORD, PASSWORD, "box", "")),
    );
    assert_eq!(mismatched_csrf.status(), 403);
    for (body, field) in [
        (setup_body("short", "short", "box", ""), "password"),
        (setup_body(PASSWORD, "other password", "box", ""), "confirm"),
        (
            setup_body(PASSWORD, PASSWORD, "no spaces allowed", ""),
            "general.hostname",
        ),
        (
            setup_body(PASSWORD, PASSWORD, "box", "Mars/Olympus"),
            "general.timezone",
        ),
    ] {
        let (status, answer) = obsbox.send("POST", "/api/setup", &body);
        assert_eq!(status, 422, "{answer}");
        let fields: Vec<&str> = answer["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{answer}");
    }
    let (status, body) = obsbox.send("POST", "/api/setup", "not json");
    assert_eq!(status, 422, "{body}");
    assert_eq!(obsbox.send("GET", "/api/services", "").0, 403);

    let (status, body) = obsbox.send(
        "POST",
        "/api/setup",
        &setup_body(PASSWORD, PASSWORD, "box", "Europe/Berlin"),
    );
    assert_eq!((status, body), (201, json!({"next": "/login"})));
    let (status, _) = obsbox.send(
        "POST",
        "/api/setup",
        &setup_body("new password!", "new password!", "box", ""),
    );
    assert_eq!(status, 409);
    assert_eq!(
        status_and_location(&obsbox, "/setup", None),
        (303, "/login".into())
    );
    assert_eq!(
        status_and_location(&obsbox, "/services?x=1", None),
        (303, "/login?next=/services%3Fx%3D1".into())
    );
    assert_eq!(obsbox.send("GET", "/api/services", "").0, 401);
    assert_eq!(status_and_location(&obsbox, "/metrics", None).0, 200);

    // The settings setup wrote, seen once signed in.
    let mut obsbox = obsbox;
    assert_eq!(obsbox.log_in(PASSWORD), 200);
    let general = &obsbox.settings()["general"];
    assert_eq!(
        (&general["hostname"], &general["timezone"]),
        (&json!("box"), &json!("Europe/Berlin"))
    );
}

#[test]
fn sessions_need_their_csrf_token_and_end_on_logout_or_password_change() {
    let mut obsbox = Obsbox::start(&[("services", services_only(&[]))]);

    let wrong = answer(
        raw("POST", &obsbox, "/api/login")
            .set("Cookie", "obsbox_csrf=t")
            .set("X-CSRF-Token", "t")
            .send_string(&json!({"password": "not it"}).to_string()),
    );
    assert_eq!(wrong.status(), 401);
    assert!(wrong.header("set-cookie").is_none());
    // A fresh login: its cookie is HttpOnly and SameSite=Strict (not Secure over plain HTTP).
    let login = answer(
        raw("POST", &obsbox, "/api/login")
            .set("Cookie", "obsbox_csrf=t")
            .set("X-CSRF-Token", "t")
            .send_string(&json!({"password": PASSWORD}).to_string()),
    );
    assert_eq!(login.status(), 200);
    let set_cookie = login
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("obsbox_session="))
        .unwrap()
        .to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains("Secure"));
    let token = set_cookie["obsbox_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = login.into_json::<Value>().unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let cookie = format!("obsbox_session={token}");
    let session = obsbox.get("/api/session");
    assert_eq!(session["user"], "admin");

    // State changes need the session's own token, from this site.
    let restart = |csrf: Option<&str>, origin: Option<&str>| {
        let mut request = raw("POST", &obsbox, "/api/backups/halt").set("Cookie", &cookie);
        if let Some(csrf) = csrf {
            request = request.set("X-CSRF-Token", csrf);
        }
        if let Some(origin) = origin {
            request = request.set("Origin", origin);
        }
        answer(request.send_string(r#"{"reason": "csrf test"}"#)).status()
    };
    assert_eq!(restart(None, None), 403);
    assert_eq!(restart(Some("forged"), None), 403);
    // Another session's token (the helper's own) does not count either.
    assert_eq!(restart(Some(session["csrf"].as_str().unwrap()), None), 403);
    assert_eq!(restart(Some(&csrf), Some("https://evil.example")), 403);
    assert!(!obsbox.api_audit().contains(&"backup.halt".to_string()));
    assert_eq!(restart(Some(&csrf), None), 200);
    // Changes are attributed to the signed-in user.
    assert_eq!(obsbox.api_audit()[0], "backup.halt");

    // A password change checks the current one and ends the other sessions.
    let change = |current: &str, password: &str, confirm: &str| {
        obsbox.send(
            "POST",
            "/api/account/password",
            &json!({"current": current, "password": password, "confirm": confirm}).to_string(),
        )
    };
    assert_eq!(change("wrong", "a new password", "a new password").0, 422);
    assert_eq!(change(PASSWORD, "a new password", "typo password").0, 422);
    assert_eq!(change(PASSWORD, "short", "short").0, 422);
    assert_eq!(change(PASSWORD, "a new password", "a new password").0, 204);
    assert_eq!(status_and_location(&obsbox, "/", Some(&cookie)).0, 303);
    assert_eq!(obsbox.get("/api/session")["user"], "admin");
    assert_eq!(obsbox.log_in(PASSWORD), 401);
    assert_eq!(obsbox.log_in("a new password"), 200);

    // Logout ends the session.
    assert_eq!(obsbox.send("POST", "/api/logout", "").0, 204);
    assert_eq!(obsbox.send("GET", "/api/services", "").0, 401);
}

#[test]
fn failed_logins_are_limited_per_address() {
    let mut obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    for _ in 0..5 {
        assert_eq!(obsbox.log_in("guess"), 401);
    }
    let limited = answer(
        raw("POST", &obsbox, "/api/login")
            .set("Cookie", "obsbox_csrf=t")
            .set("X-CSRF-Token", "t")
            .send_string(&json!({"password": PASSWORD}).to_string()),
    );
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(obsbox.log_in(PASSWORD), 429);
}

#[test]
fn password_checks_are_limited_everywhere_and_a_flood_takes_one_audit_row() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    // Guessing the current password on the account page is limited too.
    let change = |current: &str| {
        obsbox.send(
            "POST",
            "/api/account/password",
            &json!({"current": current, "password": "a new password", "confirm": "a new password"})
                .to_string(),
        )
    };
    for _ in 0..5 {
        assert_eq!(change("a guess at it").0, 422);
    }
    let (status, body) = change(PASSWORD);
    assert_eq!(status, 429, "{body}");

    // A flood of refused logins from one address: one row, counting them.
    let refused = 200;
    for _ in 0..refused {
        let response = answer(
            raw("POST", &obsbox, "/api/login")
                .set("Cookie", "obsbox_csrf=t")
                .set("X-CSRF-Token", "t")
                .send_string(&json!({"password": "guess"}).to_string()),
        );
        assert_eq!(response.status(), 429);
    }
    let audit = obsbox.get("/api/audit?limit=1000");
    let entries = audit.as_array().unwrap();
    let failed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "account.login_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{audit:#}");
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("from 127.0.0.1: "), "{detail}");
    assert!(detail.ends_with(&format!("({refused} times)")), "{detail}");
    // The real entries stay in view.
    assert!(
        entries[..3].iter().any(|e| e["action"] == "account.login"),
        "{audit:#}"
    );
}
