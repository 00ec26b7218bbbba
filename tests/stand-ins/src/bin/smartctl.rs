//! Stand-in for `smartctl` (smartmontools 7.3) in JSON mode: the scan, a
//! device's reading and starting a self-test, answered from one scenario
//! file per device in `$SMARTCTL_STANDIN_DIR` (`<dir>/sda.json` is
//! `/dev/sda`). A test rewrites a file between readings. Output shapes and
//! exit status bits follow the real tool; see `tests/stand-ins/README.md`.
//! Nothing here panics on bad input.

use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

const FAILSTATUS: i32 = 8;
const FAILATTR: i32 = 16;
const FAILSMART_OPEN: i32 = 2;
const FAILID: i32 = 4;
const FAILLOG_SELFTEST: i32 = 128;

fn header(argv: &[String], exit: i32, messages: &[(&str, &str)]) -> Value {
    let mut tool = json!({
        "version": [7, 3],
        "svn_revision": "5338",
        "platform_info": "x86_64-linux-standin",
        "build_info": "(stand-in)",
        "argv": std::iter::once("smartctl".to_string()).chain(argv.iter().cloned()).collect::<Vec<_>>(),
        "exit_status": exit,
    });
    if !messages.is_empty() {
        tool["messages"] = messages
            .iter()
            .map(|(s, severity)| json!({"string": s, "severity": severity}))
            .collect();
    }
    json!({"json_format_version": [1, 0], "smartctl": tool})
}

fn emit(doc: &Value, exit: i32) -> ! {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    let _ = writeln!(std::io::stdout(), "{text}");
    let _ = std::io::stdout().flush();
    std::process::exit(exit)
}

fn dir() -> Option<PathBuf> {
    std::env::var_os("SMARTCTL_STANDIN_DIR").map(PathBuf::from)
}

/// The scenario file of `/dev/<name>`.
fn scenario(device: &str) -> Option<Value> {
    let name = device.strip_prefix("/dev/")?;
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(dir()?.join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn kind_of(s: &Value) -> &str {
    s["type"].as_str().unwrap_or("sat")
}

fn number(s: &Value, key: &str, default: u64) -> u64 {
    s[key].as_u64().unwrap_or(default)
}

/// A self-test under way (`"self_test_running": {"kind", "remaining_percent"}`):
/// whether it is the long one, and the percent left in ATA's tens.
fn running_test(s: &Value) -> Option<(bool, u64)> {
    let running = s.get("self_test_running")?;
    let long = running["kind"] == "long";
    let remaining = number(running, "remaining_percent", 90).min(90) / 10 * 10;
    Some((long, remaining))
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| argv.iter().any(|a| a == flag);
    let value_of = |flags: &[&str]| {
        argv.iter()
            .position(|a| flags.contains(&a.as_str()))
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    if !(has("--json") || has("-j")) {
        let _ = writeln!(
            std::io::stderr(),
            "smartctl stand-in: only --json output is implemented"
        );
        std::process::exit(1);
    }
    if has("--scan-open") || has("--scan") {
        scan(&argv);
    }
    let Some(device) = argv.last().filter(|d| d.starts_with('/')).cloned() else {
        let doc = header(
            &argv,
            1,
            &[(
                "ERROR: smartctl requires a device name as the final command-line argument.",
                "error",
            )],
        );
        emit(&doc, 1);
    };
    let Some(s) = scenario(&device) else {
        let message = format!("Smartctl open device: {device} failed: No such device");
        emit(
            &header(&argv, FAILSMART_OPEN, &[(&message, "error")]),
            FAILSMART_OPEN,
        );
    };
    if let Some(test) = value_of(&["-t", "--test"]) {
        self_test(&argv, &device, &s, &test);
    }
    if has("-a") || has("-x") || has("--all") || has("--xall") {
        // A slow disk or controller: the reading takes this long.
        if let Some(ms) = s["delay_ms"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        read(
            &argv,
            &device,
            &s,
            value_of(&["-n", "--nocheck"]).as_deref(),
        );
    }
    emit(
        &header(&argv, 1, &[("stand-in: give -a, -x or -t", "error")]),
        1,
    );
}

fn scan(argv: &[String]) -> ! {
    let mut devices = Vec::new();
    if let Some(entries) = dir().and_then(|d| std::fs::read_dir(d).ok()) {
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(String::from)
            })
            .collect();
        names.sort();
        for name in names {
            let device = format!("/dev/{name}");
            let Some(s) = scenario(&device) else { continue };
            let kind = kind_of(&s).to_string();
            let protocol = if kind == "nvme" { "NVMe" } else { "ATA" };
            let info = if kind == "nvme" {
                device.clone()
            } else {
                format!("{device} [SAT]")
            };
            devices.push(
                json!({"name": device, "info_name": info, "type": kind, "protocol": protocol}),
            );
        }
    }
    let mut doc = header(argv, 0, &[]);
    if !devices.is_empty() {
        doc["devices"] = Value::Array(devices);
    }
    emit(&doc, 0)
}

/// Tests started so far: `<dir>/<name>.selftests`, one kind per line.
fn tests_path(device: &str) -> Option<PathBuf> {
    Some(dir()?.join(format!("{}.selftests", device.strip_prefix("/dev/")?)))
}

fn self_test(argv: &[String], device: &str, s: &Value, test: &str) -> ! {
    if !["short", "long"].contains(&test) {
        let message = format!("=======> INVALID ARGUMENT TO -t: {test}");
        emit(&header(argv, 1, &[(&message, "error")]), 1);
    }
    let running = running_test(s);
    if s["scenario"] == "test-refused" || running.is_some() {
        let remaining = running.map_or(90, |(_, r)| r);
        let message = if kind_of(s) == "nvme" {
            format!("Can't start self-test without aborting current test ({:2}% completed)\nUse smartctl -X to abort test", 100 - remaining)
        } else {
            format!("Can't start self-test without aborting current test ({remaining}% remaining),\nadd '-t force' option to override, or run 'smartctl -X' to abort test.")
        };
        emit(&header(argv, FAILID, &[(&message, "error")]), FAILID);
    }
    if let Some(path) = tests_path(device) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(file) = file.as_mut() {
            let _ = writeln!(file, "{test}");
        }
    }
    let mut doc = header(argv, 0, &[]);
    doc["device"] = json!({"name": device, "type": kind_of(s)});
    emit(&doc, 0)
}

fn read(argv: &[String], device: &str, s: &Value, nocheck: Option<&str>) -> ! {
    let scenario = s["scenario"].as_str().unwrap_or("healthy-hdd");
    match scenario {
        "standby" if nocheck.is_some_and(|n| n.starts_with("standby")) => {
            let doc = header(
                argv,
                FAILSMART_OPEN,
                &[("Device is in STANDBY mode, exit(2)", "information")],
            );
            emit(&doc, FAILSMART_OPEN);
        }
        "hanging" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            std::process::exit(0);
        }
        "open-failed" => {
            let message = format!("Smartctl open device: {device} failed: Permission denied");
            emit(
                &header(argv, FAILSMART_OPEN, &[(&message, "error")]),
                FAILSMART_OPEN,
            );
        }
        _ => {}
    }
    let (doc, exit) = if scenario.starts_with("nvme") {
        nvme(argv, device, s, scenario)
    } else {
        ata(argv, device, s, scenario)
    };
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let text = match scenario {
        "truncated" => text[..text.len() / 2].to_string(),
        "garbage" => "\u{1b}[0m\u{0}\u{7f}#smartctl?? {{]] 0xDEADBEEF ~~~\n".repeat(20),
        _ => text,
    };
    let _ = writeln!(std::io::stdout(), "{text}");
    let _ = std::io::stdout().flush();
    std::process::exit(exit)
}

/// The self-test log: tests started through the stand-in, newest first.
fn logged_tests(device: &str) -> Vec<String> {
    let text = tests_path(device)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    text.lines().rev().map(String::from).collect()
}

fn ata(argv: &[String], device: &str, s: &Value, scenario: &str) -> (Value, i32) {
    let failing = scenario == "failing";
    let ssd = scenario == "healthy-ssd";
    let hours = number(s, "power_on_hours", 19876);
    let temperature = number(
        s,
        "temperature",
        if scenario == "too-hot" { 65 } else { 36 },
    );
    let pending_default = if scenario == "pending-rising" { 8 } else { 0 };
    let attribute = |id: u64,
                     name: &str,
                     value: u64,
                     thresh: u64,
                     raw: u64,
                     prefail: bool,
                     when: &str| {
        json!({"id": id, "name": name, "value": value, "worst": value, "thresh": thresh, "when_failed": when,
               "flags": {"value": if prefail { 51 } else { 50 }, "string": if prefail { "PO--CK " } else { "-O--CK " },
                         "prefailure": prefail, "updated_online": true, "performance": false,
                         "error_rate": false, "event_count": true, "auto_keep": true},
               "raw": {"value": raw, "string": raw.to_string()}})
    };
    let reallocated = number(s, "reallocated", if failing { 1800 } else { 0 });
    let table = vec![
        attribute(
            5,
            "Reallocated_Sector_Ct",
            if failing { 1 } else { 200 },
            140,
            reallocated,
            true,
            if failing { "now" } else { "" },
        ),
        attribute(9, "Power_On_Hours", 73, 0, hours, false, ""),
        attribute(
            187,
            "Reported_Uncorrect",
            100,
            0,
            number(s, "uncorrectable", 0),
            false,
            "",
        ),
        attribute(
            188,
            "Command_Timeout",
            100,
            0,
            number(s, "timeouts", 0),
            false,
            "",
        ),
        attribute(194, "Temperature_Celsius", 114, 0, temperature, false, ""),
        attribute(
            197,
            "Current_Pending_Sector",
            200,
            0,
            number(s, "pending", pending_default),
            false,
            "",
        ),
        attribute(
            198,
            "Offline_Uncorrectable",
            100,
            0,
            number(s, "offline_uncorrectable", 0),
            false,
            "",
        ),
    ];
    let test_failed = s["self_test_failed"].as_bool().unwrap_or(failing);
    let mut tests: Vec<Value> = logged_tests(device)
        .iter()
        .map(|kind| {
            let (value, name) = if kind == "long" { (2, "Extended offline") } else { (1, "Short offline") };
            let status = if test_failed {
                json!({"value": 121, "string": "Completed: read failure", "passed": false})
            } else {
                json!({"value": 0, "string": "Completed without error", "passed": true})
            };
            json!({"type": {"value": value, "string": name}, "status": status, "lifetime_hours": hours})
        })
        .collect();
    if tests.is_empty() && test_failed {
        tests.push(json!({"type": {"value": 1, "string": "Short offline"},
            "status": {"value": 121, "string": "Completed: read failure", "passed": false}, "lifetime_hours": hours}));
    }
    // The execution status byte: high nibble 0xf while a test runs, low
    // nibble the tens of percent left; the test heads the log meanwhile.
    let execution = match running_test(s) {
        Some((long, remaining)) => {
            let value = 0xf0 | (remaining / 10);
            let (code, name) = if long {
                (2, "Extended offline")
            } else {
                (1, "Short offline")
            };
            tests.insert(
                0,
                json!({"type": {"value": code, "string": name},
                "status": {"value": value, "string": "Self-test routine in progress",
                           "remaining_percent": remaining, "passed": true},
                "lifetime_hours": hours}),
            );
            json!({"value": value, "string": format!("in progress, {remaining}% remaining"),
                   "remaining_percent": remaining})
        }
        None if test_failed => {
            json!({"value": 0x70, "string": "completed with error (read test element)", "passed": false})
        }
        None => json!({"value": 0, "string": "completed without error", "passed": true}),
    };
    let mut exit = 0;
    if failing {
        exit |= FAILSTATUS | FAILATTR;
    }
    if test_failed {
        exit |= FAILLOG_SELFTEST;
    }
    let mut doc = header(argv, exit, &[]);
    let fields = json!({
        "local_time": {"time_t": 1795457808, "asctime": "Mon Nov 23 18:16:48 2026 UTC"},
        "device": {"name": device, "info_name": format!("{device} [SAT]"), "type": kind_of(s), "protocol": "ATA"},
        "model_family": if ssd { "Samsung based SSDs" } else { "Western Digital Red" },
        "model_name": s["model"].as_str().unwrap_or(if ssd { "Samsung SSD 870 EVO 500GB" } else { "WDC WD40EFRX-68N32N0" }),
        "serial_number": s["serial"].as_str().unwrap_or("STANDIN0001"),
        "firmware_version": "82.00A82",
        "user_capacity": {"blocks": 7814037168u64, "bytes": 4000787030016u64},
        "logical_block_size": 512,
        "rotation_rate": if ssd { 0 } else { 5400 },
        "smart_support": {"available": true, "enabled": true},
        "smart_status": {"passed": !failing},
        "ata_smart_data": {"self_test": {"status": execution,
            "polling_minutes": {"short": 2, "extended": 480}}},
        "ata_smart_attributes": {"revision": 16, "table": table},
        "power_on_time": {"hours": hours},
        "power_cycle_count": 112,
        "temperature": {"current": temperature},
        "ata_smart_self_test_log": {"standard": {"revision": 1, "table": tests, "count": tests.len(),
            "error_count_total": u64::from(test_failed), "error_count_outdated": 0}},
    });
    merge(&mut doc, fields);
    (doc, exit)
}

fn nvme(argv: &[String], device: &str, s: &Value, scenario: &str) -> (Value, i32) {
    let critical_warning = number(
        s,
        "critical_warning",
        if scenario == "nvme-critical" { 4 } else { 0 },
    );
    let temperature = number(s, "temperature", 41);
    let hours = number(s, "power_on_hours", 1200);
    let tests: Vec<Value> = logged_tests(device)
        .iter()
        .map(|kind| {
            let (value, name) = if kind == "long" { (2, "Extended") } else { (1, "Short") };
            json!({"self_test_code": {"value": value, "string": name},
                   "self_test_result": {"value": 0, "string": "Completed without error"}, "power_on_hours": hours})
        })
        .collect();
    // smartctl 7.4 on: the test under way and how far it got.
    let mut self_test_log = json!({"current_self_test_operation": {"value": 0, "string": "No self-test in progress"}, "table": tests});
    if let Some((long, remaining)) = running_test(s) {
        let (code, name) = if long {
            (2, "Extended self-test in progress")
        } else {
            (1, "Short self-test in progress")
        };
        self_test_log["current_self_test_operation"] = json!({"value": code, "string": name});
        self_test_log["current_self_test_completion_percent"] = json!(100 - remaining);
    }
    // smartctl's NVMe health check fails on any critical warning bit.
    let exit = if critical_warning != 0 { FAILSTATUS } else { 0 };
    let mut doc = header(argv, exit, &[]);
    let fields = json!({
        "device": {"name": device, "info_name": device, "type": "nvme", "protocol": "NVMe"},
        "model_name": s["model"].as_str().unwrap_or("Samsung SSD 980 1TB"),
        "serial_number": s["serial"].as_str().unwrap_or("S64ANS0T000001"),
        "firmware_version": "1B4QFXO7",
        "smart_support": {"available": true, "enabled": true},
        "smart_status": {"passed": critical_warning == 0, "nvme": {"value": critical_warning}},
        "nvme_composite_temperature_threshold": {"warning": 82, "critical": 85},
        "nvme_smart_health_information_log": {
            "critical_warning": critical_warning, "temperature": temperature,
            "available_spare": 100, "available_spare_threshold": 10,
            "percentage_used": number(s, "percentage_used", 3),
            "data_units_read": 1234567, "data_units_written": 2345678,
            "power_cycles": 80, "power_on_hours": hours, "unsafe_shutdowns": 4,
            "media_errors": number(s, "media_errors", 0), "num_err_log_entries": 0,
        },
        "temperature": {"current": temperature},
        "power_cycle_count": 80,
        "power_on_time": {"hours": hours},
        "nvme_self_test_log": self_test_log,
    });
    merge(&mut doc, fields);
    (doc, exit)
}

fn merge(doc: &mut Value, fields: Value) {
    if let (Some(doc), Value::Object(fields)) = (doc.as_object_mut(), fields) {
        doc.extend(fields);
    }
}
