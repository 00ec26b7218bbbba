//! A UPS shutdown found pending while obsbox is not shutting down was left
//! from before (obsbox exited without powering off and came back): it must
//! be cancelled, or the UPS cuts the running box. When to try is decided
//! here, purely: at once when the UPS starts reporting it (an episode), then
//! again while it still does after [`FIRST_RETRY`], doubling up to
//! [`MAX_RETRY`]; not again in that episode once the driver says it never
//! can (a NUT client, which leaves shutdowns to the NUT primary).

use serde::Serialize;
use std::time::{Duration, Instant};

/// The wait after the first attempt.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between two attempts.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(30 * 60);

/// How cancelling the stale shutdown goes, for the live state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleShutdown {
    /// Cancels sent so far in this episode.
    pub attempts: u32,
    /// Why the last one failed; `None` if it was accepted.
    pub error: Option<String>,
    /// When the next is due (Unix ms), if the UPS still reports it then;
    /// `None`: not retried (the driver cannot cancel).
    pub next_attempt_at: Option<i64>,
}

/// Whether and when to send the cancel; one per power service.
#[derive(Debug, Default)]
pub(crate) struct StaleCancel {
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    attempts: u32,
    error: Option<String>,
    /// `None`: given up for this episode.
    next: Option<Instant>,
}

impl StaleCancel {
    /// A reading at `now`, with the UPS reporting a pending shutdown or
    /// not: whether to send the cancel now.
    pub(crate) fn due(&mut self, pending: bool, now: Instant) -> bool {
        if !pending {
            self.episode = None;
            return false;
        }
        match &self.episode {
            None => true,
            Some(episode) => episode.next.is_some_and(|next| now >= next),
        }
    }

    /// The cancel sent at `now` and how it went. `retry` false: it can
    /// never work, so it is not sent again in this episode.
    pub(crate) fn attempted(&mut self, now: Instant, result: Result<(), String>, retry: bool) {
        let attempts = self.episode.as_ref().map_or(0, |e| e.attempts) + 1;
        self.episode = Some(Episode {
            attempts,
            error: result.err(),
            next: retry.then(|| now + delay(attempts)),
        });
    }

    /// The wait before the next attempt, if there is an episode and one is planned.
    pub(crate) fn next_in(&self, now: Instant) -> Option<Duration> {
        let next = self.episode.as_ref()?.next?;
        Some(next.saturating_duration_since(now))
    }

    /// The episode as the live state shows it; `now_ms` is `now` as Unix ms.
    pub(crate) fn view(&self, now: Instant, now_ms: i64) -> Option<StaleShutdown> {
        let episode = self.episode.as_ref()?;
        let next_attempt_at = self
            .next_in(now)
            .map(|wait| now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)));
        Some(StaleShutdown {
            attempts: episode.attempts,
            error: episode.error.clone(),
            next_attempt_at,
        })
    }
}

/// The wait after attempt number `attempts` (from 1).
fn delay(attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_first_reading_of_an_episode_tries_at_once() {
        let now = Instant::now();
        let mut stale = StaleCancel::default();
        assert!(!stale.due(false, now));
        assert!(stale.due(true, now));
        assert_eq!(stale.view(now, 0), None);
    }

    #[test]
    fn failures_back_off_from_a_minute_doubling_to_half_an_hour() {
        let start = Instant::now();
        let mut stale = StaleCancel::default();
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(stale.due(true, now));
            stale.attempted(now, Err("no answer".into()), true);
            let wait = stale.next_in(now).unwrap();
            // Every reading before the wait is up sends nothing.
            assert!(!stale.due(true, now));
            assert!(!stale.due(true, now + wait - Duration::from_secs(1)));
            waits.push(wait);
            now += wait;
        }
        let minutes: Vec<u64> = waits.iter().map(|w| w.as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30, 30]);
        // Seen right after the last attempt: the next is half an hour away.
        let view = stale.view(now - MAX_RETRY, 1_000).unwrap();
        assert_eq!(view.attempts, 8);
        assert_eq!(view.error.as_deref(), Some("no answer"));
        assert_eq!(view.next_attempt_at, Some(1_000 + 30 * 60 * 1000));
    }

    #[test]
    fn an_accepted_cancel_is_sent_again_only_if_the_ups_still_reports_it_later() {
        let now = Instant::now();
        let mut stale = StaleCancel::default();
        assert!(stale.due(true, now));
        stale.attempted(now, Ok(()), true);
        assert!(!stale.due(true, now + Duration::from_secs(59)));
        let view = stale.view(now, 0).unwrap();
        assert_eq!((view.attempts, view.error), (1, None));
        assert!(stale.due(true, now + MIN));
    }

    #[test]
    fn an_episode_ends_when_the_ups_stops_reporting_it() {
        let now = Instant::now();
        let mut stale = StaleCancel::default();
        stale.due(true, now);
        stale.attempted(now, Err("refused".into()), true);
        stale.due(true, now + MIN);
        stale.attempted(now + MIN, Err("refused".into()), true);
        assert!(!stale.due(false, now + MIN * 2));
        assert_eq!(stale.view(now, 0), None);
        // A new episode starts over: at once, then a minute.
        assert!(stale.due(true, now + MIN * 2));
        stale.attempted(now + MIN * 2, Err("refused".into()), true);
        assert_eq!(stale.next_in(now + MIN * 2), Some(MIN));
    }

    #[test]
    fn a_cancel_that_can_never_work_is_not_retried_in_the_episode() {
        let now = Instant::now();
        let mut stale = StaleCancel::default();
        assert!(stale.due(true, now));
        stale.attempted(now, Err("not possible".into()), false);
        assert!(!stale.due(true, now + Duration::from_secs(86_400)));
        let view = stale.view(now, 0).unwrap();
        assert_eq!(view.next_attempt_at, None);
        assert!(!stale.due(false, now));
        assert!(stale.due(true, now));
    }

    #[test]
    fn the_delay_never_overflows() {
        assert_eq!(delay(1), MIN);
        assert_eq!(delay(u32::MAX), MAX_RETRY);
    }
}
