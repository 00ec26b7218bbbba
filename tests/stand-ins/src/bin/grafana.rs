//! `grafana` stand-in: mimics `grafana server` (Grafana 10/11) closely enough
//! for obsbox's integration tests: command line, INI config with the same
//! override layers, datasource/dashboard provisioning (refusing to start on
//! invalid datasource provisioning), data/log directories, a handful of HTTP
//! endpoints, logfmt logging and signals. See README.md for details.
//!
//! Auth proxy (mirrors the Grafana docs "Configure auth proxy authentication"
//! and `pkg/services/contexthandler/authproxy/authproxy.go`): with
//! `[auth.proxy] enabled = true`, a request carrying the `header_name` header
//! (default `X-WEBAUTH-USER`) is signed in as that user, by login
//! (`header_property = username`) or email; an unknown user is created when
//! `auto_sign_up` is on and joins org 1 with `[users] auto_assign_org_role`.
//! Requests from an address outside `whitelist` (comma-separated IPs or
//! CIDRs; a bare address gets `/32`, as Grafana's `coerceProxyAddress` does)
//! are refused. `GET /api/user` answers the signed-in user and 401 without
//! one, as Grafana does; `GET /api/user/orgs` shows the role.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use obsbox_stand_ins as si;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

const VERSION: &str = "11.0.0-standin";
const COMMIT: &str = "standin";
const BRANCH: &str = "standin";

// ---------------------------------------------------------------------------
// Logging: Grafana console/file format `logger=x t=... level=info msg=...`
// ---------------------------------------------------------------------------

use si::Level;

/// Grafana's `[log] level`; anything it does not know means info.
fn parse_level(s: &str) -> Level {
    match s.trim().to_ascii_lowercase().as_str() {
        "debug" | "trace" => Level::Debug,
        "warn" | "warning" => Level::Warn,
        "error" | "critical" => Level::Error,
        _ => Level::Info,
    }
}

struct LogState {
    level: Level,
    console: bool,
    file_path: Option<PathBuf>,
    file: Option<File>,
}

static LOG: Mutex<LogState> = Mutex::new(LogState {
    level: Level::Info,
    console: true,
    file_path: None,
    file: None,
});

fn log(logger: &str, level: Level, msg: &str, kv: &[(&str, &str)]) {
    let Ok(mut st) = LOG.lock() else { return };
    if level < st.level {
        return;
    }
    let t = si::now_rfc3339();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("logger", logger),
        ("t", &t),
        ("level", level.name()),
        ("msg", msg),
    ];
    pairs.extend_from_slice(kv);
    let line = si::logfmt_line(&pairs);
    if st.console {
        println!("{}", line);
    }
    if let Some(f) = st.file.as_mut() {
        let _ = writeln!(f, "{}", line);
    }
}

/// (Re)opens the log file, as Grafana's `log.Reload()` does on SIGHUP.
fn reopen_log_file() -> Result<(), String> {
    let Ok(mut st) = LOG.lock() else {
        return Ok(());
    };
    let Some(path) = st.file_path.clone() else {
        return Ok(());
    };
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("open {}: {}", path.display(), io_err_text(&e)))?;
    st.file = Some(f);
    Ok(())
}

fn io_err_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::AddrInUse => "address already in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(p) => s[..p].to_lowercase(),
                None => s,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// INI handling (go-ini compatible subset)
// ---------------------------------------------------------------------------

/// Ordered INI contents: section -> key -> value. The default section is "".
type IniMap = BTreeMap<String, BTreeMap<String, String>>;

/// Parses INI text like go-ini: `[section]`, `key = value` or `key: value`,
/// `;`/`#` comments (also inline, unless the value is quoted), `"..."`,
/// `` `...` `` and `"""..."""` quoting.
fn parse_ini(text: &str) -> Result<IniMap, String> {
    let mut map: IniMap = BTreeMap::new();
    let mut section = String::new();
    map.entry(section.clone()).or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(format!("unclosed section: {}", line));
            };
            section = rest[..end].trim().to_string();
            map.entry(section.clone()).or_default();
            continue;
        }
        let Some(pos) = line.find(['=', ':']) else {
            return Err(format!("key-value delimiter not found: {}", line));
        };
        let key = line[..pos]
            .trim()
            .trim_matches('`')
            .trim_matches('"')
            .to_string();
        if key.is_empty() {
            return Err(format!("empty key: {}", line));
        }
        let mut rest = line[pos + 1..].trim_start().to_string();
        let value = if let Some(after) = rest.strip_prefix("\"\"\"") {
            // Possibly multi-line triple-quoted value.
            let mut acc = after.to_string();
            loop {
                if let Some(end) = acc.find("\"\"\"") {
                    acc.truncate(end);
                    break acc;
                }
                if i >= lines.len() {
                    break acc;
                }
                acc.push('\n');
                acc.push_str(lines[i]);
                i += 1;
            }
        } else if rest.starts_with('"') || rest.starts_with('`') {
            let q = rest.remove(0);
            match rest.rfind(q) {
                Some(end) => rest[..end].to_string(),
                None => format!("{}{}", q, strip_inline_comment(&rest)),
            }
        } else {
            strip_inline_comment(&rest)
        };
        map.entry(section.clone()).or_default().insert(key, value);
    }
    Ok(map)
}

fn strip_inline_comment(v: &str) -> String {
    match v.find(['#', ';']) {
        Some(p) => v[..p].trim().to_string(),
        None => v.trim().to_string(),
    }
}

/// The subset of Grafana's conf/defaults.ini the stand-in knows about.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("", "app_mode", "production"),
    ("", "instance_name", "${HOSTNAME}"),
    ("paths", "data", "data"),
    ("paths", "temp_data_lifetime", "24h"),
    ("paths", "logs", "data/log"),
    ("paths", "plugins", "data/plugins"),
    ("paths", "provisioning", "conf/provisioning"),
    ("server", "protocol", "http"),
    ("server", "http_addr", ""),
    ("server", "http_port", "3000"),
    ("server", "domain", "localhost"),
    ("server", "enforce_domain", "false"),
    (
        "server",
        "root_url",
        "%(protocol)s://%(domain)s:%(http_port)s/",
    ),
    ("server", "serve_from_sub_path", "false"),
    ("server", "router_logging", "false"),
    ("server", "static_root_path", "public"),
    ("server", "enable_gzip", "false"),
    ("server", "cert_file", ""),
    ("server", "cert_key", ""),
    ("server", "socket", "/tmp/grafana.sock"),
    ("database", "type", "sqlite3"),
    ("database", "host", "127.0.0.1:3306"),
    ("database", "name", "grafana"),
    ("database", "user", "root"),
    ("database", "password", ""),
    ("database", "path", "grafana.db"),
    ("database", "url", ""),
    ("database", "wal", "false"),
    ("analytics", "reporting_enabled", "true"),
    ("analytics", "check_for_updates", "true"),
    ("analytics", "check_for_plugin_updates", "true"),
    ("analytics", "feedback_links_enabled", "true"),
    ("security", "disable_initial_admin_creation", "false"),
    ("security", "admin_user", "admin"),
    ("security", "admin_password", "admin"),
    ("security", "admin_email", "admin@localhost"),
    ("security", "secret_key", "SW2YcwTIb9zpOOhoPsMm"),
    ("security", "disable_gravatar", "false"),
    ("security", "cookie_secure", "false"),
    ("security", "allow_embedding", "false"),
    ("users", "allow_sign_up", "false"),
    ("users", "allow_org_create", "false"),
    ("users", "default_theme", "dark"),
    ("users", "auto_assign_org", "true"),
    ("users", "auto_assign_org_id", "1"),
    ("users", "auto_assign_org_role", "Viewer"),
    ("auth", "disable_login_form", "false"),
    ("auth", "disable_signout_menu", "false"),
    ("auth.anonymous", "enabled", "false"),
    ("auth.anonymous", "org_name", "Main Org."),
    ("auth.anonymous", "org_role", "Viewer"),
    ("auth.anonymous", "hide_version", "false"),
    ("auth.basic", "enabled", "true"),
    ("auth.proxy", "enabled", "false"),
    ("auth.proxy", "header_name", "X-WEBAUTH-USER"),
    ("auth.proxy", "header_property", "username"),
    ("auth.proxy", "auto_sign_up", "true"),
    ("auth.proxy", "sync_ttl", "15"),
    ("auth.proxy", "whitelist", ""),
    ("auth.proxy", "headers", ""),
    ("auth.proxy", "headers_encoded", "false"),
    ("auth.proxy", "enable_login_token", "false"),
    ("log", "mode", "console file"),
    ("log", "level", "info"),
    ("log", "filters", ""),
    ("log.console", "level", ""),
    ("log.console", "format", "console"),
    ("log.file", "level", ""),
    ("log.file", "format", "text"),
    ("log.file", "log_rotate", "true"),
    ("log.file", "max_lines", "1000000"),
    ("log.file", "daily_rotate", "true"),
    ("log.file", "max_days", "7"),
    ("metrics", "enabled", "true"),
    ("metrics", "interval_seconds", "10"),
    ("metrics", "disable_total_stats", "false"),
    ("metrics", "basic_auth_username", ""),
    ("metrics", "basic_auth_password", ""),
    ("unified_alerting", "enabled", ""),
    ("alerting", "enabled", ""),
    ("plugins", "enable_alpha", "false"),
    ("plugins", "allow_loading_unsigned_plugins", ""),
    ("dashboards", "versions_to_keep", "20"),
    ("dashboards", "min_refresh_interval", "5s"),
    ("dashboards", "default_home_dashboard_path", ""),
    ("news", "news_feed_enabled", "true"),
    ("snapshots", "enabled", "true"),
    ("explore", "enabled", "true"),
    ("help", "enabled", "true"),
    ("profile", "enabled", "true"),
    ("query_history", "enabled", "true"),
    ("feature_toggles", "enable", ""),
    ("smtp", "enabled", "false"),
    ("smtp", "host", "localhost:25"),
    ("smtp", "user", ""),
    ("smtp", "password", ""),
    ("smtp", "from_address", "admin@grafana.localhost"),
    ("smtp", "from_name", "Grafana"),
];

/// Loaded configuration (all layers applied, variables expanded).
struct Cfg {
    ini: IniMap,
    /// (section, key) pairs set by anything other than the built-in defaults.
    explicit: BTreeSet<(String, String)>,
    home: PathBuf,
    sources: Vec<(String, String, String)>,
}

impl Cfg {
    /// Raw value with go-ini `%(key)s` interpolation (same section, then default section).
    fn get(&self, section: &str, key: &str) -> String {
        let raw = self
            .ini
            .get(section)
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or_default();
        self.interpolate(section, &raw, 0)
    }

    fn interpolate(&self, section: &str, value: &str, depth: usize) -> String {
        if depth > 10 || !value.contains("%(") {
            return value.to_string();
        }
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("%(") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find(")s") {
                Some(end) => {
                    let name = &after[..end];
                    let found = self
                        .ini
                        .get(section)
                        .and_then(|s| s.get(name))
                        .or_else(|| self.ini.get("").and_then(|s| s.get(name)));
                    match found {
                        Some(v) => out.push_str(&self.interpolate(section, v, depth + 1)),
                        None => out.push_str(&format!("%({})s", name)),
                    }
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn get_bool(&self, section: &str, key: &str) -> bool {
        matches!(
            self.get(section, key).trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on" | "t"
        )
    }

    fn is_explicit(&self, section: &str, key: &str) -> bool {
        self.explicit
            .contains(&(section.to_string(), key.to_string()))
    }

    fn path(&self, section: &str, key: &str) -> PathBuf {
        make_absolute(&self.get(section, key), &self.home)
    }
}

fn make_absolute(p: &str, home: &Path) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        home.join(path)
    }
}

enum LoadError {
    /// Logged through the settings logger, then exit 1.
    Logged(String, Vec<(String, String)>),
}

fn env_key(section: &str, key: &str) -> String {
    let s = if section.is_empty() {
        format!("GF_{}", key.to_uppercase())
    } else {
        format!("GF_{}_{}", section.to_uppercase(), key.to_uppercase())
    };
    s.replace(['.', '-'], "_")
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "private_key", "secret_key"]
        .iter()
        .any(|w| k.contains(w))
}

/// Loads the configuration in Grafana's order: defaults.ini (built-in subset,
/// plus `<homepath>/conf/defaults.ini` if present), `cfg:default.*` args,
/// the `--config` file (or `<homepath>/conf/custom.ini`), `GF_*` environment
/// variables, `cfg:*` args; then `$__env{}`, `$__file{}` and `${}` expansion.
fn load_cfg(home: &Path, config: Option<&str>, args: &[String]) -> Result<Cfg, LoadError> {
    let mut ini: IniMap = BTreeMap::new();
    for (s, k, v) in DEFAULTS {
        ini.entry(s.to_string())
            .or_default()
            .insert(k.to_string(), v.to_string());
    }
    let mut sources = Vec::new();
    let home_defaults = home.join("conf/defaults.ini");
    if let Ok(text) = std::fs::read_to_string(&home_defaults) {
        match parse_ini(&text) {
            Ok(parsed) => {
                merge(&mut ini, parsed, None);
                sources.push((
                    "Config loaded from".into(),
                    "file".into(),
                    home_defaults.display().to_string(),
                ));
            }
            Err(e) => {
                return Err(LoadError::Logged(
                    format!("Failed to parse defaults.ini, {}", e),
                    vec![],
                ))
            }
        }
    }
    let mut explicit = BTreeSet::new();

    // Command line properties.
    let mut props: Vec<(String, String)> = Vec::new();
    for arg in args {
        let Some(trimmed) = arg.strip_prefix("cfg:") else {
            continue;
        };
        let parts: Vec<&str> = trimmed.split('=').collect();
        if parts.len() != 2 {
            return Err(LoadError::Logged(
                "Invalid command line argument.".into(),
                vec![("argument".into(), arg.clone())],
            ));
        }
        props.push((parts[0].to_string(), parts[1].to_string()));
    }
    let known: Vec<(String, String)> = ini
        .iter()
        .flat_map(|(s, keys)| keys.keys().map(move |k| (s.clone(), k.clone())))
        .collect();
    let prop_name = |s: &str, k: &str| {
        if s.is_empty() {
            k.to_string()
        } else {
            format!("{}.{}", s, k)
        }
    };
    for (s, k) in &known {
        let name = format!("default.{}", prop_name(s, k));
        if let Some((_, v)) = props.iter().rev().find(|(p, _)| *p == name) {
            set(&mut ini, s, k, v);
            explicit.insert((s.clone(), k.clone()));
            sources.push((
                "Config overridden from command line".into(),
                "arg".into(),
                format!("{}={}", name, v),
            ));
        }
    }

    // Config file.
    let config_file = match config.filter(|c| !c.is_empty()) {
        Some(c) => Some(PathBuf::from(c)),
        None => {
            let custom = home.join("conf/custom.ini");
            custom.exists().then_some(custom)
        }
    };
    if let Some(file) = &config_file {
        let text = std::fs::read(file).map_err(|e| {
            LoadError::Logged(
                format!(
                    "failed to parse {:?}: open {}: {}",
                    file.display().to_string(),
                    file.display(),
                    io_err_text(&e)
                ),
                vec![],
            )
        })?;
        let parsed = parse_ini(&String::from_utf8_lossy(&text)).map_err(|e| {
            LoadError::Logged(
                format!("failed to parse {:?}: {}", file.display().to_string(), e),
                vec![],
            )
        })?;
        merge(&mut ini, parsed, Some(&mut explicit));
        sources.push((
            "Config loaded from".into(),
            "file".into(),
            file.display().to_string(),
        ));
    }

    // Environment overrides (only for keys that exist, like Grafana).
    let known: Vec<(String, String)> = ini
        .iter()
        .filter(|(s, _)| !s.is_empty())
        .flat_map(|(s, keys)| keys.keys().map(move |k| (s.clone(), k.clone())))
        .collect();
    for (s, k) in &known {
        let name = env_key(s, k);
        if let Ok(v) = std::env::var(&name) {
            set(&mut ini, s, k, &v);
            explicit.insert((s.clone(), k.clone()));
            let shown = if is_secret_key(k) {
                "*********".to_string()
            } else {
                v.clone()
            };
            sources.push((
                "Config overridden from Environment variable".into(),
                "var".into(),
                format!("{}={}", name, shown),
            ));
        }
    }

    // Command line overrides.
    for (s, k) in &known {
        let name = prop_name(s, k);
        if let Some((_, v)) = props.iter().rev().find(|(p, _)| *p == name) {
            set(&mut ini, s, k, v);
            explicit.insert((s.clone(), k.clone()));
            sources.push((
                "Config overridden from command line".into(),
                "arg".into(),
                format!("{}={}", name, v),
            ));
        }
    }

    // Variable expansion.
    for (section, keys) in ini.iter_mut() {
        for (key, value) in keys.iter_mut() {
            match expand_value(value) {
                Ok(v) => *value = v,
                Err(e) => {
                    return Err(LoadError::Logged(
                        format!("failed to expand variables in [{}] {}: {}", section, key, e),
                        vec![],
                    ))
                }
            }
        }
    }
    Ok(Cfg {
        ini,
        explicit,
        home: home.to_path_buf(),
        sources,
    })
}

fn set(ini: &mut IniMap, s: &str, k: &str, v: &str) {
    ini.entry(s.to_string())
        .or_default()
        .insert(k.to_string(), v.to_string());
}

fn merge(ini: &mut IniMap, other: IniMap, mut explicit: Option<&mut BTreeSet<(String, String)>>) {
    for (s, keys) in other {
        if s.is_empty() && explicit.is_some() {
            // Grafana ignores keys outside sections in the custom config file.
            continue;
        }
        for (k, v) in keys {
            if let Some(ex) = explicit.as_deref_mut() {
                ex.insert((s.clone(), k.clone()));
            }
            set(ini, &s, &k, &v);
        }
    }
}

/// Grafana's `expandConfig`: `$__env{NAME}`, `$__file{path}`, and `${NAME}`.
fn expand_value(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = v;
    loop {
        let next = [rest.find("$__env{"), rest.find("$__file{"), rest.find("${")];
        let Some(start) = next.iter().flatten().min().copied() else {
            out.push_str(rest);
            return Ok(out);
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (kind, body_start) = if tail.starts_with("$__env{") {
            ("env", 7)
        } else if tail.starts_with("$__file{") {
            ("file", 8)
        } else {
            ("env", 2)
        };
        let Some(end) = tail[body_start..].find('}') else {
            out.push_str(tail);
            return Ok(out);
        };
        let arg = &tail[body_start..body_start + end];
        match kind {
            "file" => {
                let content = std::fs::read_to_string(arg)
                    .map_err(|e| format!("open {}: {}", arg, io_err_text(&e)))?;
                out.push_str(content.trim_end_matches(['\n', '\r', ' ', '\t']));
            }
            _ => out.push_str(&std::env::var(arg).unwrap_or_default()),
        }
        rest = &tail[body_start + end + 1..];
    }
}

// ---------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct VersionProbe {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DatasourceFile {
    #[serde(alias = "datasources")]
    datasources: Option<Vec<DatasourceCfg>>,
    #[serde(rename = "deleteDatasources", alias = "delete_datasources")]
    delete_datasources: Option<Vec<DeleteDatasourceCfg>>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct DatasourceCfg {
    #[serde(rename = "orgId", alias = "org_id")]
    org_id: i64,
    name: String,
    #[serde(rename = "type")]
    ds_type: String,
    access: String,
    url: String,
    user: String,
    database: String,
    #[serde(rename = "basicAuth", alias = "basic_auth")]
    basic_auth: bool,
    #[serde(rename = "basicAuthUser", alias = "basic_auth_user")]
    basic_auth_user: String,
    #[serde(rename = "withCredentials", alias = "with_credentials")]
    with_credentials: bool,
    #[serde(rename = "isDefault", alias = "is_default")]
    is_default: bool,
    #[serde(rename = "jsonData", alias = "json_data")]
    json_data: Option<Yaml>,
    #[serde(rename = "secureJsonData", alias = "secure_json_data")]
    secure_json_data: Option<Yaml>,
    version: i64,
    editable: bool,
    uid: String,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct DeleteDatasourceCfg {
    #[serde(rename = "orgId", alias = "org_id")]
    org_id: i64,
    name: String,
}

#[derive(Debug, Clone)]
struct Datasource {
    id: i64,
    cfg: DatasourceCfg,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DashboardFile {
    providers: Option<Vec<ProviderCfg>>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct ProviderCfg {
    name: String,
    #[serde(rename = "type")]
    ptype: String,
    #[serde(rename = "orgId", alias = "org_id")]
    org_id: i64,
    folder: String,
    #[serde(rename = "folderUid", alias = "folder_uid")]
    folder_uid: String,
    /// How often the provider looks at its files again (Grafana's default: 10 s).
    #[serde(rename = "updateIntervalSeconds", alias = "update_interval_seconds")]
    update_interval_seconds: Option<u64>,
    options: Option<Yaml>,
}

/// What the dashboard providers loaded, and where and how often to look again.
#[derive(Debug, Clone, Default)]
struct Provisioned {
    dashboards: Vec<Dashboard>,
    folders: Vec<Folder>,
    /// Each provider's path.
    paths: Vec<PathBuf>,
    /// The shortest `updateIntervalSeconds` of the providers.
    interval: Option<Duration>,
}

impl Provisioned {
    /// The JSON files under the providers' paths with their size and
    /// modification time: when this changes, the files are loaded again.
    fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut files = Vec::new();
        for path in paths {
            collect_json(path, &mut files, 0);
        }
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                let modified = meta.and_then(|m| m.modified().ok());
                (f, len, modified)
            })
            .collect()
    }
}

/// A dashboard folder: (id, uid, title).
type Folder = (i64, String, String);

#[derive(Debug, Clone)]
struct Dashboard {
    id: i64,
    uid: String,
    title: String,
    tags: Vec<String>,
    folder: Option<Folder>,
    json: Json,
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.ends_with(".yaml") || name.ends_with(".yml")) && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

fn yaml_err(e: &serde_yaml::Error) -> String {
    si::go_yaml_error(e, &|_| "datasources.configs".to_string())
}

/// Reads `<provisioning>/datasources`. Returns the error text Grafana reports
/// (without the "Datasource provisioning error: " prefix).
fn provision_datasources(dir: &Path) -> Result<Vec<Datasource>, String> {
    const L: &str = "provisioning.datasources";
    let files = match yaml_files(dir) {
        Ok(f) => f,
        Err(e) => {
            log(
                L,
                Level::Error,
                "can't read datasource provisioning files from directory",
                &[
                    ("path", &dir.display().to_string()),
                    (
                        "error",
                        &format!("open {}: {}", dir.display(), io_err_text(&e)),
                    ),
                ],
            );
            return Ok(Vec::new());
        }
    };
    let mut configs: Vec<DatasourceFile> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("open {}: {}", file.display(), io_err_text(&e)))?;
        let probe: Option<VersionProbe> = serde_yaml::from_str(&text).map_err(|e| yaml_err(&e))?;
        let version = probe.and_then(|p| p.api_version).unwrap_or(0);
        let parsed: Option<DatasourceFile> =
            serde_yaml::from_str(&text).map_err(|e| yaml_err(&e))?;
        if version <= 0 {
            log(
                L,
                Level::Warn,
                "[Deprecated] the datasource provisioning config is outdated. please upgrade",
                &[("filename", &file.display().to_string())],
            );
        }
        if let Some(p) = parsed {
            configs.push(p);
        }
    }

    // validateDefaultUniqueness + validateAccessAndOrgID (+ required fields).
    let mut default_count: BTreeMap<i64, u32> = BTreeMap::new();
    for cfg in configs.iter_mut() {
        for ds in cfg.datasources.iter_mut().flatten() {
            if ds.org_id == 0 {
                ds.org_id = 1;
            }
            if ds.org_id != 1 {
                return Err(format!(
                    "failed to provision {:?} data source: organization not found",
                    ds.name
                ));
            }
            if ds.access.is_empty() {
                ds.access = "proxy".into();
            }
            if ds.access != "direct" && ds.access != "proxy" {
                log(
                    L,
                    Level::Warn,
                    "invalid access value, will use 'proxy' instead",
                    &[("value", &ds.access)],
                );
                ds.access = "proxy".into();
            }
            if ds.name.trim().is_empty() {
                return Err(format!(
                    "failed to provision {:?} data source: data source name is required",
                    ds.name
                ));
            }
            if ds.ds_type.trim().is_empty() {
                return Err(format!(
                    "failed to provision {:?} data source: data source type is required",
                    ds.name
                ));
            }
            if ds.is_default {
                let n = default_count.entry(ds.org_id).or_default();
                *n += 1;
                if *n > 1 {
                    return Err("datasource.yaml config is invalid. Only one datasource per organization can be marked as default".into());
                }
            }
        }
        for d in cfg.delete_datasources.iter_mut().flatten() {
            if d.org_id == 0 {
                d.org_id = 1;
            }
        }
    }

    // Every string value goes through Grafana's expanders (`values.go`:
    // `$__env{}`, `$__file{}`, `${NAME}`).
    for ds in configs
        .iter_mut()
        .flat_map(|c| c.datasources.iter_mut().flatten())
    {
        let fail = |e: String| format!("failed to interpolate value: {e}");
        for field in [
            &mut ds.url,
            &mut ds.user,
            &mut ds.database,
            &mut ds.basic_auth_user,
        ] {
            *field = expand_value(field).map_err(fail)?;
        }
        for data in [&mut ds.json_data, &mut ds.secure_json_data]
            .into_iter()
            .flatten()
        {
            expand_yaml(data).map_err(fail)?;
        }
    }

    let mut out: Vec<Datasource> = Vec::new();
    let mut next_id = 1;
    for cfg in configs {
        for d in cfg.delete_datasources.unwrap_or_default() {
            if let Some(pos) = out
                .iter()
                .position(|x| x.cfg.name == d.name && x.cfg.org_id == d.org_id)
            {
                out.remove(pos);
                log(
                    L,
                    Level::Info,
                    "deleted datasource based on configuration",
                    &[("name", &d.name)],
                );
            }
        }
        for mut ds in cfg.datasources.unwrap_or_default() {
            if let Some(existing) = out
                .iter_mut()
                .find(|x| x.cfg.name == ds.name && x.cfg.org_id == ds.org_id)
            {
                if ds.uid.is_empty() {
                    ds.uid = existing.cfg.uid.clone();
                }
                existing.cfg = ds;
                continue;
            }
            if ds.uid.is_empty() {
                ds.uid = si::random_id(14);
            }
            if out.iter().any(|x| x.cfg.uid == ds.uid) {
                return Err("data source with the same uid already exists".into());
            }
            log(
                L,
                Level::Info,
                "inserting datasource from configuration",
                &[("name", &ds.name), ("uid", &ds.uid)],
            );
            out.push(Datasource {
                id: next_id,
                cfg: ds,
            });
            next_id += 1;
        }
    }
    Ok(out)
}

fn expand_yaml(value: &mut Yaml) -> Result<(), String> {
    match value {
        Yaml::String(s) => *s = expand_value(s)?,
        Yaml::Sequence(items) => items.iter_mut().try_for_each(expand_yaml)?,
        Yaml::Mapping(map) => map.iter_mut().try_for_each(|(_, v)| expand_yaml(v))?,
        _ => {}
    }
    Ok(())
}

/// Reads `<provisioning>/dashboards` providers and loads their JSON files.
/// Errors here are start-up failures ("Failed to create provisioner: ...").
/// `known` folders keep their uid (a provider without `folderUid` gets a
/// random one only the first time), as Grafana keeps them in its database.
fn provision_dashboards(dir: &Path, known: &[Folder]) -> Result<Provisioned, String> {
    const L: &str = "provisioning.dashboard";
    let files = match yaml_files(dir) {
        Ok(f) => f,
        Err(e) => {
            log(
                L,
                Level::Error,
                "can't read dashboard provisioning files from directory",
                &[
                    ("path", &dir.display().to_string()),
                    (
                        "error",
                        &format!("open {}: {}", dir.display(), io_err_text(&e)),
                    ),
                ],
            );
            return Ok(Provisioned::default());
        }
    };
    let mut providers: Vec<ProviderCfg> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            format!(
                "Failed to create provisioner: open {}: {}",
                file.display(),
                io_err_text(&e)
            )
        })?;
        let parsed: Option<DashboardFile> = serde_yaml::from_str(&text).map_err(|e| {
            format!(
                "Failed to create provisioner: could not parse provisioning config file: {} error: {}",
                file.file_name().and_then(|n| n.to_str()).unwrap_or(""),
                si::go_yaml_error(&e, &|_| "dashboards.configV1".to_string())
            )
        })?;
        providers.extend(parsed.and_then(|p| p.providers).unwrap_or_default());
    }
    let mut dashboards: Vec<Dashboard> = Vec::new();
    let mut folders: Vec<Folder> = Vec::new();
    let mut next_id = 1;
    let mut readers: Vec<(ProviderCfg, String)> = Vec::new();
    let mut interval: Option<Duration> = None;
    for mut p in providers {
        if p.org_id == 0 {
            p.org_id = 1;
        }
        if p.org_id != 1 {
            return Err(format!(
                "Failed to create provisioner: failed to provision dashboards with {:?} reader: organization not found",
                p.name
            ));
        }
        if p.ptype.is_empty() {
            p.ptype = "file".into();
        }
        if p.ptype != "file" {
            return Err(format!(
                "Failed to create provisioner: type {} is not supported",
                p.ptype
            ));
        }
        let opts = p.options.as_ref();
        let get = |k: &str| {
            opts.and_then(|o| o.get(k))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        let path = match get("path") {
            Some(path) => path,
            None => match get("folder") {
                Some(f) => {
                    log(L, Level::Warn, "[Deprecated] The folder property is deprecated. Please use path instead.", &[]);
                    f
                }
                None => {
                    return Err("Failed to create provisioner: failed to load dashboards, path param is not a string".into())
                }
            },
        };
        // Grafana's default interval is 10 s.
        let every = Duration::from_secs(p.update_interval_seconds.unwrap_or(10).max(1));
        interval = Some(interval.map_or(every, |i| i.min(every)));
        readers.push((p, path));
    }
    let paths: Vec<PathBuf> = readers
        .iter()
        .map(|(_, path)| PathBuf::from(path))
        .collect();
    log(L, Level::Info, "starting to provision dashboards", &[]);
    for (p, path) in readers {
        let folder = if p.folder.is_empty() {
            None
        } else {
            let existing = folders.iter().find(|f| f.2 == p.folder).cloned();
            Some(existing.unwrap_or_else(|| {
                let remembered = known.iter().find(|f| f.2 == p.folder).map(|f| f.1.clone());
                let uid = if let Some(uid) = remembered.filter(|_| p.folder_uid.is_empty()) {
                    uid
                } else if p.folder_uid.is_empty() {
                    si::random_id(14)
                } else {
                    p.folder_uid.clone()
                };
                let f = (next_id, uid, p.folder.clone());
                next_id += 1;
                folders.push(f.clone());
                f
            }))
        };
        let root = PathBuf::from(&path);
        if !root.exists() {
            log(
                L,
                Level::Warn,
                "Failed to provision config",
                &[
                    ("name", &p.name),
                    (
                        "error",
                        &format!("stat {}: no such file or directory", path),
                    ),
                ],
            );
            continue;
        }
        let mut json_files = Vec::new();
        collect_json(&root, &mut json_files, 0);
        json_files.sort();
        for file in json_files {
            let fname = file.display().to_string();
            let text = match std::fs::read(&file) {
                Ok(t) => t,
                Err(e) => {
                    log(
                        L,
                        Level::Error,
                        "failed to load dashboard from ",
                        &[
                            ("type", "file"),
                            ("name", &p.name),
                            ("file", &fname),
                            ("error", &io_err_text(&e)),
                        ],
                    );
                    continue;
                }
            };
            let json: Json = match serde_json::from_slice::<Json>(&text) {
                Ok(j) if j.is_object() => j,
                Ok(_) => {
                    log(L, Level::Error, "failed to load dashboard from ", &[("type", "file"), ("name", &p.name), ("file", &fname), ("error", "json: cannot unmarshal non-object into Go value of type map[string]interface {}")]);
                    continue;
                }
                Err(e) => {
                    log(
                        L,
                        Level::Error,
                        "failed to load dashboard from ",
                        &[
                            ("type", "file"),
                            ("name", &p.name),
                            ("file", &fname),
                            ("error", &e.to_string()),
                        ],
                    );
                    continue;
                }
            };
            let title = json
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .trim()
                .to_string();
            if title.is_empty() {
                log(
                    L,
                    Level::Error,
                    "failed to save dashboard",
                    &[
                        ("type", "file"),
                        ("name", &p.name),
                        ("file", &fname),
                        ("error", "Dashboard title cannot be empty"),
                    ],
                );
                continue;
            }
            let uid = json
                .get("uid")
                .and_then(|u| u.as_str())
                .filter(|u| !u.is_empty())
                .map(String::from)
                .unwrap_or_else(|| si::random_id(14));
            if dashboards.iter().any(|d| d.uid == uid) {
                log(
                    L,
                    Level::Warn,
                    "the same UID is used more than once",
                    &[
                        ("orgId", "1"),
                        ("uid", &uid),
                        ("times", "2"),
                        ("providers", &format!("[{}]", p.name)),
                    ],
                );
                continue;
            }
            let tags = json
                .get("tags")
                .and_then(|t| t.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            dashboards.push(Dashboard {
                id: next_id,
                uid,
                title,
                tags,
                folder: folder.clone(),
                json,
            });
            next_id += 1;
        }
    }
    log(L, Level::Info, "finished to provision dashboards", &[]);
    Ok(Provisioned {
        dashboards,
        folders,
        paths,
        interval,
    })
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 32 {
        return;
    }
    if dir.is_file() {
        if dir.extension().is_some_and(|e| e == "json") {
            out.push(dir.to_path_buf());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_json(&p, out, depth + 1);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------

struct State {
    start_wall: SystemTime,
    datasources: Vec<Datasource>,
    /// The file-provisioned dashboards, loaded again when their files change.
    provisioned: std::sync::RwLock<Provisioned>,
    admin_user: String,
    admin_password: String,
    password_required: bool,
    anonymous: bool,
    basic_enabled: bool,
    metrics_enabled: bool,
    metrics_user: String,
    metrics_password: String,
    sub_path: String,
    /// `[auth.proxy]`, when enabled.
    auth_proxy: Option<AuthProxy>,
    /// `[users] auto_assign_org_role`: the role a signed-up user gets in org 1.
    org_role: String,
    /// Whether the built-in admin was made (`[security]
    /// disable_initial_admin_creation` off); it is then user 1.
    admin_created: bool,
    /// The users that exist, (login, org role in org 1); a user's id is its
    /// position + 1.
    users: Mutex<Vec<(String, String)>>,
    /// Dashboards saved through `POST /api/dashboards/db` (not provisioned).
    saved: Mutex<Vec<Dashboard>>,
}

/// Grafana's auth proxy settings (docs: "Configure auth proxy authentication").
struct AuthProxy {
    header_name: String,
    header_property: String,
    auto_sign_up: bool,
    whitelist: String,
    /// `headers`: more user attributes from headers, (field, header), e.g.
    /// `Role:X-WEBAUTH-ROLE`.
    headers: Vec<(String, String)>,
}

impl AuthProxy {
    /// The header that carries `field` (`Role`, `Name`, `Email`, `Groups`).
    fn header_for(&self, field: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, h)| h.as_str())
    }
}

/// `[auth.proxy] headers` as Grafana's `util.SplitString` reads it: entries
/// separated by commas or spaces, each `Field:Header`.
fn parse_proxy_headers(value: &str) -> Vec<(String, String)> {
    value
        .split([',', ' '])
        .filter_map(|entry| {
            let (field, header) = entry.trim().split_once(':')?;
            Some((field.trim().to_string(), header.trim().to_string()))
        })
        .filter(|(f, h)| !f.is_empty() && !h.is_empty())
        .collect()
}

/// A signed-in user as `/api/user` shows it.
struct User {
    id: usize,
    login: String,
    /// Signed in through the auth proxy (an external user).
    external: bool,
    /// The org role in org 1: `Viewer`, `Editor`, `Admin` (or `None`).
    role: String,
}

fn slugify(title: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.to_lowercase().chars() {
        if c.is_alphanumeric() {
            out.push(c);
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    out.trim_end_matches('-').to_string()
}

fn api_error(status: u16, message: &str, message_id: &str) -> si::Response {
    si::Response::json(
        status,
        &json!({"extra": null, "message": message, "messageId": message_id, "statusCode": status, "traceID": ""}),
    )
}

fn basic_credentials(req: &si::Request) -> Option<(String, String)> {
    let h = req.header("Authorization")?;
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = si::base64_decode(rest.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Who a request is signed in as: the auth proxy header first (when enabled
/// and sent), then basic auth with the admin credentials; `None` if neither
/// was sent.
fn signed_in(state: &State, req: &si::Request) -> Result<Option<User>, si::Response> {
    if let Some(proxy) = &state.auth_proxy {
        if let Some(login) = req.header(&proxy.header_name).filter(|v| !v.is_empty()) {
            return proxy_user(state, proxy, req, login).map(Some);
        }
    }
    if let Some((u, p)) = basic_credentials(req) {
        if state.basic_enabled
            && state.admin_created
            && u == state.admin_user
            && p == state.admin_password
        {
            return Ok(Some(User {
                id: 1,
                login: u,
                external: false,
                role: "Admin".into(),
            }));
        }
        return Err(api_error(
            401,
            "Invalid username or password",
            "password-auth.failed",
        ));
    }
    Ok(None)
}

/// Grafana's auth proxy login (`authproxy.go`): the request must come from
/// an address in `whitelist` (if set), and the header names a user by login
/// (`header_property = username`) or email; an unknown one is created when
/// `auto_sign_up` is on.
fn proxy_user(
    state: &State,
    proxy: &AuthProxy,
    req: &si::Request,
    login: &str,
) -> Result<User, si::Response> {
    let refuse = |message: &str| {
        log(
            "auth.proxy",
            Level::Warn,
            "Failed to authenticate request",
            &[("error", message)],
        );
        api_error(407, "Proxy authentication required", "auth-proxy.failed")
    };
    if !proxy.whitelist.trim().is_empty() {
        let peer = req.peer.map(|p| p.ip());
        let mut allowed = false;
        for entry in proxy.whitelist.split(',') {
            let Some(net) = parse_network(entry) else {
                return Err(refuse(&format!(
                    "could not get the network: could not parse the network: invalid CIDR address: {}",
                    entry.trim()
                )));
            };
            allowed |= peer.is_some_and(|ip| net.contains(ip));
        }
        if !allowed {
            let from = peer.map(|ip| ip.to_string()).unwrap_or_default();
            return Err(refuse(&format!(
                "request for user from {from} is not from the authentication proxy"
            )));
        }
    }
    if proxy.header_property != "username" && proxy.header_property != "email" {
        return Err(refuse("auth proxy header property invalid"));
    }
    // A `Role` header with a valid org role sets the user's role in the
    // org at every login (the stand-in keeps no cache: `sync_ttl = 0`).
    let synced = proxy
        .header_for("Role")
        .and_then(|h| req.header(h))
        .filter(|r| matches!(*r, "Viewer" | "Editor" | "Admin"))
        .map(str::to_string);
    let mut users = state.users.lock().unwrap_or_else(|e| e.into_inner());
    let id = match users.iter().position(|(u, _)| u == login) {
        Some(i) => i + 1,
        None if proxy.auto_sign_up => {
            users.push((login.to_string(), state.org_role.clone()));
            users.len()
        }
        None => return Err(refuse("user not found")),
    };
    if let Some(role) = synced {
        users[id - 1].1 = role;
    }
    Ok(User {
        id,
        login: login.to_string(),
        external: !(state.admin_created && id == 1),
        role: users[id - 1].1.clone(),
    })
}

/// An IP network as Grafana's `coerceProxyAddress` reads a whitelist entry:
/// an address without a mask gets `/32` appended, for IPv6 too.
struct Network {
    base: std::net::IpAddr,
    bits: u32,
}

fn parse_network(entry: &str) -> Option<Network> {
    let entry = entry.trim();
    let (addr, bits) = entry.split_once('/').unwrap_or((entry, "32"));
    let base: std::net::IpAddr = addr.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let max = if base.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(Network { base, bits })
}

impl Network {
    fn contains(&self, ip: std::net::IpAddr) -> bool {
        let prefix = |ip: std::net::IpAddr| -> Option<u128> {
            let (value, width) = match (self.base, ip) {
                (std::net::IpAddr::V4(_), std::net::IpAddr::V4(v)) => {
                    (u128::from(u32::from(v)), 32)
                }
                (std::net::IpAddr::V6(_), std::net::IpAddr::V6(v)) => (u128::from(v), 128),
                _ => return None,
            };
            Some(value.checked_shr(width - self.bits).unwrap_or(0))
        };
        prefix(ip).is_some() && prefix(ip) == prefix(self.base)
    }
}

/// Authorisation for the signed-in API: see README (a signed-in user; else
/// anonymous when no admin password is configured or
/// `[auth.anonymous] enabled = true`).
fn authorize(state: &State, req: &si::Request) -> Result<(), si::Response> {
    if signed_in(state, req)?.is_some() || state.anonymous || !state.password_required {
        return Ok(());
    }
    Err(api_error(401, "Unauthorized", "auth.unauthorized"))
}

fn user_json(state: &State, user: &User) -> Json {
    let email = if user.login.contains('@') {
        user.login.as_str()
    } else {
        ""
    };
    json!({
        "id": user.id,
        "email": email,
        "name": "",
        "login": user.login,
        "theme": "",
        "orgId": 1,
        "isGrafanaAdmin": !user.external,
        "isDisabled": false,
        "isExternal": user.external,
        "authLabels": if user.external { json!(["Auth Proxy"]) } else { json!([]) },
        "avatarUrl": format!("{}/avatar/{}", state.sub_path, user.id),
    })
}

fn datasource_json(d: &Datasource) -> Json {
    let c = &d.cfg;
    json!({
        "id": d.id,
        "uid": c.uid,
        "orgId": c.org_id,
        "name": c.name,
        "type": c.ds_type,
        "typeName": type_name(&c.ds_type),
        "typeLogoUrl": format!("public/app/plugins/datasource/{}/img/logo.svg", c.ds_type),
        "access": c.access,
        "url": c.url,
        "user": c.user,
        "database": c.database,
        "basicAuth": c.basic_auth,
        "basicAuthUser": c.basic_auth_user,
        "withCredentials": c.with_credentials,
        "isDefault": c.is_default,
        "jsonData": c.json_data.as_ref().and_then(|v| serde_json::to_value(v).ok()).unwrap_or_else(|| json!({})),
        "secureJsonFields": secure_fields(c.secure_json_data.as_ref()),
        "version": c.version.max(1),
        "readOnly": !c.editable,
    })
}

fn secure_fields(v: Option<&Yaml>) -> Json {
    let mut m = serde_json::Map::new();
    if let Some(map) = v.and_then(|v| v.as_mapping()) {
        for k in map.keys().filter_map(|k| k.as_str()) {
            m.insert(k.to_string(), Json::Bool(true));
        }
    }
    Json::Object(m)
}

fn type_name(t: &str) -> String {
    match t {
        "prometheus" => "Prometheus".into(),
        "loki" => "Loki".into(),
        "alertmanager" => "Alertmanager".into(),
        "tempo" => "Tempo".into(),
        "elasticsearch" => "Elasticsearch".into(),
        "influxdb" => "InfluxDB".into(),
        "graphite" => "Graphite".into(),
        "postgres" | "grafana-postgresql-datasource" => "PostgreSQL".into(),
        "mysql" => "MySQL".into(),
        other => other.to_string(),
    }
}

fn search_item(d: &Dashboard) -> Json {
    let slug = slugify(&d.title);
    let mut item = json!({
        "id": d.id,
        "uid": d.uid,
        "orgId": 1,
        "title": d.title,
        "uri": format!("db/{}", slug),
        "url": format!("/d/{}/{}", d.uid, slug),
        "slug": "",
        "type": "dash-db",
        "tags": d.tags,
        "isStarred": false,
        "sortMeta": 0,
        "isDeleted": false,
    });
    if let (Some((fid, fuid, ftitle)), Some(obj)) = (&d.folder, item.as_object_mut()) {
        obj.insert("folderId".into(), json!(fid));
        obj.insert("folderUid".into(), json!(fuid));
        obj.insert("folderTitle".into(), json!(ftitle));
        obj.insert(
            "folderUrl".into(),
            json!(format!("/dashboards/f/{}/{}", fuid, slugify(ftitle))),
        );
    }
    item
}

impl State {
    fn provisioned(&self) -> std::sync::RwLockReadGuard<'_, Provisioned> {
        self.provisioned.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn handle(state: &State, req: &si::Request) -> si::Response {
    let mut path = req.path.as_str();
    if !state.sub_path.is_empty() {
        if let Some(p) = path.strip_prefix(state.sub_path.as_str()) {
            path = if p.is_empty() { "/" } else { p };
        }
    }
    let get_like = req.method == "GET" || req.method == "HEAD";
    match path {
        "/api/health" | "/healthz" if get_like => {
            if path == "/healthz" {
                return si::Response::text(200, "Ok");
            }
            let body = "{\n  \"commit\": \"standin\",\n  \"database\": \"ok\",\n  \"version\": \"11.0.0-standin\"\n}";
            si::Response::new(200, "application/json; charset=utf-8", body)
        }
        "/metrics" if get_like => {
            if !state.metrics_enabled {
                return si::Response::not_found();
            }
            if !state.metrics_user.is_empty() && !state.metrics_password.is_empty() {
                let ok = basic_credentials(req)
                    .is_some_and(|(u, p)| u == state.metrics_user && p == state.metrics_password);
                if !ok {
                    return si::Response::text(401, "Unauthorized\n")
                        .with_header("WWW-Authenticate", "Basic realm=\"Grafana\"");
                }
            }
            si::Response::new(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(state))
        }
        "/api/datasources" if get_like => {
            if let Err(r) = authorize(state, req) {
                return r;
            }
            let list: Vec<Json> = state.datasources.iter().map(datasource_json).collect();
            si::Response::json(200, &Json::Array(list))
        }
        p if get_like && (p.starts_with("/api/datasources/uid/") || p.starts_with("/api/datasources/name/") || p.starts_with("/api/datasources/")) => {
            if let Err(r) = authorize(state, req) {
                return r;
            }
            let found = if let Some(uid) = p.strip_prefix("/api/datasources/uid/") {
                let uid = si::percent_decode(uid);
                state.datasources.iter().find(|d| d.cfg.uid == uid)
            } else if let Some(name) = p.strip_prefix("/api/datasources/name/") {
                let name = si::percent_decode(name);
                state.datasources.iter().find(|d| d.cfg.name == name)
            } else {
                let id = p.trim_start_matches("/api/datasources/");
                id.parse::<i64>().ok().and_then(|id| state.datasources.iter().find(|d| d.id == id))
            };
            match found {
                Some(d) => si::Response::json(200, &datasource_json(d)),
                None => api_error(404, "Data source not found", "datasources.notFound"),
            }
        }
        "/api/search" if get_like => {
            if let Err(r) = authorize(state, req) {
                return r;
            }
            let params = req.query_params();
            let types: Vec<String> = params.get("type").cloned().unwrap_or_default();
            let query = params
                .get("query")
                .and_then(|q| q.first())
                .map(|q| q.to_lowercase())
                .unwrap_or_default();
            let limit: usize = params
                .get("limit")
                .and_then(|l| l.first())
                .and_then(|l| l.parse().ok())
                .filter(|l| *l > 0)
                .unwrap_or(1000);
            let want = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
            let mut items: Vec<(String, Json)> = Vec::new();
            let provisioned = state.provisioned();
            if want("dash-folder") {
                for (id, uid, title) in &provisioned.folders {
                    if query.is_empty() || title.to_lowercase().contains(&query) {
                        let slug = slugify(title);
                        items.push((
                            title.to_lowercase(),
                            json!({"id": id, "uid": uid, "orgId": 1, "title": title, "uri": format!("db/{}", slug),
                                   "url": format!("/dashboards/f/{}/{}", uid, slug), "slug": "", "type": "dash-folder",
                                   "tags": [], "isStarred": false, "sortMeta": 0, "isDeleted": false}),
                        ));
                    }
                }
            }
            if want("dash-db") {
                for d in &provisioned.dashboards {
                    if query.is_empty() || d.title.to_lowercase().contains(&query) {
                        items.push((d.title.to_lowercase(), search_item(d)));
                    }
                }
            }
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let list: Vec<Json> = items.into_iter().take(limit).map(|(_, j)| j).collect();
            si::Response::json(200, &Json::Array(list))
        }
        p if get_like && p.starts_with("/api/dashboards/uid/") => {
            if let Err(r) = authorize(state, req) {
                return r;
            }
            let uid = si::percent_decode(&p["/api/dashboards/uid/".len()..]);
            let saved = state.saved.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let loaded = state.provisioned();
            let provisioned = loaded.dashboards.iter().any(|d| d.uid == uid);
            match loaded.dashboards.iter().chain(saved.iter()).find(|d| d.uid == uid) {
                Some(d) => {
                    let mut dash = d.json.clone();
                    if let Some(o) = dash.as_object_mut() {
                        o.insert("id".into(), json!(d.id));
                        o.insert("uid".into(), json!(d.uid));
                    }
                    let slug = slugify(&d.title);
                    si::Response::json(
                        200,
                        &json!({"dashboard": dash, "meta": {
                            "type": "db", "slug": slug, "url": format!("/d/{}/{}", d.uid, slug),
                            "provisioned": provisioned, "canSave": !provisioned, "canEdit": true,
                            "folderUid": d.folder.as_ref().map(|f| f.1.clone()).unwrap_or_default(),
                            "folderTitle": d.folder.as_ref().map(|f| f.2.clone()).unwrap_or_else(|| "General".into()),
                        }}),
                    )
                }
                None => api_error(404, "Dashboard not found", "dashboards.notFound"),
            }
        }
        "/api/user" | "/api/user/orgs" if get_like => match signed_in(state, req) {
            Err(r) => r,
            Ok(None) => api_error(401, "Unauthorized", "auth.unauthorized"),
            Ok(Some(user)) if path == "/api/user" => si::Response::json(200, &user_json(state, &user)),
            Ok(Some(user)) => si::Response::json(
                200,
                &json!([{"orgId": 1, "name": "Main Org.", "role": user.role}]),
            ),
        },
        "/api/ds/query" if req.method == "POST" => match caller_role(state, req) {
            Err(r) => r,
            // Every org role may query (`datasources:query`), as in Grafana.
            Ok(_) => query_data(state, req),
        },
        "/api/dashboards/db" if req.method == "POST" => match caller_role(state, req) {
            Err(r) => r,
            Ok(role) if role == "Editor" || role == "Admin" => save_dashboard(state, req),
            Ok(_) => access_denied("any of dashboards:create, dashboards:write"),
        },
        p if p.starts_with("/api/") => api_error(404, "Not found", "api.notFound"),
        "/" | "/login" if get_like => si::Response::new(
            200,
            "text/html; charset=UTF-8",
            "<!doctype html><html><head><title>Grafana</title></head><body>Grafana stand-in</body></html>\n",
        ),
        _ => si::Response::new(404, "text/html; charset=UTF-8", "<!doctype html><html><body>Page not found</body></html>\n"),
    }
}

/// The org role of whoever asks: the signed-in user's; anonymous access
/// gets `Viewer` (`[auth.anonymous] org_role`'s default); the stand-in's own
/// allowance for a Grafana without an explicit admin password acts as the
/// admin. Nobody at all → 401.
fn caller_role(state: &State, req: &si::Request) -> Result<String, si::Response> {
    match signed_in(state, req)? {
        Some(user) => Ok(user.role),
        None if state.anonymous => Ok("Viewer".into()),
        None if !state.password_required => Ok("Admin".into()),
        None => Err(api_error(401, "Unauthorized", "auth.unauthorized")),
    }
}

/// Grafana's RBAC refusal (`accesscontrol.Middleware`: 403 with the
/// permissions that were needed).
fn access_denied(needed: &str) -> si::Response {
    si::Response::json(
        403,
        &json!({
            "accessErrorId": "ACE0000000000",
            "message": format!("You'll need additional permissions to perform this action. Permissions needed: {needed}"),
            "title": "Access denied",
        }),
    )
}

/// `POST /api/dashboards/db`: `{"dashboard": {...}, "folderUid", "overwrite"}`.
/// A provisioned dashboard cannot be saved; a new one gets an id (and a uid
/// when it has none); one with a known uid needs `overwrite` or the same version.
fn save_dashboard(state: &State, req: &si::Request) -> si::Response {
    let Ok(body) = serde_json::from_slice::<Json>(&req.body) else {
        return api_error(400, "bad request data", "dashboards.badRequest");
    };
    let mut dashboard = body["dashboard"].clone();
    let Some(object) = dashboard.as_object_mut() else {
        return api_error(400, "bad request data", "dashboards.badRequest");
    };
    let title = object
        .get("title")
        .and_then(Json::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if title.is_empty() {
        return api_error(
            400,
            "Dashboard title cannot be empty",
            "dashboards.titleEmpty",
        );
    }
    let uid = object
        .get("uid")
        .and_then(Json::as_str)
        .filter(|u| !u.is_empty())
        .map_or_else(|| si::random_id(14), str::to_string);
    let provisioned = state.provisioned();
    if provisioned.dashboards.iter().any(|d| d.uid == uid) {
        return api_error(
            400,
            "Cannot save provisioned dashboard",
            "dashboards.provisioned",
        );
    }
    let mut saved = state.saved.lock().unwrap_or_else(|e| e.into_inner());
    let overwrite = body["overwrite"].as_bool().unwrap_or(false);
    let existing = saved.iter().position(|d| d.uid == uid);
    let version = match existing {
        Some(i) => {
            let stored = saved[i].json["version"].as_i64().unwrap_or(1);
            let sent = object.get("version").and_then(Json::as_i64).unwrap_or(0);
            if !overwrite && sent != stored {
                return si::Response::json(
                    412,
                    &json!({"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}),
                );
            }
            stored + 1
        }
        None => 1,
    };
    let id = existing.map_or_else(
        || (provisioned.dashboards.len() + saved.len() + provisioned.folders.len() + 1) as i64,
        |i| saved[i].id,
    );
    object.insert("uid".into(), json!(uid));
    object.insert("id".into(), json!(id));
    object.insert("version".into(), json!(version));
    let entry = Dashboard {
        id,
        uid: uid.clone(),
        title: title.clone(),
        tags: Vec::new(),
        folder: None,
        json: dashboard,
    };
    match existing {
        Some(i) => saved[i] = entry,
        None => saved.push(entry),
    }
    let slug = slugify(&title);
    si::Response::json(
        200,
        &json!({"id": id, "uid": uid, "slug": slug, "status": "success", "version": version,
                "url": format!("{}/d/{}/{}", state.sub_path, uid, slug)}),
    )
}

/// A time of `/api/ds/query`'s `from`/`to`: `now`, `now-<duration>` or
/// epoch milliseconds (as a string or a number); in milliseconds.
fn query_time(value: &Json, now_ms: i64) -> Option<i64> {
    if let Some(ms) = value.as_i64() {
        return Some(ms);
    }
    let text = value.as_str()?.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let rest = text.strip_prefix("now")?;
    if rest.is_empty() {
        return Some(now_ms);
    }
    let ago = si::parse_prom_duration(rest.strip_prefix('-')?).ok()?;
    Some(now_ms - ago as i64)
}

/// The headers Grafana adds to a data source request: basic auth, and the
/// custom `jsonData.httpHeaderName<N>` / `secureJsonData.httpHeaderValue<N>` pairs.
fn datasource_headers(d: &Datasource) -> Vec<(String, String)> {
    let c = &d.cfg;
    let secure = |key: &str| {
        c.secure_json_data
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Yaml::as_str)
            .map(str::to_string)
    };
    let mut headers = Vec::new();
    if c.basic_auth {
        let password = secure("basicAuthPassword").unwrap_or_default();
        headers.push((
            "Authorization".into(),
            format!(
                "Basic {}",
                base64_encode(format!("{}:{password}", c.basic_auth_user).as_bytes())
            ),
        ));
    }
    for n in 1.. {
        let Some(name) = c
            .json_data
            .as_ref()
            .and_then(|v| v.get(format!("httpHeaderName{n}").as_str()))
            .and_then(Yaml::as_str)
        else {
            break;
        };
        headers.push((
            name.to_string(),
            secure(&format!("httpHeaderValue{n}")).unwrap_or_default(),
        ));
    }
    headers
}

fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST /api/ds/query`, as Grafana's query service answers it: each query
/// goes to its data source (by `datasource.uid`) through the Grafana server
/// (`access: proxy`), and comes back as data frames under its `refId`.
/// Prometheus and Loki only. Any failed query makes the answer 400, with the
/// others' results kept (Grafana without the `datasourceQueryMultiStatus` toggle).
fn query_data(state: &State, req: &si::Request) -> si::Response {
    let Ok(body) = serde_json::from_slice::<Json>(&req.body) else {
        return api_error(400, "bad request data", "query.badRequest");
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let from = query_time(&body["from"], now_ms).unwrap_or(now_ms - 3_600_000);
    let to = query_time(&body["to"], now_ms).unwrap_or(now_ms);
    let Some(queries) = body["queries"].as_array().filter(|q| !q.is_empty()) else {
        return api_error(400, "No queries found", "query.noQueries");
    };
    let mut results = serde_json::Map::new();
    let mut failed = false;
    for q in queries {
        let ref_id = q["refId"].as_str().unwrap_or("A").to_string();
        let uid = q["datasource"]["uid"]
            .as_str()
            .or_else(|| q["datasource"].as_str())
            .unwrap_or("");
        let Some(d) = state
            .datasources
            .iter()
            .find(|d| d.cfg.uid == uid || d.cfg.name == uid)
        else {
            return api_error(404, "Data source not found", "datasources.notFound");
        };
        let result = match run_query(d, q, from, to) {
            Ok(frames) => json!({"status": 200, "frames": frames}),
            Err((status, error)) => {
                failed = true;
                json!({"status": status, "error": error, "errorSource": "downstream", "frames": []})
            }
        };
        results.insert(ref_id, result);
    }
    si::Response::json(if failed { 400 } else { 200 }, &json!({"results": results}))
}

/// One query against its data source: the frames, or (status, error).
fn run_query(d: &Datasource, q: &Json, from: i64, to: i64) -> Result<Vec<Json>, (u16, String)> {
    let expr = q["expr"].as_str().unwrap_or("");
    let base = d.cfg.url.trim_end_matches('/');
    let step_s = (q["intervalMs"].as_i64().unwrap_or(15_000) / 1000)
        .max((to - from) / 1000 / q["maxDataPoints"].as_i64().unwrap_or(1000).max(1))
        .max(1);
    let mut headers = datasource_headers(d);
    let (method, url, body) = match d.cfg.ds_type.as_str() {
        "prometheus" => {
            let params = format!(
                "query={}&start={}&end={}&step={step_s}",
                si::form_encode(expr),
                from / 1000,
                to / 1000
            );
            let get = d
                .cfg
                .json_data
                .as_ref()
                .and_then(|v| v.get("httpMethod"))
                .and_then(Yaml::as_str)
                == Some("GET");
            if get {
                (
                    "GET",
                    format!("{base}/api/v1/query_range?{params}"),
                    String::new(),
                )
            } else {
                headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
                ("POST", format!("{base}/api/v1/query_range"), params)
            }
        }
        "loki" => {
            let params = format!(
                "query={}&start={}&end={}&step={step_s}&limit={}&direction=backward",
                si::form_encode(expr),
                from * 1_000_000,
                to * 1_000_000,
                q["maxLines"].as_i64().unwrap_or(1000)
            );
            (
                "GET",
                format!("{base}/loki/api/v1/query_range?{params}"),
                String::new(),
            )
        }
        other => {
            return Err((
                400,
                format!("stand-in: queries to {other} data sources are not implemented"),
            ))
        }
    };
    let answer = si::http_call(
        method,
        &url,
        &headers,
        body.as_bytes(),
        Duration::from_secs(30),
    )
    .map_err(|e| (500, format!("Post \"{url}\": {e}")))?;
    let text = String::from_utf8_lossy(&answer.body).to_string();
    if !(200..300).contains(&answer.status) {
        return Err((
            answer.status,
            format!(
                "client_error: client error: {}: {}",
                answer.status,
                text.trim()
            ),
        ));
    }
    let parsed: Json = serde_json::from_str(&text)
        .map_err(|e| (500, format!("failed to read the answer: {e}")))?;
    let ref_id = q["refId"].as_str().unwrap_or("A");
    let data = &parsed["data"];
    let frames = data["result"]
        .as_array()
        .map(|series| {
            series
                .iter()
                .map(|s| match data["resultType"].as_str() {
                    Some("streams") => {
                        let values = s["values"].as_array().cloned().unwrap_or_default();
                        let times: Vec<Json> = values
                            .iter()
                            .map(|v| {
                                json!(
                                    v[0].as_str()
                                        .and_then(|t| t.parse::<i64>().ok())
                                        .unwrap_or(0)
                                        / 1_000_000
                                )
                            })
                            .collect();
                        let lines: Vec<Json> = values.iter().map(|v| v[1].clone()).collect();
                        json!({"schema": {"refId": ref_id, "fields": [
                            {"name": "Time", "type": "time"},
                            {"name": "Line", "type": "string", "labels": s["stream"]}]},
                            "data": {"values": [times, lines]}})
                    }
                    _ => {
                        let values = s["values"].as_array().cloned().unwrap_or_default();
                        let times: Vec<Json> = values
                            .iter()
                            .map(|v| json!((v[0].as_f64().unwrap_or(0.0) * 1000.0) as i64))
                            .collect();
                        let numbers: Vec<Json> = values
                            .iter()
                            .map(|v| json!(v[1].as_str().and_then(|n| n.parse::<f64>().ok())))
                            .collect();
                        json!({"schema": {"refId": ref_id, "fields": [
                            {"name": "Time", "type": "time"},
                            {"name": "Value", "type": "number", "labels": s["metric"]}]},
                            "data": {"values": [times, numbers]}})
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(frames)
}

fn metrics_text(state: &State) -> String {
    let mut s = String::new();
    s.push_str("# HELP grafana_build_info A metric with a constant '1' value labeled by version, revision, branch, and goversion from which Grafana was built\n# TYPE grafana_build_info gauge\n");
    s.push_str(&format!(
        "grafana_build_info{{branch=\"{}\",edition=\"oss\",goversion=\"standin\",revision=\"{}\",version=\"{}\"}} 1\n",
        BRANCH, COMMIT, VERSION
    ));
    s.push_str("# HELP grafana_stat_totals_dashboard total amount of dashboards\n# TYPE grafana_stat_totals_dashboard gauge\n");
    s.push_str(&format!(
        "grafana_stat_totals_dashboard {}\n",
        state.provisioned().dashboards.len()
    ));
    s.push_str("# HELP grafana_stat_totals_datasource total number of defined datasources, labeled by pluginId\n# TYPE grafana_stat_totals_datasource gauge\n");
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &state.datasources {
        *by_type.entry(d.cfg.ds_type.as_str()).or_default() += 1;
    }
    for (t, n) in by_type {
        s.push_str(&format!(
            "grafana_stat_totals_datasource{{plugin_id=\"{}\"}} {}\n",
            t.replace('"', ""),
            n
        ));
    }
    let start = state
        .start_wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.push_str("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n");
    s.push_str(&format!("process_start_time_seconds {:.2}\n", start));
    s
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const SERVER_FLAGS: &[si::FlagSpec] = &[
    sflag("config", si::FlagKind::Value),
    sflag("homepath", si::FlagKind::Value),
    sflag("pidfile", si::FlagKind::Value),
    sflag("packaging", si::FlagKind::Value),
    sflag("configOverrides", si::FlagKind::Value),
    sflag("v", si::FlagKind::Bool),
    sflag("version", si::FlagKind::Bool),
    sflag("vv", si::FlagKind::Bool),
    sflag("profile", si::FlagKind::Bool),
    sflag("profile-addr", si::FlagKind::Value),
    sflag("profile-port", si::FlagKind::Value),
    sflag("profile-block-rate", si::FlagKind::Value),
    sflag("profile-mutex-rate", si::FlagKind::Value),
    sflag("tracing", si::FlagKind::Bool),
    sflag("tracing-file", si::FlagKind::Value),
];

const fn sflag(name: &'static str, kind: si::FlagKind) -> si::FlagSpec {
    si::FlagSpec { name, kind }
}

const APP_USAGE: &str = "NAME:
   grafana - Grafana server and command line interface

USAGE:
   grafana [global options] command [command options] [arguments...]

VERSION:
   11.0.0-standin

COMMANDS:
   cli      run the grafana cli (not implemented by the stand-in)
   server   run the grafana server
   help, h  Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --help, -h     show help
   --version, -v  print the version
";

const SERVER_USAGE: &str = "NAME:
   grafana server - run the grafana server

USAGE:
   grafana server [command options] [cfg:section.key=value ...]

OPTIONS:
   --config value     Path to config file
   --homepath value   Path to Grafana install/home path, defaults to working directory
   --pidfile value    Path to Grafana pid file
   --packaging value  describes the way Grafana was installed (default: \"unknown\")
   --version, -v      print the version (default: false)
   --help, -h         show help
";

fn main() {
    exit(run());
}

fn run() -> i32 {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .and_then(|a| {
            Path::new(a)
                .file_name()
                .and_then(|n| n.to_str())
                .map(String::from)
        })
        .unwrap_or_default();
    let mut args: Vec<String> = argv.iter().skip(1).cloned().collect();

    if prog != "grafana-server" {
        // Global options, then the command.
        let i = 0;
        if let Some(first) = args
            .first()
            .filter(|a| a.starts_with('-') && a.as_str() != "-")
        {
            match first.trim_start_matches('-') {
                "v" | "version" => {
                    println!("grafana version {}", VERSION);
                    return 0;
                }
                "h" | "help" => {
                    print!("{}", APP_USAGE);
                    return 0;
                }
                other => {
                    let name = other.split('=').next().unwrap_or(other);
                    eprintln!(
                        "Incorrect Usage: flag provided but not defined: -{}\n",
                        name
                    );
                    eprint!("{}", APP_USAGE);
                    return 1;
                }
            }
        }
        match args.get(i).map(String::as_str) {
            Some("server") => args = args[i + 1..].to_vec(),
            Some("help") | Some("h") => {
                print!("{}", APP_USAGE);
                return 0;
            }
            Some("cli") => {
                eprintln!("grafana stand-in: the `cli` command is not implemented");
                return 1;
            }
            Some(other) => {
                eprintln!("No help topic for '{}'", other);
                eprint!("{}", APP_USAGE);
                return 1;
            }
            None => {
                print!("{}", APP_USAGE);
                return 1;
            }
        }
    }

    let flags = match si::parse_go_flags(&args, SERVER_FLAGS) {
        Ok(f) => f,
        Err(si::FlagError::Help) => {
            print!("{}", SERVER_USAGE);
            return 0;
        }
        Err(si::FlagError::Msg(m)) => {
            eprintln!("Incorrect Usage: {}\n", m);
            eprint!("{}", SERVER_USAGE);
            eprintln!("{}", m);
            return 1;
        }
    };
    if flags.is_true("v") || flags.is_true("version") || flags.is_true("vv") {
        println!(
            "Version {} (commit: {}, branch: {})",
            VERSION, COMMIT, BRANCH
        );
        return 0;
    }
    server(&flags)
}

fn startup_failure(err: &str) -> i32 {
    eprintln!("Failed to start grafana. error: {}", err);
    eprintln!("{}", err);
    1
}

fn server(flags: &si::ParsedFlags) -> i32 {
    let started = Instant::now();
    si::signals::install(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);

    let home = match flags.get("homepath").filter(|h| !h.is_empty()) {
        Some(h) => {
            let p = PathBuf::from(h);
            if !p.is_dir() {
                println!("Grafana-server Init Failed: Could not find config defaults, make sure homepath command line parameter is set or working directory is homepath");
                return 1;
            }
            std::fs::canonicalize(&p).unwrap_or(p)
        }
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };

    let cfg = match load_cfg(&home, flags.get("config"), &flags.rest) {
        Ok(c) => c,
        Err(LoadError::Logged(msg, kv)) => {
            let kv: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            log("settings", Level::Error, &msg, &kv);
            return 1;
        }
    };

    // Logging configuration.
    let logs_dir = cfg.path("paths", "logs");
    let mode = cfg.get("log", "mode");
    {
        if let Ok(mut st) = LOG.lock() {
            st.level = parse_level(&cfg.get("log", "level"));
            st.console = mode.split_whitespace().any(|m| m == "console") || mode.trim().is_empty();
            if mode.split_whitespace().any(|m| m == "file") {
                st.file_path = Some(logs_dir.join("grafana.log"));
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(&logs_dir) {
        return startup_failure(&format!(
            "failed to initialize file handler: mkdir {}: {}",
            logs_dir.display(),
            io_err_text(&e)
        ));
    }
    if let Err(e) = reopen_log_file() {
        return startup_failure(&format!("failed to initialize file handler: {}", e));
    }

    let compiled = si::rfc3339_nano(SystemTime::now());
    log(
        "settings",
        Level::Info,
        "Starting Grafana",
        &[
            ("version", VERSION),
            ("commit", COMMIT),
            ("branch", BRANCH),
            ("compiled", &compiled),
        ],
    );
    for (msg, key, value) in &cfg.sources {
        log(
            "settings",
            Level::Info,
            msg,
            &[(key.as_str(), value.as_str())],
        );
    }
    let data_dir = cfg.path("paths", "data");
    let plugins_dir = cfg.path("paths", "plugins");
    let prov_dir = cfg.path("paths", "provisioning");
    for (name, p) in [
        ("Path Home", &home),
        ("Path Data", &data_dir),
        ("Path Logs", &logs_dir),
        ("Path Plugins", &plugins_dir),
        ("Path Provisioning", &prov_dir),
    ] {
        log(
            "settings",
            Level::Info,
            name,
            &[("path", &p.display().to_string())],
        );
    }
    log(
        "settings",
        Level::Info,
        &format!("App mode {}", cfg.get("", "app_mode")),
        &[],
    );

    for dir in [&data_dir, &plugins_dir] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return startup_failure(&format!("mkdir {}: {}", dir.display(), io_err_text(&e)));
        }
    }

    if let Some(pidfile) = flags.get("pidfile").filter(|p| !p.is_empty()) {
        let pid_path = PathBuf::from(pidfile);
        if let Some(parent) = pid_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(parent) {
                log(
                    "server",
                    Level::Error,
                    "Failed to verify pid directory",
                    &[("error", &io_err_text(&e))],
                );
                return 1;
            }
        }
        if let Err(e) = std::fs::write(&pid_path, std::process::id().to_string()) {
            log(
                "server",
                Level::Error,
                "Failed to write pidfile",
                &[("error", &io_err_text(&e))],
            );
            return 1;
        }
        log(
            "server",
            Level::Info,
            "Writing PID file",
            &[("path", pidfile), ("pid", &std::process::id().to_string())],
        );
    }

    // Database (sqlite only: an empty grafana.db file, like a fresh sqlite DB).
    let db_type = cfg.get("database", "type");
    log(
        "sqlstore",
        Level::Info,
        "Connecting to DB",
        &[("dbtype", &db_type)],
    );
    if db_type == "sqlite3" {
        let db_path = make_absolute(&cfg.get("database", "path"), &data_dir);
        if let Some(parent) = db_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = OpenOptions::new().create(true).append(true).open(&db_path) {
            return startup_failure(&format!(
                "failed to open database {}: {}",
                db_path.display(),
                io_err_text(&e)
            ));
        }
        log("migrator", Level::Info, "Starting DB migrations", &[]);
        log(
            "migrator",
            Level::Info,
            "migrations completed",
            &[("performed", "0"), ("skipped", "0"), ("duration", "1ms")],
        );
    } else {
        log(
            "sqlstore",
            Level::Warn,
            "stand-in: only sqlite3 is emulated; no database connection is made",
            &[("dbtype", &db_type)],
        );
    }

    let http_port: u16 = match cfg.get("server", "http_port").trim().parse() {
        Ok(p) => p,
        Err(_) => {
            return startup_failure(&format!(
                "failed to open listener on address {}:{}: listen tcp: address {}:{}: invalid port",
                cfg.get("server", "http_addr"),
                cfg.get("server", "http_port"),
                cfg.get("server", "http_addr"),
                cfg.get("server", "http_port")
            ))
        }
    };
    let protocol = cfg.get("server", "protocol");
    if protocol != "http" {
        return startup_failure(&format!(
            "stand-in supports only [server] protocol = http, got {:?}",
            protocol
        ));
    }

    // Provisioning (before the HTTP server starts, like Grafana).
    let datasources = match provision_datasources(&prov_dir.join("datasources")) {
        Ok(d) => d,
        Err(e) => {
            let err = format!("Datasource provisioning error: {}", e);
            log(
                "provisioning",
                Level::Error,
                "Failed to provision data sources",
                &[("error", &err)],
            );
            return startup_failure(&err);
        }
    };
    let provisioned = match provision_dashboards(&prov_dir.join("dashboards"), &[]) {
        Ok(d) => d,
        Err(e) => {
            log(
                "provisioning",
                Level::Error,
                "Failed to provision dashboards",
                &[("error", &e)],
            );
            return startup_failure(&e);
        }
    };

    // Simulated migration time: the port is not bound yet.
    let delay = Duration::from_millis(si::env_millis("GRAFANA_STANDIN_READY_DELAY_MS", 300));
    while started.elapsed() < delay {
        if let Some(code) = check_signals() {
            return code;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let http_addr = cfg.get("server", "http_addr");
    let listener = match si::bind(&http_addr, http_port) {
        Ok(l) => l,
        Err(e) => {
            let host = if http_addr.is_empty() {
                String::new()
            } else {
                http_addr.clone()
            };
            let reason = format!(
                "failed to open listener on address {}:{}: listen tcp {}:{}: bind: {}",
                host,
                http_port,
                host,
                http_port,
                io_err_text(&e)
            );
            log(
                "server",
                Level::Error,
                "Stopped background service",
                &[("service", "*api.HTTPServer"), ("reason", &reason)],
            );
            eprintln!("{}", reason);
            return 1;
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{}:{}", http_addr, http_port));
    log(
        "http.server",
        Level::Info,
        "HTTP Server Listen",
        &[
            ("address", &bound),
            ("protocol", "http"),
            ("subUrl", ""),
            ("socket", ""),
        ],
    );

    let root_url = cfg.get("server", "root_url");
    let sub_path = if cfg.get_bool("server", "serve_from_sub_path") {
        sub_path_of(&root_url)
    } else {
        String::new()
    };
    let password_required = cfg.is_explicit("security", "admin_password")
        && !cfg.get("security", "admin_password").is_empty();
    let state = Arc::new(State {
        start_wall: SystemTime::now(),
        datasources,
        provisioned: std::sync::RwLock::new(provisioned),
        admin_user: cfg.get("security", "admin_user"),
        admin_password: cfg.get("security", "admin_password"),
        password_required,
        anonymous: cfg.get_bool("auth.anonymous", "enabled"),
        basic_enabled: cfg.get_bool("auth.basic", "enabled"),
        metrics_enabled: cfg.get_bool("metrics", "enabled"),
        metrics_user: cfg.get("metrics", "basic_auth_username"),
        metrics_password: cfg.get("metrics", "basic_auth_password"),
        sub_path,
        auth_proxy: cfg.get_bool("auth.proxy", "enabled").then(|| AuthProxy {
            header_name: cfg.get("auth.proxy", "header_name"),
            header_property: cfg.get("auth.proxy", "header_property"),
            auto_sign_up: cfg.get_bool("auth.proxy", "auto_sign_up"),
            whitelist: cfg.get("auth.proxy", "whitelist"),
            headers: parse_proxy_headers(&cfg.get("auth.proxy", "headers")),
        }),
        org_role: org_role(&cfg.get("users", "auto_assign_org_role")),
        admin_created: !cfg.get_bool("security", "disable_initial_admin_creation"),
        users: Mutex::new(
            if cfg.get_bool("security", "disable_initial_admin_creation") {
                Vec::new()
            } else {
                vec![(cfg.get("security", "admin_user"), "Admin".into())]
            },
        ),
        saved: Mutex::new(Vec::new()),
    });
    let crash_after = std::env::var("GRAFANA_STANDIN_CRASH_AFTER_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let handler_state = Arc::clone(&state);
    let handler: Arc<si::Handler> = Arc::new(move |req: &si::Request| handle(&handler_state, req));
    let dashboards_dir = prov_dir.join("dashboards");
    let (mut scanned, mut seen) = {
        let loaded = state.provisioned();
        (Instant::now(), Provisioned::fingerprint(&loaded.paths))
    };
    si::serve(listener, handler, move || {
        if let Some(code) = check_signals() {
            return Some(code);
        }
        let (interval, paths) = {
            let loaded = state.provisioned();
            (loaded.interval, loaded.paths.clone())
        };
        // Like Grafana's file reader: every `updateIntervalSeconds`, files
        // that were added, changed or removed are provisioned again.
        if interval.is_some_and(|every| scanned.elapsed() >= every) {
            scanned = Instant::now();
            let now = Provisioned::fingerprint(&paths);
            if now != seen {
                seen = now;
                let known = state.provisioned().folders.clone();
                match provision_dashboards(&dashboards_dir, &known) {
                    Ok(fresh) => {
                        *state.provisioned.write().unwrap_or_else(|e| e.into_inner()) = fresh
                    }
                    Err(e) => log(
                        "provisioning.dashboard",
                        Level::Error,
                        "failed to provision dashboards again",
                        &[("error", &e)],
                    ),
                }
            }
        }
        if let Some(after) = crash_after {
            if started.elapsed() >= after {
                log(
                    "server",
                    Level::Error,
                    "Server shutdown",
                    &[(
                        "reason",
                        "stand-in: simulated crash (GRAFANA_STANDIN_CRASH_AFTER_MS)",
                    )],
                );
                return Some(1);
            }
        }
        None
    })
}

/// SIGHUP reopens the log file (Grafana's `log.Reload()`); SIGTERM/SIGINT shut down.
fn check_signals() -> Option<i32> {
    while let Some(sig) = si::signals::take() {
        if sig == libc::SIGHUP {
            if let Err(e) = reopen_log_file() {
                eprintln!("Failed to reload loggers: {}", e);
            }
            log(
                "server",
                Level::Info,
                "Reloaded loggers on SIGHUP (stand-in)",
                &[],
            );
            continue;
        }
        let reason = format!("System signal: {}", si::signals::go_name(sig));
        log(
            "server",
            Level::Info,
            "Shutdown started",
            &[("reason", &reason)],
        );
        log(
            "server",
            Level::Info,
            "Stopped background service",
            &[
                ("service", "*api.HTTPServer"),
                ("reason", "context canceled"),
            ],
        );
        return Some(0);
    }
    None
}

/// Grafana reads the role with `In("Viewer", [None Viewer Editor Admin])`:
/// anything else means Viewer.
fn org_role(value: &str) -> String {
    match value {
        "None" | "Viewer" | "Editor" | "Admin" => value.to_string(),
        _ => "Viewer".to_string(),
    }
}

fn sub_path_of(root_url: &str) -> String {
    let after_scheme = root_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(root_url);
    let path = after_scheme
        .find('/')
        .map(|p| &after_scheme[p..])
        .unwrap_or("");
    path.trim_end_matches('/').to_string()
}
