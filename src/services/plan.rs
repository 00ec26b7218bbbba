//! Child plans: which program each service runs, with which flags, as whom,
//! how it is probed and reloaded, and after whom it starts.

use super::render::{paths, proxied_url, SecretGrant};
use super::Environment;
use crate::settings::users::{self, ChildUser};
use crate::settings::{ExtraChild, Readiness, RestartSettings, Service, Settings, TimeSettings};
use crate::store::Store;
use crate::supervisor::{ChildPlan, ChildSpec, Launch, Probe, Reload, RestartPolicy, RunAs};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Finds programs: a configured path, else the usual names on the search path.
#[derive(Debug, Clone)]
pub struct Locator {
    search: Vec<PathBuf>,
}

impl Locator {
    /// Searches the directories of `$PATH`.
    pub fn from_env() -> Locator {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut search: Vec<PathBuf> = Vec::new();
        for dir in std::env::split_paths(&path) {
            if !search.contains(&dir) {
                search.push(dir);
            }
        }
        Locator { search }
    }

    /// The first of `names` found on the search path; a configured path wins.
    /// On failure, every path looked at.
    pub fn find(&self, configured: Option<&str>, names: &[&str]) -> Result<PathBuf, Vec<PathBuf>> {
        let candidates: Vec<PathBuf> = match configured {
            Some(path) if path.contains('/') => vec![PathBuf::from(path)],
            Some(name) => self.search.iter().map(|d| d.join(name)).collect(),
            None => names
                .iter()
                .flat_map(|n| self.search.iter().map(move |d| d.join(n)))
                .collect(),
        };
        candidates
            .iter()
            .find(|p| is_executable(p))
            .cloned()
            .ok_or(candidates)
    }

    /// The checker for a child's main config file, if one is installed:
    /// `promtool check config`, `amtool check-config`, `loki -verify-config`.
    pub(super) fn checker(
        &self,
        child: &str,
        settings: &Settings,
        config: &Path,
    ) -> Option<(PathBuf, Vec<String>)> {
        let config = config.display().to_string();
        let beside = |service: &Service, names: &[&str], tool: &str| {
            // A configured binary's own directory first: the tool of the same release.
            let dir = self
                .find(service.binary.as_deref(), names)
                .ok()?
                .parent()?
                .join(tool);
            if is_executable(&dir) {
                Some(dir)
            } else {
                self.find(None, &[tool]).ok()
            }
        };
        let s = &settings.services;
        match child {
            "prometheus" => Some((
                beside(&s.prometheus, PROMETHEUS, "promtool")?,
                vec!["check".into(), "config".into(), config],
            )),
            "alertmanager" => Some((
                beside(&s.alertmanager, ALERTMANAGER, "amtool")?,
                vec!["check-config".into(), config],
            )),
            "blackbox" => Some((
                self.find(s.blackbox.binary.as_deref(), BLACKBOX).ok()?,
                vec!["--config.check".into(), format!("--config.file={config}")],
            )),
            "loki" => Some((
                self.find(s.loki.binary.as_deref(), LOKI).ok()?,
                vec![format!("-config.file={config}"), "-verify-config".into()],
            )),
            _ => None,
        }
    }
}

const PROMETHEUS: &[&str] = &["prometheus"];
const ALERTMANAGER: &[&str] = &["alertmanager", "prometheus-alertmanager"];
const NODE_EXPORTER: &[&str] = &["node_exporter", "prometheus-node-exporter"];
const LOKI: &[&str] = &["loki"];
const GRAFANA: &[&str] = &["grafana", "grafana-server"];
const BLACKBOX: &[&str] = &["blackbox_exporter", "prometheus-blackbox-exporter"];

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where udhcpc's hook leaves the NTP servers DHCP offered
/// (`image/overlay/usr/lib/obsbox/udhcpc.script`).
pub const DHCP_NTP_SERVERS: &str = "/run/ntp-servers";

/// The name of the NTP daemon child, whichever daemon it runs.
pub const NTPD: &str = "ntpd";

/// chrony's daemon.
const CHRONYD: &str = "chronyd";

/// The servers the NTP daemon follows: DHCP's first (when used), then the
/// configured ones, each once.
fn ntp_servers<'a>(time: &'a TimeSettings, dhcp: Option<&'a str>) -> Vec<&'a str> {
    let from_dhcp = dhcp
        .filter(|_| time.use_dhcp_servers)
        .unwrap_or("")
        .split_whitespace();
    let mut seen = BTreeSet::new();
    from_dhcp
        .chain(time.servers.iter().map(String::as_str))
        .filter(|server| seen.insert(server.to_ascii_lowercase()))
        .collect()
}

/// busybox `ntpd`'s arguments: in the foreground, with [`ntp_servers`].
pub fn ntpd_args(time: &TimeSettings, dhcp: Option<&str>) -> Vec<String> {
    let mut args = vec![NTPD.to_string(), "-n".into()];
    for server in ntp_servers(time, dhcp) {
        args.extend(["-p".to_string(), server.to_string()]);
    }
    args
}

/// `chronyd`'s arguments: in the foreground logging to stderr, its whole
/// configuration as directives on the command line (then it reads no file):
/// [`ntp_servers`], the clock stepped when it is more than a second off in
/// the first three updates (a box that booted with a wrong clock) and slewed
/// after, the kernel told to keep the RTC in step, and no command port on
/// the network. chronyd drops root to its own user once set up.
pub fn chronyd_args(time: &TimeSettings, dhcp: Option<&str>) -> Vec<String> {
    let mut args = vec!["-d".to_string()];
    args.extend(
        ntp_servers(time, dhcp)
            .into_iter()
            .map(|server| format!("server {server} iburst")),
    );
    args.extend(
        [
            "makestep 1 3",
            "rtcsync",
            "cmdport 0",
            "pidfile /run/chronyd.pid",
        ]
        .map(String::from),
    );
    args
}

/// The NTP daemon the image has, and its arguments.
#[derive(Debug, Clone, PartialEq)]
enum NtpDaemon {
    /// busybox's `ntpd` applet (buildroot images).
    Busybox(PathBuf),
    /// chrony (the Debian-based x86_64 image, whose busybox has no `ntpd`).
    Chrony(PathBuf),
}

impl NtpDaemon {
    /// busybox's `ntpd` when there is an `ntpd` on the path that links to
    /// busybox (as busybox installs its applets), else `chronyd`. A busybox
    /// built without the applet (Debian's) has no such link, and another
    /// `ntpd` (ntpsec's) takes other arguments.
    fn find(locator: &Locator) -> Option<NtpDaemon> {
        let busybox = locator
            .find(None, &[NTPD])
            .ok()
            .and_then(|ntpd| std::fs::canonicalize(ntpd).ok())
            .filter(|target| target.file_name().is_some_and(|name| name == "busybox"));
        match busybox {
            Some(busybox) => Some(NtpDaemon::Busybox(busybox)),
            None => locator.find(None, &[CHRONYD]).ok().map(NtpDaemon::Chrony),
        }
    }

    fn program_and_args(self, time: &TimeSettings, dhcp: Option<&str>) -> (PathBuf, Vec<String>) {
        match self {
            NtpDaemon::Busybox(program) => (program, ntpd_args(time, dhcp)),
            NtpDaemon::Chrony(program) => (program, chronyd_args(time, dhcp)),
        }
    }
}

/// The NTP daemon, when NTP is on and the image has one (no plan at all
/// otherwise: it is optional). It runs as root: setting the clock needs it.
fn ntpd_plan(settings: &Settings, env: &Environment, locator: &Locator) -> Option<ChildPlan> {
    if !settings.time.enabled {
        return None;
    }
    let daemon = NtpDaemon::find(locator)?;
    let dhcp = std::fs::read_to_string(DHCP_NTP_SERVERS).ok();
    let (program, args) = daemon.program_and_args(&settings.time, dhcp.as_deref());
    Some(ChildPlan {
        name: NTPD.into(),
        depends_on: Vec::new(),
        launch: Launch::Run(Box::new(ChildSpec {
            program,
            args,
            env: Vec::new(),
            cwd: env.data_dir.join("children").join(NTPD),
            user: None,
            readiness: Probe::None,
            // New servers take a restart.
            reload: Reload::Restart,
            stop_signal: Signal::SIGTERM,
            stop_grace: Duration::from_secs(5),
            restart: RestartPolicy::default(),
            memory_max: None,
        })),
    })
}

/// Every child, in start order: the NTP daemon on the appliance, the
/// enabled built-ins, then the user's.
pub fn plans(settings: &Settings, env: &Environment, locator: &Locator) -> Vec<ChildPlan> {
    let s = &settings.services;
    let builtin_user = builtin_user(&settings.general.child_user, is_root());
    let abs = |rel: &str| env.data_dir.join(rel).display().to_string();
    let mut plans = Vec::new();
    // Only as PID 1, i.e. on the appliance: obsbox never sets the clock of a
    // machine it merely runs on (a developer's, a test's).
    if std::process::id() == 1 {
        plans.extend(ntpd_plan(settings, env, locator));
    }
    let mut builtin = |name: &str,
                       service: &Service,
                       names: &[&str],
                       depends_on: &[&str],
                       build: &dyn Fn(&Path) -> Built| {
        if !service.enabled {
            return;
        }
        let launch = match (
            locator.find(service.binary.as_deref(), names),
            &builtin_user,
        ) {
            (Err(looked_at), _) => Launch::NotInstalled { looked_at },
            (Ok(_), Err(no_user)) => Launch::Broken(no_user.clone()),
            (Ok(program), Ok(user)) => {
                let built = build(&program);
                Launch::Run(Box::new(ChildSpec {
                    program,
                    args: built.args,
                    env: Vec::new(),
                    cwd: env.data_dir.join("children").join(name),
                    user: *user,
                    readiness: Probe::Http {
                        port: service.port,
                        path: built.ready_path.into(),
                    },
                    reload: built.reload,
                    stop_signal: Signal::SIGTERM,
                    stop_grace: built.grace,
                    restart: RestartPolicy::default(),
                    memory_max: service.memory_max_bytes,
                }))
            }
        };
        plans.push(ChildPlan {
            name: name.into(),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            launch,
        });
    };
    let listen = |port: u16| format!("127.0.0.1:{port}");

    builtin(
        "node_exporter",
        &s.node_exporter,
        NODE_EXPORTER,
        &[],
        &|_| Built {
            args: vec![format!(
                "--web.listen-address={}",
                listen(s.node_exporter.port)
            )],
            ready_path: "/",
            reload: Reload::Nothing,
            grace: Duration::from_secs(10),
        },
    );
    builtin("alertmanager", &s.alertmanager, ALERTMANAGER, &[], &|_| {
        Built {
            args: vec![
                format!("--config.file={}", abs(paths::ALERTMANAGER_CONFIG)),
                format!("--storage.path={}", abs(paths::ALERTMANAGER_DATA)),
                format!("--web.listen-address={}", listen(s.alertmanager.port)),
                format!(
                    "--web.external-url={}",
                    proxied_url(settings, env, "alertmanager")
                ),
                // Links go through obsbox's proxy; obsbox itself calls `/` on loopback.
                "--web.route-prefix=/".into(),
                // A single box: no gossip port.
                "--cluster.listen-address=".into(),
                // Only at debug level does Alertmanager log each delivery
                // with its receiver ("Notify success"): obsbox reads each
                // receiver's last delivery from it.
                "--log.level=debug".into(),
            ],
            ready_path: "/-/ready",
            reload: Reload::HttpPost {
                port: s.alertmanager.port,
                path: "/-/reload".into(),
            },
            grace: Duration::from_secs(15),
        }
    });
    builtin("loki", &s.loki, LOKI, &[], &|_| Built {
        args: vec![format!("-config.file={}", abs(paths::LOKI_CONFIG))],
        ready_path: "/ready",
        // Loki reads its main config only at start.
        reload: Reload::Restart,
        grace: Duration::from_secs(30),
    });
    builtin(
        "prometheus",
        &s.prometheus,
        PROMETHEUS,
        &["alertmanager"],
        &|_| Built {
            args: vec![
                format!("--config.file={}", abs(paths::PROMETHEUS_CONFIG)),
                format!("--storage.tsdb.path={}", abs(paths::PROMETHEUS_DATA)),
                format!(
                    "--storage.tsdb.retention.time={}",
                    settings.prometheus.retention
                ),
                format!("--web.listen-address={}", listen(s.prometheus.port)),
                format!(
                    "--web.external-url={}",
                    proxied_url(settings, env, "prometheus")
                ),
                "--web.route-prefix=/".into(),
                // Reload and TSDB snapshots over HTTP; it listens on loopback only.
                "--web.enable-lifecycle".into(),
                "--web.enable-admin-api".into(),
            ],
            ready_path: "/-/ready",
            reload: Reload::HttpPost {
                port: s.prometheus.port,
                path: "/-/reload".into(),
            },
            // Prometheus flushes its head block on SIGTERM; give it time.
            grace: Duration::from_secs(60),
        },
    );
    builtin(
        "grafana",
        &s.grafana,
        GRAFANA,
        &["prometheus", "loki"],
        &|program| {
            let mut args = Vec::new();
            // `grafana server` since Grafana 10; `grafana-server` before.
            if program.file_name().is_some_and(|n| n == "grafana") {
                args.push("server".into());
            }
            args.extend([
                "--homepath".into(),
                settings.grafana.homepath.clone(),
                "--config".into(),
                abs(paths::GRAFANA_CONFIG),
            ]);
            Built {
                args,
                ready_path: "/api/health",
                reload: Reload::Restart,
                grace: Duration::from_secs(30),
            }
        },
    );
    builtin("blackbox", &s.blackbox, BLACKBOX, &[], &|_| Built {
        args: vec![
            format!("--config.file={}", abs(paths::BLACKBOX_CONFIG)),
            format!("--web.listen-address={}", listen(s.blackbox.port)),
        ],
        ready_path: "/-/healthy",
        reload: Reload::HttpPost {
            port: s.blackbox.port,
            path: "/-/reload".into(),
        },
        grace: Duration::from_secs(10),
    });
    plans.extend(
        settings
            .children
            .iter()
            .map(|c| extra_plan(c, env, locator)),
    );
    plans
}

struct Built {
    args: Vec<String>,
    ready_path: &'static str,
    reload: Reload,
    grace: Duration,
}

fn extra_plan(child: &ExtraChild, env: &Environment, locator: &Locator) -> ChildPlan {
    let plan = |launch| ChildPlan {
        name: child.name.clone(),
        depends_on: child.depends_on.clone(),
        launch,
    };
    let Some((program, args)) = child.command.split_first() else {
        return plan(Launch::Broken("no command".into()));
    };
    let program = match locator.find(Some(program), &[]) {
        Ok(p) => p,
        Err(looked_at) => return plan(Launch::NotInstalled { looked_at }),
    };
    let user = match &child.user {
        None => None,
        Some(name) => match users::lookup(name) {
            Some(u) => Some(RunAs {
                uid: u.uid,
                gid: u.gid,
            }),
            None => return plan(Launch::Broken(format!("no user '{name}' in /etc/passwd"))),
        },
    };
    let readiness = match child.readiness {
        Readiness::None => Probe::None,
        Readiness::Http { port, ref path } => Probe::Http {
            port,
            path: path.clone(),
        },
        Readiness::Tcp { port } => Probe::Tcp { port },
    };
    plan(Launch::Run(Box::new(ChildSpec {
        program,
        args: args.to_vec(),
        env: child
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cwd: env.data_dir.join("children").join(&child.name),
        user,
        readiness,
        reload: Reload::Signal(Signal::SIGHUP),
        // Both validated when the settings were written.
        stop_signal: crate::settings::stop_signal(&child.stop_signal).unwrap_or(Signal::SIGTERM),
        stop_grace: crate::settings::parse_duration(&child.stop_grace)
            .unwrap_or(Duration::from_secs(10)),
        restart: restart_policy(&child.restart),
        memory_max: child.memory_max_bytes,
    })))
}

/// An extra child's restart policy: its settings over the project's defaults.
fn restart_policy(settings: &RestartSettings) -> RestartPolicy {
    RestartPolicy {
        crash_loop_exits: settings.crash_loop_exits as usize,
        crash_loop_window: Duration::from_secs(settings.crash_loop_window_s.into()),
        max_backoff: Duration::from_secs(settings.backoff_max_s.into()),
        ..RestartPolicy::default()
    }
}

/// The user built-in children run as: obsbox's own unless it is root; an
/// error (the children do not start) when the user asked for is missing.
fn builtin_user(setting: &str, root: bool) -> Result<Option<RunAs>, String> {
    if !root {
        return Ok(None);
    }
    Ok(match users::child_user(setting, users::lookup)? {
        ChildUser::Same => None,
        ChildUser::User(u) => Some(RunAs {
            uid: u.uid,
            gid: u.gid,
        }),
    })
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Creates each child's working directory, owned by the user it runs as. A
/// child whose user cannot reach its directory (a parent of the data
/// directory closed to it) does not start: it is marked broken, saying which
/// directory is in the way, instead of failing with a bare "Permission denied".
pub fn prepare_dirs(plans: &mut [ChildPlan]) -> std::io::Result<()> {
    for plan in plans {
        let Launch::Run(spec) = &plan.launch else {
            continue;
        };
        std::fs::create_dir_all(&spec.cwd)?;
        let Some(user) = spec.user.filter(|_| is_root()) else {
            continue;
        };
        std::os::unix::fs::chown(&spec.cwd, Some(user.uid), Some(user.gid))?;
        if let Some(blocked) = blocked_at(&spec.cwd, user)? {
            let reason = format!(
                "user {} cannot reach its directory {}: {blocked}",
                user.uid,
                spec.cwd.display()
            );
            tracing::error!(child = plan.name, path = %spec.cwd.display(), "{reason}");
            plan.launch = Launch::Broken(reason);
        }
    }
    Ok(())
}

/// The first directory on the way to `dir` (itself included) that `user`
/// may not pass through, described; `None` when every one lets it through.
/// Judged from the mode bits and owners (supplementary groups are not read).
fn blocked_at(dir: &Path, user: RunAs) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    if user.uid == 0 {
        return Ok(None);
    }
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    for step in ancestors {
        let meta = std::fs::metadata(step)?;
        let mode = meta.mode();
        let search = if meta.uid() == user.uid {
            mode & 0o100
        } else if meta.gid() == user.gid {
            mode & 0o010
        } else {
            mode & 0o001
        };
        if search == 0 {
            return Ok(Some(format!(
                "{} is mode {:o}, owned by uid {} gid {}; give others search permission (chmod o+x) \
                 or move the data directory",
                step.display(),
                mode & 0o7777,
                meta.uid(),
                meta.gid()
            )));
        }
    }
    Ok(None)
}

/// Puts the stored secrets each extra child reads from its environment
/// (`secret_env`) into its plan. A child whose secret is not stored does not
/// start and says which one is missing (never its value).
pub fn give_secret_env(
    plans: &mut [ChildPlan],
    settings: &Settings,
    store: &Store,
) -> std::io::Result<()> {
    for child in settings
        .children
        .iter()
        .filter(|c| !c.secret_env.is_empty())
    {
        let Some(plan) = plans.iter_mut().find(|p| p.name == child.name) else {
            continue;
        };
        let Launch::Run(spec) = &mut plan.launch else {
            continue;
        };
        let mut missing = Vec::new();
        for (var, secret) in &child.secret_env {
            match std::fs::read(store.secret_path(secret)) {
                Ok(value) => spec
                    .env
                    .push((var.clone(), String::from_utf8_lossy(&value).into_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(secret.as_str()),
                Err(e) => return Err(e),
            }
        }
        if !missing.is_empty() {
            plan.launch = Launch::Broken(format!(
                "the secret(s) {} it reads are not stored",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

/// Copies the stored secrets each child reads into files of its own, owned by
/// the child's user and readable by it alone, and removes granted files no
/// longer wanted (a deleted receiver's password). Returns the children whose
/// granted files changed.
pub fn grant_secrets(
    plans: &[ChildPlan],
    grants: &[SecretGrant],
    store: &Store,
    data_dir: &Path,
) -> std::io::Result<BTreeSet<String>> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut changed = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for grant in grants {
        let dest = data_dir.join(&grant.path);
        if let Some(dir) = dest.parent() {
            dirs.insert((dir.to_path_buf(), grant.child.as_str()));
        }
        let spec = plans.iter().find_map(|p| match &p.launch {
            Launch::Run(spec) if p.name == grant.child => Some(spec),
            _ => None,
        });
        let (Some(spec), Some(dir)) = (spec, dest.parent()) else {
            continue;
        };
        let value = match std::fs::read(store.secret_path(&grant.secret)) {
            Ok(value) => value,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && grant.placeholder => Vec::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if std::fs::read(&dest).ok().as_ref() != Some(&value) {
            changed.insert(grant.child.clone());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let staged = dir.join(".granting");
        let _ = std::fs::remove_file(&staged);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)?;
        std::io::Write::write_all(&mut file, &value)?;
        if let Some(user) = spec.user.filter(|_| nix::unistd::geteuid().is_root()) {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
            std::os::unix::fs::chown(&staged, Some(user.uid), Some(user.gid))?;
        }
        std::fs::rename(&staged, &dest)?;
        kept.insert(dest);
    }
    for (dir, child) in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !kept.contains(&entry.path()) {
                std::fs::remove_file(entry.path())?;
                changed.insert(child.to_string());
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            data_dir: "/data/obsbox".into(),
            obsbox_address: "127.0.0.1:8080".into(),
        }
    }

    fn bin_dir(names: &[&str]) -> (tempfile::TempDir, Locator) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let locator = Locator {
            search: vec![dir.path().to_path_buf()],
        };
        (dir, locator)
    }

    #[test]
    fn granted_secrets_name_the_children_they_changed_and_placeholders_stand_in_for_unset_ones() {
        let (_bin, locator) = bin_dir(&["grafana"]);
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let plans = plans(&Settings::default(), &env(), &locator);
        let grant = |secret: &str, file: &str, placeholder| SecretGrant {
            child: "grafana".into(),
            secret: secret.into(),
            path: PathBuf::from("children/grafana/secrets").join(file),
            placeholder,
        };
        let grants = [
            grant("peers/a/token", "a", true),
            grant("peers/b/token", "b", false),
        ];
        let changed = grant_secrets(&plans, &grants, &store, data.path()).unwrap();
        // Neither is stored: the placeholder is an empty file, the other absent.
        let dir = data.path().join("children/grafana/secrets");
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"");
        assert!(!dir.join("b").exists());
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["grafana"]);
        // Nothing new: nothing changed.
        assert!(grant_secrets(&plans, &grants, &store, data.path())
            .unwrap()
            .is_empty());
        store.put_secret("peers/a/token", b"obx_1").unwrap();
        let changed = grant_secrets(&plans, &grants, &store, data.path()).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"obx_1");
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["grafana"]);
        // A grant no longer wanted is removed, and that is a change too.
        let changed = grant_secrets(&plans, &grants[1..], &store, data.path()).unwrap();
        assert!(!dir.join("a").exists());
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["grafana"]);
    }

    #[test]
    fn a_child_reading_a_secret_from_its_environment_gets_it_or_does_not_start() {
        let (_bin, locator) = bin_dir(&["exporter"]);
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let mut settings = Settings::default();
        settings.children.push(
            serde_json::from_value(serde_json::json!({
                "name": "x", "command": ["exporter"],
                "secret_env": {"PASSWORD": "targets/x/password"}
            }))
            .unwrap(),
        );
        let planned = || {
            let mut all = plans(&settings, &env(), &locator);
            give_secret_env(&mut all, &settings, &store).unwrap();
            all.into_iter().find(|p| p.name == "x").unwrap().launch
        };
        match planned() {
            Launch::Broken(why) => assert!(why.contains("targets/x/password"), "{why}"),
            other => panic!("{other:?}"),
        }
        store.put_secret("targets/x/password", b"pw").unwrap();
        match planned() {
            Launch::Run(spec) => {
                assert!(spec
                    .env
                    .contains(&("PASSWORD".to_string(), "pw".to_string())))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ntpd_follows_dhcps_servers_then_the_configured_ones_and_needs_busyboxs_applet() {
        let mut time = TimeSettings {
            servers: vec!["0.pool.ntp.org".into(), "192.0.2.1".into()],
            ..TimeSettings::default()
        };
        assert_eq!(
            ntpd_args(&time, Some("192.0.2.1 192.0.2.2\n")),
            [
                "ntpd",
                "-n",
                "-p",
                "192.0.2.1",
                "-p",
                "192.0.2.2",
                "-p",
                "0.pool.ntp.org"
            ]
        );
        time.use_dhcp_servers = false;
        assert_eq!(
            ntpd_args(&time, Some("192.0.2.9")),
            ["ntpd", "-n", "-p", "0.pool.ntp.org", "-p", "192.0.2.1"]
        );
        let mut settings = Settings::default();
        let (_none, without) = bin_dir(&[]);
        assert!(ntpd_plan(&settings, &env(), &without).is_none());
        // A busybox without the applet (as on a Debian image), and another ntpd.
        let (_b, busybox_only) = bin_dir(&["busybox"]);
        assert!(ntpd_plan(&settings, &env(), &busybox_only).is_none());
        let (_o, other_ntpd) = bin_dir(&["ntpd"]);
        assert!(ntpd_plan(&settings, &env(), &other_ntpd).is_none());
        let (d, with) = bin_dir(&["busybox"]);
        std::os::unix::fs::symlink("busybox", d.path().join("ntpd")).unwrap();
        let plan = ntpd_plan(&settings, &env(), &with).unwrap();
        let spec = match &plan.launch {
            Launch::Run(spec) => spec,
            other => panic!("{other:?}"),
        };
        assert_eq!(spec.user, None, "setting the clock needs root");
        assert_eq!(spec.program.file_name().unwrap(), "busybox");
        assert_eq!(spec.args[..2], ["ntpd", "-n"]);
        // busybox's applet wins over chrony.
        std::fs::copy(d.path().join("busybox"), d.path().join(CHRONYD)).unwrap();
        let plan = ntpd_plan(&settings, &env(), &with).unwrap();
        assert!(
            matches!(&plan.launch, Launch::Run(spec) if spec.program.ends_with("busybox")),
            "{plan:?}"
        );
        settings.time.enabled = false;
        assert!(ntpd_plan(&settings, &env(), &with).is_none());
        // Not PID 1 here: never a plan, whatever is installed.
        assert!(plans(&Settings::default(), &env(), &with)
            .iter()
            .all(|p| p.name != NTPD));
    }

    #[test]
    fn chrony_runs_where_busybox_has_no_ntpd_with_its_whole_configuration_as_arguments() {
        let time = TimeSettings {
            servers: vec!["0.pool.ntp.org".into(), "192.0.2.1".into()],
            ..TimeSettings::default()
        };
        assert_eq!(
            chronyd_args(&time, Some("192.0.2.1 192.0.2.2\n")),
            [
                "-d",
                "server 192.0.2.1 iburst",
                "server 192.0.2.2 iburst",
                "server 0.pool.ntp.org iburst",
                "makestep 1 3",
                "rtcsync",
                "cmdport 0",
                "pidfile /run/chronyd.pid",
            ]
        );
        // The Debian image: busybox without the applet, chrony installed;
        // also where another ntpd (ntpsec's) is on the path.
        let settings = Settings::default();
        for names in [&["busybox", CHRONYD][..], &[NTPD, CHRONYD]] {
            let (_d, locator) = bin_dir(names);
            let plan = ntpd_plan(&settings, &env(), &locator).unwrap();
            assert_eq!(plan.name, NTPD);
            let Launch::Run(spec) = &plan.launch else {
                panic!("{plan:?}")
            };
            assert_eq!(spec.program.file_name().unwrap(), CHRONYD, "{names:?}");
            assert_eq!(spec.user, None, "chronyd drops root itself once set up");
            assert_eq!(spec.args[0], "-d");
            assert!(spec
                .args
                .contains(&"server 0.pool.ntp.org iburst".to_string()));
        }
    }

    #[test]
    fn built_ins_start_in_dependency_order_and_debian_names_are_found() {
        let (_d, locator) = bin_dir(&[
            "prometheus",
            "prometheus-alertmanager",
            "prometheus-node-exporter",
        ]);
        let plans = plans(&Settings::default(), &env(), &locator);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_exporter",
                "alertmanager",
                "loki",
                "prometheus",
                "grafana",
                "blackbox"
            ]
        );
        let launch = |n: &str| &plans.iter().find(|p| p.name == n).unwrap().launch;
        assert!(
            matches!(launch("alertmanager"), Launch::Run(s) if s.program.ends_with("prometheus-alertmanager"))
        );
        match launch("loki") {
            Launch::NotInstalled { looked_at } => assert!(looked_at[0].ends_with("loki")),
            other => panic!("{other:?}"),
        }
        let Launch::Run(prom) = launch("prometheus") else {
            panic!()
        };
        assert!(prom.args.contains(&"--web.enable-lifecycle".to_string()));
        let Launch::Run(am) = launch("alertmanager") else {
            panic!()
        };
        for (args, child) in [(&prom.args, "prometheus"), (&am.args, "alertmanager")] {
            assert!(args.contains(&format!("--web.external-url=http://obsbox:8080/{child}/")));
            assert!(args.contains(&"--web.route-prefix=/".to_string()));
        }
        assert_eq!(
            prom.reload,
            Reload::HttpPost {
                port: 9090,
                path: "/-/reload".into()
            }
        );
    }

    #[test]
    fn grafana_gets_the_server_subcommand_only_from_the_new_binary() {
        for (binary, first) in [("grafana", "server"), ("grafana-server", "--homepath")] {
            let (_d, locator) = bin_dir(&[binary]);
            let plans = plans(&Settings::default(), &env(), &locator);
            let Launch::Run(spec) = &plans.iter().find(|p| p.name == "grafana").unwrap().launch
            else {
                panic!()
            };
            assert_eq!(spec.args[0], first);
        }
    }

    #[test]
    fn disabled_services_have_no_plan_and_extras_come_last() {
        let (_d, locator) = bin_dir(&["sleep"]);
        let mut settings = Settings::default();
        settings.services.grafana.enabled = false;
        settings.children.push(
            serde_json::from_value(serde_json::json!({
                "name": "napper", "command": ["sleep", "100"], "readiness": {"tcp": {"port": 7000}},
                "restart": {"crash_loop_exits": 0, "backoff_max_s": 10}
            }))
            .unwrap(),
        );
        let plans = plans(&settings, &env(), &locator);
        assert!(plans.iter().all(|p| p.name != "grafana"));
        let last = plans.last().unwrap();
        assert_eq!(last.name, "napper");
        let Launch::Run(spec) = &last.launch else {
            panic!()
        };
        assert_eq!(spec.args, ["100"]);
        assert_eq!(spec.readiness, Probe::Tcp { port: 7000 });
        assert_eq!(
            spec.restart,
            RestartPolicy {
                crash_loop_exits: 0,
                max_backoff: Duration::from_secs(10),
                ..RestartPolicy::default()
            }
        );
    }

    #[test]
    fn configured_binaries_are_used_and_reported_when_missing() {
        let (_d, locator) = bin_dir(&[]);
        let mut settings = Settings::default();
        settings.services.loki.binary = Some("/opt/loki/bin/loki".into());
        let plans = plans(&settings, &env(), &locator);
        let loki = plans.iter().find(|p| p.name == "loki").unwrap();
        assert_eq!(
            loki.launch,
            Launch::NotInstalled {
                looked_at: vec!["/opt/loki/bin/loki".into()]
            }
        );
    }

    #[test]
    fn a_directory_closed_to_the_child_user_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let closed = root.path().join("closed");
        let cwd = closed.join("data/children/x");
        std::fs::create_dir_all(&cwd).unwrap();
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(root.path(), 0o755);
        set(&closed, 0o700);
        let nobody = RunAs {
            uid: 65534,
            gid: 65534,
        };
        let blocked = blocked_at(&cwd, nobody).unwrap().unwrap();
        assert!(
            blocked.starts_with(&format!("{} is mode 700", closed.display())),
            "{blocked}"
        );
        assert_eq!(blocked_at(&cwd, RunAs { uid: 0, gid: 0 }).unwrap(), None);
        set(&closed, 0o711);
        assert_eq!(blocked_at(&cwd, nobody).unwrap(), None);
    }

    #[test]
    fn a_missing_child_user_breaks_the_built_ins_instead_of_running_them_as_root() {
        let (_d, locator) = bin_dir(&["prometheus"]);
        let mut settings = Settings::default();
        settings.general.child_user = "no-such-user-here".into();
        assert_eq!(
            builtin_user(&settings.general.child_user, true),
            Err("no user 'no-such-user-here' in /etc/passwd".into())
        );
        assert_eq!(builtin_user("no-such-user-here", false), Ok(None));
        assert_eq!(builtin_user("", true), Ok(None));
        if is_root() {
            let plans = plans(&settings, &env(), &locator);
            let prom = plans.iter().find(|p| p.name == "prometheus").unwrap();
            assert_eq!(
                prom.launch,
                Launch::Broken("no user 'no-such-user-here' in /etc/passwd".into())
            );
        }
    }
}
