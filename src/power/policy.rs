//! What UPS readings mean for the box: a pure state machine. A reading, a
//! lost UPS, a forced shutdown or the passing of time goes in; actions come
//! out (halt or resume backups, start the shutdown, a transition to record).
//! No I/O and no clock: the caller passes the time in and wakes the policy
//! at [`Policy::deadline`].
//!
//! - **online -> on battery** once the UPS has been on battery for the whole
//!   debounce (default 5 s). Readings taken during a self-test or calibration
//!   (`testing`) never count: they neither start, confirm nor end an outage,
//!   and they clear a pending debounce.
//! - **on battery -> online** when mains returns before anything critical:
//!   backups resume.
//! - **shutdown** (final) when, on battery, the UPS flags low battery, the
//!   charge falls under `low_charge_percent`, the runtime under `low_runtime`,
//!   or the outage has lasted `max_on_battery` (apcupsd's BATTERYLEVEL,
//!   MINUTES and TIMEOUT); when the UPS is lost while its last reading was on
//!   battery (as NUT's upsmon); or when a NUT primary asks for it (FSD). A
//!   critical reading counts at once, even during the debounce. Once started
//!   a shutdown is never cancelled, whatever comes after.
//! - A UPS lost while on mains is reported, not acted on.
//!
//! Every transition is recorded. Notifications (the audit log) are rate
//! limited per kind: after one about power (on battery, back online) or one
//! about the link (lost, answering again), the next of that kind comes at the
//! earliest [`NOTIFY_EVERY`] later, and says how many were held back
//! meanwhile. Anything about a shutdown is always notified. Flapping faster
//! than the debounce makes no transition at all.

use super::ups::UpsStatus;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Shortest time between two notifications of one kind (power or link).
pub const NOTIFY_EVERY: Duration = Duration::from_secs(10 * 60);

/// What the policy acts on; validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// How long the UPS must stay on battery before it counts.
    pub debounce: Duration,
    /// On battery with less charge than this is critical.
    pub low_charge_percent: f64,
    /// On battery with less runtime left than this is critical.
    pub low_runtime: Duration,
    /// On battery for longer than this is critical; `None`: no limit.
    pub max_on_battery: Option<Duration>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            debounce: Duration::from_secs(5),
            low_charge_percent: 5.0,
            low_runtime: Duration::from_secs(180),
            max_on_battery: None,
        }
    }
}

/// The power state as shown and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// No reading yet (treated as on mains).
    Unknown,
    Online,
    OnBattery,
    /// A shutdown is under way; final.
    Shutdown,
}

impl PowerState {
    pub const ALL: [PowerState; 4] = [
        PowerState::Unknown,
        PowerState::Online,
        PowerState::OnBattery,
        PowerState::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Unknown => "unknown",
            PowerState::Online => "online",
            PowerState::OnBattery => "on_battery",
            PowerState::Shutdown => "shutdown",
        }
    }
}

/// What goes into the policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A valid reading from the UPS.
    Status(UpsStatus),
    /// No valid answer from the UPS for the configured time.
    Lost,
    /// Someone with the right asks for a shutdown (a NUT primary's FSD).
    ForcedShutdown(String),
    /// Time passed: a debounce or the on-battery limit may have run out.
    Tick,
}

/// A change worth recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub from: PowerState,
    pub to: PowerState,
    /// What happened, in words.
    pub what: String,
    /// Whether it goes to the audit log (rate limited, see [`NOTIFY_EVERY`]).
    pub notify: bool,
    /// Notifications of this kind held back since the last one sent.
    pub suppressed: u32,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    HaltBackups,
    ResumeBackups,
    /// Start the shutdown sequence; emitted once, ever.
    StartShutdown {
        reason: String,
    },
    Record(Transition),
}

/// Rate limit of one kind of notification.
#[derive(Debug, Default)]
struct Limiter {
    last: Option<Instant>,
    held: u32,
}

impl Limiter {
    /// Whether to notify now, and how many were held back before.
    fn pass(&mut self, now: Instant) -> (bool, u32) {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < NOTIFY_EVERY => {
                self.held += 1;
                (false, 0)
            }
            _ => {
                self.last = Some(now);
                (true, std::mem::take(&mut self.held))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The first reading: recorded, not notified.
    First,
    Power,
    Link,
    Shutdown,
}

/// The policy's state; see the module documentation.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    state: PowerState,
    /// Since when the UPS has been on battery (pending or confirmed).
    on_battery_since: Option<Instant>,
    /// The last reading said on battery (and was not a test).
    last_on_battery: bool,
    lost: bool,
    power_notices: Limiter,
    link_notices: Limiter,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        Policy {
            config,
            state: PowerState::Unknown,
            on_battery_since: None,
            last_on_battery: false,
            lost: false,
            power_notices: Limiter::default(),
            link_notices: Limiter::default(),
        }
    }

    /// New figures (after a settings change); the state stays.
    pub fn reconfigure(&mut self, config: PolicyConfig) {
        self.config = config;
    }

    pub fn state(&self) -> PowerState {
        self.state
    }

    /// No valid answer from the UPS lately.
    pub fn lost(&self) -> bool {
        self.lost
    }

    /// Since when the UPS has been on battery (during the debounce too).
    pub fn on_battery_since(&self) -> Option<Instant> {
        self.on_battery_since
    }

    /// When to call again with [`Input::Tick`], if time alone can change anything.
    pub fn deadline(&self) -> Option<Instant> {
        let since = self.on_battery_since?;
        match self.state {
            PowerState::Unknown | PowerState::Online => Some(since + self.config.debounce),
            PowerState::OnBattery => self.config.max_on_battery.map(|limit| since + limit),
            PowerState::Shutdown => None,
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == PowerState::Shutdown {
            if let Input::Status(s) = &input {
                self.lost = false;
                self.last_on_battery = s.on_battery && !s.testing;
            }
            return actions;
        }
        match input {
            Input::Status(status) => self.reading(now, &status, &mut actions),
            Input::Lost => {
                if !self.lost {
                    self.lost = true;
                    if self.last_on_battery {
                        self.shutdown(now, "the UPS was lost while on battery", &mut actions);
                        return actions;
                    }
                    self.record(
                        now,
                        self.state,
                        Kind::Link,
                        "the UPS was lost",
                        &mut actions,
                    );
                }
            }
            Input::ForcedShutdown(who) => {
                let why = format!("forced shutdown asked by {who}");
                self.shutdown(now, &why, &mut actions);
                return actions;
            }
            Input::Tick => {}
        }
        self.advance(now, &mut actions);
        actions
    }

    fn reading(&mut self, now: Instant, s: &UpsStatus, actions: &mut Vec<Action>) {
        if self.lost {
            self.lost = false;
            self.record(
                now,
                self.state,
                Kind::Link,
                "the UPS answers again",
                actions,
            );
        }
        if s.forced_shutdown {
            self.shutdown(now, "the NUT primary ordered a shutdown (FSD)", actions);
            return;
        }
        if s.testing {
            if self.state != PowerState::OnBattery {
                self.on_battery_since = None;
            }
            return;
        }
        self.last_on_battery = s.on_battery;
        if !s.on_battery {
            self.on_battery_since = None;
            match self.state {
                PowerState::OnBattery => {
                    self.record(
                        now,
                        PowerState::Online,
                        Kind::Power,
                        "mains power is back",
                        actions,
                    );
                    actions.push(Action::ResumeBackups);
                }
                PowerState::Unknown => self.record(
                    now,
                    PowerState::Online,
                    Kind::First,
                    "on mains power",
                    actions,
                ),
                PowerState::Online | PowerState::Shutdown => {}
            }
            return;
        }
        self.on_battery_since.get_or_insert(now);
        if let Some(why) = self.critical_reading(s) {
            self.shutdown(now, &why, actions);
        }
    }

    /// Why an on-battery reading is critical, if it is.
    fn critical_reading(&self, s: &UpsStatus) -> Option<String> {
        if s.low_battery {
            return Some("the UPS reports a low battery".into());
        }
        if let Some(charge) = s
            .charge_percent
            .filter(|c| *c < self.config.low_charge_percent)
        {
            return Some(format!(
                "battery charge {charge:.0}% is under {:.0}%",
                self.config.low_charge_percent
            ));
        }
        let low = self.config.low_runtime.as_secs_f64();
        if let Some(runtime) = s.runtime_seconds.filter(|r| *r < low) {
            return Some(format!(
                "battery runtime {runtime:.0} s is under {low:.0} s"
            ));
        }
        None
    }

    /// Applies what time alone changes: the debounce and the on-battery limit.
    fn advance(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(since) = self.on_battery_since else {
            return;
        };
        let on_for = now.saturating_duration_since(since);
        if matches!(self.state, PowerState::Unknown | PowerState::Online)
            && on_for >= self.config.debounce
        {
            self.record(
                now,
                PowerState::OnBattery,
                Kind::Power,
                "on battery: mains power failed",
                actions,
            );
            actions.push(Action::HaltBackups);
        }
        if let Some(limit) = self.config.max_on_battery {
            if self.state == PowerState::OnBattery && on_for >= limit {
                let why = format!("on battery for {} s, the limit", limit.as_secs());
                self.shutdown(now, &why, actions);
            }
        }
    }

    fn shutdown(&mut self, now: Instant, why: &str, actions: &mut Vec<Action>) {
        self.record(
            now,
            PowerState::Shutdown,
            Kind::Shutdown,
            &format!("shutdown: {why}"),
            actions,
        );
        actions.push(Action::StartShutdown { reason: why.into() });
    }

    fn record(
        &mut self,
        now: Instant,
        to: PowerState,
        kind: Kind,
        what: &str,
        actions: &mut Vec<Action>,
    ) {
        let (notify, suppressed) = match kind {
            Kind::Power => self.power_notices.pass(now),
            Kind::Link => self.link_notices.pass(now),
            Kind::First => (false, 0),
            Kind::Shutdown => (true, 0),
        };
        actions.push(Action::Record(Transition {
            from: self.state,
            to,
            what: what.into(),
            notify,
            suppressed,
        }));
        self.state = to;
    }
}

/// When, in a shutdown, the UPS is told to cut its output, and after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsTiming {
    /// At the start, before anything stops, with a delay covering the
    /// longest the stop can take plus `ups_shutdown_delay`: slow children
    /// cannot outlast the battery, and the output comes back once mains
    /// returns even if it returned mid-shutdown.
    First { delay: Duration },
    /// Once everything has stopped, with `ups_shutdown_delay`: the UPS takes
    /// no delay of obsbox's choosing, or the stop could take longer than the
    /// longest delay it can be given (telling it first would cut the power
    /// mid-stop).
    Last { delay: Duration },
}

/// Decides [`UpsTiming`]: `stop_bound` is the longest the stop can take
/// (each step's grace before SIGKILL, added up), `after` is
/// `ups_shutdown_delay`, `longest` the longest delay the UPS takes (`None`:
/// none of obsbox's choosing).
pub fn ups_timing(stop_bound: Duration, after: Duration, longest: Option<Duration>) -> UpsTiming {
    let covering = stop_bound.saturating_add(after);
    match longest {
        Some(longest) if covering <= longest => UpsTiming::First { delay: covering },
        _ => UpsTiming::Last { delay: after },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(on_battery: bool) -> UpsStatus {
        UpsStatus {
            online: !on_battery,
            on_battery,
            charge_percent: Some(100.0),
            runtime_seconds: Some(1800.0),
            ..UpsStatus::default()
        }
    }

    fn on_battery() -> Input {
        Input::Status(reading(true))
    }

    fn online() -> Input {
        Input::Status(reading(false))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn kinds(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .map(|a| match a {
                Action::HaltBackups => "halt",
                Action::ResumeBackups => "resume",
                Action::StartShutdown { .. } => "shutdown",
                Action::Record(_) => "record",
            })
            .collect()
    }

    fn records(actions: &[Action]) -> Vec<&Transition> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Record(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// A policy that has seen mains at `t0`.
    fn started() -> (Policy, Instant) {
        let t0 = Instant::now();
        let mut p = Policy::new(PolicyConfig::default());
        assert_eq!(kinds(&p.handle(t0, online())), ["record"]);
        assert_eq!(p.state(), PowerState::Online);
        (p, t0)
    }

    #[test]
    fn unknown_until_the_first_reading() {
        let p = Policy::new(PolicyConfig::default());
        assert_eq!(p.state(), PowerState::Unknown);
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn on_battery_counts_only_after_the_debounce() {
        let (mut p, t0) = started();
        assert!(p.handle(t0 + secs(1), on_battery()).is_empty());
        assert_eq!(p.deadline(), Some(t0 + secs(6)));
        assert!(p.handle(t0 + secs(5), on_battery()).is_empty());
        assert_eq!(p.state(), PowerState::Online);
        let actions = p.handle(t0 + secs(6), Input::Tick);
        assert_eq!(kinds(&actions), ["record", "halt"]);
        assert_eq!(p.state(), PowerState::OnBattery);
        assert!(records(&actions)[0].notify);
        assert_eq!(p.deadline(), None, "no limit on battery by default");
    }

    #[test]
    fn mains_back_during_the_debounce_changes_nothing() {
        let (mut p, t0) = started();
        p.handle(t0 + secs(1), on_battery());
        assert!(p.handle(t0 + secs(3), online()).is_empty());
        assert_eq!(p.deadline(), None);
        assert!(p.handle(t0 + secs(10), Input::Tick).is_empty());
        assert_eq!(p.state(), PowerState::Online);
    }

    #[test]
    fn mains_back_before_critical_resumes() {
        let (mut p, t0) = started();
        p.handle(t0, on_battery());
        p.handle(t0 + secs(5), Input::Tick);
        let actions = p.handle(t0 + secs(60), online());
        assert_eq!(kinds(&actions), ["record", "resume"]);
        assert_eq!(records(&actions)[0].to, PowerState::Online);
        assert_eq!(p.state(), PowerState::Online);
    }

    #[test]
    fn test_readings_never_count() {
        let (mut p, t0) = started();
        let test = UpsStatus {
            testing: true,
            ..reading(true)
        };
        p.handle(t0, on_battery());
        assert!(p
            .handle(t0 + secs(1), Input::Status(test.clone()))
            .is_empty());
        assert_eq!(p.deadline(), None, "a test clears a pending debounce");
        for s in 2..100 {
            assert!(p
                .handle(t0 + secs(s), Input::Status(test.clone()))
                .is_empty());
        }
        assert_eq!(p.state(), PowerState::Online);
        let critical = UpsStatus {
            low_battery: true,
            charge_percent: Some(1.0),
            ..test
        };
        assert!(p.handle(t0 + secs(100), Input::Status(critical)).is_empty());
        assert_eq!(p.state(), PowerState::Online);
    }

    #[test]
    fn every_critical_condition_starts_the_shutdown() {
        let cases = [
            UpsStatus {
                low_battery: true,
                ..reading(true)
            },
            UpsStatus {
                charge_percent: Some(4.0),
                ..reading(true)
            },
            UpsStatus {
                runtime_seconds: Some(179.0),
                ..reading(true)
            },
        ];
        for critical in cases {
            let (mut p, t0) = started();
            p.handle(t0, on_battery());
            p.handle(t0 + secs(5), Input::Tick);
            let actions = p.handle(t0 + secs(6), Input::Status(critical.clone()));
            assert_eq!(kinds(&actions), ["record", "shutdown"], "{critical:?}");
            assert_eq!(p.state(), PowerState::Shutdown);
            assert!(records(&actions)[0].notify);
        }
    }

    #[test]
    fn a_critical_reading_counts_during_the_debounce() {
        let (mut p, t0) = started();
        let critical = UpsStatus {
            low_battery: true,
            ..reading(true)
        };
        let actions = p.handle(t0 + secs(1), Input::Status(critical));
        assert_eq!(kinds(&actions), ["record", "shutdown"]);
    }

    #[test]
    fn low_figures_on_mains_are_not_critical() {
        let (mut p, t0) = started();
        let charging = UpsStatus {
            low_battery: true,
            charge_percent: Some(1.0),
            runtime_seconds: Some(10.0),
            ..reading(false)
        };
        assert!(p.handle(t0 + secs(1), Input::Status(charging)).is_empty());
        assert_eq!(p.state(), PowerState::Online);
    }

    #[test]
    fn the_on_battery_limit_is_critical() {
        let mut p = Policy::new(PolicyConfig {
            max_on_battery: Some(secs(120)),
            ..PolicyConfig::default()
        });
        let t0 = Instant::now();
        p.handle(t0, on_battery());
        p.handle(t0 + secs(5), Input::Tick);
        assert_eq!(p.state(), PowerState::OnBattery);
        assert_eq!(p.deadline(), Some(t0 + secs(120)));
        assert!(p.handle(t0 + secs(119), on_battery()).is_empty());
        let actions = p.handle(t0 + secs(120), Input::Tick);
        assert_eq!(kinds(&actions), ["record", "shutdown"]);
    }

    #[test]
    fn lost_while_online_is_reported_only() {
        let (mut p, t0) = started();
        let actions = p.handle(t0 + secs(1), Input::Lost);
        assert_eq!(kinds(&actions), ["record"]);
        assert!(p.lost());
        assert_eq!(p.state(), PowerState::Online);
        assert!(p.handle(t0 + secs(2), Input::Lost).is_empty(), "once");
        let actions = p.handle(t0 + secs(3), online());
        assert_eq!(kinds(&actions), ["record"]);
        assert!(!p.lost());
    }

    #[test]
    fn lost_while_on_battery_is_critical() {
        let (mut p, t0) = started();
        p.handle(t0, on_battery());
        p.handle(t0 + secs(5), Input::Tick);
        let actions = p.handle(t0 + secs(6), Input::Lost);
        assert_eq!(kinds(&actions), ["record", "shutdown"]);
        // During the debounce the last reading was on battery too.
        let (mut p, t0) = started();
        p.handle(t0, on_battery());
        assert_eq!(
            kinds(&p.handle(t0 + secs(1), Input::Lost)),
            ["record", "shutdown"]
        );
    }

    #[test]
    fn a_forced_shutdown_is_obeyed_on_mains_too() {
        let (mut p, t0) = started();
        let actions = p.handle(t0, Input::ForcedShutdown("nut user upsmon".into()));
        assert_eq!(kinds(&actions), ["record", "shutdown"]);
    }

    #[test]
    fn a_nut_primarys_fsd_in_a_reading_is_obeyed_on_mains_too() {
        let (mut p, t0) = started();
        let fsd = UpsStatus {
            online: true,
            forced_shutdown: true,
            ..UpsStatus::default()
        };
        assert_eq!(
            kinds(&p.handle(t0, Input::Status(fsd))),
            ["record", "shutdown"]
        );
    }

    #[test]
    fn a_shutdown_is_never_cancelled() {
        let (mut p, t0) = started();
        p.handle(
            t0,
            Input::Status(UpsStatus {
                low_battery: true,
                ..reading(true)
            }),
        );
        for (i, input) in [
            online(),
            Input::Lost,
            on_battery(),
            Input::Tick,
            Input::ForcedShutdown("x".into()),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(p.handle(t0 + secs(i as u64), input).is_empty());
            assert_eq!(p.state(), PowerState::Shutdown);
        }
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn flapping_faster_than_the_debounce_does_nothing() {
        let (mut p, t0) = started();
        let mut at = t0;
        for i in 0..400 {
            at += Duration::from_millis(500);
            let input = if i % 2 == 0 { on_battery() } else { online() };
            assert!(p.handle(at, input).is_empty());
            assert!(p.handle(at, Input::Tick).is_empty());
        }
        assert_eq!(p.state(), PowerState::Online);
    }

    #[test]
    fn slow_flapping_notifies_rarely_and_counts_what_it_held_back() {
        let (mut p, t0) = started();
        let mut at = t0;
        let (mut halts, mut notices, mut held) = (0, 0, 0);
        // 100 outages of 6 s each, 1 s apart: 700 s in all.
        for _ in 0..100 {
            for (step, input) in [(0, on_battery()), (6, Input::Tick), (7, online())] {
                let actions = p.handle(at + secs(step), input);
                halts += actions
                    .iter()
                    .filter(|a| **a == Action::HaltBackups)
                    .count();
                for t in records(&actions) {
                    notices += usize::from(t.notify);
                    held += t.suppressed;
                }
            }
            at += secs(7);
        }
        assert_eq!(halts, 100, "backups still halt on every real outage");
        assert_eq!(p.state(), PowerState::Online);
        // 700 s: the first on-battery passes (back online is the same kind,
        // held), then one more after 600 s carrying the count held back.
        assert_eq!(notices, 2, "{notices} notifications");
        assert!(held > 150, "{held} held back and reported");
    }

    /// Random sequences: a shutdown only ever follows a critical condition,
    /// happens at most once and is never undone.
    #[test]
    fn random_sequences_shut_down_only_when_critical() {
        let config = PolicyConfig {
            max_on_battery: Some(secs(600)),
            ..PolicyConfig::default()
        };
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut p = Policy::new(config.clone());
            let mut at = Instant::now();
            let mut last_on_battery = false;
            let mut shutdowns = 0;
            for _ in 0..400 {
                at += Duration::from_millis(rng.u64(0..20_000));
                let input = match rng.u8(0..10) {
                    0 => Input::Lost,
                    1..=3 => Input::Tick,
                    _ => Input::Status(UpsStatus {
                        on_battery: rng.bool(),
                        low_battery: rng.u8(0..20) == 0,
                        testing: rng.u8(0..10) == 0,
                        charge_percent: Some(rng.f64() * 100.0),
                        runtime_seconds: Some(rng.f64() * 4000.0),
                        ..UpsStatus::default()
                    }),
                };
                let before = p.state();
                let since = p.on_battery_since();
                let actions = p.handle(at, input.clone());
                let started = actions
                    .iter()
                    .any(|a| matches!(a, Action::StartShutdown { .. }));
                if started {
                    shutdowns += 1;
                    let critical = match &input {
                        Input::Status(s) => {
                            s.forced_shutdown
                                || s.on_battery
                                    && !s.testing
                                    && (s.low_battery
                                        || s.charge_percent.unwrap_or(100.0) < 5.0
                                        || s.runtime_seconds.unwrap_or(1e9) < 180.0)
                        }
                        Input::Lost => last_on_battery,
                        Input::Tick => since.is_some_and(|s| at - s >= secs(600)),
                        Input::ForcedShutdown(_) => true,
                    };
                    assert!(
                        critical,
                        "seed {seed}: shutdown on {input:?} from {before:?}"
                    );
                }
                if before == PowerState::Shutdown {
                    assert!(actions.is_empty(), "seed {seed}: acted after the shutdown");
                    assert_eq!(p.state(), PowerState::Shutdown);
                }
                if let Input::Status(s) = &input {
                    if !s.testing {
                        last_on_battery = s.on_battery;
                    }
                }
            }
            assert!(shutdowns <= 1, "seed {seed}: {shutdowns} shutdowns");
        }
    }

    #[test]
    fn the_ups_is_told_first_when_its_delay_covers_the_stop() {
        let megatec = Some(secs(600));
        // Prometheus' 60 s grace and three 10 s ones, 15 s to finish, 30 s after.
        assert_eq!(
            ups_timing(secs(105), secs(30), megatec),
            UpsTiming::First { delay: secs(135) }
        );
        assert_eq!(
            ups_timing(secs(570), secs(30), megatec),
            UpsTiming::First { delay: secs(600) }
        );
        // A stop that could outlast the longest delay: told once stopped.
        assert_eq!(
            ups_timing(secs(571), secs(30), megatec),
            UpsTiming::Last { delay: secs(30) }
        );
        // A UPS whose delay obsbox does not choose (APC's S, a cable).
        assert_eq!(
            ups_timing(secs(10), secs(30), None),
            UpsTiming::Last { delay: secs(30) }
        );
        assert_eq!(
            ups_timing(Duration::MAX, secs(30), megatec),
            UpsTiming::Last { delay: secs(30) }
        );
    }
}
