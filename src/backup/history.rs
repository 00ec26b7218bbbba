//! The record of every backup, verification, drill, copy and restore run, the
//! schedule slots already handled, and the manifest (sha256 per file) of each
//! backup.

use super::Kind;
use crate::store::{now_millis, Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Running,
    Ok,
    Failed,
    /// Stopped on request (power or disk trouble); retried on resume.
    Halted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Halted => "halted",
        }
    }

    fn parse(text: &str) -> Outcome {
        match text {
            "ok" => Outcome::Ok,
            "halted" => Outcome::Halted,
            "running" => Outcome::Running,
            _ => Outcome::Failed,
        }
    }
}

/// One run, as the history shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    pub id: i64,
    pub job: String,
    pub kind: Kind,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub result: Outcome,
    /// Why it failed or was halted; notes such as a failed prune.
    pub reason: Option<String>,
    /// `host/<id>/<time>` of the snapshot made, verified or restored.
    pub snapshot: Option<String>,
    pub bytes: Option<i64>,
    /// Drills: how long the restore took (the RTO measured).
    pub restore_ms: Option<i64>,
    /// Files stored (a backup that succeeded, on its run page) or restored
    /// (a restore to a directory).
    pub files: Option<i64>,
    /// Restores: who asked for it (the runs obsbox starts itself have none).
    pub actor: Option<String>,
    /// Restores: the directory restored into, or `download`.
    pub target: Option<String>,
    /// Restores: the files and directories asked for.
    pub paths: Option<Vec<String>>,
    pub log: String,
}

/// One file a backup stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub archive: String,
    /// The directory the archive was read from.
    pub source: String,
    /// Relative to the archive's root.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// It changed or vanished while the client read it: what the snapshot
    /// holds is not what was hashed, so a drill does not compare it.
    pub changed: bool,
}

/// What a finished run records.
#[derive(Debug, Default)]
pub struct Finish {
    pub reason: Option<String>,
    pub snapshot: Option<String>,
    pub bytes: Option<i64>,
    pub restore_ms: Option<i64>,
    /// Restores: files restored.
    pub files: Option<i64>,
    pub log: String,
}

/// What a restore run records when it starts.
#[derive(Debug)]
pub struct RestoreStart<'a> {
    pub job: &'a str,
    pub actor: &'a str,
    pub snapshot: &'a str,
    /// A directory, or `download`.
    pub target: &'a str,
    pub paths: &'a [String],
}

fn run_from(row: &Row) -> rusqlite::Result<Run> {
    let kind: String = row.get(2)?;
    let result: String = row.get(5)?;
    Ok(Run {
        id: row.get(0)?,
        job: row.get(1)?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Backup),
        started_at: row.get(3)?,
        ended_at: row.get(4)?,
        result: Outcome::parse(&result),
        reason: row.get(6)?,
        snapshot: row.get(7)?,
        bytes: row.get(8)?,
        restore_ms: row.get(9)?,
        log: row.get(10)?,
        files: row.get(11)?,
        actor: row.get(12)?,
        target: row.get(13)?,
        paths: row
            .get::<_, Option<String>>(14)?
            .and_then(|json| serde_json::from_str(&json).ok()),
    })
}

const COLUMNS: &str =
    "id, job, kind, started_at, ended_at, result, reason, snapshot, bytes, restore_ms, log,
     files, actor, target, paths";

/// When the last run of any job and kind ended (Unix ms), scheduled or
/// asked for: the dashboards annotate it.
pub fn last_ended(store: &Store) -> Result<Option<i64>, StoreError> {
    store.with_conn(|c| c.query_row("SELECT MAX(ended_at) FROM backup_runs", [], |r| r.get(0)))
}

pub fn begin(store: &Store, job: &str, kind: Kind) -> Result<i64, StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT INTO backup_runs (job, kind, started_at, result) VALUES (?1, ?2, ?3, 'running')",
            params![job, kind.as_str(), now_millis()],
        )?;
        Ok(c.last_insert_rowid())
    })
}

/// Starts a restore's run, `running` until [`finish`]ed.
pub fn begin_restore(store: &Store, start: &RestoreStart) -> Result<i64, StoreError> {
    let paths = serde_json::to_string(start.paths).unwrap_or_else(|_| "[]".into());
    store.with_conn(|c| {
        c.execute(
            "INSERT INTO backup_runs (job, kind, started_at, result, actor, snapshot, target, paths)
             VALUES (?1, 'restore', ?2, 'running', ?3, ?4, ?5, ?6)",
            params![
                start.job,
                now_millis(),
                start.actor,
                start.snapshot,
                start.target,
                paths
            ],
        )?;
        Ok(c.last_insert_rowid())
    })
}

/// Ends a run; a backup's manifest is stored with it in the same transaction.
pub fn finish(
    store: &Store,
    id: i64,
    result: Outcome,
    finish: &Finish,
    files: &[FileEntry],
) -> Result<(), StoreError> {
    store.with_conn(|c| {
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE backup_runs SET ended_at = ?2, result = ?3, reason = ?4,
             snapshot = COALESCE(?5, snapshot), bytes = ?6, restore_ms = ?7, log = ?8, files = ?9
             WHERE id = ?1",
            params![
                id,
                now_millis(),
                result.as_str(),
                finish.reason,
                finish.snapshot,
                finish.bytes,
                finish.restore_ms,
                finish.log,
                finish.files
            ],
        )?;
        {
            let mut insert =
                tx.prepare("INSERT INTO backup_files (run_id, archive, path, size, sha256, source, changed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for f in files {
                insert.execute(params![id, f.archive, f.path, f.size as i64, f.sha256, f.source, f.changed])?;
            }
        }
        tx.commit()
    })
}

/// Runs left `running` by an obsbox that stopped mid-run are marked failed.
pub fn close_interrupted(store: &Store) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "UPDATE backup_runs SET result = 'failed', reason = 'obsbox stopped during the run', ended_at = ?1
             WHERE result = 'running'",
            [now_millis()],
        )
        .map(|_| ())
    })
}

/// Newest first; `job` and `kind` narrow it.
pub fn list(
    store: &Store,
    job: Option<&str>,
    kind: Option<Kind>,
    limit: u32,
) -> Result<Vec<Run>, StoreError> {
    store.with_conn(|c| {
        let mut stmt = c.prepare(&format!(
            "SELECT {COLUMNS} FROM backup_runs WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR kind = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let runs = stmt.query_map(params![job, kind.map(Kind::as_str), limit], run_from)?;
        runs.collect()
    })
}

/// One run by its id.
pub fn get(store: &Store, id: i64) -> Result<Option<Run>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            &format!("SELECT {COLUMNS} FROM backup_runs WHERE id = ?1"),
            [id],
            run_from,
        )
        .optional()
    })
}

/// How many files a backup run stored (the rows of its manifest).
pub fn file_count(store: &Store, id: i64) -> Result<i64, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            "SELECT COUNT(*) FROM backup_files WHERE run_id = ?1",
            [id],
            |r| r.get(0),
        )
    })
}

/// The newest run of a job and kind with the given result.
pub fn last(
    store: &Store,
    job: &str,
    kind: Kind,
    result: Option<Outcome>,
) -> Result<Option<Run>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            &format!(
                "SELECT {COLUMNS} FROM backup_runs WHERE job = ?1 AND kind = ?2 AND result != 'running'
                 AND (?3 IS NULL OR result = ?3) ORDER BY id DESC LIMIT 1"
            ),
            params![job, kind.as_str(), result.map(Outcome::as_str)],
            run_from,
        )
        .optional()
    })
}

/// How many finished runs a job has had, by kind and result.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunCounts {
    /// (kind, result, count) for each kind and each of ok, failed, halted.
    pub runs: Vec<(Kind, Outcome, i64)>,
    /// Drills that passed within the RTO, passed over it, and failed.
    pub drills_within_rto: i64,
    pub drills_over_rto: i64,
    pub drills_failed: i64,
}

/// One query per job: `/metrics` asks for these at every scrape.
pub fn counts(store: &Store, job: &str, rto_ms: i64) -> Result<RunCounts, StoreError> {
    let rows: Vec<(String, String, i64, i64)> = store.with_conn(|c| {
        let mut stmt = c.prepare(
            "SELECT kind, result, COUNT(*), COALESCE(SUM(restore_ms <= ?2), 0) FROM backup_runs
             WHERE job = ?1 GROUP BY kind, result",
        )?;
        let rows = stmt.query_map(params![job, rto_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect()
    })?;
    let find = |kind: Kind, result: Outcome| {
        rows.iter()
            .find(|(k, r, _, _)| k == kind.as_str() && r == result.as_str())
            .map_or((0, 0), |&(_, _, n, within)| (n, within))
    };
    let mut counts = RunCounts::default();
    for kind in Kind::ALL {
        for result in [Outcome::Ok, Outcome::Failed, Outcome::Halted] {
            counts.runs.push((kind, result, find(kind, result).0));
        }
    }
    let (passed, within) = find(Kind::Drill, Outcome::Ok);
    counts.drills_within_rto = within;
    counts.drills_over_rto = passed - within;
    counts.drills_failed = find(Kind::Drill, Outcome::Failed).0;
    Ok(counts)
}

/// The manifest of the backup that made `snapshot`.
pub fn manifest(
    store: &Store,
    job: &str,
    snapshot: &str,
) -> Result<Option<Vec<FileEntry>>, StoreError> {
    store.with_conn(|c| {
        let run: Option<i64> = c
            .query_row(
                "SELECT id FROM backup_runs WHERE job = ?1 AND kind = 'backup' AND result = 'ok' AND snapshot = ?2
                 ORDER BY id DESC LIMIT 1",
                params![job, snapshot],
                |r| r.get(0),
            )
            .optional()?;
        let Some(run) = run else { return Ok(None) };
        let mut stmt = c.prepare("SELECT archive, path, size, sha256, source, changed FROM backup_files WHERE run_id = ?1")?;
        let files = stmt.query_map([run], |r| {
            Ok(FileEntry {
                archive: r.get(0)?,
                path: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                sha256: r.get(3)?,
                source: r.get(4)?,
                changed: r.get(5)?,
            })
        })?;
        files.collect::<rusqlite::Result<Vec<_>>>().map(Some)
    })
}

pub fn slot(store: &Store, job: &str, kind: Kind) -> Result<Option<i64>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            "SELECT slot FROM backup_slots WHERE job = ?1 AND kind = ?2",
            params![job, kind.as_str()],
            |r| r.get(0),
        )
        .optional()
    })
}

pub fn set_slot(store: &Store, job: &str, kind: Kind, slot_seconds: i64) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT INTO backup_slots (job, kind, slot) VALUES (?1, ?2, ?3)
             ON CONFLICT(job, kind) DO UPDATE SET slot = excluded.slot",
            params![job, kind.as_str(), slot_seconds],
        )
        .map(|_| ())
    })
}

/// Halt reasons a user asked for: they hold until resumed, restarts included.
pub fn saved_halts(store: &Store) -> Result<Vec<String>, StoreError> {
    store.with_conn(|c| {
        let mut stmt = c.prepare("SELECT reason FROM backup_halts ORDER BY since")?;
        let reasons = stmt.query_map([], |r| r.get(0))?;
        reasons.collect()
    })
}

pub fn save_halt(store: &Store, reason: &str) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT OR IGNORE INTO backup_halts (reason, since) VALUES (?1, ?2)",
            params![reason, now_millis()],
        )
        .map(|_| ())
    })
}

pub fn drop_halt(store: &Store, reason: &str) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute("DELETE FROM backup_halts WHERE reason = ?1", [reason])
            .map(|_| ())
    })
}

/// When obsbox first saw `job` (Unix milliseconds), recorded now if never.
pub fn job_created(store: &Store, job: &str) -> Result<i64, StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT OR IGNORE INTO backup_jobs (job, created_at) VALUES (?1, ?2)",
            params![job, now_millis()],
        )?;
        c.query_row(
            "SELECT created_at FROM backup_jobs WHERE job = ?1",
            [job],
            |r| r.get(0),
        )
    })
}

/// Forgets the schedule slots, creation time and repository usage of every
/// job not in `jobs`: a job made again later under an old name starts afresh.
pub fn forget_other_jobs(store: &Store, jobs: &[&str]) -> Result<(), StoreError> {
    let names = serde_json::to_string(jobs).unwrap_or_else(|_| "[]".into());
    store.with_conn(|c| {
        for table in ["backup_slots", "backup_jobs", "backup_storage"] {
            c.execute(
                &format!("DELETE FROM {table} WHERE job NOT IN (SELECT value FROM json_each(?1))"),
                [&names],
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_is_a_run_of_its_own_that_no_backup_figure_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let backup = begin(&store, "nas", Kind::Backup).unwrap();
        let made = Finish {
            snapshot: Some("host/box-nas/2026-12-07T02:00:00Z".into()),
            bytes: Some(10),
            ..Finish::default()
        };
        finish(&store, backup, Outcome::Ok, &made, &[]).unwrap();
        let paths = ["/srv/photos".to_string()];
        let start = RestoreStart {
            job: "nas",
            actor: "ann",
            snapshot: "host/box-nas/2026-12-07T02:00:00Z",
            target: "/srv/restored",
            paths: &paths,
        };
        let restore = begin_restore(&store, &start).unwrap();
        let restored = Finish {
            bytes: Some(99),
            files: Some(3),
            log: "restored\n".into(),
            ..Finish::default()
        };
        finish(&store, restore, Outcome::Ok, &restored, &[]).unwrap();
        let failed = begin_restore(&store, &start).unwrap();
        finish(&store, failed, Outcome::Failed, &Finish::default(), &[]).unwrap();

        // Last backup, last success (RPO, duration, size) and the manifest stay the backup's.
        for result in [None, Some(Outcome::Ok)] {
            let last = last(&store, "nas", Kind::Backup, result).unwrap().unwrap();
            assert_eq!((last.id, last.bytes), (backup, Some(10)));
        }
        assert!(manifest(&store, "nas", "host/box-nas/2026-12-07T02:00:00Z")
            .unwrap()
            .is_some());
        let c = counts(&store, "nas", 5_000).unwrap();
        assert!(c.runs.contains(&(Kind::Backup, Outcome::Ok, 1)));
        assert!(c.runs.contains(&(Kind::Backup, Outcome::Failed, 0)));
        assert!(c.runs.contains(&(Kind::Restore, Outcome::Ok, 1)));
        assert!(c.runs.contains(&(Kind::Restore, Outcome::Failed, 1)));
        assert_eq!(
            (c.drills_within_rto, c.drills_over_rto, c.drills_failed),
            (0, 0, 0)
        );

        // The run keeps what was asked and what came of it, snapshot included.
        let run = get(&store, restore).unwrap().unwrap();
        assert_eq!(run.kind, Kind::Restore);
        assert_eq!(run.snapshot.as_deref(), Some(start.snapshot));
        assert_eq!(run.actor.as_deref(), Some("ann"));
        assert_eq!(run.target.as_deref(), Some("/srv/restored"));
        assert_eq!(run.paths.as_deref(), Some(&paths[..]));
        assert_eq!((run.files, run.bytes), (Some(3), Some(99)));
        let restores = list(&store, Some("nas"), Some(Kind::Restore), 10).unwrap();
        assert_eq!(
            restores.iter().map(|r| r.id).collect::<Vec<_>>(),
            [failed, restore]
        );
        assert_eq!(list(&store, None, None, 10).unwrap().len(), 3);
    }

    #[test]
    fn counts_cover_every_kind_and_result_and_split_drills_by_the_rto() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = |kind, result, restore_ms| {
            let id = begin(&store, "nas", kind).unwrap();
            let finish_with = Finish {
                restore_ms,
                ..Finish::default()
            };
            finish(&store, id, result, &finish_with, &[]).unwrap();
        };
        run(Kind::Backup, Outcome::Ok, None);
        run(Kind::Backup, Outcome::Failed, None);
        run(Kind::Drill, Outcome::Ok, Some(1_000));
        run(Kind::Drill, Outcome::Ok, Some(9_000));
        run(Kind::Drill, Outcome::Failed, None);
        run(Kind::Copy, Outcome::Failed, None);
        let c = counts(&store, "nas", 5_000).unwrap();
        assert_eq!(c.runs.len(), 15);
        assert!(c.runs.contains(&(Kind::Copy, Outcome::Failed, 1)));
        assert!(c.runs.contains(&(Kind::Backup, Outcome::Failed, 1)));
        assert!(c.runs.contains(&(Kind::Verify, Outcome::Ok, 0)));
        assert_eq!(
            (c.drills_within_rto, c.drills_over_rto, c.drills_failed),
            (1, 1, 1)
        );
    }
}
