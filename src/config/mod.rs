//! Configuration as code: the whole configuration as one readable YAML file
//! (every settings section, as `obsbox settings get` shows them), with the
//! secrets it needs named but never included, and an optional encrypted
//! bundle of their values ([`bundle`]). The same parsing and validation
//! serve `obsbox settings import`, `obsbox check --file`, the API's import
//! (with its dry run) and the first-boot restore, so a file accepted by one is
//! accepted by all.

pub mod bundle;

use crate::services::{Services, ServicesError};
use crate::settings::{Problem, Reserved, Settings, SECTIONS};
use crate::store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

/// The version of the file's layout, its `format` key.
pub const FORMAT: u64 = 1;

/// Secrets obsbox makes for itself on every box: never exported, never imported.
const BOX_OWN_SECRETS: &[&str] = &[crate::services::render::alertmanager::WEBHOOK_TOKEN_SECRET];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the configuration file was refused: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    Services(#[from] ServicesError),
    #[error("secrets under {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the configuration as YAML: {0}")]
    Yaml(String),
}

/// A configuration file as read: the settings (validated) and the names of
/// the secrets they need.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub settings: Settings,
    pub secrets: Vec<String>,
}

/// Reads a configuration file. Every problem is reported together: YAML
/// that does not parse, unknown keys, a section that does not fit its
/// shape (the first mistake in each), bad secret names, and then whatever
/// validation finds in the settings as a whole (sections that did not parse
/// count as their defaults there). Sections left out are their defaults.
pub fn parse(text: &str, reserved: &Reserved) -> Result<ConfigFile, Vec<Problem>> {
    let problem = |field: &str, message: String| Problem {
        field: field.into(),
        message,
    };
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) => {
            return Err(vec![problem(
                "(file)",
                "must be a YAML mapping of settings sections".into(),
            )])
        }
        Err(e) => return Err(vec![problem("(file)", format!("is not YAML: {e}"))]),
    };
    let mut problems = Vec::new();
    let mut settings = Settings::default();
    let mut secrets = Vec::new();
    for (key, value) in doc.as_object().into_iter().flatten() {
        match key.as_str() {
            "format" => {
                if value.as_u64() != Some(FORMAT) {
                    problems.push(problem(
                        "format",
                        format!("this obsbox reads format {FORMAT}, not {value}"),
                    ));
                }
            }
            "secrets" => match serde_json::from_value::<Vec<String>>(value.clone()) {
                Ok(names) => {
                    for (i, name) in names.iter().enumerate() {
                        if !is_secret_name(name) {
                            problems.push(problem(
                                &format!("secrets[{i}]"),
                                format!("'{name}' is not a secret's name (like backup/nightly/password)"),
                            ));
                        }
                    }
                    secrets = names;
                }
                Err(e) => {
                    problems.push(problem("secrets", format!("must be a list of names: {e}")))
                }
            },
            section => match crate::store::with_section(&settings, section, value.clone()) {
                Ok(with) => settings = with,
                Err(StoreError::UnknownSection(_)) => problems.push(problem(
                    section,
                    format!(
                        "is not a settings section (format, secrets, {})",
                        SECTIONS.join(", ")
                    ),
                )),
                Err(StoreError::Malformed { message, .. }) => {
                    problems.push(problem(section, message))
                }
                Err(other) => problems.push(problem(section, other.to_string())),
            },
        }
    }
    problems.extend(settings.validate_with(reserved));
    if problems.is_empty() {
        Ok(ConfigFile { settings, secrets })
    } else {
        Err(problems)
    }
}

/// Whether `name` can name a stored secret: a relative path of plain
/// components (nothing hidden, no `..`), as the box's own secrets are named.
pub fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && !name.ends_with(".partial")
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
        })
}

/// The configuration file for `settings`, naming `secrets`. Nothing that
/// changes from one export to the next (no time) is in it, so exporting an
/// imported file gives the same text.
pub fn export(settings: &Settings, secrets: &[String]) -> Result<String, ConfigError> {
    let yaml = |e: serde_json::Error| ConfigError::Yaml(e.to_string());
    let mut doc = serde_json::Map::new();
    doc.insert("format".into(), FORMAT.into());
    doc.insert(
        "secrets".into(),
        serde_json::to_value(secrets).map_err(yaml)?,
    );
    let Value::Object(sections) = serde_json::to_value(settings).map_err(yaml)? else {
        return Err(ConfigError::Yaml("the settings are not a mapping".into()));
    };
    doc.extend(sections);
    let body = serde_yaml::to_string(&doc).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    Ok(format!(
        "# obsbox configuration of {host} (format {FORMAT}).\n\
         # Secrets are listed by name only; their values travel in an encrypted\n\
         # secrets bundle, or are set on the box. See /docs/settings-store.\n{body}",
        host = settings.general.hostname
    ))
}

/// The names of the secrets stored on the box that an export names, sorted.
pub fn stored_secrets(store: &Store) -> Result<Vec<String>, ConfigError> {
    let root = store.secret_path("");
    let mut names = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Io { path: dir, source }),
        };
        for entry in entries {
            let path = entry
                .map_err(|source| ConfigError::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path
                .strip_prefix(&root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if is_secret_name(&name) && !BOX_OWN_SECRETS.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The values of the secrets `names` on the box, for a bundle.
pub fn read_secrets(store: &Store, names: &[String]) -> Result<bundle::Secrets, ConfigError> {
    names
        .iter()
        .map(|name| {
            let path = store.secret_path(name);
            std::fs::read(&path)
                .map(|value| (name.clone(), value))
                .map_err(|source| ConfigError::Io { path, source })
        })
        .collect()
}

/// One setting that an import changes, by its dotted path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    /// `None`: the setting is new.
    pub before: Option<Value>,
    /// `None`: the setting goes away.
    pub after: Option<Value>,
}

/// Every leaf that differs between two settings documents, in document order.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    diff_into(String::new(), Some(before), Some(after), &mut changes);
    changes
}

fn diff_into(path: String, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                diff_into(join(key), a.get(key), b.get(key), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                diff_into(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a != b => out.push(Change {
            path,
            before: a.cloned(),
            after: b.cloned(),
        }),
        _ => {}
    }
}

/// What an import of a file does to a box, before it is done (the dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Every setting that changes.
    pub changes: Vec<Change>,
    /// The sections that are written.
    pub sections: Vec<String>,
    /// Secrets the file names and the bundle brings: written.
    pub secrets_written: Vec<String>,
    /// Secrets the file names that neither the bundle nor the box has: what
    /// needs them (a receiver, a backup job) cannot work until they are set.
    pub secrets_missing: Vec<String>,
    /// Secrets in the bundle that the file does not name: left out.
    pub secrets_ignored: Vec<String>,
}

/// What importing `file` (with the secrets `bundle` brought) onto a box now
/// at `current`, holding the secrets `stored`, would do.
pub fn plan(
    current: &Settings,
    file: &ConfigFile,
    bundle: &bundle::Secrets,
    stored: &[String],
) -> Result<Plan, ConfigError> {
    let value =
        |s: &Settings| serde_json::to_value(s).map_err(|e| ConfigError::Yaml(e.to_string()));
    let (before, after) = (value(current)?, value(&file.settings)?);
    let sections = SECTIONS
        .iter()
        .filter(|s| before.get(**s) != after.get(**s))
        .map(|s| s.to_string())
        .collect();
    let named = |name: &String| file.secrets.contains(name);
    Ok(Plan {
        changes: diff(&before, &after),
        sections,
        secrets_written: bundle.keys().filter(|n| named(n)).cloned().collect(),
        secrets_missing: file
            .secrets
            .iter()
            .filter(|n| !bundle.contains_key(*n) && !stored.contains(n))
            .cloned()
            .collect(),
        secrets_ignored: bundle.keys().filter(|n| !named(n)).cloned().collect(),
    })
}

/// Writes the secrets a plan says are written, and records which (never
/// their values) in the audit log.
pub fn put_secrets(
    store: &Store,
    plan: &Plan,
    bundle: &bundle::Secrets,
    actor: &str,
) -> Result<(), ConfigError> {
    for name in &plan.secrets_written {
        if let Some(value) = bundle.get(name) {
            store.put_secret(name, value)?;
        }
    }
    if !plan.secrets_written.is_empty() {
        store.audit(
            actor,
            "settings.import_secrets",
            &plan.secrets_written.join(", "),
        )?;
    }
    Ok(())
}

/// An import: the file's text and, optionally, a secrets bundle with its
/// passphrase.
pub struct Import<'a> {
    pub text: &'a str,
    pub bundle: Option<(&'a [u8], &'a str)>,
    /// Only say what would change.
    pub dry_run: bool,
    /// Who imports, for the audit log.
    pub actor: &'a str,
}

/// What an import found, and its bundle's secrets.
struct Prepared {
    file: ConfigFile,
    secrets: bundle::Secrets,
    plan: Plan,
}

/// Reads and checks everything an import brings, changing nothing.
fn prepare(store: &Store, current: &Settings, import: &Import) -> Result<Prepared, ConfigError> {
    let file = parse(import.text, &store.reserved()).map_err(ConfigError::Invalid)?;
    let secrets = match import.bundle {
        Some((bytes, passphrase)) => bundle::open(bytes, passphrase)?,
        None => bundle::Secrets::new(),
    };
    let plan = plan(current, &file, &secrets, &stored_secrets(store)?)?;
    Ok(Prepared {
        file,
        secrets,
        plan,
    })
}

impl Prepared {
    /// The secrets, then the audit entry of the whole import.
    fn finish(&self, store: &Store, actor: &str) -> Result<(), ConfigError> {
        put_secrets(store, &self.plan, &self.secrets, actor)?;
        store.audit(
            actor,
            "settings.import",
            &format!(
                "{} settings changed in {}",
                self.plan.changes.len(),
                if self.plan.sections.is_empty() {
                    "no section".to_string()
                } else {
                    self.plan.sections.join(", ")
                }
            ),
        )?;
        Ok(())
    }

    fn sections(&self) -> Vec<&str> {
        self.plan.sections.iter().map(String::as_str).collect()
    }
}

/// Imports onto the running box: the settings are checked, stored and put in
/// force as one change (every child's checker must accept its new config, or
/// nothing changes), then the bundle's secrets are written and handed to the
/// children. A dry run stops after the plan.
pub async fn import_running(
    services: &Services,
    store: &Store,
    import: &Import<'_>,
) -> Result<Plan, ConfigError> {
    let prepared = prepare(store, &store.settings()?, import)?;
    if import.dry_run {
        return Ok(prepared.plan);
    }
    services
        .replace(
            prepared.file.settings.clone(),
            &prepared.sections(),
            import.actor,
        )
        .await?;
    prepared.finish(store, import.actor)?;
    if !prepared.plan.secrets_written.is_empty() {
        services.refresh_secrets().await?;
    }
    Ok(prepared.plan)
}

/// Imports into a store no obsbox is serving from (`obsbox settings
/// import`): the file must already have passed [`check`](crate::app::check_settings);
/// a running obsbox applies it on SIGHUP or at its next start.
pub fn import_stored(store: &Store, import: &Import<'_>) -> Result<Plan, ConfigError> {
    let prepared = prepare(store, &store.settings()?, import)?;
    if !import.dry_run {
        store.write_sections(&prepared.file.settings, &prepared.sections(), import.actor)?;
        prepared.finish(store, import.actor)?;
    }
    Ok(prepared.plan)
}

impl Plan {
    /// The plan for a person, one line each.
    pub fn describe(&self) -> Vec<String> {
        let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_string(), Value::to_string);
        let mut lines: Vec<String> = self
            .changes
            .iter()
            .map(|c| {
                format!(
                    "change: {}: {} -> {}",
                    c.path,
                    show(&c.before),
                    show(&c.after)
                )
            })
            .collect();
        let named = [
            ("secret written", &self.secrets_written),
            ("secret missing (set it on the box)", &self.secrets_missing),
            (
                "secret in the bundle but not named by the file, left out",
                &self.secrets_ignored,
            ),
        ];
        for (what, names) in named {
            lines.extend(names.iter().map(|n| format!("{what}: {n}")));
        }
        if self.changes.is_empty() {
            lines.push("no setting changes".into());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_export_parses_back_to_the_same_settings() {
        let mut settings = Settings::default();
        settings.general.hostname = "lab-box".into();
        settings.prometheus.scrape_interval = "30s".into();
        let names = vec!["backup/nightly/password".to_string()];
        let text = export(&settings, &names).unwrap();
        assert!(text.contains("scrape_interval: 30s"), "{text}");
        let file = parse(&text, &Reserved::default()).unwrap();
        assert_eq!(file.settings, settings);
        assert_eq!(file.secrets, names);
        assert_eq!(export(&file.settings, &file.secrets).unwrap(), text);
    }

    #[test]
    fn sections_left_out_are_defaults() {
        let file = parse(
            "format: 1\ngeneral:\n  hostname: lab\n",
            &Reserved::default(),
        )
        .unwrap();
        let mut expected = Settings::default();
        expected.general.hostname = "lab".into();
        assert_eq!(file.settings, expected);
    }

    #[test]
    fn every_problem_of_a_file_is_listed() {
        let text = "format: 2\n\
                    colour: blue\n\
                    secrets: [../etc/shadow]\n\
                    general:\n  hostname: -bad-\n\
                    prometheus:\n  scrape_interval: 30s\n  sample_rate: 3\n\
                    alertmanager:\n  repeat_interval: 10s\n";
        let problems = parse(text, &Reserved::default()).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for field in [
            "format",
            "colour",
            "secrets[0]",
            "prometheus",
            "general.hostname",
            "alertmanager.repeat_interval",
        ] {
            assert!(fields.contains(&field), "{field} not in {problems:?}");
        }
        let unknown = problems.iter().find(|p| p.field == "prometheus").unwrap();
        assert!(unknown.message.contains("sample_rate"), "{unknown:?}");
    }

    #[test]
    fn text_that_is_not_yaml_says_where() {
        let problems = parse("general: [\n", &Reserved::default()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("line"), "{problems:?}");
        assert!(parse("- a list\n", &Reserved::default()).is_err());
    }

    #[test]
    fn secret_names_stay_inside_the_store() {
        for good in [
            "backup/nightly/password",
            "power/nut/upsmon",
            "ups/nut_password",
        ] {
            assert!(is_secret_name(good), "{good}");
        }
        for bad in [
            "",
            "/etc/shadow",
            "../x",
            "a/../b",
            "a//b",
            "backup/.test-1/password",
            "a/b.partial",
            "a b",
        ] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_diff_names_each_changed_leaf() {
        let before = json!({"a": {"x": 1, "y": [1, 2]}, "b": "same"});
        let after = json!({"a": {"x": 2, "y": [1], "z": true}, "b": "same"});
        let paths: Vec<(String, Option<Value>, Option<Value>)> = diff(&before, &after)
            .into_iter()
            .map(|c| (c.path, c.before, c.after))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("a.x".into(), Some(json!(1)), Some(json!(2))),
                ("a.y[1]".into(), Some(json!(2)), None),
                ("a.z".into(), None, Some(json!(true))),
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }

    #[test]
    fn a_plan_sorts_the_secrets() {
        let file = ConfigFile {
            settings: Settings::default(),
            secrets: vec!["a/given".into(), "a/on_box".into(), "a/nowhere".into()],
        };
        let bundle = bundle::Secrets::from([
            ("a/given".to_string(), b"1".to_vec()),
            ("a/extra".to_string(), b"2".to_vec()),
        ]);
        let plan = plan(&Settings::default(), &file, &bundle, &["a/on_box".into()]).unwrap();
        assert!(plan.changes.is_empty() && plan.sections.is_empty());
        assert_eq!(plan.secrets_written, ["a/given"]);
        assert_eq!(plan.secrets_missing, ["a/nowhere"]);
        assert_eq!(plan.secrets_ignored, ["a/extra"]);
    }
}
