//! The shipper: one task that reads every log source (captured output under
//! `logs/<name>/`, spool directories under `spool/<name>/`), pushes batches to
//! Loki and remembers, per source, how far Loki has acknowledged.
//!
//! Files are the buffer: nothing is dropped while Loki is down, lines wait in
//! their files. A position is written (atomically, fsynced) only after Loki
//! answered, so a crash repeats at most the batch in flight; that batch is
//! rebuilt with the same timestamps (recorded before it was sent), so Loki
//! takes the repeat as a duplicate and stores nothing twice.

use super::capture::{CaptureReader, Cursor, Line};
use super::level;
use super::push::{self, Batch, Encoding, Entry, Labels, Outcome};
use super::spool_reader::{self, SpoolCursor, SpoolItem, SpoolReader};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How often sources are looked at for new lines.
const POLL: Duration = Duration::from_millis(200);
/// Retry delays after a failed push: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// A spool record longer than this is not a record.
const MAX_RECORD: usize = 1 << 20;

/// What the shipper needs.
pub struct ShipperContext {
    pub data_dir: PathBuf,
    /// The `host` label of the box's own lines.
    pub hostname: String,
    /// Loki's HTTP port on 127.0.0.1.
    pub loki_port: u16,
    /// A batch is sent once it holds this many bytes of lines...
    pub batch_bytes: usize,
    /// ...or once its first line has waited this long.
    pub batch_wait: Duration,
    pub stop: CancellationToken,
}

/// Counters of the shipper, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShipStats {
    /// Lines Loki acknowledged, by source (a child's name, `obsbox`, `spool/<name>`).
    pub shipped: BTreeMap<String, u64>,
    /// Lines Loki (or, for malformed spool records, the shipper) refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Lines deleted from their files before they were shipped, by source.
    pub lost: BTreeMap<String, u64>,
    /// Pushes that failed and were retried.
    pub failed_pushes: u64,
    /// Since when lines have waited with no push acknowledged (Unix seconds);
    /// none when caught up. Set anew after every acknowledged push.
    pub waiting_since_unix: Option<f64>,
}

/// A handle on the running shipper.
#[derive(Clone, Default)]
pub struct Shipper {
    stats: Arc<Mutex<ShipStats>>,
}

impl Shipper {
    /// Starts shipping; the task ends when `ctx.stop` is cancelled.
    pub fn start(ctx: ShipperContext) -> (Shipper, tokio::task::JoinHandle<()>) {
        let shipper = Shipper::default();
        let stats = shipper.stats.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = run(ctx, &stats).await {
                tracing::error!(error = %e, "log shipping stopped");
            }
        });
        (shipper, task)
    }

    pub fn stats(&self) -> ShipStats {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShipStats> {
        lock(&self.stats)
    }
}

fn lock(stats: &Mutex<ShipStats>) -> std::sync::MutexGuard<'_, ShipStats> {
    stats.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn unix_seconds() -> f64 {
    now_ns() as f64 / 1e9
}

/// A source's progress as saved on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position<C> {
    /// Everything before this was acknowledged by Loki.
    cursor: C,
    /// The timestamp the next stamped line gets at the least (Unix ns).
    next_ts: i64,
    /// The batch sent and not yet acknowledged: its lines after `cursor` and
    /// their first timestamp (the others follow 1 ns apart).
    inflight: Option<Inflight>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inflight {
    lines: u64,
    first_ts: i64,
}

/// Reads `path`, or the default when there is none yet.
fn load<T: DeserializeOwned + Default>(path: &Path) -> io::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `value` so that a crash leaves the old or the new file.
fn save<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&serde_json::to_vec(value).map_err(io::Error::other)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The lines a source contributes to one batch, and what to save on either side of the push.
struct Taken {
    /// Saved before the push (so a repeat gets the same timestamps).
    before: Option<Vec<u8>>,
    after: Vec<u8>,
    lines: u64,
    malformed: u64,
}

enum Kind {
    Capture {
        reader: CaptureReader,
        position: Position<Cursor>,
        carry: VecDeque<Line>,
    },
    Spool {
        dir: PathBuf,
        reader: SpoolReader,
        position: Position<SpoolCursor>,
        carry: VecDeque<(SpoolItem, SpoolCursor)>,
    },
}

struct Source {
    /// `<name>` for captured output, `spool/<name>` for a spool.
    name: String,
    position_file: PathBuf,
    kind: Kind,
}

impl Source {
    fn carried_bytes(&self) -> usize {
        match &self.kind {
            Kind::Capture { carry, .. } => carry.iter().map(|l| l.text.len() + 1).sum(),
            Kind::Spool { carry, .. } => carry
                .iter()
                .map(|(item, _)| match item {
                    SpoolItem::Record(r) => r.line.len() + 1,
                    SpoolItem::Malformed => 1,
                })
                .sum(),
        }
    }

    /// Reads up to `budget` more bytes into the carry; returns lines lost.
    fn fill(&mut self, budget: usize) -> io::Result<u64> {
        match &mut self.kind {
            Kind::Capture { reader, carry, .. } => {
                carry.extend(reader.read(budget)?);
                Ok(reader.take_lost())
            }
            Kind::Spool { reader, carry, .. } => {
                carry.extend(reader.read(budget)?);
                Ok(0)
            }
        }
    }

    /// Moves carried lines, up to `budget` bytes (at least one), into `batch`.
    fn take(&mut self, budget: usize, hostname: &str, batch: &mut Batch) -> Option<Taken> {
        match &mut self.kind {
            Kind::Capture {
                position, carry, ..
            } => {
                let (first_ts, limit) = match position.inflight {
                    // Rebuild the batch a crash interrupted, exactly.
                    Some(i) => (i.first_ts, Some(i.lines)),
                    None => (now_ns().max(position.next_ts), None),
                };
                let mut lines = 0u64;
                let mut bytes = 0;
                let mut end = None;
                while let Some(line) = carry.front() {
                    let full = match limit {
                        Some(limit) => lines == limit,
                        None => lines > 0 && bytes + line.text.len() > budget,
                    };
                    if full {
                        break;
                    }
                    let line = carry.pop_front().expect("front exists");
                    bytes += line.text.len() + 1;
                    let mut labels = Labels::new();
                    labels.insert("host".into(), hostname.into());
                    labels.insert("service".into(), self.name.clone());
                    if let Some(level) = level::detect(&line.text) {
                        labels.insert("level".into(), level.as_str().into());
                    }
                    batch.add(
                        labels,
                        Entry {
                            ts: first_ts + lines as i64,
                            line: line.text,
                        },
                    );
                    lines += 1;
                    end = Some(line.after);
                }
                let end = end?;
                let inflight = Position {
                    inflight: Some(Inflight { lines, first_ts }),
                    ..position.clone()
                };
                *position = Position {
                    cursor: end,
                    next_ts: first_ts + lines as i64,
                    inflight: None,
                };
                Some(Taken {
                    before: Some(serde_json::to_vec(&inflight).ok()?),
                    after: serde_json::to_vec(position).ok()?,
                    lines,
                    malformed: 0,
                })
            }
            Kind::Spool {
                position, carry, ..
            } => {
                let (mut lines, mut malformed, mut bytes) = (0u64, 0u64, 0);
                let mut end = None;
                while let Some((item, _)) = carry.front() {
                    let size = match item {
                        SpoolItem::Record(r) => r.line.len() + 1,
                        SpoolItem::Malformed => 1,
                    };
                    if (lines + malformed) > 0 && bytes + size > budget {
                        break;
                    }
                    let (item, after) = carry.pop_front().expect("front exists");
                    bytes += size;
                    end = Some(after);
                    match item {
                        SpoolItem::Record(r) => {
                            batch.add(
                                r.labels,
                                Entry {
                                    ts: r.ts,
                                    line: r.line,
                                },
                            );
                            lines += 1;
                        }
                        SpoolItem::Malformed => malformed += 1,
                    }
                }
                position.cursor = end?;
                Some(Taken {
                    before: None,
                    after: serde_json::to_vec(position).ok()?,
                    lines,
                    malformed,
                })
            }
        }
    }

    /// After Loki acknowledged: spool segments read to the end go.
    fn shipped(&self) -> io::Result<()> {
        match &self.kind {
            Kind::Capture { .. } => Ok(()),
            Kind::Spool { dir, position, .. } => spool_reader::delete_shipped(dir, position.cursor),
        }
    }
}

/// Every source, found by looking at the directories.
struct Sources {
    data_dir: PathBuf,
    positions: PathBuf,
    by_name: BTreeMap<String, Source>,
    /// Where the next round of reading starts, so no source starves the others.
    turn: usize,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn subdirectories(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_name(n))
        .collect()
}

impl Sources {
    fn new(data_dir: &Path) -> io::Result<Sources> {
        let positions = data_dir.join("ship");
        std::fs::create_dir_all(&positions)?;
        Ok(Sources {
            data_dir: data_dir.to_path_buf(),
            positions,
            by_name: BTreeMap::new(),
            turn: 0,
        })
    }

    /// Picks up directories that appeared since the last look.
    fn discover(&mut self) -> io::Result<()> {
        for child in subdirectories(&self.data_dir.join("logs")) {
            if self.by_name.contains_key(&child) {
                continue;
            }
            let position_file = self.positions.join(format!("logs-{child}.json"));
            let position: Position<Cursor> = load(&position_file)?;
            let reader = CaptureReader::new(
                self.data_dir.join("logs").join(&child),
                position.cursor.clone(),
            );
            let kind = Kind::Capture {
                reader,
                position,
                carry: VecDeque::new(),
            };
            self.by_name.insert(
                child.clone(),
                Source {
                    name: child,
                    position_file,
                    kind,
                },
            );
        }
        for spool in subdirectories(&self.data_dir.join("spool")) {
            let name = format!("spool/{spool}");
            if self.by_name.contains_key(&name) {
                continue;
            }
            let position_file = self.positions.join(format!("spool-{spool}.json"));
            let position: Position<SpoolCursor> = load(&position_file)?;
            let dir = self.data_dir.join("spool").join(&spool);
            let kind = Kind::Spool {
                reader: SpoolReader::new(dir.clone(), position.cursor, MAX_RECORD),
                dir,
                position,
                carry: VecDeque::new(),
            };
            self.by_name.insert(
                name.clone(),
                Source {
                    name,
                    position_file,
                    kind,
                },
            );
        }
        Ok(())
    }

    fn carried_bytes(&self) -> usize {
        self.by_name.values().map(Source::carried_bytes).sum()
    }

    /// Every source, starting at this round's turn.
    fn in_turn(&mut self) -> Vec<&mut Source> {
        let mut all: Vec<&mut Source> = self.by_name.values_mut().collect();
        let turn = self.turn % all.len().max(1);
        all.rotate_left(turn);
        all
    }

    /// Reads new lines until `limit` bytes are carried in all; returns the
    /// lines found lost, by source.
    fn fill(&mut self, limit: usize) -> BTreeMap<String, u64> {
        let mut lost = BTreeMap::new();
        let mut carried = self.carried_bytes();
        let count = self.by_name.len();
        for source in self.in_turn() {
            if carried >= limit {
                break;
            }
            let before = source.carried_bytes();
            match source.fill(limit - carried) {
                Ok(0) => {}
                Ok(n) => {
                    lost.insert(source.name.clone(), n);
                }
                Err(e) => {
                    tracing::warn!(source = %source.name, error = %e, "reading a log source failed")
                }
            }
            carried += source.carried_bytes() - before;
        }
        self.turn = (self.turn + 1) % count.max(1);
        lost
    }
}

/// One batch with what it took from each source.
struct Assembled {
    batch: Batch,
    taken: Vec<(String, Taken)>,
}

fn assemble(sources: &mut Sources, budget: usize, hostname: &str) -> Assembled {
    let mut batch = Batch::default();
    let mut taken = Vec::new();
    let mut left = budget;
    for source in sources.in_turn() {
        if left == 0 {
            break;
        }
        let before = source.carried_bytes();
        if let Some(t) = source.take(left, hostname, &mut batch) {
            left = left.saturating_sub(before - source.carried_bytes());
            taken.push((source.name.clone(), t));
        }
    }
    Assembled { batch, taken }
}

/// Saves each source's position (before the push: the batch in flight; after: the new position).
fn save_positions(sources: &Sources, taken: &[(String, Taken)], after: bool) -> io::Result<()> {
    for (name, t) in taken {
        let Some(source) = sources.by_name.get(name) else {
            continue;
        };
        let bytes = if after {
            Some(&t.after)
        } else {
            t.before.as_ref()
        };
        if let Some(bytes) = bytes {
            save(&source.position_file, &RawJson(bytes))?;
        }
        if after {
            source.shipped()?;
        }
    }
    Ok(())
}

/// Bytes that already are JSON.
struct RawJson<'a>(&'a [u8]);

impl Serialize for RawJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value =
            serde_json::from_slice(self.0).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }
}

/// Runs blocking file work on the blocking pool with the sources, and gives them back.
async fn blocking<T: Send + 'static>(
    sources: Sources,
    work: impl FnOnce(&mut Sources) -> T + Send + 'static,
) -> io::Result<(Sources, T)> {
    tokio::task::spawn_blocking(move || {
        let mut sources = sources;
        let out = work(&mut sources);
        (sources, out)
    })
    .await
    .map_err(io::Error::other)
}

async fn run(ctx: ShipperContext, stats: &Mutex<ShipStats>) -> io::Result<()> {
    let mut sources = Sources::new(&ctx.data_dir)?;
    let mut encoding = Encoding::Protobuf;
    let mut waiting_since: Option<Instant> = None;
    loop {
        let limit = ctx.batch_bytes;
        let (s, read) = blocking(sources, move |s| {
            s.discover().map(|()| {
                let lost = s.fill(limit);
                (lost, s.carried_bytes())
            })
        })
        .await?;
        sources = s;
        let (lost, carried) = read?;
        if !lost.is_empty() {
            let mut stats = lock(stats);
            for (source, n) in lost {
                *stats.lost.entry(source).or_default() += n;
            }
        }
        if carried == 0 {
            waiting_since = None;
            lock(stats).waiting_since_unix = None;
            if sleep_or_stop(&ctx.stop, POLL).await {
                return Ok(());
            }
            continue;
        }
        lock(stats)
            .waiting_since_unix
            .get_or_insert_with(unix_seconds);
        let since = *waiting_since.get_or_insert_with(Instant::now);
        let age = since.elapsed();
        if carried < ctx.batch_bytes && age < ctx.batch_wait {
            if sleep_or_stop(&ctx.stop, POLL.min(ctx.batch_wait - age)).await {
                return Ok(());
            }
            continue;
        }
        let (budget, host) = (ctx.batch_bytes, ctx.hostname.clone());
        let (s, assembled) = blocking(sources, move |s| {
            let assembled = assemble(s, budget, &host);
            save_positions(s, &assembled.taken, false).map(|()| assembled)
        })
        .await?;
        sources = s;
        let assembled = assembled?;
        let Some(outcome) = push_until_done(&ctx, &mut encoding, &assembled.batch, stats).await
        else {
            return Ok(());
        };
        {
            let mut stats = lock(stats);
            if let Outcome::Refused(reasons) = &outcome {
                for (reason, n) in reasons {
                    *stats.refused.entry((*reason).to_string()).or_default() += n;
                }
            }
            let refused: u64 = match &outcome {
                Outcome::Refused(r) => r.values().sum(),
                _ => 0,
            };
            let mut refused_left = refused;
            for (name, t) in &assembled.taken {
                // Loki does not say which stream's lines it refused: they are
                // taken off the first sources' counts.
                let off = refused_left.min(t.lines);
                refused_left -= off;
                *stats.shipped.entry(name.clone()).or_default() += t.lines - off;
                if t.malformed > 0 {
                    *stats.refused.entry("malformed".into()).or_default() += t.malformed;
                }
            }
            // Progress: what still waits is timed from now.
            stats.waiting_since_unix = None;
        }
        let (s, saved) =
            blocking(sources, move |s| save_positions(s, &assembled.taken, true)).await?;
        sources = s;
        saved?;
        // Lines left over wait as long as the batch just sent did.
        if sources.carried_bytes() == 0 {
            waiting_since = None;
        }
    }
}

/// True when stopped.
async fn sleep_or_stop(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// Pushes until Loki took or refused the batch; None when stopped first.
async fn push_until_done(
    ctx: &ShipperContext,
    encoding: &mut Encoding,
    batch: &Batch,
    stats: &Mutex<ShipStats>,
) -> Option<Outcome> {
    if batch.lines() == 0 {
        return Some(Outcome::Accepted);
    }
    let mut delay = RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        let outcome = tokio::select! {
            () = ctx.stop.cancelled() => return None,
            outcome = push::push(ctx.loki_port, encoding, batch, PUSH_TIMEOUT) => outcome,
        };
        match outcome {
            Outcome::Retry(why) => {
                lock(stats).failed_pushes += 1;
                // Once, not at every retry: this log is shipped too.
                if failures == 0 {
                    tracing::warn!(reason = %why, "pushing logs to Loki failed; retrying until it takes them");
                }
                failures += 1;
                if sleep_or_stop(&ctx.stop, delay).await {
                    return None;
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
            done => {
                if failures > 0 {
                    tracing::info!(failures, "Loki takes logs again");
                }
                return Some(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.json");
        let none: Position<SpoolCursor> = load(&path).unwrap();
        assert_eq!(none, Position::default());
        let p = Position {
            cursor: SpoolCursor {
                segment: 3,
                offset: 9,
            },
            next_ts: 5,
            inflight: Some(Inflight {
                lines: 2,
                first_ts: 4,
            }),
        };
        save(&path, &p).unwrap();
        assert_eq!(load::<Position<SpoolCursor>>(&path).unwrap(), p);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    fn capture_source(dir: &Path) -> Source {
        Source {
            name: "app".into(),
            position_file: dir.join("pos.json"),
            kind: Kind::Capture {
                reader: CaptureReader::new(dir.to_path_buf(), Cursor::default()),
                position: Position::default(),
                carry: VecDeque::new(),
            },
        }
    }

    #[test]
    fn a_batch_interrupted_by_a_crash_is_rebuilt_with_the_same_timestamps() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("current"),
            "level=error one\ntwo\nthree\nfour\n",
        )
        .unwrap();
        let mut source = capture_source(tmp.path());
        source.fill(1 << 20).unwrap();
        let mut first = Batch::default();
        // A budget of 8 bytes: "level=error one" alone exceeds it, and is taken alone.
        let taken = source.take(8, "box", &mut first).unwrap();
        assert_eq!(taken.lines, 1);
        let mut second = Batch::default();
        let taken2 = source.take(10, "box", &mut second).unwrap();
        assert_eq!(taken2.lines, 2);
        // The crash: the second batch's "before" position is what is on disk.
        let saved: Position<Cursor> =
            serde_json::from_slice(taken2.before.as_ref().unwrap()).unwrap();
        let mut restarted = Source {
            kind: Kind::Capture {
                reader: CaptureReader::new(tmp.path().to_path_buf(), saved.cursor.clone()),
                position: saved,
                carry: VecDeque::new(),
            },
            ..capture_source(tmp.path())
        };
        restarted.fill(1 << 20).unwrap();
        let mut again = Batch::default();
        let replay = restarted.take(1 << 20, "box", &mut again).unwrap();
        assert_eq!(replay.lines, 2, "exactly the batch in flight");
        assert_eq!(again, second);
        let mut rest = Batch::default();
        restarted.take(1 << 20, "box", &mut rest).unwrap();
        let entries: Vec<&Entry> = rest.streams.values().flatten().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].line, "four");
        let last_second = second
            .streams
            .values()
            .flatten()
            .map(|e| e.ts)
            .max()
            .unwrap();
        assert!(entries[0].ts > last_second, "time only goes forward");
        let labels: Vec<&Labels> = first.streams.keys().collect();
        assert_eq!(labels[0]["level"], "error");
        assert_eq!(labels[0]["service"], "app");
        assert_eq!(labels[0]["host"], "box");
    }
}
