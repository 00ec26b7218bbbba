//! Grafana, Prometheus and Alertmanager through obsbox's own address:
//! `/grafana/`, `/prometheus/`, `/alertmanager/`, behind obsbox's login.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);

/// A request sent as it is, redirects not followed: (status, Location, body).
fn fetch(request: ureq::Request, headers: &[(&str, &str)]) -> (u16, Option<String>, Vec<u8>) {
    let mut request = request.timeout(Duration::from_secs(30));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    let location = response.header("Location").map(str::to_string);
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).unwrap();
    (status, location, body)
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn prometheus_and_alertmanager_answer_under_their_prefix() {
    let obsbox = Obsbox::start(&[("services", services_only(&["prometheus", "alertmanager"]))]);
    obsbox.wait_all_ready(READY);

    // The API, through obsbox's port.
    let up = wait_for("up through the proxy", Duration::from_secs(30), || {
        let v = obsbox.get("/prometheus/api/v1/query?query=up");
        (!v["data"]["result"].as_array()?.is_empty()).then_some(v)
    });
    assert_eq!(up["status"], "success", "{up}");

    // Links point at obsbox's proxy, while obsbox still reaches it at `/`.
    let flags = obsbox.get("/prometheus/api/v1/status/flags");
    let base = format!("http://obsbox:{}", obsbox.port);
    assert_eq!(
        flags["data"]["web.external-url"],
        format!("{base}/prometheus/")
    );
    assert_eq!(flags["data"]["web.route-prefix"], "/");

    // The UI: its home leads to a page under the prefix (Debian's build has
    // only the classic UI, at /classic/graph), which asks for its assets
    // under the prefix too, and they are there.
    let (status, home, _) = fetch(obsbox.request("GET", "/prometheus/"), &[]);
    assert_eq!(status, 302);
    let home = home.unwrap();
    assert!(home.starts_with("/prometheus/"), "{home}");
    let (status, _, page) = fetch(obsbox.request("GET", &home), &[]);
    let page = text(&page);
    assert_eq!(status, 200, "{page}");
    let asset = page
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|src| src.ends_with(".js") || src.contains(".js?"))
        .unwrap_or_else(|| panic!("no script in {page}"))
        .to_string();
    assert!(asset.starts_with("/prometheus/"), "{asset}");
    assert_eq!(fetch(obsbox.request("GET", &asset), &[]).0, 200, "{asset}");

    // The bare prefix leads to the slash form, query kept.
    let (status, location, _) = fetch(obsbox.request("GET", "/prometheus?x=1"), &[]);
    assert_eq!(status, 308);
    assert_eq!(location.as_deref(), Some("prometheus/?x=1"));

    // Alertmanager: its status, and a silence created through the proxy.
    let status = obsbox.get("/alertmanager/api/v2/status");
    assert_eq!(status["cluster"]["status"], "disabled", "{status}");
    let silence = json!({
        "matchers": [{"name": "alertname", "value": "ProxyTest", "isRegex": false, "isEqual": true}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "proxy test",
        "comment": "through obsbox",
    });
    let created: Value = obsbox
        .request("POST", "/alertmanager/api/v2/silences")
        .set("Content-Type", "application/json")
        .send_string(&silence.to_string())
        .unwrap()
        .into_json()
        .unwrap();
    let id = created["silenceID"].as_str().unwrap();
    let stored = obsbox.get(&format!("/alertmanager/api/v2/silence/{id}"));
    assert_eq!(stored["comment"], "through obsbox");
    assert_eq!(stored["status"]["state"], "active");

    // A disabled child is not there at all.
    let (code, body) = obsbox.send("GET", "/grafana/api/health", "");
    assert_eq!(code, 404);
    assert_eq!(body, json!({"error": "grafana is not enabled"}));

    // A stopped one is named as not answering.
    let (code, _) = obsbox.send("POST", "/api/services/alertmanager/stop", "");
    assert_eq!(code, 200);
    // Stopping is asked for at once and done after the child's grace period.
    wait_for("alertmanager to stop", READY, || {
        (obsbox.service("alertmanager")["state"] == "stopped").then_some(())
    });
    let (code, body) = obsbox.send("GET", "/alertmanager/api/v2/status", "");
    assert_eq!(code, 502, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with("alertmanager is not answering"),
        "{message}"
    );
}

#[test]
fn grafana_signs_in_the_obsbox_user_whatever_the_client_claims() {
    let obsbox = Obsbox::start(&[("services", services_only(&["grafana"]))]);
    obsbox.wait_all_ready(READY);

    let health = obsbox.get("/grafana/api/health");
    assert_eq!(health["database"], "ok", "{health}");

    let forged = [("X-WEBAUTH-USER", "mallory"), ("x-webauth-user", "root")];
    let (status, _, body) = fetch(obsbox.request("GET", "/grafana/api/user"), &forged);
    let user: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["login"], "admin", "{user}");
    let orgs = obsbox.get("/grafana/api/user/orgs");
    assert_eq!(orgs[0]["role"], "Admin", "{orgs}");

    // Grafana itself lets nobody in without obsbox: no login form, no user,
    // and its built-in admin's default password is refused.
    let port = obsbox.settings()["services"]["grafana"]["port"]
        .as_u64()
        .unwrap();
    let direct = format!("http://127.0.0.1:{port}/api/user");
    assert_eq!(fetch(ureq::get(&direct), &[]).0, 401);
    let default_admin = [("Authorization", "Basic YWRtaW46YWRtaW4=")];
    assert_eq!(fetch(ureq::get(&direct), &default_admin).0, 401);
}

/// A request with `session` and extra headers: (status, JSON body).
fn send_with(
    obsbox: &Obsbox,
    session: &UserSession,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = with_session(ureq::post(&obsbox.url(path)), Some(session));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    match request.send_string(&body.to_string()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            (r.status(), r.into_json().unwrap_or(Value::Null))
        }
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn grafana_gets_each_users_role_and_enforces_it_itself() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus", "grafana"])),
        (
            "prometheus",
            json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let password = "a long enough password";
    let mut sessions = Vec::new();
    for (name, role) in [("vic", "viewer"), ("olga", "operator")] {
        let (status, body) = obsbox.send(
            "POST",
            "/api/users",
            &json!({"name": name, "role": role, "password": password, "confirm": password})
                .to_string(),
        );
        assert_eq!(status, 201, "{body}");
        sessions.push(obsbox.log_in_as(name, password, None).unwrap());
    }
    let (viewer, operator) = (&sessions[0], &sessions[1]);

    // A viewer's panel gets its data: Grafana queries Prometheus by POST.
    let panel = json!({
        "queries": [{"refId": "A", "datasource": {"uid": "prometheus"}, "expr": "up{job=\"prometheus\"}"}],
        "from": "now-5m", "to": "now",
    });
    let frames = wait_for("the viewer's panel data", Duration::from_secs(30), || {
        let (status, body) = send_with(&obsbox, viewer, "/grafana/api/ds/query", &panel, &[]);
        let frames = body["results"]["A"]["frames"].as_array()?.clone();
        (status == 200 && !frames.is_empty()).then_some(frames)
    });
    assert_eq!(frames[0]["data"]["values"][1][0], 1.0, "{frames:?}");

    // Saving a dashboard is Grafana's to refuse a viewer, and forged
    // headers make them nobody else.
    let dashboard = json!({"dashboard": {"title": "Mine", "panels": []}});
    let forged = [
        ("X-WEBAUTH-ROLE", "Admin"),
        ("X-WEBAUTH-USER", "admin"),
        ("x-webauth-role", "Editor"),
    ];
    for headers in [&[][..], &forged[..]] {
        let (status, body) = send_with(
            &obsbox,
            viewer,
            "/grafana/api/dashboards/db",
            &dashboard,
            headers,
        );
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["title"], "Access denied", "{body}");
    }
    let who = |session: &UserSession| {
        let request = with_session(
            ureq::get(&obsbox.url("/grafana/api/user/orgs")),
            Some(session),
        )
        .set("X-WEBAUTH-ROLE", "Admin");
        let orgs: Value = request.call().unwrap().into_json().unwrap();
        orgs[0]["role"].as_str().unwrap().to_string()
    };
    assert_eq!(who(viewer), "Viewer");
    assert_eq!(who(operator), "Editor");
    assert_eq!(obsbox.get("/grafana/api/user/orgs")[0]["role"], "Admin");

    // An operator edits dashboards.
    let (status, body) = send_with(
        &obsbox,
        operator,
        "/grafana/api/dashboards/db",
        &dashboard,
        &[],
    );
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("success")),
        "{body}"
    );

    // A changed role holds at the next request.
    let (status, body) = obsbox.send("PUT", "/api/users/vic", r#"{"role": "operator"}"#);
    assert_eq!(status, 204, "{body}");
    assert_eq!(who(viewer), "Editor");
}

/// A child stand-in speaking plain HTTP: `/echo` answers with the request it
/// got, `/big` with `BIG` bytes, `/slow` with one chunk, then a second once
/// the test says so.
struct Upstream {
    port: u16,
    go_on: mpsc::Sender<()>,
}

const BIG: usize = 24 << 20;

fn big_byte(i: usize) -> u8 {
    (i % 251) as u8
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_on, wait) = mpsc::channel();
        let wait = Arc::new(Mutex::new(wait));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let wait = wait.clone();
                std::thread::spawn(move || {
                    let _ = answer(stream, &wait);
                });
            }
        });
        Upstream { port, go_on }
    }
}

fn answer(stream: TcpStream, wait: &Mutex<mpsc::Receiver<()>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = head.split(' ').nth(1).unwrap_or("");
    if path == "/big" {
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
        )?;
        let data: Vec<u8> = (0..BIG).map(big_byte).collect();
        out.write_all(&data)?;
    } else if path == "/slow" {
        out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nfirst\n\r\n")?;
        out.flush()?;
        let second = match wait.lock().unwrap().recv_timeout(Duration::from_secs(20)) {
            Ok(()) => "second\n",
            Err(_) => "buffered\n",
        };
        write!(out, "{:x}\r\n{second}\r\n0\r\n\r\n", second.len())?;
    } else {
        let echo = format!("{head}\r\n{}", String::from_utf8_lossy(&body));
        write!(
            out,
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\nX-Upstream: yes\r\nConnection: close\r\n\r\n{echo}",
            echo.len()
        )?;
    }
    out.flush()
}

#[test]
fn requests_pass_intact_without_obsbox_cookies_and_answers_stream() {
    let upstream = Upstream::start();
    // The child is "grafana": enabled, answering on the upstream's port. Its
    // program is missing, so obsbox does not start one there.
    let mut services = services_only(&["grafana"]);
    services["grafana"]["port"] = json!(upstream.port);
    services["grafana"]["binary"] = json!("/nonexistent/grafana");
    let obsbox = Obsbox::start(&[("services", services)]);

    let response = obsbox
        .request("POST", "/grafana/api/ds/query?from=now-1h&x=%2F")
        .set(
            "Cookie",
            &format!(
                "{}; grafana_session=g1; obsbox_csrf=t0ken; theme=dark",
                obsbox.session_cookie()
            ),
        )
        .set("X-WEBAUTH-USER", "admin")
        .set("X-Forwarded-For", "203.0.113.9")
        .set("Content-Type", "application/json")
        .send_string(r#"{"queries":[]}"#)
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.header("X-Upstream"), Some("yes"));
    assert_eq!(response.header("Keep-Alive"), None);
    let echo = response.into_string().unwrap();
    let (head, body) = echo.split_once("\r\n\r\n").unwrap();
    let lines: Vec<&str> = head.lines().collect();
    let header = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    };
    assert_eq!(lines[0], "POST /api/ds/query?from=now-1h&x=%2F HTTP/1.1");
    assert_eq!(body, r#"{"queries":[]}"#);
    assert_eq!(
        header("cookie"),
        ["grafana_session=g1; theme=dark"],
        "{head}"
    );
    assert!(
        !head.contains("obsbox_session") && !head.contains("t0ken"),
        "{head}"
    );
    assert_eq!(header("x-webauth-user"), ["admin"]);
    assert_eq!(header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header("x-forwarded-proto"), ["http"]);
    assert_eq!(
        header("x-forwarded-host"),
        [format!("127.0.0.1:{}", obsbox.port).as_str()]
    );
    assert_eq!(header("content-type"), ["application/json"]);

    // A large answer arrives whole.
    let (status, _, big) = fetch(obsbox.request("GET", "/grafana/big"), &[]);
    assert_eq!(status, 200);
    assert_eq!(big.len(), BIG);
    assert!(big.iter().enumerate().all(|(i, &b)| b == big_byte(i)));

    // An answer is passed on as it comes: the first chunk arrives while the
    // child still holds back the rest.
    let response = obsbox.request("GET", "/grafana/slow").call().unwrap();
    let mut reader = response.into_reader();
    let mut first = [0; 6];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first\n");
    upstream.go_on.send(()).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "second\n");
}

/// Grafana's own pages send no obsbox CSRF token: a change through the proxy
/// passes when it names this site as its origin, and is refused from anywhere
/// else. Prometheus's admin API is not reachable at all.
#[test]
fn proxied_changes_need_this_site_as_origin_not_the_csrf_token() {
    let (grafana, prometheus) = (Upstream::start(), Upstream::start());
    let mut services = services_only(&["grafana", "prometheus"]);
    for (child, upstream) in [("grafana", &grafana), ("prometheus", &prometheus)] {
        services[child]["port"] = json!(upstream.port);
        services[child]["binary"] = json!("/nonexistent/program");
    }
    let obsbox = Obsbox::start(&[("services", services)]);
    let site = format!("http://127.0.0.1:{}", obsbox.port);
    // A browser's request: the session cookie, no X-CSRF-Token.
    let post = |path: &str, headers: &[(&str, &str)]| {
        let request = ureq::AgentBuilder::new()
            .redirects(0)
            .build()
            .post(&obsbox.url(path))
            .set("Cookie", &obsbox.session_cookie());
        let (status, _, body) = fetch(request, headers);
        (status, text(&body))
    };
    let (status, body) = post("/grafana/api/ds/query", &[("Origin", &site)]);
    assert_eq!(status, 201, "{body}");
    assert!(body.starts_with("POST /api/ds/query "), "{body}");
    let referer = format!("{site}/grafana/d/abc?orgId=1");
    let (status, body) = post("/grafana/api/dashboards/db", &[("Referer", &referer)]);
    assert_eq!(status, 201, "{body}");

    for refused in [
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Referer", "http://evil.example/grafana/")],
        vec![],
    ] {
        let (status, body) = post("/grafana/api/ds/query", &refused);
        assert_eq!(status, 403, "{refused:?}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(!error["error"].as_str().unwrap().is_empty());
    }
    // obsbox's own API still wants its token, whatever the origin.
    let (status, _) = post("/api/services/grafana/restart", &[("Origin", &site)]);
    assert_eq!(status, 403);

    // Proxied pages carry obsbox's headers where the child sends none.
    let response = obsbox.request("GET", "/grafana/echo").call().unwrap();
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("x-frame-options"), Some("SAMEORIGIN"));
    let csp = response.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    assert!(csp.contains("object-src 'none'"), "{csp}");

    // Prometheus answers through the proxy, but not its admin API, however spelled.
    let (status, _, _) = fetch(obsbox.request("GET", "/prometheus/api/v1/query"), &[]);
    assert_eq!(status, 201);
    for admin in [
        "/prometheus/api/v1/admin/tsdb/delete_series?match[]=up",
        "/prometheus/api/v1/%61dmin/tsdb/clean_tombstones",
        "/prometheus//api/v1/admin/tsdb/snapshot",
    ] {
        let (status, _, body) = fetch(obsbox.request("POST", admin), &[("Origin", &site)]);
        assert_eq!(status, 403, "{admin}: {}", text(&body));
        assert!(text(&body).contains("admin API"), "{}", text(&body));
    }
}
