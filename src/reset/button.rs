//! The reset button: a GPIO line held down for 10 s asks for a factory reset.
//!
//! [`Button`] decides, and is pure: debounced edges and the passing of time
//! go in, actions (the LED, a message, the reset) come out. [`run`] does the
//! I/O through [`Gpio`]: the kernel's GPIO character device on the box
//! ([`Chardev`]), a fake in tests (there are no GPIO lines on a build machine).

use super::Local;
use crate::reset::Notices;
use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, Value};
use gpiocdev::Request;
use std::future::Future;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A level that lasts less than this is contact bounce or noise, not a press
/// or a release.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// From here on the LED blinks and the console says to keep holding.
const WARN_AFTER: Duration = Duration::from_secs(5);
/// A hold this long resets the box.
const RESET_AFTER: Duration = Duration::from_secs(10);
/// The LED's half period while it blinks.
const BLINK: Duration = Duration::from_millis(250);
/// The first pause before a failed line is opened again; it doubles up to
/// [`RETRY_MAX`], so a box without the line does not fill its log.
const RETRY: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ButtonError {
    #[error(
        "no GPIO line is named '{0}' (see `gpioinfo`; the name comes from the device tree or ACPI)"
    )]
    NotFound(String),
    #[error("GPIO line '{line}': {source}")]
    Gpio {
        line: String,
        source: gpiocdev::Error,
    },
    #[error("GPIO line '{line}': {source}")]
    Io {
        line: String,
        source: std::io::Error,
    },
}

/// Which lines the button and its LED are, by name (as `gpioinfo` lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonLines {
    pub button: String,
    pub led: Option<String>,
    /// The button pulls the line low when pressed (the usual wiring: a
    /// switch to ground); the line then also asks for a pull-up.
    pub active_low: bool,
}

/// What the button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Led(bool),
    /// Held for 5 s: say that holding on resets the box.
    KeepHolding,
    /// Released after the warning, before the reset.
    Cancelled,
    FactoryReset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    Idle,
    /// Down since the line was opened: a stuck button, or someone still
    /// holding it from before a restart. Ignored until released.
    Stuck,
    /// Down since `since`; `next` is when the warning or the next blink is due.
    Holding {
        since: Instant,
        next: Instant,
        warned: bool,
    },
    /// The reset was asked for; nothing more until released.
    Done,
}

/// The button's decisions, from debounced edges and time.
#[derive(Debug)]
pub(crate) struct Button {
    /// The line as last seen, and since when.
    raw: bool,
    raw_since: Instant,
    /// The line once it stayed put for [`DEBOUNCE`].
    stable: bool,
    hold: Hold,
    led: bool,
}

impl Button {
    /// A button whose line reads `pressed` at `now`.
    pub(crate) fn new(pressed: bool, now: Instant) -> Button {
        Button {
            raw: pressed,
            raw_since: now,
            stable: pressed,
            hold: if pressed { Hold::Stuck } else { Hold::Idle },
            led: false,
        }
    }

    pub(crate) fn is_stuck(&self) -> bool {
        self.hold == Hold::Stuck
    }

    /// The line went down (`pressed`) or up at `at`.
    pub(crate) fn edge(&mut self, pressed: bool, at: Instant) -> Vec<Action> {
        // What was due before this edge happens first.
        let actions = self.tick(at);
        // A repeated level means an edge was missed; the level is what counts.
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = at;
        }
        actions
    }

    /// Time has passed up to `now`.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.raw != self.stable && now >= self.raw_since + DEBOUNCE {
            self.stable = self.raw;
            self.settle(&mut actions);
        }
        if let Hold::Holding {
            since,
            next,
            warned,
        } = self.hold
        {
            if now >= since + RESET_AFTER {
                self.hold = Hold::Done;
                self.set_led(true, &mut actions);
                actions.push(Action::FactoryReset);
            } else if now >= next {
                if !warned {
                    actions.push(Action::KeepHolding);
                }
                let blinking = now - (since + WARN_AFTER);
                let phase = (blinking.as_millis() / BLINK.as_millis()) as u32;
                self.set_led(phase % 2 == 0, &mut actions);
                self.hold = Hold::Holding {
                    since,
                    next: (since + WARN_AFTER + BLINK * (phase + 1)).min(since + RESET_AFTER),
                    warned: true,
                };
            }
        }
        actions
    }

    /// The debounced level changed.
    fn settle(&mut self, actions: &mut Vec<Action>) {
        self.hold = match (self.stable, self.hold) {
            (true, Hold::Idle) => Hold::Holding {
                since: self.raw_since,
                next: self.raw_since + WARN_AFTER,
                warned: false,
            },
            (false, Hold::Holding { warned, .. }) => {
                self.set_led(false, actions);
                if warned {
                    actions.push(Action::Cancelled);
                }
                Hold::Idle
            }
            (false, _) => {
                self.set_led(false, actions);
                Hold::Idle
            }
            (true, hold) => hold,
        };
    }

    fn set_led(&mut self, on: bool, actions: &mut Vec<Action>) {
        if self.led != on {
            self.led = on;
            actions.push(Action::Led(on));
        }
    }

    /// When [`Button::tick`] next has something to do, if ever.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let settle = (self.raw != self.stable).then(|| self.raw_since + DEBOUNCE);
        let hold = match self.hold {
            Hold::Holding { next, .. } => Some(next),
            _ => None,
        };
        match (settle, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The button's input line.
pub(crate) trait ButtonLine: Send {
    /// Whether the button is down now.
    fn pressed(&mut self) -> Result<bool, ButtonError>;
    /// The next edge: true when the button went down. Cancel-safe.
    fn edge(&mut self) -> impl Future<Output = Result<bool, ButtonError>> + Send;
}

pub(crate) trait LedLine: Send {
    fn set(&mut self, on: bool) -> Result<(), ButtonError>;
}

/// Opens the lines, again after a failure.
pub(crate) trait Gpio: Send {
    type Button: ButtonLine;
    type Led: LedLine;
    fn button(&mut self) -> Result<Self::Button, ButtonError>;
    /// `None` when the box has no LED for the button.
    fn led(&mut self) -> Option<Result<Self::Led, ButtonError>>;
}

/// Watches the button until `stop`; a hold of 10 s asks `local` for a
/// factory reset. A line that fails (or is not there) is logged and opened
/// again later: it never resets the box and never ends obsbox.
pub(crate) async fn run<G: Gpio>(
    mut gpio: G,
    local: Local,
    notices: Notices,
    stop: CancellationToken,
) {
    let mut pause = RETRY;
    loop {
        match watch(&mut gpio, &local, &notices, &stop, &mut pause).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?pause, "reset button: unavailable; trying again later")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// One life of the lines: until `stop` (Ok) or a line error.
async fn watch<G: Gpio>(
    gpio: &mut G,
    local: &Local,
    notices: &Notices,
    stop: &CancellationToken,
    pause: &mut Duration,
) -> Result<(), ButtonError> {
    let mut line = gpio.button()?;
    let mut led = match gpio.led() {
        Some(Ok(led)) => Some(led),
        Some(Err(e)) => {
            tracing::error!(error = %e, "reset button: no LED; the button works without it");
            None
        }
        None => None,
    };
    set_led(&mut led, false);
    let mut button = Button::new(line.pressed()?, Instant::now());
    if button.is_stuck() {
        tracing::warn!("reset button: held down at start (stuck?); ignored until it is released");
    } else {
        tracing::info!("reset button: ready (hold 10 s for a factory reset)");
    }
    let ended = loop {
        let wake = button.next_wake();
        let actions = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            edge = line.edge() => match edge {
                Ok(pressed) => {
                    *pause = RETRY;
                    button.edge(pressed, Instant::now())
                }
                Err(e) => break Err(e),
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                button.tick(Instant::now())
            }
        };
        for action in actions {
            act(action, &mut led, local, notices);
        }
    };
    set_led(&mut led, false);
    ended
}

fn act<L: LedLine>(action: Action, led: &mut Option<L>, local: &Local, notices: &Notices) {
    match action {
        Action::Led(on) => set_led(led, on),
        Action::KeepHolding => {
            let said = "reset button held for 5 s: keep holding for 5 s more for a factory reset, or let go to cancel";
            tracing::warn!("{said}");
            notices.say(said);
        }
        Action::Cancelled => {
            let said = "reset button let go: no factory reset";
            tracing::info!("{said}");
            notices.say(said);
        }
        Action::FactoryReset => {
            let said = "reset button held for 10 s: factory reset";
            tracing::warn!("{said}");
            notices.say(said);
            if !local.factory_reset("button", "reset button held for 10 s") {
                tracing::info!("reset button: obsbox is already restarting");
            }
        }
    }
}

/// A failing LED is dropped (and said once): the button matters, the LED is
/// only feedback.
fn set_led<L: LedLine>(led: &mut Option<L>, on: bool) {
    if let Some(line) = led {
        if let Err(e) = line.set(on) {
            tracing::error!(error = %e, "reset button: the LED failed; going on without it");
            *led = None;
        }
    }
}

/// The lines through the kernel's GPIO character device (uAPI v2), found by name.
pub(crate) struct Chardev(pub(crate) ButtonLines);

pub(crate) struct ChardevButton {
    name: String,
    request: AsyncFd<Request>,
}

pub(crate) struct ChardevLed {
    name: String,
    request: Request,
}

fn find(name: &str) -> Result<gpiocdev::FoundLine, ButtonError> {
    gpiocdev::find_named_line(name).ok_or_else(|| ButtonError::NotFound(name.into()))
}

impl Gpio for Chardev {
    type Button = ChardevButton;
    type Led = ChardevLed;

    fn button(&mut self) -> Result<ChardevButton, ButtonError> {
        let name = self.0.button.clone();
        let found = find(&name)?;
        let request = |tuned: bool| {
            let mut builder = Request::builder();
            builder
                .with_consumer("obsbox reset button")
                .with_found_line(&found)
                .as_input()
                .with_edge_detection(EdgeDetection::BothEdges);
            if self.0.active_low {
                builder.as_active_low();
            }
            if tuned {
                builder.with_debounce_period(DEBOUNCE);
                if self.0.active_low {
                    builder.with_bias(Bias::PullUp);
                }
            }
            builder.request()
        };
        // Hardware or kernel debounce spares obsbox the bounces; without it
        // the debouncing in `Button` is enough.
        let request = request(true).or_else(|e| {
            tracing::info!(error = %e, line = %name, "reset button: no kernel debounce or bias; debouncing in obsbox");
            request(false)
        });
        let request = request.map_err(|source| ButtonError::Gpio {
            line: name.clone(),
            source,
        })?;
        // SAFETY: the request owns its file descriptor, which stays open
        // and the same until the request is dropped with the AsyncFd.
        let request = unsafe { AsyncFd::register(request) }.map_err(|e| ButtonError::Io {
            line: name.clone(),
            source: e.into(),
        })?;
        Ok(ChardevButton { name, request })
    }

    fn led(&mut self) -> Option<Result<ChardevLed, ButtonError>> {
        let name = self.0.led.clone()?;
        let request = find(&name).and_then(|found| {
            Request::builder()
                .with_consumer("obsbox reset LED")
                .with_found_line(&found)
                .as_output(Value::Inactive)
                .request()
                .map_err(|source| ButtonError::Gpio {
                    line: name.clone(),
                    source,
                })
        });
        Some(request.map(|request| ChardevLed { name, request }))
    }
}

impl ChardevButton {
    fn gpio(&self) -> impl Fn(gpiocdev::Error) -> ButtonError + '_ {
        |source| ButtonError::Gpio {
            line: self.name.clone(),
            source,
        }
    }
}

impl ButtonLine for ChardevButton {
    fn pressed(&mut self) -> Result<bool, ButtonError> {
        let value = self.request.get_ref().lone_value().map_err(self.gpio())?;
        Ok(value == Value::Active)
    }

    async fn edge(&mut self) -> Result<bool, ButtonError> {
        loop {
            let mut ready = self
                .request
                .readable()
                .await
                .map_err(|source| ButtonError::Io {
                    line: self.name.clone(),
                    source,
                })?;
            let request = ready.get_inner();
            if request.has_edge_event().map_err(self.gpio())? {
                // Edges are logical: with active-low, rising is the press.
                let event = request.read_edge_event().map_err(self.gpio())?;
                return Ok(event.kind == EdgeKind::Rising);
            }
            ready.clear_ready();
        }
    }
}

impl LedLine for ChardevLed {
    fn set(&mut self, on: bool) -> Result<(), ButtonError> {
        let value = if on { Value::Active } else { Value::Inactive };
        self.request
            .set_lone_value(value)
            .map_err(|source| ButtonError::Gpio {
                line: self.name.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Ending, Lifecycle};
    use crate::store::Store;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Notify;
    use tokio::time::sleep;

    /// A button line and LED driven by the test.
    #[derive(Clone, Default)]
    struct Fake {
        state: Arc<Mutex<FakeState>>,
        edge: Arc<Notify>,
    }

    #[derive(Default)]
    struct FakeState {
        level: bool,
        /// Edges (or a failure, as `None`) not yet read.
        queue: VecDeque<Option<bool>>,
        opens: usize,
        /// This many opens still fail.
        failing_opens: usize,
        led: Vec<bool>,
    }

    fn broken() -> ButtonError {
        ButtonError::Io {
            line: "fake".into(),
            source: std::io::Error::other("gone"),
        }
    }

    impl Fake {
        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }

        fn set(&self, pressed: bool) {
            let mut state = self.state();
            state.level = pressed;
            state.queue.push_back(Some(pressed));
            self.edge.notify_one();
        }

        fn fail(&self) {
            self.state().queue.push_back(None);
            self.edge.notify_one();
        }

        fn led(&self) -> Vec<bool> {
            self.state().led.clone()
        }
    }

    impl Gpio for Fake {
        type Button = Fake;
        type Led = Fake;

        fn button(&mut self) -> Result<Fake, ButtonError> {
            let mut state = self.state();
            state.opens += 1;
            if state.failing_opens > 0 {
                state.failing_opens -= 1;
                return Err(broken());
            }
            // A new request sees no edges from before it.
            state.queue.clear();
            Ok(self.clone())
        }

        fn led(&mut self) -> Option<Result<Fake, ButtonError>> {
            Some(Ok(self.clone()))
        }
    }

    impl ButtonLine for Fake {
        fn pressed(&mut self) -> Result<bool, ButtonError> {
            Ok(self.state().level)
        }

        async fn edge(&mut self) -> Result<bool, ButtonError> {
            loop {
                let next = self.state().queue.pop_front();
                match next {
                    Some(Some(pressed)) => return Ok(pressed),
                    Some(None) => return Err(broken()),
                    None => self.edge.notified().await,
                }
            }
        }
    }

    impl LedLine for Fake {
        fn set(&mut self, on: bool) -> Result<(), ButtonError> {
            self.state().led.push(on);
            Ok(())
        }
    }

    struct Rig {
        fake: Fake,
        lifecycle: Lifecycle,
        store: Store,
        notices: tokio::sync::broadcast::Receiver<String>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        async fn start(fake: Fake) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let lifecycle = Lifecycle::new();
            let notices = Notices::new();
            let stop = CancellationToken::new();
            let local = Local {
                lifecycle: lifecycle.clone(),
                store: store.clone(),
            };
            let task = tokio::spawn(run(fake.clone(), local, notices.clone(), stop.clone()));
            // Let it open the lines.
            sleep(Duration::from_millis(1)).await;
            Rig {
                fake,
                lifecycle,
                store,
                notices: notices.subscribe(),
                stop,
                task,
                _dir: dir,
            }
        }

        fn said(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.notices.try_recv().ok()).collect()
        }

        /// The audit entries of resets the button asked for.
        fn resets(&self) -> usize {
            let log = self.store.audit_log(100).unwrap();
            log.iter()
                .filter(|e| e.actor == "button" && e.action == "system.factory_reset")
                .count()
        }

        async fn hold(&self, how_long: Duration) {
            self.fake.set(true);
            sleep(how_long).await;
            self.fake.set(false);
            sleep(Duration::from_millis(100)).await;
        }

        async fn stop(self) {
            assert!(!self.task.is_finished(), "the button task ended by itself");
            self.stop.cancel();
            self.task.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_press_does_nothing() {
        let mut b = Rig::start(Fake::default()).await;
        for press in [30, 300, 2000, 4900] {
            b.hold(Duration::from_millis(press)).await;
        }
        sleep(Duration::from_secs(30)).await;
        assert_eq!(b.lifecycle.asked(), None);
        assert!(!b.fake.led().contains(&true));
        assert_eq!(b.said(), Vec::<String>::new());
        assert_eq!(b.resets(), 0);
        b.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_six_second_hold_blinks_and_warns_and_is_cancelled() {
        let mut b = Rig::start(Fake::default()).await;
        b.fake.set(true);
        sleep(Duration::from_millis(4990)).await;
        assert!(!b.fake.led().contains(&true));
        assert!(b.said().is_empty());
        sleep(Duration::from_millis(1020)).await;
        let said = b.said();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("keep holding"), "{said:?}");
        // 1 s of blinking: on, off, on, off, and on again at 6 s.
        assert_eq!(b.fake.led(), [false, true, false, true, false, true]);
        b.fake.set(false);
        sleep(Duration::from_secs(30)).await;
        assert_eq!(b.fake.led().last(), Some(&false));
        assert!(b.said()[0].contains("no factory reset"));
        assert_eq!(b.lifecycle.asked(), None);
        assert_eq!(b.resets(), 0);
        b.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_ten_second_hold_resets_once() {
        let mut b = Rig::start(Fake::default()).await;
        b.fake.set(true);
        sleep(Duration::from_millis(9990)).await;
        assert_eq!(b.lifecycle.asked(), None);
        sleep(Duration::from_millis(20)).await;
        assert_eq!(b.lifecycle.asked(), Some(Ending::FactoryReset));
        assert_eq!(b.fake.led().last(), Some(&true));
        // Held on, let go and held again: still one request.
        sleep(Duration::from_secs(20)).await;
        b.fake.set(false);
        sleep(Duration::from_secs(1)).await;
        b.hold(Duration::from_secs(11)).await;
        assert_eq!(b.resets(), 1);
        let said = b.said();
        assert_eq!(
            said.iter().filter(|s| s.contains("held for 10 s")).count(),
            2
        );
        b.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn bounces_neither_end_a_hold_nor_make_one() {
        let mut b = Rig::start(Fake::default()).await;
        // A noisy line, never at one level for 50 ms, for 20 s.
        for _ in 0..500 {
            b.fake.set(true);
            sleep(Duration::from_millis(30)).await;
            b.fake.set(false);
            sleep(Duration::from_millis(10)).await;
        }
        sleep(Duration::from_secs(1)).await;
        assert_eq!(b.lifecycle.asked(), None);
        assert!(!b.fake.led().contains(&true));

        // A hold whose contact bounces when pressed and twice in the middle.
        for _ in 0..3 {
            b.fake.set(true);
            sleep(Duration::from_millis(2)).await;
            b.fake.set(false);
            sleep(Duration::from_millis(2)).await;
        }
        b.fake.set(true);
        for _ in 0..2 {
            sleep(Duration::from_secs(4)).await;
            b.fake.set(false);
            sleep(Duration::from_millis(20)).await;
            b.fake.set(true);
        }
        // 10 s from the last bounce of the press.
        sleep(Duration::from_millis(1900)).await;
        assert_eq!(b.lifecycle.asked(), None);
        sleep(Duration::from_millis(100)).await;
        assert_eq!(b.lifecycle.asked(), Some(Ending::FactoryReset));
        assert_eq!(b.said().len(), 2);
        b.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_button_held_at_start_is_ignored_until_released() {
        let fake = Fake::default();
        fake.state().level = true;
        let b = Rig::start(fake).await;
        sleep(Duration::from_secs(60)).await;
        assert_eq!(b.lifecycle.asked(), None);
        assert!(!b.fake.led().contains(&true));
        b.fake.set(false);
        sleep(Duration::from_secs(1)).await;
        b.hold(Duration::from_secs(10)).await;
        assert_eq!(b.lifecycle.asked(), Some(Ending::FactoryReset));
        b.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_line_is_retried_and_never_resets() {
        let fake = Fake::default();
        fake.state().failing_opens = 2;
        let b = Rig::start(fake).await;
        // Opens at 0 s, 5 s (both fail) and 15 s.
        sleep(Duration::from_secs(14)).await;
        assert_eq!(b.fake.state().opens, 2);
        sleep(Duration::from_secs(2)).await;
        assert_eq!(b.fake.state().opens, 3);

        // The line fails 8 s into a hold: the hold is over, the LED off.
        b.fake.set(true);
        sleep(Duration::from_secs(8)).await;
        b.fake.fail();
        sleep(Duration::from_secs(1)).await;
        assert_eq!(b.fake.led().last(), Some(&false));
        // Reopened while still held: that counts as stuck, not as a hold.
        sleep(Duration::from_secs(60)).await;
        assert_eq!(b.fake.state().opens, 4);
        assert_eq!(b.lifecycle.asked(), None);
        assert_eq!(b.resets(), 0);

        // Released and held again, it works.
        b.fake.set(false);
        sleep(Duration::from_secs(1)).await;
        b.hold(Duration::from_secs(10)).await;
        assert_eq!(b.lifecycle.asked(), Some(Ending::FactoryReset));
        b.stop().await;
    }

    #[test]
    fn the_machine_wakes_only_when_something_is_due() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut button = Button::new(false, t0);
        assert_eq!(button.next_wake(), None);
        assert_eq!(button.edge(true, t0), []);
        assert_eq!(button.next_wake(), Some(t0 + DEBOUNCE));
        assert_eq!(button.tick(t0 + DEBOUNCE), []);
        assert_eq!(button.next_wake(), Some(t0 + WARN_AFTER));
        assert_eq!(
            button.tick(t0 + WARN_AFTER),
            [Action::KeepHolding, Action::Led(true)]
        );
        assert_eq!(button.next_wake(), Some(t0 + WARN_AFTER + BLINK));
        assert_eq!(button.tick(t0 + WARN_AFTER + ms(300)), [Action::Led(false)]);
        assert_eq!(
            button.tick(t0 + RESET_AFTER),
            [Action::Led(true), Action::FactoryReset]
        );
        assert_eq!(button.next_wake(), None);
        assert_eq!(button.edge(false, t0 + RESET_AFTER + ms(1)), []);
        assert_eq!(button.tick(t0 + RESET_AFTER + ms(60)), [Action::Led(false)]);
    }
}
