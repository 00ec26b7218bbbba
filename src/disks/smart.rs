//! What `smartctl` (smartmontools 7.x) says, read with serde from its JSON:
//! the device scan, one device's reading, and the exit status bits. Pure:
//! text and an exit status in, values out. Nothing here panics on input.

use super::TestKind;
use serde::{Deserialize, Serialize};

/// smartctl's exit status, a bit mask (smartctl(8), "RETURN VALUES").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExitBits(pub u8);

impl ExitBits {
    /// Bits 0-2: the command line did not parse, the device did not open, or
    /// a command to it failed. About the monitoring, never about the disk.
    const MONITORING: u8 = 0b0000_0111;
    /// Bit 1 alone: the device did not open (also how `-n standby` skips).
    const DEVICE_OPEN: u8 = 0b0000_0010;
    /// Bit 3: the SMART status says the disk is failing.
    const DISK_FAILING: u8 = 0b0000_1000;
    /// Bit 4: a pre-fail attribute is at or below its threshold now.
    const PREFAIL_NOW: u8 = 0b0001_0000;
    /// Bit 5: an attribute was at or below its threshold in the past.
    const PAST_THRESHOLD: u8 = 0b0010_0000;
    /// Bit 6: the device's error log has errors.
    const ERROR_LOG: u8 = 0b0100_0000;
    /// Bit 7: the self-test log has errors.
    const SELF_TEST_LOG: u8 = 0b1000_0000;

    /// From a process exit code (smartctl exits with the mask itself).
    pub fn from_code(code: i32) -> ExitBits {
        ExitBits((code & 0xff) as u8)
    }

    pub fn monitoring_fault(self) -> bool {
        self.0 & Self::MONITORING != 0
    }

    /// The disk itself is failing: its SMART status, or a pre-fail attribute now.
    pub fn disk_failing(self) -> bool {
        self.0 & (Self::DISK_FAILING | Self::PREFAIL_NOW) != 0
    }

    /// Findings worth a warning: past threshold crossings, error logs.
    pub fn findings(self) -> Vec<&'static str> {
        [
            (
                Self::PAST_THRESHOLD,
                "an attribute was at or below its threshold in the past",
            ),
            (Self::ERROR_LOG, "the device error log has errors"),
            (Self::SELF_TEST_LOG, "the self-test log has errors"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.0 & bit != 0)
        .map(|(_, what)| what)
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartError {
    /// smartctl itself failed (exit bits 0-2), with what it said.
    #[error("smartctl failed (exit status {status}): {message}")]
    Tool { status: u8, message: String },
    /// The output is not smartctl's JSON: truncated, garbage, another program.
    #[error("smartctl's output is not the JSON it should be: {0}")]
    Malformed(String),
}

/// One device of `smartctl --scan-open --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanDevice {
    /// `/dev/sda`, `/dev/nvme0`, ...
    pub name: String,
    /// The `-d` type to read it with (`sat`, `nvme`, `scsi`, `megaraid,0`).
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub protocol: String,
}

#[derive(Deserialize)]
struct ScanDoc {
    #[serde(default)]
    devices: Vec<ScanDevice>,
    #[serde(default)]
    smartctl: Tool,
}

/// The devices a scan found; an empty list when there are none.
pub fn parse_scan(text: &str, exit: ExitBits) -> Result<Vec<ScanDevice>, SmartError> {
    match serde_json::from_str::<ScanDoc>(text) {
        Ok(doc) if exit.monitoring_fault() => Err(tool_error(exit, &doc.smartctl, text)),
        Ok(doc) => Ok(doc
            .devices
            .into_iter()
            .filter(|d| d.name.starts_with('/') && !d.name.contains(char::is_whitespace))
            .collect()),
        Err(_) if exit.monitoring_fault() => Err(tool_error(exit, &Tool::default(), text)),
        Err(e) => Err(SmartError::Malformed(e.to_string())),
    }
}

/// What a read of one device gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Reading(Box<Reading>),
    /// `-n standby`: the disk sleeps and was not woken; no data.
    Standby,
}

/// The parts of one reading obsbox uses; stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `ATA`, `NVMe`, `SCSI`.
    pub protocol: Option<String>,
    /// 0 for an SSD, else the spindle speed.
    pub rotation_rate: Option<u64>,
    /// The SMART overall-health self-assessment.
    pub smart_passed: Option<bool>,
    pub exit: ExitBits,
    pub attributes: Vec<Attribute>,
    pub temperature: Option<i64>,
    /// The disk's own warning and critical temperatures (NVMe), °C.
    pub temperature_limits: Option<(Option<i64>, Option<i64>)>,
    pub power_on_hours: Option<u64>,
    pub nvme: Option<NvmeHealth>,
    /// Newest first, as the device's self-test log lists them.
    pub self_tests: Vec<SelfTest>,
    /// The self-test under way on the disk, if one is.
    pub self_test_running: Option<RunningTest>,
}

/// A self-test the disk is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningTest {
    /// None when the disk does not say, or runs another kind (conveyance,
    /// selective, vendor-specific).
    pub kind: Option<TestKind>,
    /// None until the disk says.
    pub remaining_percent: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub id: u32,
    pub name: String,
    /// Normalized value, worst and threshold (lower is worse).
    pub value: Option<u64>,
    pub worst: Option<u64>,
    pub thresh: Option<u64>,
    pub raw: Option<u64>,
    /// `now`, `past` or empty.
    pub when_failed: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeHealth {
    pub critical_warning: u8,
    pub media_errors: Option<u64>,
    pub percentage_used: Option<u64>,
}

/// One entry of a self-test log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTest {
    /// `Short offline`, `Extended offline`, `Short`, `Extended`, ...
    pub kind: String,
    /// `Completed without error`, `Completed: read failure`, ...
    pub result: String,
    /// None while running or when aborted: neither passed nor failed.
    pub passed: Option<bool>,
    pub power_on_hours: Option<u64>,
}

/// Reads `smartctl --json -a -n standby` output and its exit status.
pub fn parse_reading(text: &str, exit: ExitBits) -> Result<Answer, SmartError> {
    let doc: Doc = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(_) if exit.monitoring_fault() => return Err(tool_error(exit, &Tool::default(), text)),
        Err(e) => return Err(SmartError::Malformed(e.to_string())),
    };
    let standby = doc.smartctl.messages.iter().any(|m| {
        let s = m.string.to_ascii_uppercase();
        s.starts_with("DEVICE IS IN ") && (s.contains("STANDBY") || s.contains("SLEEP"))
    });
    if standby && exit.0 & ExitBits::MONITORING == ExitBits::DEVICE_OPEN {
        return Ok(Answer::Standby);
    }
    if exit.monitoring_fault() {
        return Err(tool_error(exit, &doc.smartctl, text));
    }
    if doc.json_format_version.is_none() && doc.device.is_none() {
        return Err(SmartError::Malformed(
            "neither json_format_version nor device: not smartctl's JSON".into(),
        ));
    }
    Ok(Answer::Reading(Box::new(doc.into_reading(exit))))
}

/// Reads the answer to `smartctl --json -t short|long`: started, or why not.
pub fn parse_self_test(text: &str, exit: ExitBits) -> Result<(), SmartError> {
    if exit.monitoring_fault() {
        let tool = serde_json::from_str::<Doc>(text)
            .map(|d| d.smartctl)
            .unwrap_or_default();
        return Err(tool_error(exit, &tool, text));
    }
    Ok(())
}

fn tool_error(exit: ExitBits, tool: &Tool, text: &str) -> SmartError {
    let said: Vec<&str> = tool
        .messages
        .iter()
        .map(|m| m.string.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let message = if said.is_empty() {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if first.is_empty() {
            "no output".to_string()
        } else {
            first.chars().take(200).collect()
        }
    } else {
        said.join("; ").chars().take(500).collect()
    };
    SmartError::Tool {
        status: exit.0,
        message,
    }
}

// ---- the JSON, as far as obsbox reads it; everything else is ignored

#[derive(Deserialize, Default)]
#[serde(default)]
struct Doc {
    json_format_version: Option<Vec<u32>>,
    smartctl: Tool,
    device: Option<DeviceDoc>,
    model_name: Option<String>,
    serial_number: Option<String>,
    rotation_rate: Option<u64>,
    smart_status: Option<SmartStatus>,
    ata_smart_attributes: Option<AttributeTable>,
    ata_smart_data: Option<AtaSmartData>,
    temperature: Option<Temperature>,
    nvme_composite_temperature_threshold: Option<Limits>,
    power_on_time: Option<PowerOnTime>,
    nvme_smart_health_information_log: Option<NvmeLog>,
    ata_smart_self_test_log: Option<AtaSelfTestLog>,
    nvme_self_test_log: Option<NvmeSelfTestLog>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Tool {
    messages: Vec<Message>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Message {
    string: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeviceDoc {
    protocol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SmartStatus {
    passed: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AttributeTable {
    table: Vec<AttributeDoc>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AtaSmartData {
    self_test: Option<AtaSelfTestExecution>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AtaSelfTestExecution {
    status: AtaTestStatus,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AttributeDoc {
    id: u32,
    name: String,
    value: Option<u64>,
    worst: Option<u64>,
    thresh: Option<u64>,
    when_failed: String,
    raw: Option<Raw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    value: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Temperature {
    current: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Limits {
    warning: Option<i64>,
    critical: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PowerOnTime {
    hours: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NvmeLog {
    critical_warning: Option<u8>,
    temperature: Option<i64>,
    percentage_used: Option<u64>,
    media_errors: Option<u64>,
    power_on_hours: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AtaSelfTestLog {
    standard: Option<AtaSelfTests>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AtaSelfTests {
    table: Vec<AtaSelfTest>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AtaSelfTest {
    #[serde(rename = "type")]
    kind: Named,
    status: AtaTestStatus,
    lifetime_hours: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    value: Option<u64>,
    string: String,
}

/// The status byte of an ATA self-test: the high nibble says how it ended
/// (0xf: still running), the low one how much is left in tens of percent.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AtaTestStatus {
    value: Option<u64>,
    string: String,
    passed: Option<bool>,
    remaining_percent: Option<u64>,
}

impl AtaTestStatus {
    fn in_progress(&self) -> bool {
        self.value.is_some_and(|v| v >> 4 == 0xf)
    }

    fn remaining(&self) -> Option<u8> {
        let percent = self
            .remaining_percent
            .or(self.value.map(|v| (v & 0xf) * 10))?;
        u8::try_from(percent.min(100)).ok()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NvmeSelfTestLog {
    /// 0 none, 1 short, 2 extended, 0xe vendor-specific (smartctl 7.4 on).
    current_self_test_operation: Named,
    current_self_test_completion_percent: Option<u64>,
    table: Vec<NvmeSelfTest>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NvmeSelfTest {
    self_test_code: Named,
    self_test_result: Named,
    power_on_hours: Option<u64>,
}

/// The kind of a test from its ATA type or NVMe operation code: 1 short,
/// 2 extended (ATA 0x81 and 0x82: the same in captive mode).
fn test_kind(code: Option<u64>) -> Option<TestKind> {
    match code? & 0x7f {
        1 => Some(TestKind::Short),
        2 => Some(TestKind::Long),
        _ => None,
    }
}

/// Plausible disk temperatures; anything else is a sensor's garbage.
fn plausible(celsius: i64) -> Option<i64> {
    (-40..=150).contains(&celsius).then_some(celsius)
}

impl Doc {
    fn into_reading(self, exit: ExitBits) -> Reading {
        let nvme_log = self.nvme_smart_health_information_log;
        let temperature = self
            .temperature
            .and_then(|t| t.current)
            .or(nvme_log.as_ref().and_then(|n| n.temperature))
            .and_then(plausible);
        let power_on_hours = self
            .power_on_time
            .and_then(|p| p.hours)
            .or(nvme_log.as_ref().and_then(|n| n.power_on_hours));
        let ata_log = self
            .ata_smart_self_test_log
            .and_then(|l| l.standard)
            .map(|s| s.table)
            .unwrap_or_default();
        let nvme_test_log = self.nvme_self_test_log.unwrap_or_default();
        let self_test_running = running_test(self.ata_smart_data, &ata_log, &nvme_test_log);
        let ata_tests = ata_log.into_iter().map(|t| SelfTest {
            kind: t.kind.string,
            // smartctl says "passed" of an entry still in progress too.
            passed: t.status.passed.filter(|_| !t.status.in_progress()),
            result: t.status.string,
            power_on_hours: t.lifetime_hours,
        });
        let nvme_tests = nvme_test_log.table.into_iter().map(|t| SelfTest {
            kind: t.self_test_code.string,
            passed: match t.self_test_result.value {
                Some(0) => Some(true),
                Some(5..=7) => Some(false),
                _ => None,
            },
            result: t.self_test_result.string,
            power_on_hours: t.power_on_hours,
        });
        Reading {
            model: self.model_name,
            serial: self.serial_number,
            protocol: self.device.and_then(|d| d.protocol),
            rotation_rate: self.rotation_rate,
            smart_passed: self.smart_status.and_then(|s| s.passed),
            exit,
            attributes: self
                .ata_smart_attributes
                .map(|t| t.table)
                .unwrap_or_default()
                .into_iter()
                .map(|a| Attribute {
                    id: a.id,
                    name: a.name,
                    value: a.value,
                    worst: a.worst,
                    thresh: a.thresh,
                    raw: a.raw.and_then(|r| r.value),
                    when_failed: a.when_failed,
                })
                .collect(),
            temperature,
            temperature_limits: self.nvme_composite_temperature_threshold.map(|l| {
                (
                    l.warning.and_then(plausible),
                    l.critical.and_then(plausible),
                )
            }),
            power_on_hours,
            nvme: nvme_log.map(|n| NvmeHealth {
                critical_warning: n.critical_warning.unwrap_or(0),
                media_errors: n.media_errors,
                percentage_used: n.percentage_used,
            }),
            self_tests: ata_tests.chain(nvme_tests).collect(),
            self_test_running,
        }
    }
}

/// The self-test under way: ATA's self-test execution status (its kind from
/// the newest log entry when that one is the test in progress), else the
/// newest ATA log entry still in progress, or the NVMe self-test log's
/// current operation.
fn running_test(
    ata: Option<AtaSmartData>,
    ata_log: &[AtaSelfTest],
    nvme: &NvmeSelfTestLog,
) -> Option<RunningTest> {
    let newest = ata_log.first().filter(|t| t.status.in_progress());
    let execution = ata.and_then(|d| d.self_test).map(|t| t.status);
    let ata_status = match &execution {
        Some(status) => Some(status).filter(|s| s.in_progress()),
        None => newest.map(|t| &t.status),
    };
    if let Some(status) = ata_status {
        return Some(RunningTest {
            kind: newest.and_then(|t| test_kind(t.kind.value)),
            remaining_percent: status.remaining(),
        });
    }
    let operation = nvme
        .current_self_test_operation
        .value
        .filter(|op| *op != 0)?;
    Some(RunningTest {
        kind: test_kind(Some(operation)),
        remaining_percent: nvme
            .current_self_test_completion_percent
            .and_then(|done| u8::try_from(100 - done.min(100)).ok()),
    })
}

impl Reading {
    /// The raw value of attribute `id`, if the disk reports it.
    pub fn raw(&self, id: u32) -> Option<u64> {
        self.attributes
            .iter()
            .find(|a| a.id == id)
            .and_then(|a| a.raw)
    }

    pub fn is_nvme(&self) -> bool {
        self.nvme.is_some() || self.protocol.as_deref() == Some("NVMe")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shapes of smartctl 7.3 output (`--json -a`), trimmed to what matters.
    pub(crate) fn healthy_hdd() -> String {
        r#"{
  "json_format_version": [1, 0],
  "smartctl": {"version": [7, 3], "argv": ["smartctl", "--json", "-a", "/dev/sda"], "exit_status": 0},
  "device": {"name": "/dev/sda", "info_name": "/dev/sda [SAT]", "type": "sat", "protocol": "ATA"},
  "model_family": "Western Digital Red",
  "model_name": "WDC WD40EFRX-68N32N0",
  "serial_number": "WD-WCC7K0000001",
  "rotation_rate": 5400,
  "smart_status": {"passed": true},
  "ata_smart_attributes": {"revision": 16, "table": [
    {"id": 5, "name": "Reallocated_Sector_Ct", "value": 200, "worst": 200, "thresh": 140, "when_failed": "",
     "flags": {"value": 51, "string": "PO--CK ", "prefailure": true}, "raw": {"value": 0, "string": "0"}},
    {"id": 9, "name": "Power_On_Hours", "value": 73, "worst": 73, "thresh": 0, "when_failed": "",
     "flags": {"value": 50, "string": "-O--CK ", "prefailure": false}, "raw": {"value": 19876, "string": "19876"}},
    {"id": 194, "name": "Temperature_Celsius", "value": 114, "worst": 100, "thresh": 0, "when_failed": "",
     "flags": {"value": 34, "string": "-O---K ", "prefailure": false}, "raw": {"value": 36, "string": "36"}},
    {"id": 197, "name": "Current_Pending_Sector", "value": 200, "worst": 200, "thresh": 0, "when_failed": "",
     "flags": {"value": 50, "string": "-O--CK ", "prefailure": false}, "raw": {"value": 0, "string": "0"}},
    {"id": 198, "name": "Offline_Uncorrectable", "value": 100, "worst": 253, "thresh": 0, "when_failed": "",
     "flags": {"value": 48, "string": "----CK ", "prefailure": false}, "raw": {"value": 0, "string": "0"}}
  ]},
  "power_on_time": {"hours": 19876},
  "temperature": {"current": 36},
  "ata_smart_self_test_log": {"standard": {"revision": 1, "table": [
    {"type": {"value": 1, "string": "Short offline"}, "status": {"value": 0, "string": "Completed without error", "passed": true}, "lifetime_hours": 19870}
  ], "count": 1, "error_count_total": 0, "error_count_outdated": 0}}
}"#
        .into()
    }

    pub(crate) fn nvme(critical_warning: u8, temperature: i64) -> String {
        format!(
            r#"{{
  "json_format_version": [1, 0],
  "smartctl": {{"version": [7, 3], "exit_status": 0}},
  "device": {{"name": "/dev/nvme0", "info_name": "/dev/nvme0", "type": "nvme", "protocol": "NVMe"}},
  "model_name": "Samsung SSD 980 1TB",
  "serial_number": "S64ANS0T000001",
  "smart_status": {{"passed": {passed}}},
  "nvme_composite_temperature_threshold": {{"warning": 82, "critical": 85}},
  "nvme_smart_health_information_log": {{"critical_warning": {critical_warning}, "temperature": {temperature},
    "available_spare": 100, "available_spare_threshold": 10, "percentage_used": 3, "power_on_hours": 1200,
    "media_errors": 0, "num_err_log_entries": 0}},
  "temperature": {{"current": {temperature}}},
  "power_on_time": {{"hours": 1200}},
  "nvme_self_test_log": {{"current_self_test_operation": {{"value": 0, "string": "No self-test in progress"}},
    "table": [{{"self_test_code": {{"value": 1, "string": "Short"}}, "self_test_result": {{"value": 0, "string": "Completed without error"}}, "power_on_hours": 1100}}]}}
}}"#,
            passed = critical_warning == 0
        )
    }

    #[test]
    fn exit_bits_separate_monitoring_faults_from_findings() {
        for code in [1, 2, 4, 2 | 64] {
            let bits = ExitBits::from_code(code);
            assert!(bits.monitoring_fault(), "{code}");
        }
        assert!(!ExitBits::from_code(2).disk_failing());
        assert!(ExitBits::from_code(8).disk_failing());
        assert!(ExitBits::from_code(16).disk_failing());
        assert!(!ExitBits::from_code(32).disk_failing());
        assert!(!ExitBits::from_code(8 | 16 | 32).monitoring_fault());
        assert_eq!(ExitBits::from_code(64 | 128).findings().len(), 2);
        assert_eq!(ExitBits::from_code(0).findings().len(), 0);
        // Exit codes over 255 are cut to 8 bits, as the kernel does.
        assert_eq!(ExitBits::from_code(256 + 8).0, 8);
    }

    #[test]
    fn a_healthy_hdd_reads_whole() {
        let Answer::Reading(r) = parse_reading(&healthy_hdd(), ExitBits(0)).unwrap() else {
            panic!("not a reading");
        };
        assert_eq!(r.model.as_deref(), Some("WDC WD40EFRX-68N32N0"));
        assert_eq!(r.serial.as_deref(), Some("WD-WCC7K0000001"));
        assert_eq!(r.smart_passed, Some(true));
        assert_eq!(r.temperature, Some(36));
        assert_eq!(r.power_on_hours, Some(19876));
        assert_eq!(r.raw(5), Some(0));
        assert_eq!(r.raw(9), Some(19876));
        assert_eq!(r.raw(187), None);
        assert!(!r.is_nvme());
        assert_eq!(r.self_tests.len(), 1);
        assert_eq!(r.self_tests[0].passed, Some(true));
        assert_eq!(r.self_tests[0].kind, "Short offline");
    }

    #[test]
    fn nvme_health_and_self_tests_are_read() {
        let Answer::Reading(r) = parse_reading(&nvme(4, 45), ExitBits(8)).unwrap() else {
            panic!("not a reading");
        };
        assert!(r.is_nvme());
        assert_eq!(r.nvme.as_ref().unwrap().critical_warning, 4);
        assert_eq!(r.nvme.as_ref().unwrap().percentage_used, Some(3));
        assert_eq!(r.temperature_limits, Some((Some(82), Some(85))));
        assert_eq!(r.smart_passed, Some(false));
        assert_eq!(r.self_tests[0].passed, Some(true));
        assert_eq!(r.exit, ExitBits(8));
    }

    /// `text` with `field` (a JSON member) added at the top level.
    fn with_field(text: &str, field: &str) -> String {
        let open = text.find('{').unwrap_or(0) + 1;
        format!("{}{field},{}", &text[..open], &text[open..])
    }

    fn running(text: &str) -> Option<RunningTest> {
        match parse_reading(text, ExitBits(0)) {
            Ok(Answer::Reading(r)) => r.self_test_running,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_self_test_in_progress_is_read_with_its_kind_and_what_remains() {
        // smartctl 7.x: ata_smart_data.self_test.status (0xf9: 90% left),
        // and on many disks an entry in progress heads the self-test log.
        let execution = r#""ata_smart_data": {"self_test": {"status": {"value": 249,
            "string": "in progress, 90% remaining", "remaining_percent": 90},
            "polling_minutes": {"short": 2, "extended": 480}}}"#;
        let log = r#""ata_smart_self_test_log": {"standard": {"revision": 1, "table": [
            {"type": {"value": 2, "string": "Extended offline"}, "status": {"value": 249,
             "string": "Self-test routine in progress", "remaining_percent": 90, "passed": true},
             "lifetime_hours": 19877},
            {"type": {"value": 1, "string": "Short offline"}, "status": {"value": 0,
             "string": "Completed without error", "passed": true}, "lifetime_hours": 19870}]}}"#;
        let hdd = healthy_hdd().replace("\"ata_smart_self_test_log\"", "\"old_log\"");
        let text = with_field(&with_field(&hdd, execution), log);
        assert_eq!(
            running(&text),
            Some(RunningTest {
                kind: Some(TestKind::Long),
                remaining_percent: Some(90)
            })
        );
        let Ok(Answer::Reading(r)) = parse_reading(&text, ExitBits(0)) else {
            panic!("not a reading");
        };
        // The entry in progress has neither passed nor failed yet.
        assert_eq!(r.self_tests[0].passed, None);
        assert_eq!(r.self_tests[1].passed, Some(true));
        // Without a log entry for it, the kind is not known.
        let text = with_field(&healthy_hdd(), execution);
        assert_eq!(
            running(&text),
            Some(RunningTest {
                kind: None,
                remaining_percent: Some(90)
            })
        );
        // A finished test (status 0) is not running; neither is a disk
        // that says nothing.
        let done = r#""ata_smart_data": {"self_test": {"status": {"value": 0,
            "string": "completed without error", "passed": true}}}"#;
        assert_eq!(running(&with_field(&healthy_hdd(), done)), None);
        assert_eq!(running(&healthy_hdd()), None);
        // The status byte alone is enough; garbage percentages are bounded.
        let bare = r#""ata_smart_data": {"self_test": {"status": {"value": 243}}}"#;
        assert_eq!(
            running(&with_field(&healthy_hdd(), bare)).and_then(|r| r.remaining_percent),
            Some(30)
        );
        let odd = r#""ata_smart_data": {"self_test": {"status": {"value": 255, "remaining_percent": 99999}}}"#;
        assert_eq!(
            running(&with_field(&healthy_hdd(), odd)).and_then(|r| r.remaining_percent),
            Some(100)
        );
    }

    #[test]
    fn an_nvme_self_test_in_progress_is_read_from_the_current_operation() {
        let idle = nvme(0, 40);
        assert_eq!(running(&idle), None);
        let busy = idle.replace(
            r#""current_self_test_operation": {"value": 0, "string": "No self-test in progress"}"#,
            r#""current_self_test_operation": {"value": 1, "string": "Short self-test in progress"},
               "current_self_test_completion_percent": 30"#,
        );
        assert_eq!(
            running(&busy),
            Some(RunningTest {
                kind: Some(TestKind::Short),
                remaining_percent: Some(70)
            })
        );
        let vendor = idle.replace(
            r#"{"value": 0, "string": "No self-test in progress"}"#,
            r#"{"value": 14, "string": "Vendor specific self-test in progress"}"#,
        );
        assert_eq!(
            running(&vendor),
            Some(RunningTest {
                kind: None,
                remaining_percent: None
            })
        );
    }

    #[test]
    fn standby_is_not_a_failure() {
        let text = r#"{"json_format_version": [1, 0], "smartctl": {"version": [7, 3],
            "messages": [{"string": "Device is in STANDBY mode, exit(2)", "severity": "information"}],
            "exit_status": 2}}"#;
        assert_eq!(parse_reading(text, ExitBits(2)), Ok(Answer::Standby));
    }

    #[test]
    fn an_open_failure_is_a_monitoring_error_with_smartctls_words() {
        let text = r#"{"json_format_version": [1, 0], "smartctl": {"messages": [
            {"string": "Smartctl open device: /dev/sda failed: No such device", "severity": "error"}],
            "exit_status": 2}}"#;
        assert_eq!(
            parse_reading(text, ExitBits(2)),
            Err(SmartError::Tool {
                status: 2,
                message: "Smartctl open device: /dev/sda failed: No such device".into()
            })
        );
        // Not JSON at all, e.g. an old smartctl without --json.
        let err = parse_reading("smartctl: unknown option -- j\n", ExitBits(1)).unwrap_err();
        assert!(err.to_string().contains("unknown option"), "{err}");
    }

    #[test]
    fn truncated_or_foreign_output_is_malformed() {
        let text = healthy_hdd();
        for cut in [0, 1, text.len() / 2, text.len() - 2] {
            assert!(
                matches!(
                    parse_reading(&text[..cut], ExitBits(0)),
                    Err(SmartError::Malformed(_))
                ),
                "{cut}"
            );
        }
        for foreign in [
            "{}",
            "[]",
            "null",
            r#"{"hello": "world"}"#,
            "\u{0}\u{1}garbage",
        ] {
            assert!(
                matches!(
                    parse_reading(foreign, ExitBits(0)),
                    Err(SmartError::Malformed(_))
                ),
                "{foreign}"
            );
        }
    }

    #[test]
    fn the_scan_lists_devices_with_their_types() {
        let text = r#"{"json_format_version": [1, 0], "smartctl": {"exit_status": 0},
          "devices": [
            {"name": "/dev/sda", "info_name": "/dev/sda [SAT]", "type": "sat", "protocol": "ATA"},
            {"name": "/dev/nvme0", "info_name": "/dev/nvme0", "type": "nvme", "protocol": "NVMe"},
            {"name": "not a path", "type": "sat", "protocol": "ATA"}
          ]}"#;
        let devices = parse_scan(text, ExitBits(0)).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].kind, "nvme");
        // This machine's real smartctl, with no disk it can open.
        let none =
            r#"{"json_format_version": [1, 0], "smartctl": {"version": [7, 3], "exit_status": 0}}"#;
        assert_eq!(parse_scan(none, ExitBits(0)).unwrap(), vec![]);
        assert!(parse_scan("{\"devices\": [", ExitBits(0)).is_err());
        assert!(matches!(
            parse_scan("", ExitBits(1)),
            Err(SmartError::Tool { status: 1, .. })
        ));
    }
}
