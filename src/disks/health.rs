//! What a reading means: the disk's health, its temperature against the
//! thresholds, and the counts of bad sectors with their rise since the
//! reading before. Pure, so every rule is tested without a disk.
//!
//! Only smartctl's own verdict makes a disk failing: exit bit 3 (SMART
//! status), bit 4 (a pre-fail attribute at its threshold now) or a failed
//! SMART status. Damaged output therefore never turns a healthy disk
//! failing; it is a monitoring error. Temperatures have hysteresis: a disk
//! that crossed a threshold counts as below it again only 5 °C under it.

use super::smart::Reading;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The attributes whose raw counts obsbox watches: reallocated sectors,
/// reported uncorrectable errors, command timeouts, pending sectors and
/// offline uncorrectable sectors.
pub const WATCHED: [u32; 5] = [5, 187, 188, 197, 198];

/// How far under a threshold a temperature must fall to count as below it.
pub const HYSTERESIS_CELSIUS: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Warning,
    Failing,
    /// No reading yet (or none that could be read).
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Failing => "failing",
            Health::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Health {
        match text {
            "ok" => Health::Ok,
            "warning" => Health::Warning,
            "failing" => Health::Failing,
            _ => Health::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemperatureLevel {
    #[default]
    Normal,
    Warning,
    Critical,
}

impl TemperatureLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TemperatureLevel::Normal => "normal",
            TemperatureLevel::Warning => "warning",
            TemperatureLevel::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> TemperatureLevel {
        match text {
            "warning" => TemperatureLevel::Warning,
            "critical" => TemperatureLevel::Critical,
            _ => TemperatureLevel::Normal,
        }
    }
}

/// Temperature thresholds in °C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub warning: i64,
    pub critical: i64,
}

impl Limits {
    /// The settings' limits, or an NVMe disk's own where it reports them.
    pub fn for_reading(settings: Limits, reading: &Reading) -> Limits {
        match reading.temperature_limits {
            Some((warning, critical)) if reading.is_nvme() => {
                let warning = warning.unwrap_or(settings.warning);
                Limits {
                    warning,
                    critical: critical.unwrap_or(settings.critical).max(warning),
                }
            }
            _ => settings,
        }
    }
}

/// The verdict on one reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub health: Health,
    pub temperature_level: TemperatureLevel,
    pub limits: (i64, i64),
    /// Raw counts of the watched attributes the disk reports, by id.
    pub counts: BTreeMap<u32, u64>,
    /// How much each count rose since the reading before.
    pub rises: BTreeMap<u32, u64>,
    /// Why the health is what it is, in words.
    pub reasons: Vec<String>,
}

impl Evaluation {
    /// Backups must not write to this disk.
    pub fn unsafe_to_write(&self) -> bool {
        self.health == Health::Failing || self.temperature_level == TemperatureLevel::Critical
    }
}

/// What is kept of the reading before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Previous {
    pub counts: BTreeMap<u32, u64>,
    pub temperature_level: TemperatureLevel,
}

/// The level of `celsius` given the level before: a threshold once crossed
/// holds until the temperature is `HYSTERESIS_CELSIUS` under it.
pub fn temperature_level(
    celsius: i64,
    limits: Limits,
    before: TemperatureLevel,
) -> TemperatureLevel {
    let holds = |level: TemperatureLevel, threshold: i64| {
        celsius >= threshold || (before >= level && celsius > threshold - HYSTERESIS_CELSIUS)
    };
    if holds(TemperatureLevel::Critical, limits.critical) {
        TemperatureLevel::Critical
    } else if holds(TemperatureLevel::Warning, limits.warning) {
        TemperatureLevel::Warning
    } else {
        TemperatureLevel::Normal
    }
}

/// NVMe critical warning bits (NVMe base specification, SMART / Health log).
const NVME_WARNINGS: [(u8, &str); 6] = [
    (0x01, "available spare below its threshold"),
    (0x02, "temperature outside its limits"),
    (0x04, "reliability degraded by media or internal errors"),
    (0x08, "media is read-only"),
    (0x10, "volatile memory backup failed"),
    (0x20, "persistent memory region is read-only or unreliable"),
];

pub fn nvme_warnings(bits: u8) -> Vec<&'static str> {
    NVME_WARNINGS
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, what)| *what)
        .collect()
}

pub fn evaluate(reading: &Reading, previous: Option<&Previous>, settings: Limits) -> Evaluation {
    let limits = Limits::for_reading(settings, reading);
    let mut failing = Vec::new();
    let mut warnings = Vec::new();
    if reading.exit.disk_failing() || reading.smart_passed == Some(false) {
        failing.push("SMART says the disk is failing".to_string());
        for a in reading.attributes.iter().filter(|a| a.when_failed == "now") {
            failing.push(format!(
                "attribute {} ({}) is at its threshold",
                a.id, a.name
            ));
        }
    }
    warnings.extend(reading.exit.findings().into_iter().map(String::from));
    let counts: BTreeMap<u32, u64> = WATCHED
        .iter()
        .filter_map(|id| Some((*id, reading.raw(*id)?)))
        .collect();
    let rises: BTreeMap<u32, u64> = counts
        .iter()
        .filter_map(|(id, now)| {
            let before = previous?.counts.get(id)?;
            (now > before).then(|| (*id, now - before))
        })
        .collect();
    for (id, rise) in &rises {
        warnings.push(format!("attribute {id} rose by {rise}"));
    }
    for id in [197, 198] {
        if let Some(n) = counts.get(&id).filter(|n| **n > 0) {
            warnings.push(format!("attribute {id} counts {n} bad sectors"));
        }
    }
    if let Some(nvme) = &reading.nvme {
        for what in nvme_warnings(nvme.critical_warning) {
            warnings.push(format!("NVMe critical warning: {what}"));
        }
        if let Some(n) = nvme.media_errors.filter(|n| *n > 0) {
            warnings.push(format!("{n} media errors"));
        }
        if let Some(used) = nvme.percentage_used.filter(|u| *u >= 100) {
            warnings.push(format!("{used}% of its rated endurance used"));
        }
    }
    if reading.self_tests.first().and_then(|t| t.passed) == Some(false) {
        warnings.push(format!(
            "the last self-test failed: {}",
            reading.self_tests[0].result
        ));
    }
    let before = previous.map(|p| p.temperature_level).unwrap_or_default();
    let level = reading.temperature.map_or(TemperatureLevel::Normal, |t| {
        temperature_level(t, limits, before)
    });
    match (level, reading.temperature) {
        (TemperatureLevel::Critical, Some(t)) => warnings.push(format!(
            "too hot: {t} °C (critical at {} °C)",
            limits.critical
        )),
        (TemperatureLevel::Warning, Some(t)) => {
            warnings.push(format!("warm: {t} °C (warning at {} °C)", limits.warning))
        }
        _ => {}
    }
    let health = if !failing.is_empty() {
        Health::Failing
    } else if !warnings.is_empty() {
        Health::Warning
    } else {
        Health::Ok
    };
    Evaluation {
        health,
        temperature_level: level,
        limits: (limits.warning, limits.critical),
        counts,
        rises,
        reasons: failing.into_iter().chain(warnings).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::smart::{parse_reading, tests as samples, Answer, ExitBits};

    const LIMITS: Limits = Limits {
        warning: 50,
        critical: 60,
    };

    fn read(text: &str, exit: u8) -> Reading {
        match parse_reading(text, ExitBits(exit)) {
            Ok(Answer::Reading(r)) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn with_raw(mut r: Reading, id: u32, raw: u64) -> Reading {
        if let Some(a) = r.attributes.iter_mut().find(|a| a.id == id) {
            a.raw = Some(raw);
        }
        r
    }

    #[test]
    fn a_healthy_disk_is_ok() {
        let e = evaluate(&read(&samples::healthy_hdd(), 0), None, LIMITS);
        assert_eq!(e.health, Health::Ok, "{:?}", e.reasons);
        assert_eq!(e.counts, BTreeMap::from([(5, 0), (197, 0), (198, 0)]));
        assert!(e.rises.is_empty());
        assert!(!e.unsafe_to_write());
    }

    #[test]
    fn rising_counts_are_warnings_and_say_by_how_much() {
        let before = read(&samples::healthy_hdd(), 0);
        let first = evaluate(&before, None, LIMITS);
        let previous = Previous {
            counts: first.counts,
            temperature_level: first.temperature_level,
        };
        let now = with_raw(with_raw(before, 5, 8), 197, 2);
        let e = evaluate(&now, Some(&previous), LIMITS);
        assert_eq!(e.health, Health::Warning);
        assert_eq!(e.rises, BTreeMap::from([(5, 8), (197, 2)]));
        assert!(e.reasons.iter().any(|r| r == "attribute 197 rose by 2"));
        // Reallocated sectors that no longer rise are history, not a warning;
        // pending ones still are.
        let previous = Previous {
            counts: e.counts.clone(),
            ..Previous::default()
        };
        let steady = evaluate(&with_raw(now, 197, 0), Some(&previous), LIMITS);
        assert_eq!(steady.health, Health::Ok, "{:?}", steady.reasons);
    }

    #[test]
    fn only_smartctls_verdict_makes_a_disk_failing() {
        let hdd = read(&samples::healthy_hdd(), 8 | 16);
        let e = evaluate(&hdd, None, LIMITS);
        assert_eq!(e.health, Health::Failing);
        assert!(e.unsafe_to_write());
        // Past crossings and logged errors are warnings.
        let e = evaluate(&read(&samples::healthy_hdd(), 32 | 64), None, LIMITS);
        assert_eq!(e.health, Health::Warning);
        assert_eq!(e.reasons.len(), 2);
    }

    #[test]
    fn nvme_critical_warnings_are_named() {
        let e = evaluate(&read(&samples::nvme(4, 40), 8), None, LIMITS);
        assert_eq!(e.health, Health::Failing);
        assert!(e.reasons.iter().any(|r| r.contains("reliability degraded")));
        // NVMe limits are the disk's own: 82/85 °C here, not 50/60.
        let warm = evaluate(&read(&samples::nvme(0, 70), 0), None, LIMITS);
        assert_eq!(warm.health, Health::Ok, "{:?}", warm.reasons);
        assert_eq!(warm.limits, (82, 85));
        let hot = evaluate(&read(&samples::nvme(0, 86), 0), None, LIMITS);
        assert_eq!(hot.temperature_level, TemperatureLevel::Critical);
        assert!(hot.unsafe_to_write());
    }

    /// Damaged output, seeded so a failure repeats: truncations, bit flips
    /// and random bytes. Nothing panics, and with smartctl's exit status 0
    /// no damage makes a healthy disk failing.
    #[test]
    fn damaged_output_never_makes_a_healthy_disk_failing() {
        let mut seed: u64 = 0x5eed_d15c;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let samples = [samples::healthy_hdd(), samples::nvme(0, 40)];
        let (mut readings, mut errors) = (0, 0);
        for case in 0..50_000u64 {
            let sample = samples[(case % 2) as usize].as_bytes();
            let mut bytes = sample.to_vec();
            match case % 3 {
                0 => bytes.truncate((next() as usize) % sample.len()),
                1 => {
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] ^= 1 << (next() % 8);
                    }
                }
                _ => {
                    let len = (next() % 300) as usize;
                    bytes = (0..len).map(|_| next() as u8).collect();
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            match parse_reading(&text, ExitBits(0)) {
                Ok(Answer::Reading(r)) => {
                    readings += 1;
                    let e = evaluate(&r, None, LIMITS);
                    assert_ne!(e.health, Health::Failing, "case {case}: {text}");
                }
                Ok(Answer::Standby) => panic!("case {case}: standby from exit 0"),
                Err(_) => errors += 1,
            }
            let _ = crate::disks::smart::parse_scan(&text, ExitBits(0));
        }
        // Both kinds of outcome were exercised.
        assert!(readings > 1000 && errors > 1000, "{readings} {errors}");
    }

    #[test]
    fn temperatures_need_five_degrees_to_come_back() {
        use TemperatureLevel::*;
        let cases = [
            // (°C, level before, level now)
            (49, Normal, Normal),
            (50, Normal, Warning),
            (59, Warning, Warning),
            (60, Warning, Critical),
            (58, Critical, Critical),
            (56, Critical, Critical),
            (55, Critical, Warning),
            (46, Warning, Warning),
            (45, Warning, Normal),
            (45, Critical, Normal),
            (58, Normal, Warning),
        ];
        for (celsius, before, want) in cases {
            assert_eq!(
                temperature_level(celsius, LIMITS, before),
                want,
                "{celsius} °C after {before:?}"
            );
        }
    }

    #[test]
    fn a_hot_disk_is_safe_to_write_again_only_well_below_the_threshold() {
        let mut r = read(&samples::healthy_hdd(), 0);
        let mut previous: Option<Previous> = None;
        let mut unsafe_at = Vec::new();
        for celsius in [40, 61, 58, 56, 55, 50, 44] {
            r.temperature = Some(celsius);
            let e = evaluate(&r, previous.as_ref(), LIMITS);
            unsafe_at.push(e.unsafe_to_write());
            previous = Some(Previous {
                counts: e.counts.clone(),
                temperature_level: e.temperature_level,
            });
        }
        assert_eq!(unsafe_at, [false, true, true, true, false, false, false]);
        // A failing disk is writable again on the first good reading.
        let failing = evaluate(&read(&samples::healthy_hdd(), 8), None, LIMITS);
        assert!(failing.unsafe_to_write());
        let good = evaluate(&read(&samples::healthy_hdd(), 0), None, LIMITS);
        assert!(!good.unsafe_to_write());
    }
}
