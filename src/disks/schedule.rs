//! When a disk runs its scheduled self-tests. Each disk keeps, per kind, the
//! last schedule slot handled (in SQLite, so it survives a restart); a slot
//! that passed since, while obsbox ran or while it was down, makes that kind
//! due. A due test starts at the first reading that finds the disk awake and
//! not testing: a sleeping disk is not woken for it, and a test under way is
//! not cut short. However many slots passed, one test runs, and a long test
//! also handles a short one due with it. Pure: the monitor brings the slots
//! and what the last reading said.

use super::TestKind;
use crate::backup::CalendarEvent;
use jiff::{Timestamp, Zoned};
use std::collections::BTreeMap;

/// What the last look at a disk says, as far as starting a test goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Awake and not testing.
    Idle,
    /// In standby: not woken for a test.
    Asleep,
    /// Running a self-test.
    Testing,
    /// No look could tell: never read yet, or the last look failed.
    Unknown,
}

/// A test to start, and the kinds whose slots it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub kind: TestKind,
    pub handles: Vec<TestKind>,
}

/// The kinds with a slot after the last one handled and not after `now`. A
/// kind never handled is not due: its schedule starts when it first meets
/// the disk.
fn due(
    schedules: &[(TestKind, CalendarEvent)],
    handled: &BTreeMap<TestKind, Timestamp>,
    now: &Zoned,
) -> Vec<TestKind> {
    schedules
        .iter()
        .filter(|(kind, event)| {
            handled.get(kind).is_some_and(|at| {
                event
                    .next_after(&at.to_zoned(now.time_zone().clone()))
                    .is_some_and(|slot| slot.timestamp() <= now.timestamp())
            })
        })
        .map(|(kind, _)| *kind)
        .collect()
}

/// The scheduled test to start on a disk now, if any.
pub fn decide(
    schedules: &[(TestKind, CalendarEvent)],
    handled: &BTreeMap<TestKind, Timestamp>,
    now: &Zoned,
    disk: Availability,
) -> Option<Start> {
    if disk != Availability::Idle {
        return None;
    }
    let handles = due(schedules, handled, now);
    let kind = handles.iter().max().copied()?;
    Some(Start { kind, handles })
}

/// The first slot after `now` (and after the last one handled) of any kind:
/// when to read the disk again for its tests.
pub fn next_slot(
    schedules: &[(TestKind, CalendarEvent)],
    handled: &BTreeMap<TestKind, Timestamp>,
    now: &Zoned,
) -> Option<Timestamp> {
    schedules
        .iter()
        .filter_map(|(kind, event)| {
            let after = (*handled.get(kind)?).max(now.timestamp());
            event.next_after(&after.to_zoned(now.time_zone().clone()))
        })
        .map(|slot| slot.timestamp())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Availability::*;

    fn at(text: &str) -> Zoned {
        format!("{text}[UTC]").parse().unwrap()
    }

    fn schedules(short: &str, long: &str) -> Vec<(TestKind, CalendarEvent)> {
        [(TestKind::Short, short), (TestKind::Long, long)]
            .into_iter()
            .filter_map(|(kind, text)| Some((kind, CalendarEvent::parse(text).ok()?)))
            .collect()
    }

    fn handled(short: &str, long: &str) -> BTreeMap<TestKind, Timestamp> {
        [(TestKind::Short, short), (TestKind::Long, long)]
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .map(|(kind, text)| (kind, at(text).timestamp()))
            .collect()
    }

    fn start(kind: TestKind, handles: &[TestKind]) -> Option<Start> {
        Some(Start {
            kind,
            handles: handles.to_vec(),
        })
    }

    #[test]
    fn a_missed_slot_runs_once_on_an_idle_disk_and_never_wakes_a_sleeping_one() {
        use TestKind::*;
        // Monday 2026-11-23, noon. Short tests daily at 03:00, long ones on
        // Sundays at 04:00.
        let now = at("2026-11-23T12:00:00");
        let every = schedules("03:00", "sun 04:00");
        let cases = [
            // (short handled, long handled, disk, what starts)
            // Nothing passed since the last slots handled.
            ("2026-11-23T03:00:00", "2026-11-22T04:00:00", Idle, None),
            // Down since Saturday: today's 03:00 and Sunday's 04:00 were
            // missed, and Sunday's short one: one long test handles both.
            (
                "2026-11-21T03:00:00",
                "2026-11-15T04:00:00",
                Idle,
                start(Long, &[Short, Long]),
            ),
            // Down for five days: five short slots passed, one test runs.
            (
                "2026-11-18T03:00:00",
                "2026-11-22T04:00:00",
                Idle,
                start(Short, &[Short]),
            ),
            // Asleep, testing or not known: nothing starts, still due.
            ("2026-11-18T03:00:00", "2026-11-22T04:00:00", Asleep, None),
            ("2026-11-18T03:00:00", "2026-11-22T04:00:00", Testing, None),
            ("2026-11-18T03:00:00", "2026-11-22T04:00:00", Unknown, None),
            // A kind never handled starts its schedule now: nothing missed.
            ("", "", Idle, None),
            ("", "2026-11-15T04:00:00", Idle, start(Long, &[Long])),
        ];
        for (short, long, disk, want) in cases {
            let handled = handled(short, long);
            assert_eq!(
                decide(&every, &handled, &now, disk),
                want,
                "{short} {long} {disk:?}"
            );
            if disk != Idle {
                assert_eq!(due(&every, &handled, &now), [Short], "{disk:?}");
            }
        }
        // Once handled at the start, the same slots are not due again.
        let mut slots = handled("2026-11-18T03:00:00", "2026-11-15T04:00:00");
        let first = decide(&every, &slots, &now, Idle).unwrap();
        for kind in first.handles {
            slots.insert(kind, now.timestamp());
        }
        assert_eq!(decide(&every, &slots, &now, Idle), None);
        let later = at("2026-11-23T18:00:00");
        assert_eq!(decide(&every, &slots, &later, Idle), None);
        // A schedule turned off ("") is never due.
        let off = schedules("", "");
        assert_eq!(decide(&off, &slots, &at("2027-01-01T00:00:00"), Idle), None);
    }

    #[test]
    fn the_next_slot_is_the_first_one_to_come() {
        let every = schedules("03:00", "sun 04:00");
        let now = at("2026-11-23T12:00:00");
        let slots = handled("2026-11-23T03:00:00", "2026-11-22T04:00:00");
        assert_eq!(
            next_slot(&every, &slots, &now),
            Some(at("2026-11-24T03:00:00").timestamp())
        );
        // A slot due but waiting for the disk: the next look is the next slot.
        let waiting = handled("2026-11-18T03:00:00", "2026-11-22T04:00:00");
        assert_eq!(
            next_slot(&every, &waiting, &now),
            Some(at("2026-11-24T03:00:00").timestamp())
        );
        assert_eq!(next_slot(&every, &BTreeMap::new(), &now), None);
        assert_eq!(next_slot(&schedules("", ""), &slots, &now), None);
    }
}
