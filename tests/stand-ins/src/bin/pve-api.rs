//! Stand-in for the Proxmox VE REST API (`pveproxy` on port 8006) as far as
//! prometheus-pve-exporter reads it: HTTPS with a self-signed certificate
//! (PVE's default), API-token authentication, and the GET paths of the
//! exporter's collectors (`pve_exporter/collector/{cluster,node}.py` of
//! prometheus-pve-exporter 3.10), answered in the shapes the PVE API viewer
//! documents: `/version`, `/cluster/status`, `/cluster/resources[?type=]`,
//! `/cluster/backup-info/not-backed-up`, `/nodes/{node}/{qemu,lxc}`,
//! `/nodes/{node}/{qemu,lxc}/{vmid}/config`, `/nodes/{node}/replication`
//! and `/nodes/{node}/subscription`. One standalone node, no cluster.
//!
//! `pve-api --listen 127.0.0.1:0 --state FILE` prints one line,
//! `listening 127.0.0.1:PORT fingerprint AA:BB:...`, then serves until
//! killed. FILE (JSON, read again for every request, so a test stops a guest
//! or fills a storage by rewriting it) holds:
//!
//! ```json
//! {"node": "pve1",
//!  "tokens": {"monitor@pve!obsbox": "secret"},
//!  "guests": [{"vmid": 100, "type": "qemu", "name": "web", "status": "running",
//!              "onboot": 1, "tags": "prod", "maxmem": 2147483648, "mem": 1073741824,
//!              "maxdisk": 34359738368, "disk": 0, "backed_up": true}],
//!  "storages": [{"storage": "local-lvm", "plugintype": "lvmthin",
//!                "content": "rootdir,images", "total": 100, "used": 50}]}
//! ```
//!
//! A guest without `onboot` has none in its config (PVE leaves unset options
//! out); `backed_up: false` lists it under `not-backed-up`.
//!
//! A cluster: `"cluster": "homelab", "nodes": ["pve1", "pve2"]` (those in
//! `"offline"` counted offline, as the others see a node that is down), and a
//! `node` on each guest and storage (default: the state's `node`, the one
//! this server is, `local` in `/cluster/status`). Run one server per node,
//! each with its own `node`: every one answers the cluster-wide paths alike
//! and lists its own guests under `/nodes/{node}` (a real node forwards
//! requests about other nodes; this one answers them from the same state).

use obsbox_stand_ins::{https_stand_in_start, percent_decode, serve_tls, Request, Response};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

const GIB: u64 = 1024 * 1024 * 1024;

/// An API error. PVE puts its message in the status line; the JSON body is
/// `{"data": null}` (and `errors` for parameter problems, not modelled).
fn error(status: u16) -> Response {
    Response::json(status, &json!({ "data": null }))
}

fn data(value: Value) -> Response {
    Response::json(200, &json!({ "data": value }))
}

struct Server {
    state_file: PathBuf,
}

/// `PVEAPIToken=user@realm!tokenid=secret` names a token of the state with that secret.
fn authenticated(req: &Request, state: &Value) -> bool {
    req.header("Authorization")
        .and_then(|h| h.strip_prefix("PVEAPIToken="))
        .and_then(|t| t.split_once('='))
        .is_some_and(|(id, secret)| state["tokens"][id].as_str() == Some(secret))
}

impl Server {
    fn handle(&self, req: &Request) -> Response {
        let state = match std::fs::read_to_string(&self.state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            Some(state) => state,
            None => return error(500),
        };
        if !authenticated(req, &state) {
            return error(401);
        }
        let Some(path) = req.path.strip_prefix("/api2/json/") else {
            return error(404);
        };
        if req.method != "GET" {
            return error(501);
        }
        let parts: Vec<String> = path.split('/').map(percent_decode).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let node = state["node"].as_str().unwrap_or("pve");
        let guests = state["guests"].as_array().cloned().unwrap_or_default();
        let guest = |kind: &str, vmid: &str| {
            guests
                .iter()
                .find(|g| {
                    guest_type(g) == kind
                        && g["vmid"].as_u64().is_some_and(|v| vmid.parse() == Ok(v))
                })
                .cloned()
        };
        match parts.as_slice() {
            ["version"] => {
                data(json!({"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}))
            }
            ["cluster", "status"] => data(Value::from(cluster_status(&state, node))),
            ["cluster", "config", "qdevice"] => data(json!({})),
            ["cluster", "resources"] => data(Value::from(resources(
                &state,
                node,
                req.query_param("type").as_deref(),
            ))),
            ["cluster", "backup-info", "not-backed-up"] => data(Value::from(
                guests
                    .iter()
                    .filter(|g| g["backed_up"] == false)
                    .map(|g| json!({"type": guest_type(g), "vmid": g["vmid"], "name": g["name"]}))
                    .collect::<Vec<_>>(),
            )),
            ["nodes", n, ..] if !nodes(&state, node).contains(n) => Response::json(
                500,
                &json!({"data": null, "message": format!("hostname lookup '{n}' failed - failed to get address info for: {n}: Name or service not known\n")}),
            ),
            ["nodes", n, kind @ ("qemu" | "lxc")] => data(Value::from(
                guests
                    .iter()
                    .filter(|g| guest_type(g) == *kind && node_of(g, node) == *n)
                    .map(|g| {
                        let mut item = guest_usage(g);
                        item["vmid"] = g["vmid"].clone();
                        item["name"] = g["name"].clone();
                        item
                    })
                    .collect::<Vec<_>>(),
            )),
            ["nodes", _, kind @ ("qemu" | "lxc"), vmid, "config"] => match guest(kind, vmid) {
                Some(g) => data(guest_config(&g)),
                // PVE: "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist"
                None => error(500),
            },
            ["nodes", _, "replication"] => data(json!([])),
            ["nodes", _, "subscription"] => data(json!({
                "status": "notfound", "message": "There is no subscription key",
                "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing",
            })),
            _ => error(501),
        }
    }
}

/// The cluster's nodes: the state's `nodes`, or this one alone.
fn nodes<'a>(state: &'a Value, node: &'a str) -> Vec<&'a str> {
    match state["nodes"].as_array() {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => vec![node],
    }
}

/// Whether the state counts node `n` offline (`"offline": ["pve2"]`).
fn offline(state: &Value, n: &str) -> bool {
    state["offline"]
        .as_array()
        .is_some_and(|list| list.iter().any(|o| o == n))
}

/// The node a guest or storage is on (default: this one).
fn node_of<'a>(item: &'a Value, local: &'a str) -> &'a str {
    item["node"].as_str().unwrap_or(local)
}

/// `/cluster/status`: a cluster entry when the state names one, and every
/// node, this one `local`. A standalone node has only its own entry.
fn cluster_status(state: &Value, node: &str) -> Vec<Value> {
    let nodes = nodes(state, node);
    let mut list = Vec::new();
    if let Some(cluster) = state["cluster"].as_str() {
        list.push(json!({"type": "cluster", "id": "cluster", "name": cluster,
            "nodes": nodes.len(), "quorate": 1, "version": 3}));
    }
    let clustered = state["cluster"].is_string();
    for (i, n) in nodes.iter().enumerate() {
        list.push(json!({
            "type": "node", "id": format!("node/{n}"), "name": n,
            "nodeid": if clustered { i + 1 } else { 0 },
            "online": u8::from(!offline(state, n)), "local": u8::from(*n == node),
            "ip": format!("127.0.0.{}", i + 1), "level": "",
        }));
    }
    list
}

fn guest_type(g: &Value) -> &str {
    g["type"].as_str().unwrap_or("qemu")
}

fn number(v: &Value, key: &str, default: u64) -> Value {
    v.get(key).cloned().unwrap_or_else(|| json!(default))
}

/// A guest's status and usage as `/cluster/resources` and the node's guest
/// lists give them: a stopped guest uses no CPU or memory and has no uptime.
fn guest_usage(g: &Value) -> Value {
    let running = g["status"] == "running";
    let when_running = |key: &str, default: u64| {
        if running {
            number(g, key, default)
        } else {
            json!(0)
        }
    };
    json!({
        "status": g["status"].as_str().unwrap_or("stopped"),
        "maxmem": number(g, "maxmem", 2 * GIB),
        "mem": when_running("mem", GIB),
        "maxdisk": number(g, "maxdisk", 32 * GIB),
        "disk": number(g, "disk", 0),
        "maxcpu": number(g, "maxcpu", 2),
        "cpu": if running { json!(0.05) } else { json!(0) },
        "uptime": when_running("uptime", 3600),
        "netin": when_running("netin", 1_000_000),
        "netout": when_running("netout", 500_000),
        "diskread": when_running("diskread", 10_000_000),
        "diskwrite": when_running("diskwrite", 5_000_000),
    })
}

/// A guest's configuration: its name, hardware, and `onboot` only when set.
fn guest_config(g: &Value) -> Value {
    let mut config = json!({
        "digest": "4d6f6e69746f72696e67207374616e642d696e",
        "memory": (g["maxmem"].as_u64().unwrap_or(2 * GIB) / (1024 * 1024)).to_string(),
        "cores": number(g, "maxcpu", 2),
    });
    let name_key = if guest_type(g) == "lxc" {
        "hostname"
    } else {
        "name"
    };
    config[name_key] = g["name"].clone();
    if let Some(onboot) = g.get("onboot") {
        config["onboot"] = onboot.clone();
    }
    if let Some(tags) = g.get("tags") {
        config["tags"] = tags.clone();
    }
    config
}

/// `/cluster/resources`: the node, the guests and the storages, or those of
/// one `type` (`node`, `vm`, `storage`).
fn resources(state: &Value, node: &str, kind: Option<&str>) -> Vec<Value> {
    let mut list = Vec::new();
    if kind.is_none_or(|k| k == "node") {
        for n in nodes(state, node) {
            let status = if offline(state, n) {
                "offline"
            } else {
                "online"
            };
            list.push(json!({
                "id": format!("node/{n}"), "type": "node", "node": n, "status": status,
                "level": "", "cpu": 0.04, "maxcpu": 8, "mem": 6 * GIB, "maxmem": 32 * GIB,
                "disk": 5 * GIB, "maxdisk": 64 * GIB, "uptime": 86400,
            }));
        }
    }
    if kind.is_none_or(|k| k == "vm") {
        for g in state["guests"].as_array().into_iter().flatten() {
            let kind = guest_type(g);
            let mut item = guest_usage(g);
            item["id"] = json!(format!("{kind}/{}", g["vmid"]));
            item["type"] = json!(kind);
            item["vmid"] = g["vmid"].clone();
            item["name"] = g["name"].clone();
            item["node"] = json!(node_of(g, node));
            item["template"] = json!(0);
            if let Some(tags) = g.get("tags") {
                item["tags"] = tags.clone();
            }
            list.push(item);
        }
    }
    if kind.is_none_or(|k| k == "storage") {
        for s in state["storages"].as_array().into_iter().flatten() {
            let name = s["storage"].as_str().unwrap_or("local");
            let node = node_of(s, node);
            list.push(json!({
                "id": format!("storage/{node}/{name}"), "type": "storage", "storage": name,
                "node": node, "status": s["status"].as_str().unwrap_or("available"),
                "plugintype": s["plugintype"].as_str().unwrap_or("dir"),
                "content": s["content"].as_str().unwrap_or("images,rootdir"),
                "disk": number(s, "used", 0), "maxdisk": number(s, "total", 0),
                "shared": number(s, "shared", 0),
            }));
        }
    }
    list
}

fn main() {
    let (listener, config, state) = https_stand_in_start("pve-api");
    let server = Arc::new(Server {
        state_file: PathBuf::from(state),
    });
    serve_tls(
        listener,
        config,
        Arc::new(move |req: &Request| server.handle(req)),
    );
}
