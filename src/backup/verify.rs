//! What a verification reads, and what it proves.
//!
//! restic: `restic check --read-data-subset=n/m` reads one m-th of the pack
//! files and checks every blob's hash, so a flipped byte is found; `n`
//! rotates with each verification and `m` is the number of verifications
//! the verify schedule makes in four weeks, so the whole repository is read
//! about once a month. PBS: the chunks are read by the server's own verify
//! job, whose result is the snapshot's `verification` state in the snapshot
//! list; obsbox reports it (and fails on `failed`).

use super::CalendarEvent;

/// The most parts restic's data is split into: an hourly verification
/// reads 1/672 of the packs each time.
const MAX_PARTS: u32 = 1000;

/// How many verifications `event` makes in the four weeks after `from`
/// (at least 1: a monthly verification reads everything each time).
pub fn parts_per_cycle(event: &CalendarEvent, from: &jiff::Zoned) -> u32 {
    let end = from.timestamp() + jiff::SignedDuration::from_hours(28 * 24);
    let mut at = from.clone();
    let mut count = 0;
    while count < MAX_PARTS {
        match event.next_after(&at) {
            Some(next) if next.timestamp() <= end => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count.max(1)
}

/// restic's `--read-data-subset` for the verification after `done` earlier
/// ones: `n/parts`, n going 1, 2, ... parts, 1, ...
pub fn read_data_subset(done: i64, parts: u32) -> String {
    let parts = parts.clamp(1, MAX_PARTS);
    let n = done.rem_euclid(i64::from(parts)) + 1;
    format!("{n}/{parts}")
}

/// What a PBS snapshot's `verification` state (`ok`, `failed`, or none yet)
/// says; `Err` is a failed verification.
pub fn server_verification(snapshot: &str, state: Option<&str>) -> Result<String, String> {
    match state {
        Some("ok") => Ok(format!(
            "The server's verify job read every chunk of {snapshot} and checked its hash: ok."
        )),
        Some("failed") => Err(format!(
            "the server's verify job found damaged or missing chunks in {snapshot}"
        )),
        Some(other) => Err(format!(
            "the server reports the verification state '{other}' for {snapshot}"
        )),
        None => Ok(format!(
            "The server has not verified {snapshot} yet: only its listing was checked. \
             Schedule a verify job on the datastore in PBS to have its chunks read."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(event: &str) -> u32 {
        let from: jiff::Zoned = "2026-12-07T03:00:00+00:00[UTC]".parse().unwrap();
        parts_per_cycle(&CalendarEvent::parse(event).unwrap(), &from)
    }

    #[test]
    fn the_whole_repository_is_read_in_four_weeks() {
        assert_eq!(parts("weekly"), 4);
        assert_eq!(parts("daily"), 28);
        assert_eq!(parts("monthly"), 1);
        assert_eq!(parts("hourly"), 672);
        assert_eq!(parts("*:*"), MAX_PARTS);
        // Four weekly verifications read the four parts, then start again.
        let subsets: Vec<String> = (0..5).map(|done| read_data_subset(done, 4)).collect();
        assert_eq!(subsets, ["1/4", "2/4", "3/4", "4/4", "1/4"]);
        assert_eq!(read_data_subset(7, 1), "1/1");
        assert_eq!(read_data_subset(0, 0), "1/1");
    }

    #[test]
    fn the_servers_verification_state_decides() {
        assert!(server_verification("host/a/t", Some("ok")).is_ok());
        assert!(server_verification("host/a/t", Some("failed")).is_err());
        assert!(server_verification("host/a/t", Some("weird")).is_err());
        let not_yet = server_verification("host/a/t", None).unwrap();
        assert!(not_yet.contains("not verified"), "{not_yet}");
    }
}
