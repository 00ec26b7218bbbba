//! Who sends logs in from the LAN: per sender, when it was last seen, its
//! rate, and what was refused, truncated or malformed; and the token bucket
//! that limits each sender's rate. Last-seen times are kept in the store so
//! a sender that went silent is still known (and alerted on) after a restart.

use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Whether the bucket has filled up again since it was last used.
    pub fn is_full(&self, now: Instant, rate: u32, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * f64::from(rate) >= f64::from(burst)
    }

    /// Takes one token: `Ok`, or how long until one is there.
    pub fn take(&mut self, now: Instant, rate: u32, burst: u32) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / f64::from(rate),
            ))
        }
    }
}

/// How fast the lines/s figure follows changes (an exponential average).
const RATE_WINDOW: f64 = 10.0;

/// One sender as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SenderView {
    /// The way in: `syslog` or `intake`.
    pub source: String,
    /// The sending address (syslog) or the token's host (intake).
    pub sender: String,
    /// The `host` label of its last line.
    pub host: String,
    /// Unix seconds of its last line.
    pub last_seen: i64,
    pub lines_per_second: f64,
    pub lines: u64,
    /// Lines (syslog over UDP) or requests (intake) refused.
    pub refused: u64,
    pub truncated: u64,
    pub malformed: u64,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    host: String,
    last_seen: i64,
    rate: f64,
    rate_at: Option<Instant>,
    lines: u64,
    refused: u64,
    truncated: u64,
    malformed: u64,
    /// Seen since the last save to the store.
    unsaved: bool,
}

impl Stats {
    fn decayed_rate(&self, now: Instant) -> f64 {
        match self.rate_at {
            Some(at) => {
                self.rate * (-now.saturating_duration_since(at).as_secs_f64() / RATE_WINDOW).exp()
            }
            None => 0.0,
        }
    }
}

/// What a batch from one sender brought.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub lines: u64,
    pub refused: u64,
    pub truncated: u64,
    pub malformed: u64,
}

/// Every sender seen; shared by the ways in, the API and `/metrics`.
#[derive(Default)]
pub struct Senders {
    stats: Mutex<BTreeMap<(String, String), Stats>>,
}

fn unix_now() -> i64 {
    crate::store::now_millis() / 1000
}

impl Senders {
    /// The senders known from earlier runs.
    pub fn load(store: &Store) -> Result<Senders, StoreError> {
        let rows = store.with_conn(|c| {
            let mut stmt = c.prepare("SELECT source, sender, host, last_seen FROM log_senders")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    Stats {
                        host: r.get(2)?,
                        last_seen: r.get(3)?,
                        ..Stats::default()
                    },
                ))
            })?;
            rows.collect::<Result<BTreeMap<_, _>, _>>()
        })?;
        Ok(Senders {
            stats: Mutex::new(rows),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Stats>> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a batch from `sender`; `host` is the host label of its lines.
    pub fn count(&self, source: &str, sender: &str, host: &str, tally: Tally, now: Instant) {
        let mut all = self.lock();
        let s = all
            .entry((source.to_string(), sender.to_string()))
            .or_default();
        if tally.lines > 0 {
            s.rate = s.decayed_rate(now) + tally.lines as f64 / RATE_WINDOW;
            s.rate_at = Some(now);
            s.last_seen = unix_now();
            s.unsaved = true;
            if s.host != host {
                s.host = host.to_string();
            }
        }
        s.lines += tally.lines;
        s.refused += tally.refused;
        s.truncated += tally.truncated;
        s.malformed += tally.malformed;
    }

    /// Every sender, by source then sender.
    pub fn list(&self, now: Instant) -> Vec<SenderView> {
        self.lock()
            .iter()
            .map(|((source, sender), s)| SenderView {
                source: source.clone(),
                sender: sender.clone(),
                host: s.host.clone(),
                last_seen: s.last_seen,
                lines_per_second: (s.decayed_rate(now) * 100.0).round() / 100.0,
                lines: s.lines,
                refused: s.refused,
                truncated: s.truncated,
                malformed: s.malformed,
            })
            .collect()
    }

    /// Writes the last-seen times that changed since the last save.
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let changed: Vec<_> = self
            .lock()
            .iter_mut()
            .filter(|(_, s)| s.unsaved)
            .map(|(k, s)| {
                s.unsaved = false;
                (k.clone(), s.host.clone(), s.last_seen)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        store.with_conn(|c| {
            let tx = c.transaction()?;
            for ((source, sender), host, last_seen) in &changed {
                tx.execute(
                    "INSERT INTO log_senders (source, sender, host, last_seen) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (source, sender) DO UPDATE SET host = ?3, last_seen = ?4",
                    rusqlite::params![source, sender, host, last_seen],
                )?;
            }
            tx.commit()
        })
    }

    /// Forgets a sender (the page's "forget" for a retired machine).
    pub fn forget(&self, store: &Store, source: &str, sender: &str) -> Result<bool, StoreError> {
        let known = self
            .lock()
            .remove(&(source.to_string(), sender.to_string()))
            .is_some();
        let stored = store.with_conn(|c| {
            c.execute(
                "DELETE FROM log_senders WHERE source = ?1 AND sender = ?2",
                rusqlite::params![source, sender],
            )
        })?;
        Ok(known || stored > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(3, t0);
        for _ in 0..3 {
            assert!(bucket.take(t0, 10, 3).is_ok());
        }
        let wait = bucket.take(t0, 10, 3).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(bucket.take(t0 + Duration::from_millis(100), 10, 3).is_ok());
        assert!(bucket.take(t0 + Duration::from_millis(100), 10, 3).is_err());
        // Saved tokens never pass the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(later, 10, 3).is_ok());
        }
        assert!(bucket.take(later, 10, 3).is_err());
    }

    #[test]
    fn senders_are_counted_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let senders = Senders::load(&store).unwrap();
        let t0 = Instant::now();
        let tally = Tally {
            lines: 100,
            refused: 2,
            truncated: 1,
            malformed: 3,
        };
        senders.count("syslog", "10.0.0.5", "nas", tally, t0);
        let view = &senders.list(t0)[0];
        assert_eq!(
            (view.lines, view.refused, view.truncated, view.malformed),
            (100, 2, 1, 3)
        );
        assert_eq!(view.lines_per_second, 10.0);
        assert_eq!(view.host, "nas");
        // The rate decays while the sender is silent.
        assert!(senders.list(t0 + Duration::from_secs(30))[0].lines_per_second < 1.0);
        senders.save(&store).unwrap();
        let again = Senders::load(&store).unwrap().list(t0);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].sender.as_str(), again[0].host.as_str()),
            ("10.0.0.5", "nas")
        );
        assert_eq!(again[0].last_seen, view.last_seen);
        assert!(senders.forget(&store, "syslog", "10.0.0.5").unwrap());
        assert!(Senders::load(&store).unwrap().list(t0).is_empty());
    }
}
