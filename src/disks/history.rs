//! The readings of each disk in SQLite, a bounded number per disk: the last
//! good one survives a restart with its verdict, so rises and hysteresis
//! carry over. Also the last self-test schedule slot handled per disk and
//! kind.

use super::health::{Health, TemperatureLevel};
use super::smart::Reading;
use super::TestKind;
use crate::store::{Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// Readings kept per disk.
const KEEP: i64 = 500;

/// A stored reading and what it was judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Unix milliseconds.
    pub at: i64,
    pub health: Health,
    pub temperature_level: TemperatureLevel,
    pub reading: Reading,
}

pub fn record(store: &Store, device: &str, stored: &Stored) -> Result<(), StoreError> {
    let reading = serde_json::to_string(&stored.reading).map_err(|e| StoreError::Malformed {
        section: "disk_readings".into(),
        message: e.to_string(),
    })?;
    store.with_conn(|conn| {
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO disk_readings (device, at, health, temperature_level, reading)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                device,
                stored.at,
                stored.health.as_str(),
                stored.temperature_level.as_str(),
                reading
            ],
        )?;
        tx.execute(
            "DELETE FROM disk_readings WHERE device = ?1 AND id <= (
                SELECT id FROM disk_readings WHERE device = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![device, KEEP],
        )?;
        tx.commit()
    })
}

/// The newest reading of `device` that still parses.
pub fn last(store: &Store, device: &str) -> Result<Option<Stored>, StoreError> {
    let row = store.with_conn(|conn| {
        conn.query_row(
            "SELECT at, health, temperature_level, reading FROM disk_readings
             WHERE device = ?1 ORDER BY id DESC LIMIT 1",
            params![device],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()
    })?;
    Ok(row.and_then(|(at, health, level, reading)| {
        Some(Stored {
            at,
            health: Health::parse(&health),
            temperature_level: TemperatureLevel::parse(&level),
            reading: serde_json::from_str(&reading).ok()?,
        })
    }))
}

/// Every device with a stored reading.
pub fn devices(store: &Store) -> Result<Vec<String>, StoreError> {
    store.with_conn(|conn| {
        let mut stmt = conn.prepare("SELECT DISTINCT device FROM disk_readings ORDER BY device")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    })
}

/// The last self-test slot of `kind` handled on `device`, Unix seconds.
pub fn test_slot(store: &Store, device: &str, kind: TestKind) -> Result<Option<i64>, StoreError> {
    store.with_conn(|conn| {
        conn.query_row(
            "SELECT slot FROM disk_test_slots WHERE device = ?1 AND kind = ?2",
            params![device, kind.as_str()],
            |r| r.get(0),
        )
        .optional()
    })
}

pub fn set_test_slot(
    store: &Store,
    device: &str,
    kind: TestKind,
    slot_seconds: i64,
) -> Result<(), StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "INSERT INTO disk_test_slots (device, kind, slot) VALUES (?1, ?2, ?3)
             ON CONFLICT(device, kind) DO UPDATE SET slot = excluded.slot",
            params![device, kind.as_str(), slot_seconds],
        )
        .map(|_| ())
    })
}

/// How many readings of `device` are kept.
#[cfg(test)]
fn count(store: &Store, device: &str) -> i64 {
    store
        .with_conn(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM disk_readings WHERE device = ?1",
                params![device],
                |r| r.get(0),
            )
        })
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_reading_is_kept_and_old_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(last(&store, "/dev/sda").unwrap(), None);
        for at in 0..KEEP + 20 {
            let stored = Stored {
                at,
                health: Health::Ok,
                temperature_level: TemperatureLevel::Warning,
                reading: Reading {
                    temperature: Some(at),
                    ..Reading::default()
                },
            };
            record(&store, "/dev/sda", &stored).unwrap();
        }
        record(
            &store,
            "/dev/sdb",
            &Stored {
                at: 1,
                health: Health::Failing,
                temperature_level: TemperatureLevel::Normal,
                reading: Reading::default(),
            },
        )
        .unwrap();
        assert_eq!(count(&store, "/dev/sda"), KEEP);
        let newest = last(&store, "/dev/sda").unwrap().unwrap();
        assert_eq!(newest.at, KEEP + 19);
        assert_eq!(newest.reading.temperature, Some(KEEP + 19));
        assert_eq!(newest.temperature_level, TemperatureLevel::Warning);
        assert_eq!(
            last(&store, "/dev/sdb").unwrap().unwrap().health,
            Health::Failing
        );
    }

    #[test]
    fn test_slots_are_kept_per_disk_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            test_slot(&store, "/dev/sda", TestKind::Short).unwrap(),
            None
        );
        set_test_slot(&store, "/dev/sda", TestKind::Short, 10).unwrap();
        set_test_slot(&store, "/dev/sda", TestKind::Long, 20).unwrap();
        set_test_slot(&store, "/dev/sda", TestKind::Short, 30).unwrap();
        assert_eq!(
            test_slot(&store, "/dev/sda", TestKind::Short).unwrap(),
            Some(30)
        );
        assert_eq!(
            test_slot(&store, "/dev/sda", TestKind::Long).unwrap(),
            Some(20)
        );
        assert_eq!(
            test_slot(&store, "/dev/sdb", TestKind::Short).unwrap(),
            None
        );
    }
}
