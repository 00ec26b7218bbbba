//! One-click exporter children: an exporter run on this box as an extra
//! child (unprivileged, listening on loopback), for a PostgreSQL, Redis or
//! SNMP device elsewhere (or here), plus the target that scrapes it. The
//! exporters are Debian's packages (`prometheus-postgres-exporter`,
//! `prometheus-redis-exporter`, `prometheus-snmp-exporter`, with an `snmp.yml`
//! obsbox renders: Debian's is empty); Proxmox's
//! `pve_exporter` is not packaged, so for `pve` the user names the program
//! they installed, and obsbox renders its `pve.yml` with the API token.
//!
//! [`plan`] is pure: a request and the settings in, the new child, target
//! and secrets out; the web layer stores them.

use crate::settings::users::{self, ChildUser, UserIds};
use crate::settings::{ExtraChild, Readiness, RestartSettings, ScrapeTarget, Settings, TargetKind};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What the user asks for: run `kind`'s exporter on this box for target `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneClick {
    /// `postgres`, `redis`, `snmp` or `pve`.
    pub kind: TargetKind,
    /// The new target's name (the child is `<name>-exporter`).
    pub name: String,
    /// postgres, redis: `host:port` of the server the exporter connects to
    /// (default `127.0.0.1:5432` / `127.0.0.1:6379`).
    #[serde(default)]
    pub server: Option<String>,
    /// postgres: the database connected to (default `postgres`).
    #[serde(default)]
    pub database: Option<String>,
    /// postgres: the role connected as (default `postgres_exporter`).
    #[serde(default)]
    pub user: Option<String>,
    /// postgres: libpq's `sslmode` (default `require`).
    #[serde(default)]
    pub sslmode: Option<String>,
    /// postgres, redis: the password (stored as a secret, never shown back);
    /// pve: the API token's secret (required).
    #[serde(default)]
    pub password: Option<String>,
    /// snmp: the device polled.
    #[serde(default)]
    pub device: Option<String>,
    /// snmp: the module; obsbox renders `if_mib` only (the default).
    #[serde(default)]
    pub module: Option<String>,
    /// snmp: the SNMP v2c community (default `public`), stored as a secret
    /// inside the exporter's rendered `snmp.yml`.
    #[serde(default)]
    pub community: Option<String>,
    /// snmp: the auth handed to the exporter, as for a target.
    #[serde(default)]
    pub auth: Option<String>,
    /// pve: the Proxmox VE hosts asked.
    #[serde(default)]
    pub pve_hosts: Vec<String>,
    /// pve: the API token, `user@realm!tokenid`.
    #[serde(default)]
    pub token_id: Option<String>,
    /// pve: the `pve_exporter` program the user installed (obsbox does not
    /// install it: it is not a Debian package).
    #[serde(default)]
    pub program: Option<String>,
    /// pve: check the Proxmox VE hosts' certificates (default off: PVE's
    /// own certificates are self-signed).
    #[serde(default)]
    pub verify_tls: bool,
    /// The loopback port the exporter listens on; default the first free
    /// one from the kind's usual port up.
    #[serde(default)]
    pub port: Option<u16>,
}

/// What a one-click adds: a child, a target, and the secrets to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub child: ExtraChild,
    pub target: ScrapeTarget,
    /// (stored name, value), to store before the settings are written.
    pub secrets: Vec<(String, String)>,
}

/// Why a one-click cannot be done as asked.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OneClickError {
    #[error("{0}")]
    Invalid(String),
    #[error("no free loopback port from {0} up")]
    NoPort(u16),
}

/// The Debian-packaged exporter of each kind that has one.
pub fn packaged_program(kind: TargetKind) -> Option<&'static str> {
    match kind {
        TargetKind::Postgres => Some("prometheus-postgres-exporter"),
        TargetKind::Redis => Some("prometheus-redis-exporter"),
        TargetKind::Snmp => Some("prometheus-snmp-exporter"),
        _ => None,
    }
}

/// The one module of the `snmp.yml` obsbox renders.
const SNMP_MODULE: &str = "if_mib";

/// Where a one-click child's secret is stored.
pub fn secret_name(target: &str, what: &str) -> String {
    format!("targets/{target}/{what}")
}

/// The child and target for `request`. `port_free` says whether a loopback
/// port can be bound (checked by the caller); ports the settings already use
/// are skipped here.
pub fn plan(
    request: &OneClick,
    settings: &Settings,
    port_free: &dyn Fn(u16) -> bool,
) -> Result<Added, OneClickError> {
    let kind = request.kind;
    let invalid = |m: &str| Err(OneClickError::Invalid(m.into()));
    let program = match (packaged_program(kind), kind, &request.program) {
        (Some(program), _, None) => program.to_string(),
        (None, TargetKind::Pve, Some(program)) if !program.trim().is_empty() => {
            program.trim().to_string()
        }
        (None, TargetKind::Pve, _) => {
            return invalid(
                "name the pve_exporter program you installed (prometheus-pve-exporter is not a \
                 Debian package; obsbox does not install it)",
            )
        }
        (Some(_), _, Some(_)) => return invalid("the program is Debian's package for this kind"),
        (None, ..) => {
            return invalid("only postgres, redis, snmp and pve exporters run on this box")
        }
    };
    let default_port = kind.default_port().unwrap_or(9100);
    let port = match request.port {
        Some(port) => port,
        None => free_port(settings, default_port, port_free)?,
    };
    let listen = format!("127.0.0.1:{port}");
    let child_name = format!("{}-exporter", request.name);
    let mut target = ScrapeTarget::new(&request.name, kind, &listen);
    let mut command = vec![program, format!("--web.listen-address={listen}")];
    let mut secret_env = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut secret_files = BTreeMap::new();
    let password = request.password.as_deref().filter(|p| !p.is_empty());
    let server_host = |default: &str| {
        let server = request.server.as_deref().unwrap_or(default).trim();
        server
            .rsplit_once(':')
            .map_or(server, |(h, _)| h)
            .to_string()
    };
    match kind {
        TargetKind::Postgres => {
            let server = request.server.as_deref().unwrap_or("127.0.0.1:5432");
            let dsn = postgres_dsn(request, server, password);
            let stored = secret_name(&request.name, "dsn");
            secret_env.insert("DATA_SOURCE_NAME".to_string(), stored.clone());
            secrets.push((stored, dsn));
            target.labels.insert("host".into(), server_host(server));
        }
        TargetKind::Redis => {
            let server = request.server.as_deref().unwrap_or("127.0.0.1:6379");
            command.push(format!("--redis.addr=redis://{server}"));
            if let Some(password) = password {
                let stored = secret_name(&request.name, "password");
                secret_env.insert("REDIS_PASSWORD".to_string(), stored.clone());
                secrets.push((stored, password.to_string()));
            }
            target.labels.insert("host".into(), server_host(server));
        }
        TargetKind::Snmp => {
            if request.module.as_deref().is_some_and(|m| m != SNMP_MODULE) {
                return invalid("the snmp.yml obsbox renders has the module if_mib only");
            }
            let community = request.community.as_deref().unwrap_or("public");
            let stored = secret_name(&request.name, SNMP_CONFIG_FILE);
            secrets.push((stored.clone(), snmp_yml(community)));
            secret_files.insert(SNMP_CONFIG_FILE.to_string(), stored);
            command.push(format!(
                "--config.file={SECRET_FILES_DIR}/{SNMP_CONFIG_FILE}"
            ));
            target.device = request.device.clone();
            target.module = request.module.clone();
            target.auth = request.auth.clone();
        }
        TargetKind::Pve => {
            let Some(token) = request.token_id.as_deref().and_then(parse_token_id) else {
                return invalid("the API token is user@realm!tokenid");
            };
            let Some(secret) = password else {
                return invalid("give the API token's secret");
            };
            let stored = secret_name(&request.name, PVE_CONFIG_FILE);
            secrets.push((stored.clone(), pve_yml(token, secret, request.verify_tls)));
            secret_files.insert(PVE_CONFIG_FILE.to_string(), stored);
            // The exporter reads its config from a file: given in its own
            // directory by the secret-file grant (see `services::render`).
            command.push(format!(
                "--config.file={SECRET_FILES_DIR}/{PVE_CONFIG_FILE}"
            ));
            target.pve_hosts = request.pve_hosts.clone();
        }
        _ => return invalid("only postgres, redis, snmp and pve exporters run on this box"),
    }
    let child = ExtraChild {
        name: child_name,
        command,
        env: BTreeMap::new(),
        secret_env,
        secret_files,
        depends_on: Vec::new(),
        readiness: Readiness::Tcp { port },
        user: child_user(&settings.general.child_user, users::lookup),
        stop_signal: "TERM".into(),
        stop_grace: "10s".into(),
        memory_max_bytes: None,
        restart: RestartSettings::default(),
    };
    Ok(Added {
        child,
        target,
        secrets,
    })
}

/// The file a one-click pve_exporter reads, in its working directory.
pub const PVE_CONFIG_FILE: &str = "pve.yml";

/// Where a child's secret files are, under its working directory.
pub const SECRET_FILES_DIR: &str = "secrets";

/// The file a one-click snmp_exporter reads, in its working directory.
pub const SNMP_CONFIG_FILE: &str = "snmp.yml";

/// snmp_exporter's config (the 0.21 format Debian bookworm ships, whose own
/// `snmp.yml` is empty for the MIBs' licences): the module `if_mib` from
/// IF-MIB's numeric OIDs (RFC 2863), so no MIB files are needed, with the
/// community. Interface state, traffic and errors, by `ifIndex` and `ifDescr`.
fn snmp_yml(community: &str) -> String {
    let by_interface = |name: &str, oid: &str, kind: &str, help: &str| {
        serde_json::json!({
            "name": name, "oid": oid, "type": kind, "help": help,
            "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
            "lookups": [{"labels": ["ifIndex"], "labelname": "ifDescr", "oid": "1.3.6.1.2.1.2.2.1.2", "type": "DisplayString"}],
        })
    };
    let config = serde_json::json!({SNMP_MODULE: {
        "walk": ["1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1.1"],
        "metrics": [
            {"name": "ifNumber", "oid": "1.3.6.1.2.1.2.1", "type": "gauge", "help": "The number of network interfaces."},
            by_interface("ifOperStatus", "1.3.6.1.2.1.2.2.1.8", "gauge", "The interface's state: 1 up, 2 down, 3 testing, 5 dormant, 7 lower layer down."),
            by_interface("ifInErrors", "1.3.6.1.2.1.2.2.1.14", "counter", "Inbound packets with errors."),
            by_interface("ifOutErrors", "1.3.6.1.2.1.2.2.1.20", "counter", "Outbound packets that could not be sent for errors."),
            by_interface("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "counter", "Octets received (64-bit)."),
            by_interface("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10", "counter", "Octets sent (64-bit)."),
        ],
        "version": 2,
        "auth": {"community": community},
    }});
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// `user@realm!tokenid` split into the user and the token's name.
fn parse_token_id(id: &str) -> Option<(&str, &str)> {
    let (user, token) = id.trim().split_once('!')?;
    let ok = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    (ok(user) && user.contains('@') && ok(token)).then_some((user, token))
}

/// prometheus-pve-exporter's config: one `default` module with the token.
/// JSON strings are YAML strings, so every value is written quoted.
fn pve_yml(token: (&str, &str), secret: &str, verify_tls: bool) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "default:\n  user: {}\n  token_name: {}\n  token_value: {}\n  verify_ssl: {verify_tls}\n",
        quote(token.0),
        quote(token.1),
        quote(secret)
    )
}

/// A libpq URL for postgres_exporter, each part escaped.
fn postgres_dsn(request: &OneClick, server: &str, password: Option<&str>) -> String {
    let enc = |s: &str| percent_encode(s);
    let user = request.user.as_deref().unwrap_or("postgres_exporter");
    let credentials = match password {
        Some(p) => format!("{}:{}", enc(user), enc(p)),
        None => enc(user),
    };
    format!(
        "postgresql://{credentials}@{server}/{}?sslmode={}",
        enc(request.database.as_deref().unwrap_or("postgres")),
        enc(request.sslmode.as_deref().unwrap_or("require"))
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first port from `from` up that no setting uses and that is free.
fn free_port(
    settings: &Settings,
    from: u16,
    port_free: &dyn Fn(u16) -> bool,
) -> Result<u16, OneClickError> {
    let taken = |port: u16| {
        settings
            .services
            .by_name()
            .iter()
            .any(|(_, s)| s.port == port)
            || settings.children.iter().any(|c| match c.readiness {
                Readiness::Http { port: p, .. } | Readiness::Tcp { port: p } => p == port,
                Readiness::None => false,
            })
            || settings
                .targets
                .iter()
                .any(|t| t.exporter_address() == format!("127.0.0.1:{port}"))
    };
    (from..from.saturating_add(100))
        .find(|&port| !taken(port) && port_free(port))
        .ok_or(OneClickError::NoPort(from))
}

/// The user a one-click child runs as: that of the built-in children
/// (`general.child_user`), by name; none (obsbox's own) when that is root's
/// choice or obsbox is not root.
fn child_user(setting: &str, lookup: impl Fn(&str) -> Option<UserIds>) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    match users::child_user(setting, &lookup) {
        Ok(ChildUser::User(_)) if setting == "auto" => Some(
            if lookup("obsbox").is_some() {
                "obsbox"
            } else {
                "nobody"
            }
            .to_string(),
        ),
        Ok(ChildUser::User(_)) => Some(setting.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> OneClick {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_redis_exporter_gets_the_server_its_password_as_a_secret_and_a_free_port() {
        let mut settings = Settings::default();
        settings.targets.push(ScrapeTarget::new(
            "taken",
            TargetKind::Redis,
            "127.0.0.1:9121",
        ));
        let busy = |port: u16| port != 9122;
        let added = plan(
            &request(json!({"kind": "redis", "name": "cache", "server": "10.0.0.9:6380", "password": "s3cret"})),
            &settings,
            &busy,
        )
        .unwrap();
        assert_eq!(added.child.name, "cache-exporter");
        assert_eq!(
            added.child.command,
            [
                "prometheus-redis-exporter",
                "--web.listen-address=127.0.0.1:9123",
                "--redis.addr=redis://10.0.0.9:6380"
            ]
        );
        // The password is in no setting, only named.
        assert!(!serde_json::to_string(&added.child)
            .unwrap()
            .contains("s3cret"));
        assert_eq!(
            added.child.secret_env,
            BTreeMap::from([("REDIS_PASSWORD".into(), "targets/cache/password".into())])
        );
        assert_eq!(
            added.secrets,
            [("targets/cache/password".to_string(), "s3cret".to_string())]
        );
        assert_eq!(added.child.readiness, Readiness::Tcp { port: 9123 });
        assert_eq!(added.target.exporter, TargetKind::Redis);
        assert_eq!(added.target.address, "127.0.0.1:9123");
        // Its series are about the Redis server, not the loopback exporter.
        assert_eq!(added.target.labels["host"], "10.0.0.9");
        settings.children.push(added.child);
        settings.targets.push(added.target);
        assert_eq!(settings.validate(), []);
    }

    #[test]
    fn a_postgres_exporter_reads_its_whole_dsn_from_a_secret() {
        let added = plan(
            &request(json!({"kind": "postgres", "name": "db", "user": "mon itor", "password": "p@ss/word", "sslmode": "disable"})),
            &Settings::default(),
            &|_| true,
        )
        .unwrap();
        assert_eq!(
            added.secrets,
            [(
                "targets/db/dsn".to_string(),
                "postgresql://mon%20itor:p%40ss%2Fword@127.0.0.1:5432/postgres?sslmode=disable"
                    .to_string()
            )]
        );
        assert_eq!(added.child.secret_env["DATA_SOURCE_NAME"], "targets/db/dsn");
        assert_eq!(added.target.exporter_address(), "127.0.0.1:9187");
    }

    #[test]
    fn snmp_gets_a_rendered_config_and_pve_needs_the_installed_program_and_a_token() {
        let snmp = plan(
            &request(
                json!({"kind": "snmp", "name": "sw", "device": "switch.lan", "module": "if_mib"}),
            ),
            &Settings::default(),
            &|_| true,
        )
        .unwrap();
        assert!(snmp
            .child
            .command
            .contains(&"--config.file=secrets/snmp.yml".to_string()));
        assert_eq!(snmp.target.device.as_deref(), Some("switch.lan"));
        // The community is a secret, inside the rendered config.
        let (stored, yml) = &snmp.secrets[0];
        assert_eq!(stored, "targets/sw/snmp.yml");
        let parsed: serde_yaml::Value = serde_yaml::from_str(yml).unwrap();
        assert_eq!(parsed["if_mib"]["auth"]["community"], "public");
        assert_eq!(parsed["if_mib"]["version"], 2);
        let other = plan(
            &request(json!({"kind": "snmp", "name": "sw", "device": "s", "module": "apcups"})),
            &Settings::default(),
            &|_| true,
        );
        assert!(other.is_err());

        let pve = json!({"kind": "pve", "name": "lab", "pve_hosts": ["pve1"],
            "token_id": "monitor@pve!obsbox", "password": "uuid-\"secret"});
        let err = plan(&request(pve.clone()), &Settings::default(), &|_| true).unwrap_err();
        assert!(err.to_string().contains("not a Debian package"), "{err}");
        let mut with_program = pve.clone();
        with_program["program"] = json!("/opt/pve/bin/pve_exporter");
        let added = plan(
            &request(with_program.clone()),
            &Settings::default(),
            &|_| true,
        )
        .unwrap();
        assert_eq!(added.child.command[0], "/opt/pve/bin/pve_exporter");
        assert!(added
            .child
            .command
            .contains(&"--config.file=secrets/pve.yml".to_string()));
        assert_eq!(
            added.child.secret_files,
            BTreeMap::from([("pve.yml".into(), "targets/lab/pve.yml".into())])
        );
        let (_, yml) = &added.secrets[0];
        let parsed: serde_yaml::Value = serde_yaml::from_str(yml).unwrap();
        assert_eq!(parsed["default"]["user"], "monitor@pve");
        assert_eq!(parsed["default"]["token_name"], "obsbox");
        assert_eq!(parsed["default"]["token_value"], "uuid-\"secret");
        assert_eq!(parsed["default"]["verify_ssl"], false);
        assert_eq!(added.target.pve_hosts, ["pve1"]);
        with_program["token_id"] = json!("no-realm");
        assert!(plan(&request(with_program), &Settings::default(), &|_| true).is_err());
        // Kinds without an exporter to run here.
        let node = plan(
            &request(json!({"kind": "node", "name": "n"})),
            &Settings::default(),
            &|_| true,
        );
        assert!(matches!(node, Err(OneClickError::Invalid(_))));
    }
}
