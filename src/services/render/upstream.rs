//! Prometheus' side of scaling out: `remote_write` to central storages and
//! the central Alertmanagers under `alerting.alertmanagers`, with their
//! credentials as files Prometheus reads at each request (never in its
//! config) and their CA certificates as files of their own.

use super::SecretGrant;
use crate::services::Environment;
use crate::settings::{Auth, RelabelAction, Settings};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// The two kinds of central endpoint Prometheus sends to, as named in
/// settings (`prometheus.<kind>`) and in stored secrets.
pub const REMOTE_WRITE: &str = "remote_write";
pub const ALERTMANAGERS: &str = "alertmanagers";

/// The stored name of a secret of a remote-write target or central
/// Alertmanager (`kind` is [`REMOTE_WRITE`] or [`ALERTMANAGERS`]).
pub fn upstream_secret(kind: &str, name: &str, secret: &str) -> String {
    format!("prometheus/{kind}/{name}/{secret}")
}

const SECRETS_DIR: &str = "children/prometheus/secrets";
const CA_DIR: &str = "children/prometheus/ca";

/// One endpoint as the functions here need it.
struct Endpoint<'a> {
    kind: &'static str,
    name: &'a str,
    auth: &'a Auth,
    tls_ca: Option<&'a String>,
}

fn endpoints(settings: &Settings) -> Vec<Endpoint<'_>> {
    let p = &settings.prometheus;
    let remote = p.remote_write.iter().map(|r| Endpoint {
        kind: REMOTE_WRITE,
        name: &r.name,
        auth: &r.auth,
        tls_ca: r.tls_ca.as_ref(),
    });
    let managers = p.alertmanagers.iter().map(|a| Endpoint {
        kind: ALERTMANAGERS,
        name: &a.name,
        auth: &a.auth,
        tls_ca: a.tls_ca.as_ref(),
    });
    remote.chain(managers).collect()
}

fn secret_file(e: &Endpoint, secret: &str) -> PathBuf {
    PathBuf::from(SECRETS_DIR).join(format!("{}-{}-{secret}", e.kind, e.name))
}

fn ca_file(e: &Endpoint) -> PathBuf {
    PathBuf::from(CA_DIR).join(format!("{}-{}.pem", e.kind, e.name))
}

/// The secrets Prometheus reads: each endpoint's password or token.
pub fn secret_grants(settings: &Settings) -> Vec<SecretGrant> {
    if !settings.services.prometheus.enabled {
        return Vec::new();
    }
    endpoints(settings)
        .iter()
        .filter_map(|e| {
            let secret = e.auth.secret()?;
            Some(SecretGrant {
                child: "prometheus".into(),
                secret: upstream_secret(e.kind, e.name, secret),
                path: secret_file(e, secret),
                placeholder: false,
            })
        })
        .collect()
}

/// The CA certificates the endpoints are checked against, one file each
/// (path relative to the data directory, contents).
pub(super) fn ca_files(settings: &Settings) -> Vec<(String, String)> {
    endpoints(settings)
        .iter()
        .filter_map(|e| Some((ca_file(e).display().to_string(), e.tls_ca?.clone())))
        .collect()
}

/// Prometheus' HTTP client settings for one endpoint.
fn client(e: &Endpoint, env: &Environment) -> Map<String, Value> {
    let absolute = |p: PathBuf| env.data_dir.join(p).display().to_string();
    let mut c = Map::new();
    match e.auth {
        Auth::None => {}
        Auth::Basic { username } => {
            c.insert(
                "basic_auth".into(),
                json!({"username": username, "password_file": absolute(secret_file(e, "password"))}),
            );
        }
        Auth::Bearer => {
            c.insert(
                "authorization".into(),
                json!({"type": "Bearer", "credentials_file": absolute(secret_file(e, "bearer_token"))}),
            );
        }
    }
    if e.tls_ca.is_some() {
        c.insert(
            "tls_config".into(),
            json!({"ca_file": absolute(ca_file(e))}),
        );
    }
    c
}

/// The `remote_write` section (empty when there is nowhere to write).
pub(super) fn remote_write(settings: &Settings, env: &Environment) -> Vec<Value> {
    settings
        .prometheus
        .remote_write
        .iter()
        .map(|rw| {
            let e = Endpoint {
                kind: REMOTE_WRITE,
                name: &rw.name,
                auth: &rw.auth,
                tls_ca: rw.tls_ca.as_ref(),
            };
            let mut doc = client(&e, env);
            doc.insert("name".into(), json!(rw.name));
            doc.insert("url".into(), json!(rw.url));
            let q = &rw.queue;
            doc.insert(
                "queue_config".into(),
                json!({
                    "capacity": q.capacity,
                    "min_shards": 1,
                    "max_shards": q.max_shards,
                    "max_samples_per_send": q.max_samples_per_send,
                    "batch_send_deadline": q.batch_send_deadline,
                }),
            );
            let relabel: Vec<Value> = rw
                .write_relabel_configs
                .iter()
                .map(|r| {
                    let action = match r.action {
                        RelabelAction::Keep => "keep",
                        RelabelAction::Drop => "drop",
                    };
                    json!({"source_labels": r.source_labels, "regex": r.regex, "action": action})
                })
                .collect();
            if !relabel.is_empty() {
                doc.insert("write_relabel_configs".into(), Value::Array(relabel));
            }
            Value::Object(doc)
        })
        .collect()
}

/// The central Alertmanagers, each an entry of `alerting.alertmanagers`.
pub(super) fn alertmanagers(settings: &Settings, env: &Environment) -> Vec<Value> {
    settings
        .prometheus
        .alertmanagers
        .iter()
        .filter_map(|am| {
            // Validated settings always parse.
            let url = crate::settings::http_url(&am.url)?;
            let e = Endpoint {
                kind: ALERTMANAGERS,
                name: &am.name,
                auth: &am.auth,
                tls_ca: am.tls_ca.as_ref(),
            };
            let mut doc = client(&e, env);
            doc.insert("scheme".into(), json!(url.scheme));
            if !url.path.is_empty() && url.path != "/" {
                doc.insert("path_prefix".into(), json!(url.path));
            }
            // A central Alertmanager that hangs must not hold the local one's alerts up.
            doc.insert("timeout".into(), json!("10s"));
            doc.insert(
                "static_configs".into(),
                json!([{"targets": [url.authority]}]),
            );
            Some(Value::Object(doc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{paths, render};
    use super::*;
    use crate::services::Environment;

    const CA: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0Ee\n-----END CERTIFICATE-----\n";

    fn settings() -> Settings {
        serde_json::from_value(json!({
            "general": {"hostname": "rack1"},
            "prometheus": {
                "external_labels": {"site": "lab"},
                "remote_write": [
                    {"name": "mimir", "url": "https://mimir.example/api/v1/push",
                     "auth": {"kind": "basic", "username": "rack1"}, "tls_ca": CA,
                     "write_relabel_configs": [
                         {"action": "drop", "regex": "go_.*"},
                         {"action": "keep", "source_labels": ["job"], "regex": "node|obsbox"}]},
                    {"name": "vm", "url": "http://vm.example:8428/api/v1/write", "auth": {"kind": "bearer"},
                     "queue": {"capacity": 5000, "max_shards": 2, "max_samples_per_send": 500, "batch_send_deadline": "10s"}},
                ],
                "alertmanagers": [
                    {"name": "central", "url": "https://am.example:9093/alertmanager/", "auth": {"kind": "bearer"}},
                    {"name": "plain", "url": "http://am2.example"},
                ],
            },
        }))
        .unwrap()
    }

    fn rendered(dir: &std::path::Path) -> (Vec<super::super::ConfigFile>, Value) {
        let env = Environment {
            data_dir: dir.into(),
            obsbox_address: "127.0.0.1:8080".into(),
        };
        let files = render(&settings(), &env);
        let prom = files
            .iter()
            .find(|f| f.path.to_str() == Some(paths::PROMETHEUS_CONFIG))
            .unwrap();
        let doc = serde_yaml::from_str(&prom.contents).unwrap();
        (files, doc)
    }

    #[test]
    fn remote_write_and_central_alertmanagers_render_with_secrets_as_files() {
        let dir = std::path::Path::new("/data/obsbox");
        let (files, doc) = rendered(dir);
        let rw = &doc["remote_write"];
        assert_eq!(rw[0]["name"], "mimir");
        assert_eq!(rw[0]["url"], "https://mimir.example/api/v1/push");
        assert_eq!(
            rw[0]["basic_auth"],
            json!({"username": "rack1", "password_file": "/data/obsbox/children/prometheus/secrets/remote_write-mimir-password"})
        );
        assert_eq!(
            rw[0]["tls_config"]["ca_file"],
            "/data/obsbox/children/prometheus/ca/remote_write-mimir.pem"
        );
        assert_eq!(
            rw[0]["queue_config"],
            json!({"capacity": 2500, "min_shards": 1, "max_shards": 4, "max_samples_per_send": 1000, "batch_send_deadline": "5s"})
        );
        assert_eq!(
            rw[0]["write_relabel_configs"],
            json!([
                {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
                {"source_labels": ["job"], "regex": "node|obsbox", "action": "keep"},
            ])
        );
        assert_eq!(
            rw[1]["authorization"],
            json!({"type": "Bearer", "credentials_file": "/data/obsbox/children/prometheus/secrets/remote_write-vm-bearer_token"})
        );
        assert_eq!(rw[1]["queue_config"]["max_shards"], 2);
        assert!(rw[1].get("write_relabel_configs").is_none());
        assert!(rw[1].get("tls_config").is_none());
        // The box's own Alertmanager first, then the central ones.
        let ams = doc["alerting"]["alertmanagers"].as_array().unwrap();
        assert_eq!(ams.len(), 3);
        assert_eq!(ams[0]["static_configs"][0]["targets"][0], "127.0.0.1:9093");
        assert_eq!(ams[1]["scheme"], "https");
        assert_eq!(ams[1]["path_prefix"], "/alertmanager/");
        assert_eq!(ams[1]["static_configs"][0]["targets"][0], "am.example:9093");
        assert_eq!(
            ams[1]["authorization"]["credentials_file"],
            "/data/obsbox/children/prometheus/secrets/alertmanagers-central-bearer_token"
        );
        assert_eq!(
            (&ams[2]["scheme"], ams[2].get("path_prefix")),
            (&json!("http"), None)
        );
        assert_eq!(
            doc["global"]["external_labels"],
            json!({"obsbox_host": "rack1", "site": "lab"})
        );
        // The CA is a file of its own; no secret is ever in a rendered file.
        let ca = files
            .iter()
            .find(|f| f.path.to_str() == Some("children/prometheus/ca/remote_write-mimir.pem"))
            .unwrap();
        assert_eq!((ca.child, ca.contents.as_str()), ("prometheus", CA));
        let grants: Vec<(String, String)> = secret_grants(&settings())
            .into_iter()
            .map(|g| (g.secret, g.path.display().to_string()))
            .collect();
        assert_eq!(
            grants,
            [
                (
                    "prometheus/remote_write/mimir/password",
                    "children/prometheus/secrets/remote_write-mimir-password"
                ),
                (
                    "prometheus/remote_write/vm/bearer_token",
                    "children/prometheus/secrets/remote_write-vm-bearer_token"
                ),
                (
                    "prometheus/alertmanagers/central/bearer_token",
                    "children/prometheus/secrets/alertmanagers-central-bearer_token"
                ),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn promtool_accepts_the_rendered_config() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = rendered(dir.path());
        for f in &files {
            let path = dir.path().join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.contents).unwrap();
        }
        let out = std::process::Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.path().join(paths::PROMETHEUS_CONFIG))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
