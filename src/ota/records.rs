//! What obsbox remembers of its slots across reboots (on the data
//! partition), and the pure decision, at each start, of what the last boot
//! means: a committed system, a trial still to come, a trial running now, or
//! a trial that ended without a commit, which is a rollback.

use super::boot::Slot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Nothing is known of it (a first boot, or after a factory reset).
    Unknown,
    /// Being written: never boot it.
    Installing,
    /// Written and read back; its trial boot is armed or due.
    Installed,
    /// Booted and passed its health check.
    Good,
    /// Failed an install or its trial.
    Bad,
    /// Its install stopped half-way (obsbox killed, a power cut): it holds
    /// part of an image.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub version: Option<String>,
    pub condition: Condition,
    /// Why it is bad, when it is.
    pub note: Option<String>,
    pub since: String,
}

impl Default for SlotRecord {
    fn default() -> SlotRecord {
        SlotRecord {
            version: None,
            condition: Condition::Unknown,
            note: None,
            since: now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub slot: Slot,
    pub version: String,
    /// The kernel's boot id when the trial was armed: a later start with the
    /// same id has not rebooted yet.
    pub armed_boot_id: String,
    pub armed_at: String,
    /// Why the trial failed, written before the reboot back.
    pub failure: Option<String>,
    /// The boot id of the boot that ran the slot on trial, once one did.
    #[serde(default)]
    pub started: Option<String>,
    /// obsbox rebooted asking the boot loader for the trial (Raspberry Pi:
    /// `0 tryboot`).
    #[serde(default)]
    pub tried: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub slot: Slot,
    pub version: String,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub slots: BTreeMap<Slot, SlotRecord>,
    /// The slot the boot loader boots without a trial, as last seen: what a
    /// damaged boot loader file is rebuilt with.
    #[serde(default)]
    pub committed: Option<Slot>,
    pub trial: Option<Trial>,
    pub last_rollback: Option<Rollback>,
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| String::new(), |t| t.to_string())
}

/// What this start of obsbox is, as far as updates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running the committed slot (maybe with a trial armed for the next boot).
    Committed,
    /// Running a slot on trial: commit it once healthy, or go back.
    Trial,
}

/// The facts of this boot.
pub struct Boot<'a> {
    pub booted: Slot,
    pub committed: Slot,
    pub boot_id: &'a str,
    pub version: &'a str,
    /// Whether the boot loader says this boot was a trial boot (`None`:
    /// it cannot say).
    pub trial_boot: Option<bool>,
}

impl Records {
    pub fn load(path: &Path) -> Records {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "the slot records are unreadable; starting afresh");
                Records::default()
            }),
            Err(_) => Records::default(),
        }
    }

    pub fn set(
        &mut self,
        slot: Slot,
        version: Option<&str>,
        condition: Condition,
        note: Option<String>,
    ) {
        self.slots.insert(
            slot,
            SlotRecord {
                version: version.map(str::to_string),
                condition,
                note,
                since: now(),
            },
        );
    }

    /// Slots whose install was cut off (no install holds the lock) are
    /// marked interrupted; true when any was.
    pub fn interrupted(&mut self) -> bool {
        let mut any = false;
        for record in self.slots.values_mut() {
            if record.condition == Condition::Installing {
                record.condition = Condition::Interrupted;
                record.note = Some("the install stopped before it finished (obsbox was stopped or the power went): the slot holds part of an image; install again".into());
                record.since = now();
                any = true;
            }
        }
        any
    }

    fn condition(&self, slot: Slot) -> Condition {
        self.slots
            .get(&slot)
            .map_or(Condition::Unknown, |r| r.condition)
    }

    /// Brings the records up to date with this boot and says what it is.
    pub fn reconcile(&mut self, boot: &Boot) -> Phase {
        if boot.booted != boot.committed {
            if self.trial.as_ref().is_none_or(|t| t.slot != boot.booted) {
                // Armed before the records were saved, or the records were
                // wiped since: the boot loader's word is what counts.
                self.trial = Some(Trial {
                    slot: boot.booted,
                    version: boot.version.into(),
                    armed_boot_id: String::new(),
                    armed_at: now(),
                    failure: None,
                    started: None,
                    tried: false,
                });
            }
            if let Some(trial) = self.trial.as_mut() {
                trial.started = Some(boot.boot_id.into());
            }
            if self.condition(boot.booted) != Condition::Installed {
                self.set(boot.booted, Some(boot.version), Condition::Installed, None);
            }
            return Phase::Trial;
        }
        if let Some(trial) = self.trial.take() {
            if trial.slot == boot.booted {
                // Committed, then cut off before the records said so.
            } else if trial.armed_boot_id == boot.boot_id {
                // Armed during this boot: the trial is still to come.
                self.trial = Some(trial);
            } else if trial.failure.is_none()
                && trial.started.is_none()
                && !trial.tried
                && boot.trial_boot == Some(false)
            {
                // A reboot obsbox did not do (a power cut, a UPS halt, a
                // shell's `reboot`) does not ask for the trial; the slot
                // never booted, so nothing was rolled back.
                tracing::warn!(slot = %trial.slot, version = trial.version, "the last reboot was not a trial boot: the trial never started, and stays armed for obsbox's next reboot");
                self.trial = Some(trial);
            } else {
                let reason = trial.failure.clone().unwrap_or_else(|| {
                    "its trial boot ended before the health check passed (it hung, crashed, or lost power)".into()
                });
                tracing::warn!(slot = %trial.slot, version = trial.version, reason, "rolled back");
                self.set(
                    trial.slot,
                    Some(&trial.version),
                    Condition::Bad,
                    Some(reason.clone()),
                );
                self.last_rollback = Some(Rollback {
                    slot: trial.slot,
                    version: trial.version,
                    reason,
                    at: now(),
                });
            }
        }
        self.committed = Some(boot.committed);
        let known = self.slots.get(&boot.booted);
        if known.is_none_or(|r| {
            r.condition != Condition::Good || r.version.as_deref() != Some(boot.version)
        }) {
            self.set(boot.booted, Some(boot.version), Condition::Good, None);
        }
        Phase::Committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot<'a>(booted: Slot, committed: Slot, boot_id: &'a str, version: &'a str) -> Boot<'a> {
        Boot {
            booted,
            committed,
            boot_id,
            version,
            trial_boot: None,
        }
    }

    fn armed(slot: Slot, boot_id: &str, failure: Option<&str>) -> Records {
        let mut records = Records::default();
        records.set(slot.other(), Some("1.0.0"), Condition::Good, None);
        records.set(slot, Some("1.1.0"), Condition::Installed, None);
        records.trial = Some(Trial {
            slot,
            version: "1.1.0".into(),
            armed_boot_id: boot_id.into(),
            armed_at: now(),
            failure: failure.map(str::to_string),
            started: None,
            tried: false,
        });
        records
    }

    #[test]
    fn a_first_boot_knows_the_running_slot_only() {
        let mut records = Records::default();
        assert_eq!(
            records.reconcile(&boot(Slot::A, Slot::A, "x", "1.0.0")),
            Phase::Committed
        );
        assert_eq!(records.condition(Slot::A), Condition::Good);
        assert_eq!(records.condition(Slot::B), Condition::Unknown);
    }

    #[test]
    fn an_armed_trial_waits_for_the_reboot() {
        let mut records = armed(Slot::B, "boot-1", None);
        assert_eq!(
            records.reconcile(&boot(Slot::A, Slot::A, "boot-1", "1.0.0")),
            Phase::Committed
        );
        assert_eq!(records.trial.as_ref().map(|t| t.slot), Some(Slot::B));
        assert!(records.last_rollback.is_none());
    }

    #[test]
    fn booting_the_trial_slot_is_a_trial() {
        let mut records = armed(Slot::B, "boot-1", None);
        assert_eq!(
            records.reconcile(&boot(Slot::B, Slot::A, "boot-2", "1.1.0")),
            Phase::Trial
        );
        assert_eq!(records.condition(Slot::B), Condition::Installed);
        assert_eq!(records.condition(Slot::A), Condition::Good);
    }

    #[test]
    fn back_on_the_old_slot_after_a_reboot_is_a_rollback_with_the_recorded_reason() {
        let mut records = armed(
            Slot::B,
            "boot-1",
            Some("node_exporter was not ready after 120 s"),
        );
        assert_eq!(
            records.reconcile(&boot(Slot::A, Slot::A, "boot-3", "1.0.0")),
            Phase::Committed
        );
        let rollback = records.last_rollback.clone().unwrap();
        assert_eq!(
            (rollback.slot, rollback.version.as_str()),
            (Slot::B, "1.1.0")
        );
        assert!(
            rollback.reason.contains("node_exporter"),
            "{}",
            rollback.reason
        );
        assert_eq!(records.condition(Slot::B), Condition::Bad);
        assert!(records.trial.is_none());
    }

    #[test]
    fn a_trial_cut_off_without_a_reason_is_a_rollback_too() {
        let mut records = armed(Slot::B, "boot-1", None);
        records.reconcile(&boot(Slot::A, Slot::A, "boot-3", "1.0.0"));
        assert!(records
            .last_rollback
            .unwrap()
            .reason
            .contains("before the health check passed"));
    }

    #[test]
    fn a_commit_cut_off_before_the_records_were_saved_counts() {
        let mut records = armed(Slot::B, "boot-1", None);
        assert_eq!(
            records.reconcile(&boot(Slot::B, Slot::B, "boot-2", "1.1.0")),
            Phase::Committed
        );
        assert_eq!(records.condition(Slot::B), Condition::Good);
        assert!(records.trial.is_none() && records.last_rollback.is_none());
    }

    #[test]
    fn a_trial_without_records_is_still_a_trial() {
        let mut records = Records::default();
        assert_eq!(
            records.reconcile(&boot(Slot::B, Slot::A, "boot-9", "1.1.0")),
            Phase::Trial
        );
        assert_eq!(records.trial.unwrap().slot, Slot::B);
    }

    /// Raspberry Pi: a reboot without `0 tryboot` (a power cut after the
    /// install) boots the committed slot; the trial never ran.
    #[test]
    fn a_reboot_that_was_no_trial_boot_keeps_the_trial_armed() {
        let mut records = armed(Slot::B, "boot-1", None);
        let not_tried = Boot {
            trial_boot: Some(false),
            ..boot(Slot::A, Slot::A, "boot-2", "1.0.0")
        };
        assert_eq!(records.reconcile(&not_tried), Phase::Committed);
        assert!(records.last_rollback.is_none(), "{records:?}");
        assert_eq!(records.trial.as_ref().map(|t| t.slot), Some(Slot::B));
        assert_eq!(records.condition(Slot::B), Condition::Installed);
    }

    /// The same start after a trial that did run (obsbox started in it, or
    /// obsbox itself rebooted into it) is a rollback.
    #[test]
    fn a_trial_boot_that_ran_and_came_back_is_a_rollback_on_a_pi() {
        let back = Boot {
            trial_boot: Some(false),
            ..boot(Slot::A, Slot::A, "boot-3", "1.0.0")
        };
        let mut started = armed(Slot::B, "boot-1", None);
        assert_eq!(
            started.reconcile(&Boot {
                trial_boot: Some(true),
                ..boot(Slot::B, Slot::A, "boot-2", "1.1.0")
            }),
            Phase::Trial
        );
        started.reconcile(&back);
        assert!(started.last_rollback.is_some() && started.trial.is_none());
        assert_eq!(started.condition(Slot::B), Condition::Bad);

        // Rebooted by obsbox with the tryboot flag, and the new slot died
        // before obsbox ran in it (a kernel panic).
        let mut tried = armed(Slot::B, "boot-1", None);
        tried.trial.as_mut().unwrap().tried = true;
        tried.reconcile(&back);
        assert!(tried.last_rollback.is_some() && tried.trial.is_none());
    }

    #[test]
    fn an_install_cut_off_is_marked_interrupted() {
        let mut records = Records::default();
        records.set(Slot::B, Some("1.1.0"), Condition::Installing, None);
        assert!(records.interrupted());
        assert_eq!(records.condition(Slot::B), Condition::Interrupted);
        assert!(!records.interrupted(), "once");
    }
}
