//! The restart decision, as a pure function of exits and time.
//!
//! A run that lasted longer than `crash_loop_window` restarts at once and
//! clears the record: the child ran long enough. A shorter run is a failure
//! when it lasted less than `min_uptime` (a quick death), when it is the
//! `crash_loop_exits`-th exit within `crash_loop_window` (however long each
//! run lasted), or when the exit before it was already a failure (a child
//! backing off keeps backing off until a run outlasts the window). Other runs
//! restart at once. The n-th failure in a row waits `initial_backoff` doubled
//! n-1 times, up to `max_backoff`, counted from the previous start, so
//! launches are never closer than `initial_backoff` (s6's one-second rule)
//! and no crash loop can spin. A child with `crash_loop_exits` exits within
//! the window, or that many failures in a row, is crash-looping until a run
//! outlasts the window; it keeps being retried at the capped backoff.
//! `crash_loop_exits` 0 turns crash-loop detection off: only quick deaths
//! (and the failures right after them) back off, and the child is never
//! crash-looping.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub min_uptime: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Exits within `crash_loop_window` that make a crash loop; 0: never.
    pub crash_loop_exits: usize,
    pub crash_loop_window: Duration,
}

impl RestartPolicy {
    fn detects_loops(&self) -> bool {
        self.crash_loop_exits > 0
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            min_uptime: Duration::from_secs(1),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            crash_loop_exits: 5,
            crash_loop_window: Duration::from_secs(60),
        }
    }
}

/// What one child's past exits say about its next start.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    /// Failures in a row; sets the backoff.
    failures: u32,
    recent_exits: VecDeque<Instant>,
}

impl RestartTracker {
    /// Records an exit of a run started at `started`; returns when to start again.
    pub fn on_exit(&mut self, policy: &RestartPolicy, started: Instant, now: Instant) -> Instant {
        let ran = now.saturating_duration_since(started);
        self.recent_exits.push_back(now);
        self.forget_old(policy, now);
        if ran > policy.crash_loop_window {
            self.failures = 0;
            return now;
        }
        let quick = ran < policy.min_uptime;
        let looping = policy.detects_loops() && self.recent_exits.len() >= policy.crash_loop_exits;
        if !quick && !looping && self.failures == 0 {
            return now;
        }
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let backoff = policy
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(policy.max_backoff);
        (started + backoff).max(now)
    }

    /// Whether the child counts as crash-looping at `now`; `running_since` is
    /// the start of its current run, if it runs: a run that outlasts the
    /// window ends the loop.
    pub fn is_crash_looping(
        &self,
        policy: &RestartPolicy,
        now: Instant,
        running_since: Option<Instant>,
    ) -> bool {
        if !policy.detects_loops()
            || running_since
                .is_some_and(|s| now.saturating_duration_since(s) > policy.crash_loop_window)
        {
            return false;
        }
        if self.failures as usize >= policy.crash_loop_exits {
            return true;
        }
        let recent = self
            .recent_exits
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) <= policy.crash_loop_window)
            .count();
        recent >= policy.crash_loop_exits
    }

    /// Forgets the past, for a start the user asked for.
    pub fn reset(&mut self) {
        *self = RestartTracker::default();
    }

    fn forget_old(&mut self, policy: &RestartPolicy, now: Instant) {
        while self
            .recent_exits
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > policy.crash_loop_window)
        {
            self.recent_exits.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// (uptime of the run in ms, expected delay before the next start in ms,
    /// expected crash-looping afterwards), each run starting when the last
    /// decision said. Returns the start of the run after the last row.
    fn run(table: &[(u64, u64, bool)]) -> (RestartTracker, Instant) {
        run_with(RestartPolicy::default(), table)
    }

    fn run_with(policy: RestartPolicy, table: &[(u64, u64, bool)]) -> (RestartTracker, Instant) {
        let mut tracker = RestartTracker::default();
        let mut start = Instant::now();
        for (i, &(uptime, delay, looping)) in table.iter().enumerate() {
            let exit = start + MS(uptime);
            let next = tracker.on_exit(&policy, start, exit);
            assert_eq!(next - exit, MS(delay), "row {i}");
            assert_eq!(
                tracker.is_crash_looping(&policy, exit, None),
                looping,
                "row {i}"
            );
            // Starting again changes nothing until the new run outlasts the window.
            assert_eq!(
                tracker.is_crash_looping(&policy, next + MS(1), Some(next)),
                looping,
                "row {i}, running"
            );
            start = next;
        }
        (tracker, start)
    }

    #[test]
    fn a_child_that_ran_a_while_restarts_at_once() {
        run(&[
            (1500, 0, false),
            (1500, 0, false),
            (60_000, 0, false),
            (61_000, 0, false),
        ]);
    }

    #[test]
    fn quick_deaths_back_off_from_the_last_start() {
        run(&[
            (10, 990, false),
            (10, 1990, false),
            (10, 3990, false),
            (10, 7990, false),
            (10, 15_990, true),
            (10, 31_990, true),
            (10, 59_990, true),
            (10, 59_990, true),
        ]);
    }

    #[test]
    fn a_run_longer_than_the_window_resets_the_backoff() {
        run(&[
            (10, 990, false),
            (10, 1990, false),
            (70_000, 0, false),
            (10, 990, false),
        ]);
    }

    #[test]
    fn a_child_backing_off_keeps_doubling_until_a_run_outlasts_the_window() {
        run(&[
            (10, 990, false),
            (10, 1990, false),
            // Longer than min_uptime, shorter than the window: the third
            // failure; its 4 s from the last start are already over.
            (5000, 0, false),
            (10, 7990, false),
            (10, 15_990, true),
        ]);
    }

    #[test]
    fn many_exits_in_a_window_back_off_and_are_a_crash_loop_even_after_long_runs() {
        run(&[
            (2000, 0, false),
            (2000, 0, false),
            (2000, 0, false),
            (2000, 0, false),
            // The fifth exit within 60 s: failures from now on, each waiting
            // twice as long as the last from its start (1 s and 2 s have
            // passed already).
            (2000, 0, true),
            (2000, 0, true),
            (2000, 2000, true),
            (2000, 6000, true),
            (2000, 14_000, true),
            (2000, 30_000, true),
            (2000, 58_000, true),
            (2000, 58_000, true),
            // A run longer than the window ends it.
            (70_000, 0, false),
        ]);
    }

    /// Issue 15: a child dying 1.5 s after each start made 30 restarts in
    /// 45 s and was never crash-looping.
    #[test]
    fn a_child_dying_after_each_second_and_a_half_is_slowed_down() {
        let (tracker, _) = run(&[
            (1500, 0, false),
            (1500, 0, false),
            (1500, 0, false),
            (1500, 0, false),
            (1500, 0, true),
            (1500, 500, true),
            (1500, 2500, true),
            (1500, 6500, true),
            (1500, 14_500, true),
            (1500, 30_500, true),
            (1500, 58_500, true),
        ]);
        assert_eq!(tracker.failures, 7);
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let origin = Instant::now();
        let mut start = origin;
        let mut exits = 0;
        while start + MS(1500) <= origin + MS(45_000) {
            exits += 1;
            start = tracker.on_exit(&policy, start, start + MS(1500));
        }
        assert_eq!(exits, 10, "exits within 45 s");
    }

    #[test]
    fn a_run_that_outlasts_the_window_ends_the_loop_while_it_runs() {
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let t = Instant::now();
        for _ in 0..6 {
            tracker.on_exit(&policy, t, t);
        }
        let cases = [(0, true), (30_000, true), (60_000, true), (60_001, false)];
        for (running_ms, looping) in cases {
            assert_eq!(
                tracker.is_crash_looping(&policy, t + MS(running_ms), Some(t)),
                looping,
                "after {running_ms} ms of running"
            );
        }
        // Backing off, it stays crash-looping however long the wait.
        assert!(tracker.is_crash_looping(&policy, t + MS(120_000), None));
    }

    /// A child's own settings: the benchmark's children, killed 1.5 s after
    /// each start, restart at once with crash-loop detection off; quick
    /// deaths still back off, up to the child's own cap.
    #[test]
    fn crash_loop_detection_off_restarts_every_run_that_outlived_min_uptime() {
        let off = RestartPolicy {
            crash_loop_exits: 0,
            max_backoff: Duration::from_secs(4),
            ..RestartPolicy::default()
        };
        let mut table = vec![(1500, 0, false); 40];
        table.extend([
            (10, 990, false),
            (10, 1990, false),
            (10, 3990, false),
            (10, 3990, false),
            // Backing off keeps on until a run outlasts the window.
            (1500, 2500, false),
            (61_000, 0, false),
            (1500, 0, false),
        ]);
        run_with(off, &table);
    }

    #[test]
    fn a_shorter_window_and_fewer_exits_make_a_loop_sooner() {
        let strict = RestartPolicy {
            crash_loop_exits: 2,
            crash_loop_window: Duration::from_secs(10),
            max_backoff: Duration::from_secs(8),
            ..RestartPolicy::default()
        };
        run_with(
            strict,
            &[
                (3000, 0, false),
                // The second exit within 10 s: a failure and a loop.
                (3000, 0, true),
                (3000, 0, true),
                (100, 3900, true),
                (100, 7900, true),
                (100, 7900, true),
                // Longer than the 10 s window: restarts at once, loop over.
                (11_000, 0, false),
            ],
        );
    }

    #[test]
    fn reset_forgets_everything() {
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let t = Instant::now();
        for _ in 0..6 {
            tracker.on_exit(&policy, t, t);
        }
        assert!(tracker.is_crash_looping(&policy, t, None));
        tracker.reset();
        assert!(!tracker.is_crash_looping(&policy, t, None));
        assert_eq!(tracker.on_exit(&policy, t, t + MS(5)), t + MS(1000));
    }
}
