//! Typed settings: one serde struct per section, defaults in one place, unknown
//! fields refused. [`Settings::validate`] reports every problem at once; code
//! downstream trusts a validated value.

mod alerting;
mod log_ingest;
mod loki;
mod power;
mod targets;
mod time;
mod upstream;
pub mod users;

pub use alerting::{
    default_slos, AlertingSettings, Heartbeat, Indicator, Receiver, ReceiverKind, Slo,
    OBSBOX_RECEIVER,
};
pub use log_ingest::{LogIntakeSettings, SyslogSettings, SPOOL_SEGMENT_BYTES};
pub use loki::LokiSettings;
pub use power::{NutRole, NutServerSettings, NutUser, PowerSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
pub use targets::{ScrapeTarget, TargetKind};
pub use time::TimeSettings;
pub use upstream::{
    http_url, Auth, CentralAlertmanager, LogForward, Peer, RelabelAction, RemoteWrite,
};

/// Every setting obsbox has. Stored section by section in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The box itself.
    pub general: General,
    /// Which built-in children run, where their binaries are and their ports.
    pub services: Services,
    /// Prometheus tuning.
    pub prometheus: PrometheusSettings,
    /// Alertmanager tuning.
    pub alertmanager: AlertmanagerSettings,
    /// Loki tuning.
    pub loki: LokiSettings,
    /// Grafana tuning.
    pub grafana: GrafanaSettings,
    /// How captured child output is kept on disk.
    pub logs: LogSettings,
    /// Extra programs obsbox supervises (exporters, agents), in start order.
    pub children: Vec<ExtraChild>,
    /// Backup jobs and the backup client.
    pub backups: BackupSettings,
    /// Hosts and services the local Prometheus scrapes.
    pub targets: Vec<ScrapeTarget>,
    /// Synthetic checks run by the blackbox exporter.
    pub probes: Vec<ProbeCheck>,
    /// Alert thresholds, receivers, routes and escalation.
    pub alerting: AlertingSettings,
    /// Service level objectives and their error budgets.
    pub slos: Vec<Slo>,
    /// The UPS, the power policy and the NUT server.
    pub power: PowerSettings,
    /// SMART disk health: readings, self-tests, thresholds.
    pub disks: DiskSettings,
    /// The syslog receiver for the LAN.
    pub syslog: SyslogSettings,
    /// The Loki-compatible push endpoint for the LAN.
    pub log_intake: LogIntakeSettings,
    /// The NTP servers of the box's clock.
    pub time: TimeSettings,
    /// Other boxes shown on the Fleet page, read through their own API.
    pub peers: Vec<Peer>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            general: General::default(),
            services: Services::default(),
            prometheus: PrometheusSettings::default(),
            alertmanager: AlertmanagerSettings::default(),
            loki: LokiSettings::default(),
            grafana: GrafanaSettings::default(),
            logs: LogSettings::default(),
            children: Vec::new(),
            backups: BackupSettings::default(),
            targets: Vec::new(),
            probes: Vec::new(),
            alerting: AlertingSettings::default(),
            slos: default_slos(),
            power: PowerSettings::default(),
            disks: DiskSettings::default(),
            syslog: SyslogSettings::default(),
            log_intake: LogIntakeSettings::default(),
            time: TimeSettings::default(),
            peers: Vec::new(),
        }
    }
}

/// A synthetic check: the blackbox exporter probes `target` the `kind` way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCheck {
    /// Unique name, shown as the `probe` label.
    pub name: String,
    pub kind: ProbeKind,
    /// `http(s)://...` for http, `host:port` for tcp, a host for icmp.
    pub target: String,
    /// Extra labels, e.g. `owner` and `service`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How an https probe treats the server's certificate chain.
    #[serde(default)]
    pub tls: ProbeTls,
    /// CA certificate(s), PEM, of a private CA the server's certificate must
    /// lead to, trusted by this probe alone (unset: the system's CAs). An
    /// http probe of an https:// URL, or a tcp probe, which then speaks TLS.
    #[serde(default)]
    pub tls_ca: Option<String>,
}

/// Certificate checking of an https probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeTls {
    /// The chain must lead to a CA the system trusts.
    #[default]
    Verify,
    /// Do not check the chain (self-signed or private-CA certificates):
    /// the probe still reads the certificate's expiry, so
    /// `TLSCertificateExpiresSoon` works for it.
    ExpiryOnly,
}

impl ProbeCheck {
    /// The blackbox exporter module this probe uses: a probe trusting a CA
    /// of its own has a module of its own (`http_2xx_ca_<name>`,
    /// `tcp_tls_ca_<name>`), since the CA file is part of the module.
    pub fn module(&self) -> String {
        match (self.kind, self.tls, &self.tls_ca) {
            (ProbeKind::Http, _, Some(_)) => format!("http_2xx_ca_{}", self.name),
            (ProbeKind::Tcp, _, Some(_)) => format!("tcp_tls_ca_{}", self.name),
            (ProbeKind::Http, ProbeTls::ExpiryOnly, _) => "http_2xx_expiry_only".into(),
            (kind, ..) => kind.module().into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// A 2xx answer; over https also the certificate's expiry.
    Http,
    /// A TCP connection.
    Tcp,
    /// An ICMP echo.
    Icmp,
}

impl ProbeKind {
    /// The blackbox exporter module obsbox renders for this kind.
    pub fn module(self) -> &'static str {
        match self {
            ProbeKind::Http => "http_2xx",
            ProbeKind::Tcp => "tcp_connect",
            ProbeKind::Icmp => "icmp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// Path of `proxmox-backup-client`; when unset it is looked up on PATH.
    pub client: Option<String>,
    /// Path of `restic`; when unset it is looked up on PATH.
    pub restic: Option<String>,
    /// When each job's newest snapshot is verified (calendar event).
    pub verify_schedule: String,
    /// When each job's newest snapshot is restored and checked (calendar event).
    pub drill_schedule: String,
    /// Time a halted backup gets between SIGINT and SIGKILL.
    pub halt_grace: String,
    /// No longer used (each job has its own `rpo`); accepted so that
    /// settings saved by an older obsbox still load, and never saved again.
    #[serde(rename = "rpo", skip_serializing)]
    pub former_rpo: Option<String>,
    /// Recovery time objective of jobs that set none: alert when a drill's
    /// restore took longer.
    pub rto: String,
    /// How often the PBS servers of jobs with an API token are asked for
    /// their datastore's health and their own jobs (1s to 1d).
    pub server_interval: String,
    /// Whether the own-state backup (a job's `appliance_state`) also holds
    /// the backup jobs' own credentials (`secrets/backup/`: passwords, key
    /// files, key passphrases, API tokens). Off: they must be kept off the
    /// box by the user. On: whoever can read that backup can read every
    /// repository.
    pub state_includes_credentials: bool,
    pub jobs: Vec<BackupJob>,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            client: None,
            restic: None,
            verify_schedule: "weekly".into(),
            drill_schedule: "monthly".into(),
            halt_grace: "30s".into(),
            former_rpo: None,
            rto: "2h".into(),
            server_interval: "5m".into(),
            state_includes_credentials: false,
            jobs: Vec::new(),
        }
    }
}

/// What to back up, where to and when. Its secrets are kept apart (see `secrets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupJob {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// Directories, each stored as a pxar archive named after its last component.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Also back up obsbox's own state, taken consistently (the settings
    /// database through SQLite's online backup).
    #[serde(default)]
    pub appliance_state: bool,
    /// Which program makes the backups.
    #[serde(default)]
    pub backend: BackupBackend,
    /// PBS: `user@realm@host[:port]:datastore` or `user@realm!token@host:datastore`;
    /// restic: an absolute path or a `sftp:`, `rest:`, `s3:`, ... location.
    pub repository: String,
    /// Namespace in the datastore.
    #[serde(default)]
    pub namespace: Option<String>,
    /// SHA-256 fingerprint of the server certificate, for self-signed servers.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Backup ID of the snapshots: the job's own group (`host/<backup_id>`
    /// in PBS; `--host` with the tags `obsbox` and `job=<name>` in restic).
    /// Defaults to `<host name>-<job name>`, so that no two jobs share a
    /// group and one job's prune never touches another's snapshots.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// Calendar event, as PBS and systemd write it (`daily`, `mon..fri 02:00`).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Which snapshots pruning keeps.
    #[serde(default)]
    pub retention: crate::backup::Retention,
    /// A disabled job keeps its history but never runs by schedule.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Excludes, file systems, bandwidth, its own verify and drill schedules.
    #[serde(default)]
    pub options: crate::backup::JobOptions,
    /// Recovery point objective: alert when the job's last good backup (or,
    /// before its first, its creation) is older. Defaults to one and a half
    /// times the longest gap between two slots of its schedule.
    #[serde(default)]
    pub rpo: Option<String>,
    /// Recovery time objective: alert when a drill's restore took longer.
    /// Defaults to `backups.rto`.
    #[serde(default)]
    pub rto: Option<String>,
    /// Those of `paths` whose mount points are backed up too. Elsewhere a
    /// directory on another file system is left out, and the run says so.
    #[serde(default)]
    pub include_mount_points: Vec<String>,
    /// A second, off-site destination (restic only): the job's snapshots
    /// copied there with `restic copy`, after each backup or on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<crate::backup::CopySettings>,
}

impl BackupJob {
    /// Whether backing up `path` goes into the file systems mounted below
    /// it: for every path when the job does not keep to one file system,
    /// else for the paths listed in `include_mount_points`.
    pub fn includes_mount_points(&self, path: &std::path::Path) -> bool {
        !self.options.one_file_system
            || self
                .include_mount_points
                .iter()
                .any(|p| std::path::Path::new(p) == path)
    }

    /// The backup ID this job's snapshots are made under, on the box called `hostname`.
    pub fn effective_backup_id(&self, hostname: &str) -> String {
        self.backup_id
            .clone()
            .unwrap_or_else(|| format!("{hostname}-{}", self.name))
    }
}

/// The program behind a backup job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupBackend {
    /// `proxmox-backup-client`, to a Proxmox Backup Server.
    #[default]
    Pbs,
    /// `restic`, to any restic repository.
    Restic,
}

fn default_schedule() -> String {
    "daily".into()
}

/// SMART disk health, read with `smartctl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskSettings {
    /// Read the disks' SMART data at all.
    pub enabled: bool,
    /// Path of `smartctl`; when unset it is looked up on PATH.
    pub smartctl: Option<String>,
    /// How often every disk is read (a sleeping disk is not woken).
    pub interval: String,
    /// Longest one `smartctl` run may take before it is killed and reported.
    pub timeout: String,
    /// °C at which a disk is too warm (NVMe disks use their own warning
    /// threshold when they report one).
    pub temperature_warning: i64,
    /// °C at which a disk is too hot: backups that write to it halt.
    pub temperature_critical: i64,
    /// When every disk runs a short self-test (calendar event; "" never).
    pub short_test: String,
    /// When every disk runs a long self-test (calendar event; "" never).
    pub long_test: String,
    /// Devices never read, as the scan names them (`/dev/sdb`) or by their
    /// short name (`sdb`).
    pub ignore: Vec<String>,
}

impl Default for DiskSettings {
    fn default() -> Self {
        DiskSettings {
            enabled: true,
            smartctl: None,
            interval: "10m".into(),
            timeout: "60s".into(),
            temperature_warning: 50,
            temperature_critical: 60,
            short_test: "03:00".into(),
            long_test: "sun 04:00".into(),
            ignore: Vec::new(),
        }
    }
}

impl DiskSettings {
    fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        for (field, value, range) in [
            ("disks.interval", &self.interval, secs(10)..=secs(86_400)),
            ("disks.timeout", &self.timeout, secs(1)..=secs(3_600)),
        ] {
            duration_in(field, value, range, bad);
        }
        for (field, value) in [
            ("disks.temperature_warning", self.temperature_warning),
            ("disks.temperature_critical", self.temperature_critical),
        ] {
            if !(20..=100).contains(&value) {
                bad(field.into(), "must be between 20 and 100 (°C)".into());
            }
        }
        if self.temperature_warning >= self.temperature_critical {
            bad(
                "disks.temperature_warning".into(),
                "must be below temperature_critical".into(),
            );
        }
        for (field, event) in [
            ("disks.short_test", &self.short_test),
            ("disks.long_test", &self.long_test),
        ] {
            if event.is_empty() {
                continue;
            }
            if let Err(e) = crate::backup::CalendarEvent::parse(event) {
                bad(field.into(), e.to_string());
            }
        }
        if let Some(smartctl) = &self.smartctl {
            if smartctl.trim().is_empty() {
                bad(
                    "disks.smartctl".into(),
                    "is empty; leave it unset to look on PATH".into(),
                );
            }
        }
        for device in &self.ignore {
            let name = device.strip_prefix("/dev/").unwrap_or(device);
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-,.".contains(&b))
            {
                bad(
                    "disks.ignore".into(),
                    format!("'{device}' is not a device name such as /dev/sdb or sdb"),
                );
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct General {
    /// Host name shown in the UI and used as the `obsbox_host` external label.
    pub hostname: String,
    /// Unix user the built-in children run as when obsbox runs as root
    /// ("auto": `obsbox` if that user exists, else `nobody`; "" keeps root).
    pub child_user: String,
    /// IANA time zone for schedules and the UI ("" uses the system's zone).
    pub timezone: String,
}

impl Default for General {
    fn default() -> Self {
        General {
            hostname: "obsbox".into(),
            child_user: "auto".into(),
            timezone: String::new(),
        }
    }
}

impl General {
    /// The zone schedules and retention periods are reckoned in.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        if self.timezone.is_empty() {
            return jiff::tz::TimeZone::system();
        }
        jiff::tz::TimeZone::get(&self.timezone).unwrap_or_else(|_| jiff::tz::TimeZone::system())
    }
}

/// Settings shared by every built-in child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Whether obsbox runs this child at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Path of the program; when unset the usual names are looked up on PATH.
    #[serde(default)]
    pub binary: Option<String>,
    /// Loopback port the child listens on.
    pub port: u16,
    /// The most memory (bytes) the child and everything it starts may use
    /// (its cgroup's `memory.max`; 16 MiB to 1 TiB); unset means no limit.
    /// Applied only where obsbox has the cgroup v2 memory controller.
    #[serde(default)]
    pub memory_max_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Service {
    fn on_port(port: u16) -> Self {
        Service {
            enabled: true,
            binary: None,
            port,
            memory_max_bytes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Services {
    pub prometheus: Service,
    pub alertmanager: Service,
    pub node_exporter: Service,
    pub loki: Service,
    pub grafana: Service,
    /// The Prometheus blackbox exporter, which runs the synthetic checks.
    pub blackbox: Service,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            prometheus: Service::on_port(9090),
            alertmanager: Service::on_port(9093),
            node_exporter: Service::on_port(9100),
            loki: Service::on_port(3100),
            grafana: Service::on_port(3000),
            blackbox: Service::on_port(9115),
        }
    }
}

impl Services {
    /// The built-in services by name, in no particular order.
    pub fn by_name(&self) -> [(&'static str, &Service); 6] {
        [
            ("prometheus", &self.prometheus),
            ("alertmanager", &self.alertmanager),
            ("node_exporter", &self.node_exporter),
            ("loki", &self.loki),
            ("grafana", &self.grafana),
            ("blackbox", &self.blackbox),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusSettings {
    /// How often targets are scraped (Prometheus duration, e.g. `15s`).
    pub scrape_interval: String,
    /// How often rules are evaluated.
    pub evaluation_interval: String,
    /// How long samples are kept.
    pub retention: String,
    /// Labels added to every series and alert leaving this Prometheus, such
    /// as `site` (the box's own name is always there as `obsbox_host`).
    pub external_labels: BTreeMap<String, String>,
    /// Remote storages every sample is also sent to.
    pub remote_write: Vec<RemoteWrite>,
    /// Alertmanagers every alert is also sent to, beside the box's own.
    pub alertmanagers: Vec<CentralAlertmanager>,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            scrape_interval: "15s".into(),
            evaluation_interval: "15s".into(),
            retention: "15d".into(),
            external_labels: BTreeMap::new(),
            remote_write: Vec::new(),
            alertmanagers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerSettings {
    /// How long an alert without updates stays firing.
    pub resolve_timeout: String,
    /// Wait before the first notification of a new group.
    pub group_wait: String,
    /// Wait before notifying about new alerts in a group already notified.
    pub group_interval: String,
    /// Wait before repeating a notification that was already sent.
    pub repeat_interval: String,
}

impl Default for AlertmanagerSettings {
    fn default() -> Self {
        AlertmanagerSettings {
            resolve_timeout: "5m".into(),
            group_wait: "30s".into(),
            group_interval: "5m".into(),
            repeat_interval: "4h".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaSettings {
    /// Grafana's home (its `conf/defaults.ini` and `public/` live there).
    pub homepath: String,
}

impl Default for GrafanaSettings {
    fn default() -> Self {
        GrafanaSettings {
            homepath: "/usr/share/grafana".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A child's current log file is rotated (and compressed) at this size.
    pub segment_bytes: u64,
    /// Compressed segments kept per child; older ones are deleted.
    pub keep_segments: u32,
    /// Bytes of recent output kept in memory per child for the live view.
    pub ring_bytes: u32,
    /// The shipper sends a batch to Loki once it holds this many bytes of
    /// lines (4096 to 4194304).
    pub batch_bytes: u32,
    /// ...or once its first line has waited this many milliseconds (100 to 60000).
    pub batch_wait_ms: u32,
    /// Central Lokis the same lines are forwarded to, each at its own pace.
    pub forward: Vec<LogForward>,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            segment_bytes: 16 << 20,
            keep_segments: 8,
            ring_bytes: 64 << 10,
            batch_bytes: 1 << 20,
            batch_wait_ms: 1000,
            forward: Vec::new(),
        }
    }
}

/// A program the user asked obsbox to supervise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraChild {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// Program and arguments; the program is looked up on PATH if not absolute.
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are stored secrets (variable →
    /// the secret's name in the store): read when the child starts, never
    /// kept in the settings, shown or logged. A missing secret keeps the
    /// child from starting.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Stored secrets given to the child as files (file name → the
    /// secret's name), in `secrets/` under its working directory, 0600 and
    /// owned by its user.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_files: BTreeMap<String, String>,
    /// Children that must be ready before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How readiness is checked; none means ready once started.
    #[serde(default)]
    pub readiness: Readiness,
    /// Unix user to run as (when obsbox is root); unset keeps obsbox's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Signal that asks the child to stop: TERM, INT, QUIT, HUP, USR1 or USR2.
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    /// Time between the stop signal and SIGKILL to the child's process group
    /// (and its cgroup, where it has one).
    #[serde(default = "default_grace")]
    pub stop_grace: String,
    /// The most memory (bytes) the child and everything it starts may use
    /// (its cgroup's `memory.max`; 16 MiB to 1 TiB); unset means no limit.
    /// Applied only where obsbox has the cgroup v2 memory controller.
    #[serde(default)]
    pub memory_max_bytes: Option<u64>,
    /// How quickly it is restarted after it exits; unset fields keep the
    /// project's defaults (those of the built-in children).
    #[serde(default)]
    pub restart: RestartSettings,
}

/// An extra child's restart policy. A run shorter than 1 s always backs
/// off, starting at 1 s and doubling; these set when exits count as a crash
/// loop and how long the backoff may grow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSettings {
    /// Exits within `crash_loop_window_s` that make a crash loop (and back
    /// off even after runs longer than 1 s); 0 turns crash-loop detection
    /// off. 0 to 1000; default 5.
    pub crash_loop_exits: u32,
    /// The window exits are counted over, in seconds; a run longer than it
    /// clears the child's record. 1 to 86400; default 60.
    pub crash_loop_window_s: u32,
    /// The longest wait between two launches of a failing child, in seconds.
    /// 1 to 86400; default 60.
    pub backoff_max_s: u32,
}

impl Default for RestartSettings {
    fn default() -> Self {
        // The supervisor's policy is where the defaults live.
        let policy = crate::supervisor::RestartPolicy::default();
        RestartSettings {
            crash_loop_exits: policy.crash_loop_exits as u32,
            crash_loop_window_s: policy.crash_loop_window.as_secs() as u32,
            backoff_max_s: policy.max_backoff.as_secs() as u32,
        }
    }
}

impl RestartSettings {
    fn validate(&self, at: &dyn Fn(&str) -> String, bad: &mut dyn FnMut(String, String)) {
        let ranges = [
            ("restart.crash_loop_exits", self.crash_loop_exits, 0..=1000),
            (
                "restart.crash_loop_window_s",
                self.crash_loop_window_s,
                1..=86_400,
            ),
            ("restart.backoff_max_s", self.backoff_max_s, 1..=86_400),
        ];
        for (field, value, range) in ranges {
            if !range.contains(&value) {
                bad(
                    at(field),
                    format!("{value} is outside {}..={}", range.start(), range.end()),
                );
            }
        }
    }
}

/// The range `memory_max_bytes` may take: below 16 MiB no child of obsbox
/// starts, above 1 TiB is a typo.
pub const MEMORY_MAX_RANGE: std::ops::RangeInclusive<u64> = 16 << 20..=1 << 40;

fn memory_max_problem(value: Option<u64>) -> Option<String> {
    value.filter(|v| !MEMORY_MAX_RANGE.contains(v)).map(|v| {
        format!(
            "{v} is outside {}..={} bytes (16 MiB to 1 TiB)",
            MEMORY_MAX_RANGE.start(),
            MEMORY_MAX_RANGE.end()
        )
    })
}

fn default_stop_signal() -> String {
    "TERM".into()
}

/// The signals a child may ask to be stopped with, by name.
pub fn stop_signal(name: &str) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal::*;
    let name = name.strip_prefix("SIG").unwrap_or(name);
    [
        ("TERM", SIGTERM),
        ("INT", SIGINT),
        ("QUIT", SIGQUIT),
        ("HUP", SIGHUP),
        ("USR1", SIGUSR1),
        ("USR2", SIGUSR2),
    ]
    .into_iter()
    .find_map(|(n, sig)| (n == name).then_some(sig))
}

fn default_grace() -> String {
    "10s".into()
}

/// How the supervisor knows a child is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Readiness {
    /// Ready as soon as it has been started.
    #[default]
    None,
    /// Ready when `GET http://127.0.0.1:<port><path>` answers 2xx.
    Http { port: u16, path: String },
    /// Ready when a TCP connection to 127.0.0.1:<port> succeeds.
    Tcp { port: u16 },
}

/// One problem found in a settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path of the setting, e.g. `prometheus.scrape_interval`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The names of the sections, as stored and as used in `/api/settings/{section}`.
pub const SECTIONS: &[&str] = &[
    "general",
    "services",
    "prometheus",
    "alertmanager",
    "loki",
    "grafana",
    "logs",
    "children",
    "backups",
    "targets",
    "probes",
    "alerting",
    "slos",
    "power",
    "disks",
    "syslog",
    "log_intake",
    "time",
    "peers",
];

/// Names the built-in children take; extra children may not reuse them.
pub const BUILTIN_NAMES: &[&str] = &[
    "prometheus",
    "alertmanager",
    "node_exporter",
    "loki",
    "grafana",
    "blackbox",
    "ntpd",
];

/// What the running obsbox holds that settings must not clash with: the
/// ports it listens on itself, each with what listens there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved {
    pub ports: Vec<(u16, String)>,
}

impl Settings {
    /// Every problem in these settings; empty when they are valid.
    pub fn validate(&self) -> Vec<Problem> {
        self.validate_with(&Reserved::default())
    }

    /// Every problem in these settings on a box that already holds `reserved`.
    pub fn validate_with(&self, reserved: &Reserved) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |field: String, message: String| problems.push(Problem { field, message });

        if !is_hostname(&self.general.hostname) {
            bad(
                "general.hostname".into(),
                "must be 1-63 letters, digits or '-', not starting or ending with '-'".into(),
            );
        }
        if !self.general.timezone.is_empty()
            && jiff::tz::TimeZone::get(&self.general.timezone).is_err()
        {
            bad(
                "general.timezone".into(),
                format!("'{}' is not a known time zone", self.general.timezone),
            );
        }
        match self.general.child_user.as_str() {
            "" | "auto" => {}
            name if users::lookup(name).is_none() => bad(
                "general.child_user".into(),
                format!(
                    "no user '{name}' in /etc/passwd (\"auto\" picks obsbox or nobody; \"\" keeps root)"
                ),
            ),
            _ => {}
        }
        let (s, m, h, d) = (1, 60, 3_600, 86_400);
        let durations = [
            (
                "prometheus.scrape_interval",
                &self.prometheus.scrape_interval,
                (s, h),
            ),
            (
                "prometheus.evaluation_interval",
                &self.prometheus.evaluation_interval,
                (s, h),
            ),
            (
                "prometheus.retention",
                &self.prometheus.retention,
                (2 * h, 3650 * d),
            ),
            (
                "alertmanager.resolve_timeout",
                &self.alertmanager.resolve_timeout,
                (10 * s, d),
            ),
            (
                "alertmanager.group_wait",
                &self.alertmanager.group_wait,
                (0, h),
            ),
            // 0s passes here: Alertmanager's own checker refuses it.
            (
                "alertmanager.group_interval",
                &self.alertmanager.group_interval,
                (0, d),
            ),
            (
                "alertmanager.repeat_interval",
                &self.alertmanager.repeat_interval,
                (m, 30 * d),
            ),
        ];
        for (field, value, (least, most)) in durations {
            duration_in(field, value, secs(least)..=secs(most), &mut bad);
        }
        for name in self.prometheus.external_labels.keys() {
            if !is_label_name(name) {
                bad(
                    format!("prometheus.external_labels.{name}"),
                    "a label name is letters, digits and '_', not starting with a digit or '__'"
                        .into(),
                );
            }
        }

        let mut ports: BTreeMap<u16, String> = reserved.ports.iter().cloned().collect();
        let mut claim = |port: u16, owner: String, bad: &mut dyn FnMut(String, String)| {
            if port == 0 {
                bad(owner.clone(), "port 0 is not a port".into());
            } else if let Some(other) = ports.insert(port, owner.clone()) {
                bad(owner, format!("port {port} is already used by {other}"));
            }
        };
        for (name, service) in self.services.by_name() {
            if service.enabled {
                claim(service.port, format!("services.{name}.port"), &mut bad);
            }
            if let Some(problem) = memory_max_problem(service.memory_max_bytes) {
                bad(format!("services.{name}.memory_max_bytes"), problem);
            }
            if let Some(binary) = &service.binary {
                if binary.trim().is_empty() {
                    bad(
                        format!("services.{name}.binary"),
                        "is empty; leave it unset to look on PATH".into(),
                    );
                }
            }
        }
        if self.services.loki.enabled {
            claim(self.loki.grpc_port, "loki.grpc_port".into(), &mut bad);
        }

        if !(64 << 10..=1 << 30).contains(&self.logs.segment_bytes) {
            bad(
                "logs.segment_bytes".into(),
                "must be between 65536 and 1073741824".into(),
            );
        }
        if !(1..=1000).contains(&self.logs.keep_segments) {
            bad(
                "logs.keep_segments".into(),
                "must be between 1 and 1000".into(),
            );
        }
        if !(1024..=16 << 20).contains(&self.logs.ring_bytes) {
            bad(
                "logs.ring_bytes".into(),
                "must be between 1024 and 16777216".into(),
            );
        }
        if !(4096..=4 << 20).contains(&self.logs.batch_bytes) {
            bad(
                "logs.batch_bytes".into(),
                "must be between 4096 and 4194304".into(),
            );
        }
        if !(100..=60_000).contains(&self.logs.batch_wait_ms) {
            bad(
                "logs.batch_wait_ms".into(),
                "must be between 100 and 60000".into(),
            );
        }

        let mut names: Vec<&str> = BUILTIN_NAMES.to_vec();
        // obsbox's own log is kept beside the children's, under this name.
        names.push(crate::logs::OWN_NAME);
        for (i, child) in self.children.iter().enumerate() {
            let at = |field: &str| format!("children[{i}].{field}");
            if let Some(problem) = name_problem(&child.name, &mut names) {
                bad(at("name"), problem);
            }
            if child.command.first().is_none_or(|p| p.trim().is_empty()) {
                bad(at("command"), "needs at least the program".into());
            }
            if stop_signal(&child.stop_signal).is_none() {
                bad(
                    at("stop_signal"),
                    format!(
                        "'{}' is not one of TERM, INT, QUIT, HUP, USR1, USR2",
                        child.stop_signal
                    ),
                );
            }
            duration_in(
                &at("stop_grace"),
                &child.stop_grace,
                Duration::ZERO..=secs(600),
                &mut bad,
            );
            if let Some(user) = &child.user {
                if users::lookup(user).is_none() {
                    bad(at("user"), format!("no user '{user}' in /etc/passwd"));
                }
            }
            if let Some(problem) = memory_max_problem(child.memory_max_bytes) {
                bad(at("memory_max_bytes"), problem);
            }
            child.restart.validate(&at, &mut bad);
            for (field, keys) in [("env", &child.env), ("secret_env", &child.secret_env)] {
                for key in keys.keys() {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        bad(
                            at(field),
                            format!("'{key}' is not an environment variable name"),
                        );
                    }
                }
            }
            for (var, secret) in &child.secret_env {
                if child.env.contains_key(var) {
                    bad(at("secret_env"), format!("'{var}' is also in env"));
                }
                if !is_secret_name(secret) {
                    bad(at("secret_env"), format!("'{secret}' is not a secret name"));
                }
            }
            for (file, secret) in &child.secret_files {
                if !is_child_name(file.replace('.', "_").as_str()) {
                    bad(
                        at("secret_files"),
                        format!("'{file}' is not a file name (letters, digits, '.', '-', '_')"),
                    );
                }
                if !is_secret_name(secret) {
                    bad(
                        at("secret_files"),
                        format!("'{secret}' is not a secret name"),
                    );
                }
            }
            match &child.readiness {
                Readiness::Http { port, path } if *port == 0 || !path.starts_with('/') => bad(
                    at("readiness"),
                    "needs a non-zero port and a path starting with '/'".into(),
                ),
                Readiness::Tcp { port } if *port == 0 => {
                    bad(at("readiness"), "needs a non-zero port".into())
                }
                _ => {}
            }
            // A child that would listen where obsbox itself does.
            if let Readiness::Http { port, .. } | Readiness::Tcp { port } = &child.readiness {
                if let Some((_, what)) = reserved.ports.iter().find(|(p, _)| p == port) {
                    bad(
                        at("readiness"),
                        format!("port {port} is already used by {what}"),
                    );
                }
            }
        }
        self.loki.validate(&mut bad);
        self.backups.validate(&mut bad);
        validate_backup_groups(&self.backups.jobs, &self.general.hostname, &mut bad);
        targets::validate_targets(&self.targets, self.services.blackbox.enabled, &mut bad);
        validate_probes(&self.probes, &mut bad);
        self.alerting.validate(&mut bad);
        alerting::validate_slos(&self.slos, &mut bad);
        self.power.validate(&mut bad);
        self.disks.validate(&mut bad);
        self.syslog.validate(&mut bad);
        self.log_intake.validate(&mut bad);
        self.time.validate(&mut bad);
        upstream::validate_remote_write(&self.prometheus.remote_write, &mut bad);
        upstream::validate_alertmanagers(&self.prometheus.alertmanagers, &mut bad);
        upstream::validate_peers(&self.peers, &mut bad);
        upstream::validate_log_forwards(&self.logs.forward, &mut bad);
        for (i, child) in self.children.iter().enumerate() {
            for dep in &child.depends_on {
                if dep == &child.name || !names.contains(&dep.as_str()) {
                    bad(
                        format!("children[{i}].depends_on"),
                        format!("'{dep}' is not another child"),
                    );
                }
            }
        }
        problems
    }
}

impl BackupSettings {
    fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        for (field, event) in [
            ("backups.verify_schedule", &self.verify_schedule),
            ("backups.drill_schedule", &self.drill_schedule),
        ] {
            if let Err(e) = crate::backup::CalendarEvent::parse(event) {
                bad(field.into(), e.to_string());
            }
        }
        for (field, value, range) in [
            ("backups.halt_grace", &self.halt_grace, secs(1)..=secs(600)),
            ("backups.rto", &self.rto, secs(60)..=secs(7 * 86_400)),
            (
                "backups.server_interval",
                &self.server_interval,
                secs(1)..=secs(86_400),
            ),
        ] {
            duration_in(field, value, range, bad);
        }
        let mut names = Vec::new();
        for (i, job) in self.jobs.iter().enumerate() {
            let mut at =
                |field: &str, message: String| bad(format!("backups.jobs[{i}].{field}"), message);
            if let Some(problem) = name_problem(&job.name, &mut names) {
                at("name", problem);
            }
            if job.paths.is_empty() && !job.appliance_state {
                at(
                    "paths",
                    "name at least one directory, or back up the appliance state".into(),
                );
            }
            let mut archives = Vec::new();
            for path in &job.paths {
                match crate::backup::archive_name(path) {
                    Some(archive) if archives.contains(&archive) => at(
                        "paths",
                        format!("two paths would both be stored as '{archive}.pxar'"),
                    ),
                    Some(archive) => archives.push(archive),
                    None => at(
                        "paths",
                        format!("'{path}' is not an absolute directory path"),
                    ),
                }
            }
            let repository = match job.backend {
                BackupBackend::Pbs => crate::backup::Repository::parse(&job.repository).map(drop),
                BackupBackend::Restic => crate::backup::Repository::parse_restic(&job.repository),
            };
            if let Err(e) = repository {
                at("repository", e);
            }
            if job.backend == BackupBackend::Restic
                && (job.namespace.is_some() || job.fingerprint.is_some())
            {
                at(
                    "backend",
                    "namespace and fingerprint are PBS settings; restic has neither".into(),
                );
            }
            if let Some(ns) = &job.namespace {
                if ns.split('/').any(|part| !is_child_name(part)) || ns.split('/').count() > 7 {
                    at(
                        "namespace",
                        "is up to 7 levels of letters, digits, '-' or '_' separated by '/'".into(),
                    );
                }
            }
            if let Some(fp) = &job.fingerprint {
                let hex: String = fp.chars().filter(|c| *c != ':').collect();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    at(
                        "fingerprint",
                        "is a SHA-256 fingerprint: 32 hex byte pairs, colons optional".into(),
                    );
                }
            }
            if let Some(id) = &job.backup_id {
                if !is_child_name(id) {
                    at(
                        "backup_id",
                        "must be 1-40 letters, digits, '-' or '_'".into(),
                    );
                }
            }
            if let Err(e) = crate::backup::CalendarEvent::parse(&job.schedule) {
                at("schedule", e.to_string());
            }
            for problem in job.retention.validate() {
                at("retention", problem);
            }
            for (field, problem) in job.options.validate() {
                at(field, problem);
            }
            for (field, value, range) in [
                ("rpo", &job.rpo, secs(60)..=secs(366 * 86_400)),
                ("rto", &job.rto, secs(60)..=secs(7 * 86_400)),
            ] {
                if let Some(value) = value {
                    duration_in(field, value, range, &mut |f, m| at(&f, m));
                }
            }
            for (field, problem) in job.copy.iter().flat_map(|c| c.validate(job)) {
                at(&field, problem);
            }
            for path in &job.include_mount_points {
                if !job.paths.contains(path) {
                    at(
                        "include_mount_points",
                        format!("'{path}' is not one of the job's paths"),
                    );
                }
            }
        }
    }
}

/// Two PBS jobs writing into one group of one datastore and namespace would
/// prune each other's snapshots: refused. (restic jobs are kept apart by their
/// `job=<name>` tag, whatever their host.)
fn validate_backup_groups(jobs: &[BackupJob], hostname: &str, bad: &mut dyn FnMut(String, String)) {
    let mut groups: Vec<(crate::backup::Datastore, &str, String, &str)> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if job.backend != BackupBackend::Pbs {
            continue;
        }
        let Ok(datastore) = crate::backup::Repository::parse(&job.repository) else {
            continue; // reported with the job itself
        };
        let namespace = job.namespace.as_deref().unwrap_or("");
        let id = job.effective_backup_id(hostname);
        let same = |(d, ns, other_id, _): &&(crate::backup::Datastore, &str, String, &str)| {
            *d == datastore && *ns == namespace && *other_id == id
        };
        if let Some((_, _, _, other)) = groups.iter().find(same) {
            bad(
                format!("backups.jobs[{i}].backup_id"),
                format!(
                    "job '{other}' already backs up as host/{id} to this datastore and namespace; \
                     two jobs in one group would prune each other's snapshots: give this one its own backup_id"
                ),
            );
        }
        groups.push((datastore, namespace, id, &job.name));
    }
}

fn validate_probes(probes: &[ProbeCheck], bad: &mut dyn FnMut(String, String)) {
    let mut names = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let mut at = |field: &str, message: String| bad(format!("probes[{i}].{field}"), message);
        if let Some(problem) = name_problem(&p.name, &mut names) {
            at("name", problem);
        }
        if let Some(problem) = probe_target_problem(p.kind, &p.target) {
            at("target", problem);
        }
        for problem in label_problems(&p.labels, &["probe", "kind", "instance", "job"]) {
            at("labels", problem);
        }
        if let Some(pem) = &p.tls_ca {
            if let Some(problem) = probe_ca_problem(p, pem) {
                at("tls_ca", problem);
            }
        }
    }
}

/// What is wrong with `t` as what a probe of `kind` checks.
fn probe_target_problem(kind: ProbeKind, t: &str) -> Option<String> {
    let plain = !t.is_empty() && !t.contains(char::is_whitespace) && !t.contains('"');
    let ok = plain
        && match kind {
            ProbeKind::Http => t.starts_with("http://") || t.starts_with("https://"),
            ProbeKind::Tcp => is_host_port(t),
            ProbeKind::Icmp => !t.contains(['/', ':']) || t.parse::<std::net::IpAddr>().is_ok(),
        };
    let wanted = match kind {
        ProbeKind::Http => "an http:// or https:// URL",
        ProbeKind::Tcp => "host:port",
        ProbeKind::Icmp => "a host name or address",
    };
    (!ok).then(|| format!("'{t}' is not {wanted}"))
}

/// What is wrong with a probe trusting the CA `pem`.
fn probe_ca_problem(p: &ProbeCheck, pem: &str) -> Option<String> {
    match (p.kind, p.tls) {
        (ProbeKind::Icmp, _) => Some("is only used by http and tcp probes".into()),
        (ProbeKind::Http, _) if !p.target.starts_with("https://") => {
            Some("is only used with an https:// target".into())
        }
        (_, ProbeTls::ExpiryOnly) => {
            Some("trust a CA or check the expiry only (tls: expiry_only), not both".into())
        }
        _ => upstream::tls_ca_problem(pem),
    }
}

/// What is wrong with `name` as the name of a list entry, given the names
/// `taken` before it (to which it is added).
fn name_problem<'a>(name: &'a str, taken: &mut Vec<&'a str>) -> Option<String> {
    let problem = if !is_child_name(name) {
        Some("must be 1-40 letters, digits, '-' or '_'".to_string())
    } else if taken.contains(&name) {
        Some(format!("'{name}' is already taken"))
    } else {
        None
    };
    taken.push(name);
    problem
}

/// Labels a user gave that are not label names, or that obsbox sets itself.
fn label_problems<'a>(
    labels: &'a BTreeMap<String, String>,
    reserved: &'a [&str],
) -> impl Iterator<Item = String> + 'a {
    labels
        .keys()
        .filter(|name| !is_label_name(name) || reserved.contains(&name.as_str()))
        .map(|name| format!("'{name}' cannot be used as a label name here"))
}

/// `host:port` with a non-empty host and a port from 1 to 65535.
fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

fn is_hostname(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with("__")
}

/// A stored secret's name: a relative path of names (no `..`, no `/` at
/// either end).
fn is_secret_name(s: &str) -> bool {
    s.len() <= 200
        && s.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part != "."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

fn is_child_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Checks that `value` is a duration within `range`; reports it as `field`
/// when not. Returns the duration when it is fine.
pub(crate) fn duration_in(
    field: &str,
    value: &str,
    range: std::ops::RangeInclusive<Duration>,
    bad: &mut dyn FnMut(String, String),
) -> Option<Duration> {
    match parse_duration(value) {
        Err(e) => bad(field.into(), e),
        Ok(d) if !range.contains(&d) => bad(
            field.into(),
            format!(
                "must be from {} to {}",
                show_duration(*range.start()),
                show_duration(*range.end())
            ),
        ),
        Ok(d) => return Some(d),
    }
    None
}

/// A duration as settings write it, in its largest whole unit (`90s`, `2h`, `100ms`).
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ]
    .into_iter()
    .find(|(_, unit)| ms % unit == 0)
    .map_or(format!("{ms}ms"), |(name, unit)| {
        format!("{}{name}", ms / unit)
    })
}

/// Parses a Prometheus duration (`1h30m`, `15s`, `500ms`, `7d`, `2w`, `1y`).
/// Units must appear at most once each, largest first, as Prometheus requires.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &[(&str, u64)] = &[
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    // Prometheus' order: y w d h m s ms ("ms" is listed before "m" above only so
    // that it wins the prefix match).
    const ORDER: &[&str] = &["y", "w", "d", "h", "m", "s", "ms"];
    let invalid = || format!("'{s}' is not a duration (like 30s, 5m, 1h30m, 7d)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut last_rank: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, millis) = UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(invalid)?;
        let rank = ORDER.iter().position(|u| u == unit).ok_or_else(invalid)?;
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(invalid());
        }
        last_rank = Some(rank);
        rest = &rest[unit.len()..];
        total = number
            .checked_mul(*millis)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_prometheus_syntax() {
        let ok = [
            ("15s", 15_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("7d", 604_800_000),
            ("1m30s500ms", 90_500),
            ("0", 0),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in [
            "",
            "banana",
            "15",
            "s",
            "1m1h",
            "5s5s",
            "-5s",
            "1.5s",
            "99999999999999999999y",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), vec![]);
    }

    #[test]
    fn every_problem_is_reported_together() {
        let mut s = Settings::default();
        s.prometheus.scrape_interval = "banana".into();
        s.services.grafana.port = 9090;
        s.prometheus
            .external_labels
            .insert("1bad".into(), "x".into());
        s.children.push(ExtraChild {
            name: "prometheus".into(),
            command: vec![],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            depends_on: vec!["nothing".into()],
            readiness: Readiness::None,
            user: None,
            stop_signal: "KILL".into(),
            stop_grace: "10s".into(),
            memory_max_bytes: Some(1 << 20),
            restart: RestartSettings {
                crash_loop_exits: 1001,
                crash_loop_window_s: 0,
                backoff_max_s: 0,
            },
        });
        s.services.loki.memory_max_bytes = Some(2 << 40);
        s.services.grafana.memory_max_bytes = Some(256 << 20);
        let fields: Vec<String> = s.validate().into_iter().map(|p| p.field).collect();
        assert!(
            !fields
                .iter()
                .any(|f| f == "services.grafana.memory_max_bytes"),
            "{fields:?}"
        );
        for expected in [
            "children[0].memory_max_bytes",
            "children[0].restart.crash_loop_exits",
            "children[0].restart.crash_loop_window_s",
            "children[0].restart.backoff_max_s",
            "services.loki.memory_max_bytes",
            "prometheus.scrape_interval",
            "services.grafana.port",
            "prometheus.external_labels.1bad",
            "children[0].name",
            "children[0].command",
            "children[0].depends_on",
            "children[0].stop_signal",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn log_shipping_settings_have_ranges_and_obsbox_is_not_a_child_name() {
        let mut s = Settings::default();
        s.logs.batch_bytes = 100;
        s.logs.batch_wait_ms = 60_001;
        s.children.push(ExtraChild {
            name: "obsbox".into(),
            command: vec!["true".into()],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            depends_on: vec![],
            readiness: Readiness::None,
            user: None,
            stop_signal: "TERM".into(),
            stop_grace: "10s".into(),
            memory_max_bytes: None,
            restart: RestartSettings::default(),
        });
        let fields: Vec<String> = s.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["logs.batch_bytes", "logs.batch_wait_ms", "children[0].name"]
        );
    }

    #[test]
    fn disk_settings_are_checked_together() {
        let mut s = Settings::default();
        s.disks.interval = "1s".into();
        s.disks.timeout = "soon".into();
        s.disks.temperature_warning = 70;
        s.disks.temperature_critical = 65;
        s.disks.short_test = "someday".into();
        s.disks.long_test = String::new();
        s.disks.ignore = vec!["/dev/sdb".into(), "sdc".into(), "sd c".into()];
        let problems: Vec<String> = s.validate().into_iter().map(|p| p.to_string()).collect();
        for expected in [
            "disks.interval: must be from 10s to 1d",
            "disks.timeout",
            "disks.temperature_warning: must be below temperature_critical",
            "disks.short_test",
            "disks.ignore: 'sd c' is not a device name",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} missing from {problems:?}"
            );
        }
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn durations_and_numbers_have_sane_ranges() {
        let mut s = Settings::default();
        s.prometheus.scrape_interval = "1ms".into();
        s.prometheus.evaluation_interval = "0s".into();
        s.prometheus.retention = "0s".into();
        s.loki.retention = "1ms".into();
        s.alertmanager.repeat_interval = "1s".into();
        s.backups.halt_grace = "0s".into();
        s.logs.keep_segments = 100_000;
        s.slos[0].window = "10y".into();
        let problems: Vec<String> = s.validate().into_iter().map(|p| p.to_string()).collect();
        for expected in [
            "prometheus.scrape_interval: must be from 1s to 1h",
            "prometheus.evaluation_interval: must be from 1s to 1h",
            "prometheus.retention: must be from 2h to 3650d",
            "loki.retention: must be from 1d to 3650d",
            "alertmanager.repeat_interval: must be from 1m to 30d",
            "backups.halt_grace: must be from 1s to 10m",
            "logs.keep_segments: must be between 1 and 1000",
            "slos[0].window: must be from 1d to 366d",
        ] {
            assert!(
                problems.iter().any(|p| p == expected),
                "{expected} missing from {problems:?}"
            );
        }
        assert_eq!(problems.len(), 8, "{problems:?}");
        // The bounds themselves are allowed.
        let mut edge = Settings::default();
        edge.prometheus.scrape_interval = "1s".into();
        edge.prometheus.retention = "10y".into();
        edge.alertmanager.group_wait = "0s".into();
        assert_eq!(edge.validate(), vec![]);
    }

    #[test]
    fn a_childs_restart_policy_is_optional_partial_and_checked() {
        let parse = |restart: &str| -> ExtraChild {
            serde_json::from_str(&format!(r#"{{"name": "c", "command": ["x"]{restart}}}"#))
                .expect("parses")
        };
        // Left out: the project's defaults.
        assert_eq!(parse("").restart, RestartSettings::default());
        assert_eq!(
            RestartSettings::default(),
            RestartSettings {
                crash_loop_exits: 5,
                crash_loop_window_s: 60,
                backoff_max_s: 60
            }
        );
        // One field set, the others kept.
        let off = parse(r#", "restart": {"crash_loop_exits": 0}"#).restart;
        assert_eq!(
            off,
            RestartSettings {
                crash_loop_exits: 0,
                ..RestartSettings::default()
            }
        );
        assert!(serde_json::from_str::<ExtraChild>(
            r#"{"name": "c", "command": ["x"], "restart": {"backoff_s": 1}}"#
        )
        .is_err());
        // The edges of the ranges are allowed.
        let mut s = Settings::default();
        for (i, (exits, window, max)) in [(0, 1, 1), (1000, 86_400, 86_400)].into_iter().enumerate()
        {
            let mut child = parse("");
            child.name = format!("c{i}");
            child.restart = RestartSettings {
                crash_loop_exits: exits,
                crash_loop_window_s: window,
                backoff_max_s: max,
            };
            s.children.push(child);
        }
        assert_eq!(s.validate(), vec![]);
        s.children[1].restart.backoff_max_s = 86_401;
        let problems: Vec<String> = s.validate().into_iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            ["children[1].restart.backoff_max_s: 86401 is outside 1..=86400"]
        );
    }

    #[test]
    fn ports_obsbox_listens_on_are_taken() {
        let mut s = Settings::default();
        s.services.prometheus.port = 8080;
        s.children.push(ExtraChild {
            name: "exporter".into(),
            command: vec!["x".into()],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            depends_on: vec![],
            readiness: Readiness::Tcp { port: 8443 },
            user: None,
            stop_signal: "TERM".into(),
            stop_grace: "10s".into(),
            memory_max_bytes: None,
            restart: RestartSettings::default(),
        });
        assert_eq!(s.validate(), vec![]);
        let reserved = Reserved {
            ports: vec![
                (8080, "obsbox's web UI".into()),
                (8443, "obsbox's HTTPS".into()),
            ],
        };
        let problems: Vec<String> = s
            .validate_with(&reserved)
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            problems,
            [
                "services.prometheus.port: port 8080 is already used by obsbox's web UI",
                "children[0].readiness: port 8443 is already used by obsbox's HTTPS",
            ]
        );
    }

    #[test]
    fn child_users_must_exist() {
        let mut s = Settings::default();
        s.general.child_user = "no-such-user-here".into();
        s.children.push(ExtraChild {
            name: "exporter".into(),
            command: vec!["x".into()],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            depends_on: vec![],
            readiness: Readiness::None,
            user: Some("ghost-user".into()),
            stop_signal: "TERM".into(),
            stop_grace: "10s".into(),
            memory_max_bytes: None,
            restart: RestartSettings::default(),
        });
        let fields: Vec<String> = s.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["general.child_user", "children[0].user"]);
        for fine in ["", "auto", "root"] {
            s.general.child_user = fine.into();
            s.children[0].user = Some("root".into());
            assert_eq!(s.validate(), vec![], "{fine:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Settings>(r#"{"prometheus": {"scrape_intervall": "5s"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scrape_intervall"), "{err}");
    }

    #[test]
    fn disabled_services_do_not_claim_ports() {
        let mut s = Settings::default();
        s.services.loki.enabled = false;
        s.services.grafana.port = 3100;
        s.loki.grpc_port = 9090;
        assert_eq!(s.validate(), vec![]);
    }

    #[test]
    fn a_probe_ca_is_checked_with_its_probe() {
        let ca = rcgen::generate_simple_self_signed(vec!["nas.lan".into()])
            .unwrap()
            .cert
            .pem();
        // Base64 in a certificate's frame that is no certificate.
        let framed_junk =
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0Ee\n-----END CERTIFICATE-----\n";
        let probes: Vec<ProbeCheck> = serde_json::from_value(serde_json::json!([
            {"name": "nas", "kind": "http", "target": "https://nas.lan/", "tls_ca": ca},
            {"name": "imap", "kind": "tcp", "target": "mail.lan:993", "tls_ca": ca},
            {"name": "junk", "kind": "http", "target": "https://nas.lan/", "tls_ca": "not a certificate"},
            {"name": "plain", "kind": "http", "target": "http://nas.lan/", "tls_ca": ca},
            {"name": "both", "kind": "http", "target": "https://nas.lan/", "tls": "expiry_only", "tls_ca": ca},
            {"name": "ping", "kind": "icmp", "target": "nas.lan", "tls_ca": ca},
            {"name": "framed", "kind": "http", "target": "https://nas.lan/", "tls_ca": framed_junk},
            {"name": "one-bad", "kind": "http", "target": "https://nas.lan/", "tls_ca": format!("{ca}{framed_junk}")},
        ]))
        .unwrap();
        let mut problems = Vec::new();
        validate_probes(&probes, &mut |field, message| {
            problems.push(format!("{field}: {message}"))
        });
        assert_eq!(
            problems,
            [
                "probes[2].tls_ca: is not one or more PEM certificates",
                "probes[3].tls_ca: is only used with an https:// target",
                "probes[4].tls_ca: trust a CA or check the expiry only (tls: expiry_only), not both",
                "probes[5].tls_ca: is only used by http and tcp probes",
                "probes[6].tls_ca: is not one or more PEM certificates",
                "probes[7].tls_ca: is not one or more PEM certificates",
            ]
        );
        let modules: Vec<String> = probes.iter().map(ProbeCheck::module).collect();
        assert_eq!(modules[..2], ["http_2xx_ca_nas", "tcp_tls_ca_imap"]);
    }
}
