//! The restart decision, as a pure function of exits and time.
//!
//! A run that lasted at least `min_uptime` is restarted at once. Runs shorter
//! than that are quick deaths: the next start waits `initial_backoff`
//! doubling with each further quick death, up to `max_backoff`, counted from
//! the previous start, so launches are never closer than `initial_backoff`
//! (s6's one-second rule) and a crash loop cannot spin. A child with
//! `crash_loop_exits` exits within `crash_loop_window` is shown as
//! crash-looping, and so is one with that many quick deaths in a row; it keeps
//! being retried at the capped backoff.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub min_uptime: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub crash_loop_exits: usize,
    pub crash_loop_window: Duration,
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
    quick_deaths: u32,
    recent_exits: VecDeque<Instant>,
}

impl RestartTracker {
    /// Records an exit of a run started at `started`; returns when to start again.
    pub fn on_exit(&mut self, policy: &RestartPolicy, started: Instant, now: Instant) -> Instant {
        self.recent_exits.push_back(now);
        self.forget_old(policy, now);
        if now.saturating_duration_since(started) >= policy.min_uptime {
            self.quick_deaths = 0;
            return now;
        }
        self.quick_deaths = self.quick_deaths.saturating_add(1);
        let doublings = (self.quick_deaths - 1).min(16);
        let backoff = policy
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(policy.max_backoff);
        (started + backoff).max(now)
    }

    pub fn is_crash_looping(&self, policy: &RestartPolicy, now: Instant) -> bool {
        if self.quick_deaths as usize >= policy.crash_loop_exits {
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
    /// decision said.
    fn run(table: &[(u64, u64, bool)]) {
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let mut start = Instant::now();
        for (i, &(uptime, delay, looping)) in table.iter().enumerate() {
            let exit = start + MS(uptime);
            let next = tracker.on_exit(&policy, start, exit);
            assert_eq!(next - exit, MS(delay), "row {i}");
            assert_eq!(tracker.is_crash_looping(&policy, exit), looping, "row {i}");
            start = next;
        }
    }

    #[test]
    fn a_child_that_ran_a_while_restarts_at_once() {
        run(&[(1500, 0, false), (1500, 0, false), (60_000, 0, false)]);
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
    fn a_good_run_resets_the_backoff() {
        run(&[
            (10, 990, false),
            (10, 1990, false),
            (5000, 0, false),
            (10, 990, false),
        ]);
    }

    #[test]
    fn many_exits_in_a_window_are_a_crash_loop_even_after_long_runs() {
        run(&[
            (2000, 0, false),
            (2000, 0, false),
            (2000, 0, false),
            (2000, 0, false),
            (2000, 0, true),
            // 70 s later the old exits have left the window.
            (70_000, 0, false),
        ]);
    }

    #[test]
    fn reset_forgets_everything() {
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let t = Instant::now();
        for _ in 0..6 {
            tracker.on_exit(&policy, t, t);
        }
        assert!(tracker.is_crash_looping(&policy, t));
        tracker.reset();
        assert!(!tracker.is_crash_looping(&policy, t));
        assert_eq!(tracker.on_exit(&policy, t, t + MS(5)), t + MS(1000));
    }
}
