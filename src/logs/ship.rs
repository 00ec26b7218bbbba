//! The shipper: one task that reads every log source (captured output under
//! `logs/<name>/`, spool directories under `spool/<name>/`), pushes batches to
//! Loki and remembers, per source, how far Loki has acknowledged.
//!
//! Files are the buffer: nothing is dropped while Loki is down, lines wait in
//! their files. One batch is pushed at a time, in order; while it is in
//! flight the next one is read, assembled and encoded, so Loki's answer and
//! obsbox's reading overlap. A position is written (atomically, fsynced) only
//! for what Loki acknowledged, at most every [`COMMIT_EVERY`] and whenever
//! the shipper goes idle, so a crash repeats at most that much and the batch
//! in flight: spool records keep their timestamps, and a captured source's
//! batch is rebuilt with the timestamps recorded before it was sent, so Loki
//! takes the repeat as duplicates and stores nothing twice.
//!
//! The same code forwards to a central Loki ([`Destination::Forward`]): each
//! destination is its own shipper with its own positions, so one that is
//! away holds its lines in their files without slowing the others, and a
//! spool segment goes only once every destination that reads it has passed
//! it ([`SpoolHolds`]).

use super::capture::{CaptureReader, Cursor, Line};
use super::level::{self, Level};
use super::push::{self, Batch, Encoded, Encoding, Entry, Labels, Outcome, Target};
use super::spool_reader::{self, SpoolCursor, SpoolItem, SpoolReader};
use prometheus_client::metrics::histogram::Histogram;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How often sources are looked at for new lines when none wait.
const POLL: Duration = Duration::from_millis(200);
/// Acknowledged positions are saved at most this often while lines flow.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Buckets of `obsbox_log_push_duration_seconds`.
const PUSH_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Retry delays after a failed push: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// A spool record longer than this is not a record.
const MAX_RECORD: usize = 1 << 20;

/// Where a shipper sends.
pub enum Destination {
    /// The box's own Loki, on this port of 127.0.0.1.
    Local { port: u16 },
    /// A central Loki.
    Forward(Forward),
}

/// A central Loki and what goes to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The name in the settings: its positions' directory and its metrics' label.
    pub name: String,
    pub url: String,
    /// The `Authorization` header's value, if it signs in.
    pub authorization: Option<String>,
    /// Sent as `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// CA certificate(s), PEM, the server's certificate must lead to.
    pub tls_ca: Option<String>,
    /// The sources forwarded; empty: all.
    pub sources: Vec<String>,
    /// Added to every stream that does not have the label already.
    pub labels: Labels,
}

impl Destination {
    /// Where this destination's positions are kept.
    fn positions(&self, data_dir: &Path) -> PathBuf {
        match self {
            Destination::Local { .. } => data_dir.join("ship"),
            Destination::Forward(f) => forward_positions(data_dir, &f.name),
        }
    }

    fn sources(&self) -> &[String] {
        match self {
            Destination::Local { .. } => &[],
            Destination::Forward(f) => &f.sources,
        }
    }
}

/// Where the positions of forward `name` are kept.
pub(crate) fn forward_positions(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("ship-forward").join(name)
}

/// Whether a destination reading `selected` (empty: all) reads `source`.
fn selects(selected: &[String], source: &str) -> bool {
    selected.is_empty() || selected.iter().any(|s| s == source)
}

/// Every destination that reads the spools: where its positions are and
/// what it reads. A spool segment may be deleted once every one of them
/// has saved a position past it; one that has saved none yet holds all.
#[derive(Clone, Default)]
pub struct SpoolHolds(Arc<Mutex<Vec<Hold>>>);

#[derive(Debug, Clone, PartialEq)]
struct Hold {
    positions: PathBuf,
    sources: Vec<String>,
}

impl SpoolHolds {
    /// The holds of the local Loki (when it runs) and of each forward.
    pub fn set(&self, data_dir: &Path, local: bool, forwards: &[crate::settings::LogForward]) {
        let local = local.then(|| Hold {
            positions: data_dir.join("ship"),
            sources: Vec::new(),
        });
        let holds = local
            .into_iter()
            .chain(forwards.iter().map(|f| Hold {
                positions: forward_positions(data_dir, &f.name),
                sources: f.sources.clone(),
            }))
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = holds;
    }

    /// How far spool `source` (`spool/<name>`, positions in `file`) may be
    /// deleted, given that the destination saving to `own` has passed `cursor`.
    fn passed_by_all(
        &self,
        source: &str,
        file: &Path,
        own: &Path,
        cursor: SpoolCursor,
    ) -> SpoolCursor {
        let holds = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(file_name) = file.file_name() else {
            return SpoolCursor::default();
        };
        holds
            .iter()
            .filter(|h| h.positions != own && selects(&h.sources, source))
            .map(|h| {
                // An unreadable position holds everything, as a missing one does.
                load::<Position<SpoolCursor>>(&h.positions.join(file_name))
                    .map_or(SpoolCursor::default(), |p| p.cursor)
            })
            .fold(cursor, |a, b| {
                if (b.segment, b.offset) < (a.segment, a.offset) {
                    b
                } else {
                    a
                }
            })
    }
}

/// What the shipper needs.
pub struct ShipperContext {
    pub data_dir: PathBuf,
    /// The `host` label of the box's own lines.
    pub hostname: String,
    pub destination: Destination,
    /// Every destination's hold on the spools.
    pub holds: SpoolHolds,
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
#[derive(Clone)]
pub struct Shipper {
    stats: Arc<Mutex<ShipStats>>,
    /// How long each push took until Loki answered (or it failed).
    push_seconds: Histogram,
}

impl Default for Shipper {
    fn default() -> Self {
        Shipper {
            stats: Arc::default(),
            push_seconds: Histogram::new(PUSH_BUCKETS.into_iter()),
        }
    }
}

impl Shipper {
    /// Starts shipping; the task ends when `ctx.stop` is cancelled.
    pub fn start(ctx: ShipperContext) -> (Shipper, tokio::task::JoinHandle<()>) {
        let shipper = Shipper::default();
        let handle = shipper.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = run(ctx, &handle).await {
                tracing::error!(error = %e, "log shipping stopped");
            }
        });
        (shipper, task)
    }

    pub fn stats(&self) -> ShipStats {
        self.lock().clone()
    }

    /// The push durations, for `/metrics` (shared: it keeps counting).
    pub fn push_durations(&self) -> Histogram {
        self.push_seconds.clone()
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
#[cfg(test)]
fn save<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    save_bytes(path, &serde_json::to_vec(value).map_err(io::Error::other)?)
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file.
fn save_bytes(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The lines a source contributes to one batch, and what to save on either side of the push.
struct Taken {
    /// Saved before the push (so a repeat gets the same timestamps).
    before: Option<Vec<u8>>,
    after: Vec<u8>,
    /// A spool's position after these lines: its segments before it may go once saved.
    spool_cursor: Option<SpoolCursor>,
    lines: u64,
    malformed: u64,
}

/// The labels of a captured source's lines: one shared set per level seen.
#[derive(Default)]
struct CaptureLabels {
    by_level: Vec<(Option<Level>, Arc<Labels>)>,
}

impl CaptureLabels {
    fn get(&mut self, hostname: &str, service: &str, level: Option<Level>) -> &Arc<Labels> {
        let i = match self.by_level.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                let mut labels = Labels::new();
                labels.insert("host".into(), hostname.into());
                labels.insert("service".into(), service.into());
                if let Some(level) = level {
                    labels.insert("level".into(), level.as_str().into());
                }
                self.by_level.push((level, Arc::new(labels)));
                self.by_level.len() - 1
            }
        };
        &self.by_level[i].1
    }
}

enum Kind {
    Capture {
        reader: CaptureReader,
        position: Position<Cursor>,
        carry: VecDeque<Line>,
        labels: CaptureLabels,
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
                position,
                carry,
                labels,
                ..
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
                    let level = level::detect(&line.text);
                    let labels = labels.get(hostname, &self.name, level);
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
                    spool_cursor: None,
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
                                &r.labels,
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
                    spool_cursor: Some(position.cursor),
                    lines,
                    malformed,
                })
            }
        }
    }

    /// Whether a batch of this source must be recorded before it is sent
    /// (its timestamps are made when it is taken): then no second batch of
    /// it may be taken while one is in flight, or a crash would lose the first.
    fn stamps_lines(&self) -> bool {
        matches!(self.kind, Kind::Capture { .. })
    }

    /// Once a spool position is saved: the segments read to the end go.
    fn delete_shipped(&self, cursor: SpoolCursor) -> io::Result<()> {
        match &self.kind {
            Kind::Capture { .. } => Ok(()),
            Kind::Spool { dir, .. } => spool_reader::delete_shipped(dir, cursor),
        }
    }
}

/// Every source, found by looking at the directories.
struct Sources {
    data_dir: PathBuf,
    positions: PathBuf,
    /// The sources read; empty: all.
    selected: Vec<String>,
    holds: SpoolHolds,
    by_name: BTreeMap<String, Source>,
    /// Where the next round of reading starts, so no source starves the others.
    turn: usize,
    /// Positions Loki acknowledged and not saved yet, by source (the newest).
    unsaved: BTreeMap<String, (Vec<u8>, Option<SpoolCursor>)>,
    /// When the oldest of them was acknowledged.
    unsaved_since: Option<Instant>,
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
    fn new(data_dir: &Path, destination: &Destination, holds: SpoolHolds) -> io::Result<Sources> {
        let positions = destination.positions(data_dir);
        std::fs::create_dir_all(&positions)?;
        Ok(Sources {
            data_dir: data_dir.to_path_buf(),
            positions,
            selected: destination.sources().to_vec(),
            holds,
            by_name: BTreeMap::new(),
            turn: 0,
            unsaved: BTreeMap::new(),
            unsaved_since: None,
        })
    }

    /// Picks up directories that appeared since the last look.
    fn discover(&mut self) -> io::Result<()> {
        for child in subdirectories(&self.data_dir.join("logs")) {
            if self.by_name.contains_key(&child) || !selects(&self.selected, &child) {
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
                labels: CaptureLabels::default(),
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
            if self.by_name.contains_key(&name) || !selects(&self.selected, &name) {
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

    /// Reads new lines until `limit` bytes of lines are carried in all, or
    /// the sources have no more; returns the lines found lost, by source.
    fn fill(&mut self, limit: usize) -> BTreeMap<String, u64> {
        let mut lost = BTreeMap::new();
        let mut carried = self.carried_bytes();
        let count = self.by_name.len();
        // A source's budget counts its file's bytes, more than the lines
        // carried: go round until the batch is full or nothing more comes.
        loop {
            let round = carried;
            for source in self.in_turn() {
                if carried >= limit {
                    break;
                }
                let before = source.carried_bytes();
                match source.fill(limit - carried) {
                    Ok(0) => {}
                    Ok(n) => *lost.entry(source.name.clone()).or_default() += n,
                    Err(e) => {
                        tracing::warn!(source = %source.name, error = %e, "reading a log source failed")
                    }
                }
                carried += source.carried_bytes() - before;
            }
            if carried >= limit || carried == round {
                break;
            }
        }
        self.turn = (self.turn + 1) % count.max(1);
        lost
    }

    /// Records the positions of a batch before it is sent (captured sources:
    /// the batch in flight); they replace any unsaved older ones.
    fn save_before(&mut self, taken: &[(String, Taken)]) -> io::Result<()> {
        for (name, t) in taken {
            let (Some(bytes), Some(source)) = (&t.before, self.by_name.get(name)) else {
                continue;
            };
            save_bytes(&source.position_file, bytes)?;
            self.unsaved.remove(name);
        }
        Ok(())
    }

    /// Loki acknowledged a batch: its positions wait to be saved.
    fn acknowledged(&mut self, taken: Vec<(String, Taken)>) {
        for (name, t) in taken {
            self.unsaved.insert(name, (t.after, t.spool_cursor));
        }
        self.unsaved_since.get_or_insert_with(Instant::now);
    }

    /// Whether acknowledged positions have waited [`COMMIT_EVERY`].
    fn save_due(&self) -> bool {
        self.unsaved_since
            .is_some_and(|t| t.elapsed() >= COMMIT_EVERY)
    }

    /// Saves the acknowledged positions; then spool segments shipped go.
    fn save_acknowledged(&mut self) -> io::Result<()> {
        for (name, (bytes, cursor)) in std::mem::take(&mut self.unsaved) {
            let Some(source) = self.by_name.get(&name) else {
                continue;
            };
            save_bytes(&source.position_file, &bytes)?;
            if let Some(cursor) = cursor {
                let cursor =
                    self.holds
                        .passed_by_all(&name, &source.position_file, &self.positions, cursor);
                source.delete_shipped(cursor)?;
            }
        }
        self.unsaved_since = None;
        Ok(())
    }
}

/// One batch with what it took from each source.
struct Assembled {
    batch: Batch,
    taken: Vec<(String, Taken)>,
}

/// A batch of up to `budget` bytes of lines; sources in `busy` (in the
/// batch in flight) that stamp their lines are left for the next one.
fn assemble(
    sources: &mut Sources,
    budget: usize,
    hostname: &str,
    busy: &BTreeSet<String>,
) -> Assembled {
    let mut batch = Batch::default();
    let mut taken = Vec::new();
    let mut left = budget;
    for source in sources.in_turn() {
        if left == 0 {
            break;
        }
        if source.stamps_lines() && busy.contains(&source.name) {
            continue;
        }
        let before = source.carried_bytes();
        if let Some(t) = source.take(left, hostname, &mut batch) {
            left = left.saturating_sub(before - source.carried_bytes());
            taken.push((source.name.clone(), t));
        }
    }
    Assembled { batch, taken }
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

/// When to send what is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Now,
    /// Look again after this long (nothing carried, or a batch neither full nor old).
    After(Duration),
}

/// `carried` bytes of lines, the first read `age` ago: send now, or wait.
fn due(carried: usize, age: Duration, batch_bytes: usize, batch_wait: Duration) -> Due {
    if carried == 0 {
        Due::After(POLL)
    } else if carried >= batch_bytes || age >= batch_wait {
        Due::Now
    } else {
        Due::After(POLL.min(batch_wait - age))
    }
}

/// What one look at the sources gave.
struct Prepared {
    /// The batch to send next, recorded and encoded; none when it is not due.
    batch: Option<(Assembled, Encoded)>,
    /// When not due: how long to wait before looking again.
    wait: Duration,
    /// When the oldest line still carried was read (after the batch was taken).
    first_read: Option<Instant>,
    /// Lines found deleted before they were read, by source.
    lost: BTreeMap<String, u64>,
}

/// What [`prepare`] needs besides the sources.
struct Plan {
    batch_bytes: usize,
    batch_wait: Duration,
    hostname: String,
    /// Added to every stream without them (a forward's labels).
    extra_labels: Arc<Labels>,
    encoding: Encoding,
    /// Sources in the batch in flight.
    busy: BTreeSet<String>,
    first_read: Option<Instant>,
}

/// Reads the sources and, when a batch is due, assembles, records and
/// encodes it. Saves acknowledged positions when they are due. Blocking.
fn prepare(s: &mut Sources, plan: Plan) -> io::Result<Prepared> {
    if s.save_due() {
        s.save_acknowledged()?;
    }
    s.discover()?;
    let lost = s.fill(plan.batch_bytes);
    let carried = s.carried_bytes();
    let first_read = (carried > 0).then(|| plan.first_read.unwrap_or_else(Instant::now));
    let age = first_read.map_or(Duration::ZERO, |t| t.elapsed());
    let mut prepared = Prepared {
        batch: None,
        wait: POLL,
        first_read,
        lost,
    };
    match due(carried, age, plan.batch_bytes, plan.batch_wait) {
        Due::After(wait) => prepared.wait = wait,
        Due::Now => {
            let mut assembled = assemble(s, plan.batch_bytes, &plan.hostname, &plan.busy);
            assembled.batch.add_missing_labels(&plan.extra_labels);
            if !assembled.taken.is_empty() {
                s.save_before(&assembled.taken)?;
                let encoded = Encoded::new(&assembled.batch, plan.encoding);
                prepared.batch = Some((assembled, encoded));
            }
            // Lines left over wait as long as the batch just taken did.
            if s.carried_bytes() == 0 {
                prepared.first_read = None;
            }
        }
    }
    Ok(prepared)
}

/// Counts what Loki did with a batch.
fn count(stats: &Mutex<ShipStats>, outcome: &Outcome, taken: &[(String, Taken)]) {
    let mut stats = lock(stats);
    if let Outcome::Refused(reasons) = outcome {
        for (reason, n) in reasons {
            *stats.refused.entry((*reason).to_string()).or_default() += n;
        }
    }
    let refused: u64 = match outcome {
        Outcome::Refused(r) => r.values().sum(),
        _ => 0,
    };
    let mut refused_left = refused;
    for (name, t) in taken {
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

async fn run(ctx: ShipperContext, shipper: &Shipper) -> io::Result<()> {
    let stats = &shipper.stats;
    let mut sources = Sources::new(&ctx.data_dir, &ctx.destination, ctx.holds.clone())?;
    let (target, extra_labels) = match &ctx.destination {
        Destination::Local { port } => (Target::Local(*port), Arc::default()),
        Destination::Forward(f) => (
            Target::remote(f).map_err(io::Error::other)?,
            Arc::new(f.labels.clone()),
        ),
    };
    let mut encoding = Encoding::Protobuf;
    let mut first_read: Option<Instant> = None;
    let mut ready: Option<(Assembled, Encoded)> = None;
    let plan = |encoding, busy, first_read| Plan {
        batch_bytes: ctx.batch_bytes,
        batch_wait: ctx.batch_wait,
        hostname: ctx.hostname.clone(),
        extra_labels: extra_labels.clone(),
        encoding,
        busy,
        first_read,
    };
    let note_lost = |lost: BTreeMap<String, u64>| {
        if !lost.is_empty() {
            let mut stats = lock(stats);
            for (source, n) in lost {
                *stats.lost.entry(source).or_default() += n;
            }
        }
    };
    loop {
        let (assembled, encoded) = match ready.take() {
            Some(batch) => batch,
            None => {
                let p = plan(encoding, BTreeSet::new(), first_read);
                let (s, prepared) = blocking(sources, move |s| prepare(s, p)).await?;
                sources = s;
                let prepared = prepared?;
                note_lost(prepared.lost);
                first_read = prepared.first_read;
                if first_read.is_none() {
                    lock(stats).waiting_since_unix = None;
                } else {
                    lock(stats)
                        .waiting_since_unix
                        .get_or_insert_with(unix_seconds);
                }
                match prepared.batch {
                    Some(batch) => batch,
                    None => {
                        // Idle: what Loki acknowledged is saved now.
                        if !sources.unsaved.is_empty() {
                            let (s, saved) = blocking(sources, Sources::save_acknowledged).await?;
                            sources = s;
                            saved?;
                        }
                        if sleep_or_stop(&ctx.stop, prepared.wait).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        };
        lock(stats)
            .waiting_since_unix
            .get_or_insert_with(unix_seconds);
        // Push this batch while the next one is read, assembled and encoded.
        let busy: BTreeSet<String> = assembled.taken.iter().map(|(n, _)| n.clone()).collect();
        let p = plan(encoding, busy, first_read);
        let push = push_until_done(
            &ctx,
            &target,
            &mut encoding,
            (&assembled.batch, &encoded),
            shipper,
        );
        let next = blocking(sources, move |s| prepare(s, p));
        let (outcome, next) = tokio::join!(push, next);
        let (s, next) = next?;
        sources = s;
        let Some(outcome) = outcome else {
            // Stopped: save what Loki has.
            let (_, saved) = blocking(sources, Sources::save_acknowledged).await?;
            return saved;
        };
        count(stats, &outcome, &assembled.taken);
        sources.acknowledged(assembled.taken);
        let next = next?;
        note_lost(next.lost);
        first_read = next.first_read;
        // The next batch was encoded before a 415 may have changed the encoding.
        ready = next.batch.map(|(a, e)| {
            let e = if e.encoding == encoding {
                e
            } else {
                Encoded::new(&a.batch, encoding)
            };
            (a, e)
        });
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
    target: &Target,
    encoding: &mut Encoding,
    (batch, encoded): (&Batch, &Encoded),
    shipper: &Shipper,
) -> Option<Outcome> {
    if batch.lines() == 0 {
        return Some(Outcome::Accepted);
    }
    let mut delay = RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            () = ctx.stop.cancelled() => return None,
            outcome = push::push(target, encoding, batch, encoded, PUSH_TIMEOUT) => outcome,
        };
        shipper
            .push_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Retry(why) => {
                shipper.lock().failed_pushes += 1;
                // Once, not at every retry: this log is shipped too.
                if failures == 0 {
                    tracing::warn!(to = %target, reason = %why, "pushing logs to Loki failed; retrying until it takes them");
                }
                failures += 1;
                if sleep_or_stop(&ctx.stop, delay).await {
                    return None;
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
            done => {
                if failures > 0 {
                    tracing::info!(to = %target, failures, "Loki takes logs again");
                }
                return Some(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Destination = Destination::Local { port: 1 };

    #[test]
    fn a_spool_segment_goes_only_once_every_destination_reading_it_has_passed_it() {
        let tmp = tempfile::tempdir().unwrap();
        let forward = |name: &str, sources: &[&str]| -> crate::settings::LogForward {
            serde_json::from_value(serde_json::json!({
                "name": name, "url": "http://127.0.0.1:1/loki/api/v1/push", "sources": sources
            }))
            .unwrap()
        };
        let holds = SpoolHolds::default();
        holds.set(
            tmp.path(),
            true,
            &[forward("central", &[]), forward("apps", &["obsbox"])],
        );
        let local = tmp.path().join("ship");
        std::fs::create_dir_all(&local).unwrap();
        let file = local.join("spool-syslog.json");
        let at = |segment| SpoolCursor { segment, offset: 7 };
        // The central forward has saved nothing yet: it holds everything.
        assert_eq!(
            holds.passed_by_all("spool/syslog", &file, &local, at(5)),
            SpoolCursor::default()
        );
        let central = forward_positions(tmp.path(), "central");
        std::fs::create_dir_all(&central).unwrap();
        let saved = |cursor| Position {
            cursor,
            ..Position::default()
        };
        save(&central.join("spool-syslog.json"), &saved(at(3))).unwrap();
        assert_eq!(
            holds.passed_by_all("spool/syslog", &file, &local, at(5)),
            at(3)
        );
        // Seen from the forward, the local position (saved past it) holds nothing back.
        save(&file, &saved(at(5))).unwrap();
        assert_eq!(
            holds.passed_by_all("spool/syslog", &file, &central, at(3)),
            at(3)
        );
        // `apps` reads only obsbox's own log: it holds no spool.
        save(&central.join("spool-syslog.json"), &saved(at(9))).unwrap();
        assert_eq!(
            holds.passed_by_all("spool/syslog", &file, &local, at(5)),
            at(5)
        );
        // Without forwards the local shipper deletes what it passed.
        holds.set(tmp.path(), true, &[]);
        assert_eq!(
            holds.passed_by_all("spool/syslog", &file, &local, at(5)),
            at(5)
        );
    }

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
                labels: CaptureLabels::default(),
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
                labels: CaptureLabels::default(),
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
        let entries: Vec<&Entry> = rest.streams().iter().flat_map(|s| &s.entries).collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].line, "four");
        let last_second = second
            .streams()
            .iter()
            .flat_map(|s| &s.entries)
            .map(|e| e.ts)
            .max()
            .unwrap();
        assert!(entries[0].ts > last_second, "time only goes forward");
        let labels: Vec<&Labels> = first.streams().iter().map(|s| &*s.labels).collect();
        assert_eq!(labels[0]["level"], "error");
        assert_eq!(labels[0]["service"], "app");
        assert_eq!(labels[0]["host"], "box");
    }

    /// A spool directory holding `segments` of `per` records each, numbered from 1.
    fn spool_dir(data: &Path, segments: u64, per: u64, line: &str) -> PathBuf {
        let dir = data.join("spool").join("s");
        std::fs::create_dir_all(&dir).unwrap();
        for seq in 1..=segments {
            let mut text = String::new();
            for i in 1..=per {
                let n = (seq - 1) * per + i;
                text.push_str(&format!(
                    "{{\"ts\":\"{n}\",\"labels\":{{\"job\":\"t\"}},\"line\":\"{n} {line}\"}}\n"
                ));
            }
            std::fs::write(dir.join(format!("{seq:020}.ndjson")), text).unwrap();
        }
        dir
    }

    fn numbers(batch: &Batch) -> Vec<u64> {
        batch
            .streams()
            .iter()
            .flat_map(|s| &s.entries)
            .map(|e| e.line.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    /// The line text of one record `line` of `spool_dir` (number, space, line, newline).
    fn record_bytes(n: u64, line: &str) -> usize {
        n.to_string().len() + 1 + line.len() + 1
    }

    #[test]
    fn only_acknowledged_positions_are_saved_and_only_their_segments_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = spool_dir(tmp.path(), 3, 3, "l");
        let mut sources = Sources::new(tmp.path(), &LOCAL, SpoolHolds::default()).unwrap();
        sources.discover().unwrap();
        sources.fill(1 << 20);
        let none = BTreeSet::new();
        // Three records a batch: the first, then the next, prepared while the first is in flight.
        let first = assemble(&mut sources, 3 * record_bytes(1, "l"), "box", &none);
        let second = assemble(&mut sources, 3 * record_bytes(4, "l"), "box", &none);
        assert_eq!(numbers(&first.batch), [1, 2, 3]);
        assert_eq!(numbers(&second.batch), [4, 5, 6]);
        // Loki took the first; the second fails, and obsbox dies before it is retried.
        sources.acknowledged(first.taken);
        sources.save_acknowledged().unwrap();
        let mut restarted = Sources::new(tmp.path(), &LOCAL, SpoolHolds::default()).unwrap();
        restarted.discover().unwrap();
        restarted.fill(1 << 20);
        let again = assemble(&mut restarted, 1 << 20, "box", &none);
        assert_eq!(
            numbers(&again.batch),
            [4, 5, 6, 7, 8, 9],
            "from the first batch's end"
        );
        assert_eq!(spool_reader::segments(&dir).unwrap(), [1, 2, 3]);
        // Once the second is acknowledged and saved, the segment read to its end goes.
        sources.acknowledged(second.taken);
        sources.save_acknowledged().unwrap();
        assert_eq!(spool_reader::segments(&dir).unwrap(), [2, 3]);
    }

    #[test]
    fn a_source_that_stamps_its_lines_waits_while_its_batch_is_in_flight() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("logs").join("app");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("current"), "one\ntwo\n").unwrap();
        spool_dir(tmp.path(), 1, 2, "s");
        let mut sources = Sources::new(tmp.path(), &LOCAL, SpoolHolds::default()).unwrap();
        sources.discover().unwrap();
        sources.fill(1 << 20);
        let busy: BTreeSet<String> = ["app".to_string(), "spool/s".to_string()].into();
        let next = assemble(&mut sources, 1 << 20, "box", &busy);
        let names: Vec<&str> = next.taken.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["spool/s"], "the spool keeps its own timestamps");
        let later = assemble(&mut sources, 1 << 20, "box", &BTreeSet::new());
        assert_eq!(later.batch.lines(), 2, "the captured lines come next");
    }

    #[test]
    fn a_look_fills_a_whole_batch_though_records_are_larger_than_their_lines() {
        let tmp = tempfile::tempdir().unwrap();
        // Each record's line is about a third of its bytes in the file.
        spool_dir(tmp.path(), 1, 200, "x");
        let mut sources = Sources::new(tmp.path(), &LOCAL, SpoolHolds::default()).unwrap();
        sources.discover().unwrap();
        sources.fill(1000);
        assert!(
            sources.carried_bytes() >= 1000,
            "{}",
            sources.carried_bytes()
        );
    }

    #[test]
    fn a_batch_goes_when_full_or_old_and_an_idle_shipper_polls() {
        let (full, wait) = (1000, Duration::from_secs(1));
        assert_eq!(due(0, Duration::ZERO, full, wait), Due::After(POLL));
        assert_eq!(due(1000, Duration::ZERO, full, wait), Due::Now);
        assert_eq!(due(10, Duration::from_secs(1), full, wait), Due::Now);
        assert_eq!(
            due(10, Duration::from_millis(900), full, wait),
            Due::After(Duration::from_millis(100))
        );
        assert_eq!(due(10, Duration::ZERO, full, wait), Due::After(POLL));
    }
}
