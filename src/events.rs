//! What obsbox changed and when, for the dashboards' annotations. The audit
//! log already records every change a user asks for, so this reads the kinds
//! of change from it (one place) instead of each caller reporting them again.
//! Changes nobody asked for leave no audit entry; they come from where they
//! are recorded anyway: each backup run's end (scheduled runs included) from
//! the backup history, and, given by the caller, a boot-loader rollback
//! (the update records) and a child's crash restart (the supervisor).
//! `/metrics` exports the result as `obsbox_last_event_timestamp_seconds`.

use crate::store::{Store, StoreError};
use rusqlite::params;

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
    let mut others = remember_unaudited(store, unaudited)?;
    others.extend(crate::backup::last_ended(store)?.map(|at| ("backup", at)));
    Ok(latest(&store.audit_latest()?, &others))
}

/// Keeps the newest of each kind of `unaudited` change, and answers all
/// that are kept: a crash restart is known only to the supervisor while
/// obsbox runs, and would otherwise be forgotten by the next start (the
/// dashboards' mark of it going back to an older change).
fn remember_unaudited(
    store: &Store,
    unaudited: &[(&'static str, i64)],
) -> Result<Vec<(&'static str, i64)>, StoreError> {
    store.with_conn(|conn| {
        let tx = conn.transaction()?;
        for (kind, at) in unaudited {
            tx.execute(
                "INSERT INTO unaudited_events (kind, at) VALUES (?1, ?2)
                 ON CONFLICT (kind) DO UPDATE SET at = max(at, excluded.at)",
                params![kind, at],
            )?;
        }
        let kept = tx
            .prepare("SELECT kind, at FROM unaudited_events")?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        tx.commit()?;
        // Kinds no longer known are left out.
        Ok(kept
            .into_iter()
            .filter_map(|(kind, at)| Some((*KINDS.iter().find(|k| **k == kind)?, at)))
            .collect())
    })
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
    fn an_unaudited_change_is_remembered_after_the_caller_forgot_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let child = |events: Vec<(&'static str, f64)>| {
            events.into_iter().find(|(k, _)| *k == "child").unwrap().1
        };
        assert_eq!(
            child(last_events(&store, &[("child", 4_000)]).unwrap()),
            4.0
        );
        // obsbox restarted: the supervisor knows of no crash restart, or of
        // an older one only.
        assert_eq!(child(last_events(&store, &[]).unwrap()), 4.0);
        assert_eq!(
            child(last_events(&store, &[("child", 2_000)]).unwrap()),
            4.0
        );
        assert_eq!(
            child(last_events(&store, &[("child", 6_000)]).unwrap()),
            6.0
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
