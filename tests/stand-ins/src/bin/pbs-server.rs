//! Stand-in for the Proxmox Backup Server's REST API (`proxmox-backup-proxy`
//! on port 8007): HTTPS with a self-signed certificate, API-token
//! authentication, and the paths obsbox reads, answered as the PBS API
//! documents them (`pbs-api-types`: `DataStoreStatus`,
//! `DataStoreStatusListItem`, `TaskListItem`, `SnapshotListItem`; the
//! `verify` call returning a UPID; the task status).
//!
//! `pbs-server --listen 127.0.0.1:0 --state FILE` prints one line,
//! `listening 127.0.0.1:PORT fingerprint AA:BB:...`, then serves until killed.
//! FILE (JSON, read again for every request, so tests change it between
//! requests) holds what the server knows:
//!
//! ```json
//! {"tokens": {"monitor@pbs!obsbox": {"secret": "s3cret", "verify": true}},
//!  "datastores": {"store1": {"total": 1000, "used": 850, "avail": 150,
//!      "gc-status": {...}, "history": [0.8, 0.85], "history-start": 0,
//!      "history-delta": 86400, "estimated-full-date": 1767225600,
//!      "snapshots": [{"backup-type": "host", "backup-id": "a", "backup-time": 0,
//!                     "verification": {"state": "failed", "upid": "..."}}]}},
//!  "tasks": [{"store": "store1", "worker_type": "garbage_collection",
//!             "starttime": 0, "endtime": 60, "status": "OK"}],
//!  "verify": {"duration_ms": 200, "result": "OK"}}
//! ```
//!
//! Verifications started through the API are kept in memory: they run for
//! `verify.duration_ms`, then end with `verify.result` and set the state of
//! the group's snapshots (`ok` or `failed`). Each call's parameters and
//! token id are appended to `FILE.verify-requests` (JSON lines).

use obsbox_stand_ins::{https_stand_in_start, percent_decode, serve_tls, Request, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NODE: &str = "localhost";

/// A verification started through the API.
struct Started {
    upid: String,
    store: String,
    backup_type: String,
    backup_id: String,
    user: String,
    starttime: i64,
    began: Instant,
    duration: Duration,
    result: String,
}

impl Started {
    fn done(&self) -> bool {
        self.began.elapsed() >= self.duration
    }

    fn endtime(&self) -> i64 {
        self.starttime + self.duration.as_secs() as i64
    }
}

struct Server {
    state_file: PathBuf,
    started: Mutex<Vec<Started>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An API error: the status and the server's message as the body.
fn error(status: u16, message: &str) -> Response {
    Response::new(
        status,
        "application/json;charset=UTF-8",
        format!("{message}\n"),
    )
}

fn data(value: Value) -> Response {
    Response::json(200, &json!({ "data": value }))
}

impl Server {
    fn state(&self) -> Result<Value, Response> {
        let text = std::fs::read_to_string(&self.state_file)
            .map_err(|e| error(500, &format!("stand-in: cannot read state: {e}")))?;
        serde_json::from_str(&text).map_err(|e| error(500, &format!("stand-in: bad state: {e}")))
    }

    /// The token id of a valid `PBSAPIToken=id:secret` header, and whether it may verify.
    fn authenticate(&self, req: &Request, state: &Value) -> Result<(String, bool), Response> {
        let denied = || error(401, "authentication failed - invalid credentials");
        let header = req.header("Authorization").ok_or_else(denied)?;
        let token = header.strip_prefix("PBSAPIToken=").ok_or_else(denied)?;
        let (id, secret) = token.split_once(':').ok_or_else(denied)?;
        let known = &state["tokens"][id];
        if known["secret"].as_str() != Some(secret) {
            return Err(denied());
        }
        Ok((id.to_string(), known["verify"].as_bool().unwrap_or(false)))
    }

    fn handle(&self, req: &Request) -> Response {
        match self.answer(req) {
            Ok(r) | Err(r) => r,
        }
    }

    fn answer(&self, req: &Request) -> Result<Response, Response> {
        let state = self.state()?;
        let (user, may_verify) = self.authenticate(req, &state)?;
        let path = req
            .path
            .strip_prefix("/api2/json/")
            .ok_or_else(|| error(404, "Path not found."))?;
        let parts: Vec<String> = path.split('/').map(percent_decode).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let method = req.method.as_str();
        match (method, parts.as_slice()) {
            ("GET", ["admin", "datastore", store, "status"]) => {
                let ds = datastore(&state, store)?;
                let mut status =
                    json!({"total": ds["total"], "used": ds["used"], "avail": ds["avail"]});
                let verbose = req
                    .query_param("verbose")
                    .is_some_and(|v| v == "true" || v == "1");
                if verbose {
                    status["gc-status"] = ds.get("gc-status").cloned().unwrap_or_else(empty_gc);
                    status["counts"] = json!({});
                }
                Ok(data(status))
            }
            ("GET", ["status", "datastore-usage"]) => {
                let stores = state["datastores"].as_object().cloned().unwrap_or_default();
                let list: Vec<Value> = stores
                    .iter()
                    .map(|(name, ds)| {
                        let mut item = json!({"store": name});
                        for key in [
                            "total",
                            "used",
                            "avail",
                            "history",
                            "history-start",
                            "history-delta",
                            "estimated-full-date",
                            "gc-status",
                        ] {
                            if let Some(v) = ds.get(key) {
                                item[key] = v.clone();
                            }
                        }
                        item
                    })
                    .collect();
                Ok(data(Value::from(list)))
            }
            ("GET", ["admin", "datastore", store, "snapshots"]) => {
                let ds = datastore(&state, store)?;
                Ok(data(Value::from(self.snapshots(store, ds))))
            }
            ("POST", ["admin", "datastore", store, "verify"]) => {
                datastore(&state, store)?;
                if !may_verify {
                    return Err(error(403, "permission check failed"));
                }
                let params = parameters(req);
                self.log_request(&user, store, &params);
                Ok(data(Value::from(
                    self.start_verify(&state, store, &user, &params),
                )))
            }
            ("GET", ["nodes", node, "tasks"]) if *node == NODE => Ok(data(self.tasks(&state, req))),
            ("GET", ["nodes", node, "tasks", upid, "status"]) if *node == NODE => {
                self.task_status(&state, upid).map(data)
            }
            _ => Err(error(404, "Path not found.")),
        }
    }

    fn snapshots(&self, store: &str, ds: &Value) -> Vec<Value> {
        let started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = ds["snapshots"].as_array().cloned().unwrap_or_default();
        for snapshot in &mut list {
            // The newest finished verification of its group decides its state.
            let verified = started.iter().rev().find(|s| {
                s.done()
                    && s.store == store
                    && snapshot["backup-type"] == s.backup_type.as_str()
                    && snapshot["backup-id"] == s.backup_id.as_str()
            });
            if let Some(s) = verified {
                let state = if s.result == "OK" { "ok" } else { "failed" };
                snapshot["verification"] = json!({"state": state, "upid": s.upid});
            }
        }
        list
    }

    fn start_verify(&self, state: &Value, store: &str, user: &str, params: &Value) -> String {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let starttime = now();
        let backup_type = params["backup-type"].as_str().unwrap_or("").to_string();
        let backup_id = params["backup-id"].as_str().unwrap_or("").to_string();
        let (worker_type, worker_id) = if backup_id.is_empty() {
            ("verify", store.to_string())
        } else {
            ("verify_group", format!("{store}:{backup_type}/{backup_id}"))
        };
        let upid = format!(
            "UPID:{NODE}:{:08X}:{:08X}:{:08X}:{starttime:08X}:{worker_type}:{}:{user}:",
            std::process::id(),
            1,
            started.len() + 1,
            worker_id.replace(':', "\\x3a"),
        );
        started.push(Started {
            upid: upid.clone(),
            store: store.to_string(),
            backup_type,
            backup_id,
            user: user.to_string(),
            starttime,
            began: Instant::now(),
            duration: Duration::from_millis(state["verify"]["duration_ms"].as_u64().unwrap_or(0)),
            result: state["verify"]["result"]
                .as_str()
                .unwrap_or("OK")
                .to_string(),
        });
        upid
    }

    fn log_request(&self, user: &str, store: &str, params: &Value) {
        use std::io::Write;
        let mut path = self.state_file.clone().into_os_string();
        path.push(".verify-requests");
        let line = json!({"token": user, "store": store, "params": params});
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// The state's tasks and the started verifications, newest first, filtered as the real server filters.
    fn tasks(&self, state: &Value, req: &Request) -> Value {
        let started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(Option<String>, Value)> = state["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t["store"].as_str().map(str::to_string), task_item(i, &t)))
            .collect();
        for s in started.iter() {
            all.push((Some(s.store.clone()), started_item(s)));
        }
        all.sort_by_key(|(_, t)| std::cmp::Reverse(t["starttime"].as_i64().unwrap_or(0)));
        let store = req.query_param("store");
        let typefilter = req.query_param("typefilter");
        let limit = req
            .query_param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(50);
        let list: Vec<Value> = all
            .into_iter()
            .filter(|(s, _)| store.is_none() || *s == store)
            .map(|(_, t)| t)
            .filter(|t| {
                typefilter
                    .as_deref()
                    .is_none_or(|f| t["worker_type"].as_str().unwrap_or("").contains(f))
            })
            .take(limit)
            .collect();
        Value::from(list)
    }

    fn task_status(&self, state: &Value, upid: &str) -> Result<Value, Response> {
        let started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let item = match started.iter().find(|s| s.upid == upid) {
            Some(s) => started_item(s),
            None => state["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, t)| task_item(i, t))
                .find(|t| t["upid"] == upid)
                .ok_or_else(|| error(400, &format!("unable to parse UPID '{upid}'")))?,
        };
        let mut status = json!({
            "upid": item["upid"], "node": NODE, "pid": item["pid"], "pstart": item["pstart"],
            "starttime": item["starttime"], "type": item["worker_type"], "id": item["worker_id"],
            "user": item["user"],
        });
        match item.get("status") {
            Some(exit) => {
                status["status"] = json!("stopped");
                status["exitstatus"] = exit.clone();
            }
            None => status["status"] = json!("running"),
        }
        Ok(status)
    }
}

fn datastore<'a>(state: &'a Value, store: &str) -> Result<&'a Value, Response> {
    state["datastores"]
        .get(store)
        .ok_or_else(|| error(400, &format!("datastore '{store}' does not exist")))
}

fn empty_gc() -> Value {
    json!({"upid": null, "index-file-count": 0, "index-data-bytes": 0, "disk-bytes": 0,
        "disk-chunks": 0, "removed-bytes": 0, "removed-chunks": 0, "pending-bytes": 0,
        "pending-chunks": 0, "removed-bad": 0, "still-bad": 0})
}

/// A task of the state as a `TaskListItem`.
fn task_item(index: usize, t: &Value) -> Value {
    let starttime = t["starttime"].as_i64().unwrap_or(0);
    let worker_type = t["worker_type"].as_str().unwrap_or("garbage_collection");
    let worker_id = t["worker_id"]
        .as_str()
        .or(t["store"].as_str())
        .unwrap_or("");
    let user = t["user"].as_str().unwrap_or("root@pam");
    let upid = t["upid"].as_str().map(str::to_string).unwrap_or_else(|| {
        format!("UPID:{NODE}:00000001:00000001:{index:08X}:{starttime:08X}:{worker_type}:{worker_id}:{user}:")
    });
    let mut item = json!({
        "upid": upid, "node": NODE, "pid": 1, "pstart": 1, "starttime": starttime,
        "worker_type": worker_type, "worker_id": worker_id, "user": user,
    });
    if let (Some(end), Some(status)) = (t.get("endtime"), t.get("status")) {
        item["endtime"] = end.clone();
        item["status"] = status.clone();
    }
    item
}

fn started_item(s: &Started) -> Value {
    let worker_id = s.upid.split(':').nth(7).unwrap_or("");
    let worker_type = s.upid.split(':').nth(6).unwrap_or("verify");
    let mut item = json!({
        "upid": s.upid, "node": NODE, "pid": std::process::id(), "pstart": 1,
        "starttime": s.starttime, "worker_type": worker_type, "worker_id": worker_id,
        "user": s.user,
    });
    if s.done() {
        item["endtime"] = json!(s.endtime());
        item["status"] = json!(s.result);
    }
    item
}

/// A POST's parameters: a JSON body, a form, or the query.
fn parameters(req: &Request) -> Value {
    if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(&req.body) {
        return v;
    }
    let text = String::from_utf8_lossy(&req.body);
    let mut map = BTreeMap::new();
    for part in text
        .split('&')
        .chain(req.query.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        map.insert(percent_decode(k), Value::from(percent_decode(v)));
    }
    json!(map)
}

fn main() {
    let (listener, config, state) = https_stand_in_start("pbs-server");
    let server = Arc::new(Server {
        state_file: PathBuf::from(state),
        started: Mutex::new(Vec::new()),
    });
    serve_tls(
        listener,
        config,
        Arc::new(move |req: &Request| server.handle(req)),
    );
}
