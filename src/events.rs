//! What obsbox changed and when, for the dashboards' annotations. The audit
//! log already records every change a user asks for, so this reads the kinds
//! of change from it (one place) instead of each caller reporting them again.
//! Changes nobody asked for leave no audit entry; they come from where they
//! are recorded anyway: each backup run's end (scheduled runs included) from
//! the backup history, and, given by the caller, a boot-loader rollback
//! (the update records) and a child's crash restart (the supervisor).
//! `/metrics` exports the result as `obsbox_last_event_timestamp_seconds`.

use crate::store::{Store, StoreError};

/// The kinds of change dashboards mark, each a `kind` label.
pub const KINDS: [&str; 6] = ["settings", "update", "backup", "power", "child", "system"];

/// The kind of change an audit entry records, or `None` for entries that
/// change nothing that runs (sign-ins, exports, acknowledgements, ...).
pub fn kind(actor: &str, action: &str) -> Option<&'static str> {
    let (area, what) = action.split_once('.').unwrap_or((action, ""));
    match (area, what) {
        ("settings", "update" | "import" | "import_secrets") => Some("settings"),
        ("update", _) => Some("update"),
        ("backup", "run" | "verify" | "drill" | "halt" | "resume") => Some("backup"),
        ("service", _) => Some("child"),
        ("system", "reboot" | "factory_reset") => Some("system"),
        // The power monitor records each change of the power state under
        // the state's name.
        _ if actor == "power" && !action.contains('.') => Some("power"),
        _ => None,
    }
}

/// When each kind of change last happened, in Unix seconds, every kind of
/// [`KINDS`] listed (0: never, as far as the records remember), so a
/// dashboard's `changes()` sees the first one too. `unaudited` are changes
/// the caller knows of that left no audit entry: (kind, Unix ms).
pub fn last_events(
    store: &Store,
    unaudited: &[(&'static str, i64)],
) -> Result<Vec<(&'static str, f64)>, StoreError> {
    let mut others = unaudited.to_vec();
    others.extend(crate::backup::last_ended(store)?.map(|at| ("backup", at)));
    Ok(latest(&store.audit_latest()?, &others))
}

/// The newest time of each kind, from the newest entry (Unix ms) of each
/// (actor, action) and the unaudited changes.
fn latest(
    entries: &[(String, String, i64)],
    unaudited: &[(&'static str, i64)],
) -> Vec<(&'static str, f64)> {
    KINDS
        .iter()
        .map(|&k| {
            let audited = entries
                .iter()
                .filter(|(actor, action, _)| kind(actor, action) == Some(k))
                .map(|(_, _, at)| *at);
            let others = unaudited
                .iter()
                .filter(|(kind, _)| *kind == k)
                .map(|(_, at)| *at);
            let newest = audited.chain(others).max().unwrap_or(0);
            (k, newest as f64 / 1000.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_told_from_what_only_happened() {
        for (actor, action, expected) in [
            ("admin", "settings.update", Some("settings")),
            ("admin", "settings.import", Some("settings")),
            ("admin", "settings.export_secrets", None),
            ("admin", "update.install", Some("update")),
            ("admin", "backup.run", Some("backup")),
            ("admin", "backup.key_export", None),
            ("admin", "service.restart", Some("child")),
            ("admin", "system.reboot", Some("system")),
            ("admin", "system.diagnostics", None),
            ("power", "on_battery", Some("power")),
            ("power", "power.ups.password", None),
            ("admin", "account.login", None),
            ("admin", "alert.acknowledge", None),
        ] {
            assert_eq!(kind(actor, action), expected, "{actor} {action}");
        }
    }

    #[test]
    fn every_kind_is_listed_with_its_newest_time() {
        let entries = [
            ("admin".to_string(), "settings.update".to_string(), 5_000),
            ("admin".into(), "settings.import".into(), 9_000),
            ("power".into(), "online".into(), 2_500),
            ("admin".into(), "account.login".into(), 99_000),
        ];
        assert_eq!(
            latest(&entries, &[]),
            [
                ("settings", 9.0),
                ("update", 0.0),
                ("backup", 0.0),
                ("power", 2.5),
                ("child", 0.0),
                ("system", 0.0),
            ]
        );
    }

    #[test]
    fn unaudited_changes_count_when_newer_than_the_audited_ones() {
        let entries = [
            ("admin".to_string(), "backup.run".to_string(), 5_000),
            ("admin".into(), "service.restart".into(), 9_000),
        ];
        // A scheduled backup ended, a rollback, a crash restart older than
        // the user's restart.
        let unaudited = [("backup", 7_000), ("update", 3_000), ("child", 4_000)];
        assert_eq!(
            latest(&entries, &unaudited),
            [
                ("settings", 0.0),
                ("update", 3.0),
                ("backup", 7.0),
                ("power", 0.0),
                ("child", 9.0),
                ("system", 0.0),
            ]
        );
    }
}
