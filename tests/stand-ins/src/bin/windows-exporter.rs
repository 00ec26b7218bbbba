//! Stand-in for windows_exporter (prometheus-community), which runs on
//! Windows only: `/metrics` in the Prometheus text format with the names,
//! labels and types its documentation gives (`docs/collector.{cpu,
//! logical_disk,memory,os,service,system}.md`, release 0.31) for the
//! collectors obsbox's alerts and dashboard row read, and the exporter's own
//! `windows_exporter_build_info` and `windows_exporter_collector_success`.
//!
//! `windows-exporter --listen 127.0.0.1:0 --state FILE` prints
//! `listening 127.0.0.1:PORT`, then serves until SIGTERM/SIGINT. FILE
//! (JSON, read again for every scrape, so a test fills a disk or stops a
//! service by rewriting it) holds:
//!
//! ```json
//! {"hostname": "WIN-01", "cores": 4, "busy": 0.1,
//!  "memory": {"total": 17179869184, "available": 8589934592},
//!  "volumes": {"C:": {"size": 107374182400, "free": 53687091200}},
//!  "services": {"Spooler": {"state": "running", "start_mode": "auto",
//!                           "display_name": "Print Spooler"}}}
//! ```
//!
//! `busy` (0 to 1) is the share of CPU time not idle from now on: the
//! `windows_cpu_time_total` counters grow by it, per core, between scrapes.

use obsbox_stand_ins::{serve, signals, state_stand_in_start, Request, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A service's possible states and start modes, as the service collector lists them.
const STATES: [&str; 8] = [
    "continue pending",
    "pause pending",
    "paused",
    "running",
    "start pending",
    "stop pending",
    "stopped",
    "unknown",
];
const START_MODES: [&str; 5] = ["auto", "boot", "disabled", "manual", "system"];
const COLLECTORS: [&str; 6] = ["cpu", "logical_disk", "memory", "os", "service", "system"];

/// CPU seconds per core and mode, grown at each scrape by the time since the last.
struct Cpu {
    last: Instant,
    /// (core, mode) -> seconds.
    seconds: BTreeMap<(usize, &'static str), f64>,
}

struct Exporter {
    state_file: String,
    cpu: Mutex<Cpu>,
    boot_time: u64,
}

/// Prometheus text exposition, one family at a time.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: &Value, key: &str, default: f64) -> f64 {
    v[key].as_f64().unwrap_or(default)
}

impl Exporter {
    fn handle(&self, req: &Request) -> Response {
        if req.path != "/metrics" {
            return Response::not_found();
        }
        let state = std::fs::read_to_string(&self.state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .unwrap_or(Value::Null);
        Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            self.metrics(&state),
        )
    }

    fn metrics(&self, state: &Value) -> String {
        let mut t = Text(String::new());
        t.family(
            "windows_exporter_build_info",
            "gauge",
            "A metric with a constant '1' value labeled by version, revision, branch, goversion from which windows_exporter was built, and the goos and goarch for the build.",
        );
        t.sample(
            "windows_exporter_build_info",
            &[
                ("branch", "standin"),
                ("goarch", "amd64"),
                ("goos", "windows"),
                ("goversion", "go1.24.0"),
                ("revision", "standin"),
                ("tags", "unknown"),
                ("version", "0.31.3-standin"),
            ],
            1.0,
        );
        t.family(
            "windows_exporter_collector_success",
            "gauge",
            "windows_exporter: Whether the collector was successful.",
        );
        for c in COLLECTORS {
            t.sample(
                "windows_exporter_collector_success",
                &[("collector", c)],
                1.0,
            );
        }
        self.cpu(state, &mut t);
        volumes(state, &mut t);
        memory(state, &mut t);
        os(state, &mut t);
        services(state, &mut t);
        t.family(
            "windows_system_boot_time_timestamp",
            "gauge",
            "Unix timestamp of system boot time",
        );
        t.sample(
            "windows_system_boot_time_timestamp",
            &[],
            self.boot_time as f64,
        );
        t.0
    }

    fn cpu(&self, state: &Value, t: &mut Text) {
        let cores = state["cores"].as_u64().unwrap_or(2).clamp(1, 256) as usize;
        let busy = number(state, "busy", 0.1).clamp(0.0, 1.0);
        let mut cpu = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = cpu.last.elapsed().as_secs_f64();
        cpu.last = Instant::now();
        // Busy time split as a desktop's roughly is.
        let shares = [
            ("dpc", 0.01 * busy),
            ("idle", 1.0 - busy),
            ("interrupt", 0.01 * busy),
            ("privileged", 0.28 * busy),
            ("user", 0.7 * busy),
        ];
        t.family(
            "windows_cpu_time_total",
            "counter",
            "Time that processor spent in different modes (dpc, idle, interrupt, privileged, user)",
        );
        for core in 0..cores {
            let label = format!("0,{core}");
            for (mode, share) in shares {
                let total = cpu.seconds.entry((core, mode)).or_insert(0.0);
                *total += elapsed * share;
                t.sample(
                    "windows_cpu_time_total",
                    &[("core", &label), ("mode", mode)],
                    *total,
                );
            }
        }
    }
}

fn volumes(state: &Value, t: &mut Text) {
    let volumes = state["volumes"].as_object().cloned().unwrap_or_default();
    for (name, help, key) in [
        (
            "windows_logical_disk_free_bytes",
            "Free space in bytes, updates every 10-15 min (LogicalDisk.PercentFreeSpace)",
            "free",
        ),
        (
            "windows_logical_disk_size_bytes",
            "Total space in bytes, updates every 10-15 min (LogicalDisk.PercentFreeSpace_Base)",
            "size",
        ),
    ] {
        t.family(name, "gauge", help);
        for (volume, v) in &volumes {
            t.sample(name, &[("volume", volume)], number(v, key, 0.0));
        }
    }
}

fn memory(state: &Value, t: &mut Text) {
    let m = &state["memory"];
    let total = number(m, "total", 16.0 * 1024.0 * 1024.0 * 1024.0);
    let available = number(m, "available", total / 2.0);
    for (name, help, value) in [
        (
            "windows_memory_available_bytes",
            "The amount of physical memory immediately available for allocation to a process or for system use. It is equal to the sum of memory assigned to the standby (cached), free and zero page lists (AvailableBytes)",
            available,
        ),
        (
            "windows_memory_physical_free_bytes",
            "Bytes of physical memory currently unused and available",
            available / 2.0,
        ),
        (
            "windows_memory_physical_total_bytes",
            "Total bytes of physical memory available to the operating system",
            total,
        ),
    ] {
        t.family(name, "gauge", help);
        t.sample(name, &[], value);
    }
}

fn os(state: &Value, t: &mut Text) {
    let hostname = state["hostname"].as_str().unwrap_or("WIN-STANDIN");
    t.family(
        "windows_os_hostname",
        "gauge",
        "Labelled system hostname information as provided by ComputerSystem.DNSHostName and ComputerSystem.Domain",
    );
    t.sample(
        "windows_os_hostname",
        &[
            ("domain", "WORKGROUP"),
            ("fqdn", hostname),
            ("hostname", hostname),
        ],
        1.0,
    );
    t.family(
        "windows_os_info",
        "gauge",
        "Contains full product name & version in labels. Note that the major_version for Windows 11 is \"10\"; a build number greater than 22000 represents Windows 11.",
    );
    t.sample(
        "windows_os_info",
        &[
            ("build_number", "20348"),
            ("installation_type", "Server"),
            ("major_version", "10"),
            ("minor_version", "0"),
            ("product", "Windows Server 2022 Standard"),
            ("revision", "2582"),
            ("version", "10.0.20348"),
        ],
        1.0,
    );
}

fn services(state: &Value, t: &mut Text) {
    let services = state["services"].as_object().cloned().unwrap_or_default();
    t.family(
        "windows_service_info",
        "gauge",
        "A metric with a constant '1' value labeled with service information",
    );
    for (name, s) in &services {
        t.sample(
            "windows_service_info",
            &[
                ("display_name", s["display_name"].as_str().unwrap_or(name)),
                ("name", name),
                (
                    "path_name",
                    "C:\\WINDOWS\\System32\\svchost.exe -k netsvcs -p",
                ),
                ("run_as", "LocalSystem"),
            ],
            1.0,
        );
    }
    for (family, help, label, values, key, default) in [
        (
            "windows_service_start_mode",
            "The start mode of the service (StartMode)",
            "start_mode",
            &START_MODES[..],
            "start_mode",
            "manual",
        ),
        (
            "windows_service_state",
            "The state of the service (State)",
            "state",
            &STATES[..],
            "state",
            "stopped",
        ),
    ] {
        t.family(family, "gauge", help);
        for (name, s) in &services {
            let current = s[key].as_str().unwrap_or(default);
            for value in values {
                let one = if *value == current { 1.0 } else { 0.0 };
                t.sample(family, &[("name", name), (label, value)], one);
            }
        }
    }
}

fn main() {
    let (listener, addr, state_file) = state_stand_in_start("windows-exporter");
    println!("listening {addr}");
    signals::install(&[libc::SIGTERM, libc::SIGINT]);
    let boot_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(86_400))
        .unwrap_or(0);
    let exporter = Arc::new(Exporter {
        state_file,
        cpu: Mutex::new(Cpu {
            last: Instant::now(),
            seconds: BTreeMap::new(),
        }),
        boot_time,
    });
    let code = serve(
        listener,
        Arc::new(move |req: &Request| exporter.handle(req)),
        || signals::take().map(|_| 0),
    );
    std::process::exit(code);
}
