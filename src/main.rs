//! obsbox: the firmware service of an observability and backup appliance.

mod accounts;
mod alerts;
mod app;
mod backup;
mod backup_cli;
mod clock;
mod config;
mod dashboards_cli;
mod data_boot;
mod data_lock;
mod diagnostics;
mod disks;
mod events;
mod exporters;
mod fleet;
mod grafana_import;
mod http_client;
mod lifecycle;
mod logs;
mod ota;
mod power;
mod prometheus_query;
mod report;
mod reset;
mod responder;
mod scrape_status;
mod services;
mod settings;
mod store;
mod supervisor;
mod tls;
mod upstream;
mod web;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(
    name = "obsbox",
    version,
    about = "Observability and backup appliance: supervises the monitoring stack and serves its admin UI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise every child and serve the web UI until SIGTERM or SIGINT
    /// (SIGHUP applies the stored settings; SIGUSR1 logs each child's status).
    Run {
        #[command(flatten)]
        data: DataDir,
        /// Address of the web UI and API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Serve the web UI and API over HTTPS too, on this address; plain HTTP
        /// from other hosts is then redirected there.
        #[arg(long)]
        https_listen: Option<SocketAddr>,
        /// The firmware description, for updates [default: /etc/obsbox/firmware.json, if present].
        #[arg(long)]
        firmware: Option<PathBuf>,
        /// The GPIO line (by name, as `gpioinfo` lists it) of the reset
        /// button: held 10 s, it resets the box to first-boot setup.
        #[arg(long, value_name = "LINE_NAME")]
        reset_button: Option<String>,
        /// The GPIO line of an LED that blinks while the reset button is held.
        #[arg(long, value_name = "LINE_NAME", requires = "reset_button")]
        reset_led: Option<String>,
        /// The reset button pulls its line low when pressed (a switch to
        /// ground); obsbox then asks for a pull-up.
        #[arg(long, requires = "reset_button")]
        reset_button_active_low: bool,
        /// Offer a prompt (status, addresses, reboot, factory reset) on this
        /// tty, e.g. /dev/ttyS0, or /dev/serial0 on a Raspberry Pi.
        #[arg(long, value_name = "PATH")]
        console: Option<PathBuf>,
        /// Web connections open at once, over every listener [default: from
        /// the open-file limit, keeping 512 descriptors for everything else].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
        /// The block device of the data file system, which the recovery page
        /// can check or reformat when the data cannot be used.
        #[arg(long, value_name = "PATH")]
        data_device: Option<PathBuf>,
        /// (Given by the image's init.) The data partition could not be
        /// mounted, for this reason: start in recovery without touching the
        /// data directory.
        #[arg(long, value_name = "REASON")]
        data_problem: Option<String>,
    },
    /// Validate the settings and every rendered child config; exit non-zero on a problem.
    Check {
        #[command(flatten)]
        data: DataDir,
        /// Check this configuration file (from `settings export`) instead of
        /// the stored settings; works offline, on any machine.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Read or write settings in the store (for setup and scripts; a running
    /// obsbox takes changes through its API, or from the store on SIGHUP).
    Settings {
        #[command(subcommand)]
        action: SettingsAction,
    },
    /// A backup job's snapshots and files, and restoring them.
    Backup {
        #[command(subcommand)]
        action: backup_cli::BackupAction,
    },
    /// Legacy Grafana dashboards imported into the "Imported" folder.
    Dashboards {
        #[command(subcommand)]
        action: dashboards_cli::DashboardsAction,
    },
    /// The settings database's copies, and restoring one when it is damaged.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Make, check and read update bundles (on a build machine).
    Bundle {
        #[command(subcommand)]
        action: BundleAction,
    },
    /// The box's firmware slots: their state, and installing an update from a shell.
    Update {
        #[command(subcommand)]
        action: UpdateAction,
    },
    /// (For the image's init.) Counts failed mounts of the data partition in
    /// a file on the boot partition; `failed` prints what to do next:
    /// `reboot` (the first failure) or `recover` (from the second on).
    DataBoot {
        #[command(subcommand)]
        event: DataBootEvent,
    },
}

#[derive(Subcommand)]
enum DataBootEvent {
    /// The mount failed: count it and print `reboot` or `recover`.
    Failed {
        #[arg(long, value_name = "FILE")]
        count_file: PathBuf,
    },
    /// The mount worked: clear the count.
    Mounted {
        #[arg(long, value_name = "FILE")]
        count_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DbAction {
    /// List the copies in <data>/db-backups, newest first.
    Copies {
        #[command(flatten)]
        data: DataDir,
    },
    /// Replace a damaged database (empty, unreadable, failing its integrity
    /// check) with a copy; refused while the database is healthy. The damaged
    /// files are kept in <data>/db-backups/damaged-<time>/.
    Restore {
        /// The copy's file name, as `db copies` lists it [default: the newest good one].
        copy: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum BundleAction {
    /// Make an ed25519 key pair: the secret signs bundles, the public key ships in the image.
    Keygen {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        public: PathBuf,
    },
    /// Sign and pack slot images into a bundle.
    Create {
        /// The secret key (from `bundle keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The firmware version, dotted numbers.
        #[arg(long)]
        version: String,
        /// A board the firmware runs on (repeat for several): x86_64, rpi4, rpi5.
        #[arg(long = "compatible", required = true)]
        compatible: Vec<String>,
        /// The root file system image.
        #[arg(long)]
        rootfs: PathBuf,
        /// The boot partition image, for boards whose slots have one.
        #[arg(long)]
        boot: Option<PathBuf>,
        #[arg(long, short)]
        output: PathBuf,
        /// zstd compression level.
        #[arg(long, default_value_t = 10)]
        level: i32,
    },
    /// Check a bundle's signature and every block of it.
    Verify {
        #[arg(long)]
        public_key: PathBuf,
        bundle: PathBuf,
    },
    /// Print a bundle's manifest (its signature is not checked).
    Inspect { bundle: PathBuf },
}

#[derive(Subcommand)]
enum UpdateAction {
    /// Both slots, which one runs and which is committed, the trial, the last rollback.
    Status {
        #[command(flatten)]
        box_: BoxPaths,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a bundle (a file or an http(s):// URL) into the slot that is not running.
    Install {
        source: String,
        /// Install even an older version.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        box_: BoxPaths,
    },
}

#[derive(clap::Args)]
struct BoxPaths {
    #[command(flatten)]
    data: DataDir,
    /// The firmware description [default: /etc/obsbox/firmware.json].
    #[arg(long)]
    firmware: Option<PathBuf>,
}

impl BoxPaths {
    /// The box's slots; `read_only` refuses a data directory that is not there.
    fn open(&self, read_only: bool) -> anyhow::Result<ota::Ota> {
        let dir = if read_only {
            app::existing_data_dir(&self.data.path())?
        } else {
            app::data_dir(&self.data.path())?
        };
        let firmware = self
            .firmware
            .as_deref()
            .unwrap_or(Path::new(ota::FIRMWARE_FILE));
        Ok(ota::Ota::open(&dir, Some(firmware))?)
    }
}

#[derive(clap::Args)]
struct DataDir {
    /// Where obsbox keeps everything [default: /data/obsbox on the appliance, ./obsbox-data elsewhere].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            // The appliance mounts its data partition on /data.
            if Path::new("/data").is_dir() {
                PathBuf::from("/data/obsbox")
            } else {
                PathBuf::from("./obsbox-data")
            }
        })
    }
}

#[derive(Subcommand)]
enum SettingsAction {
    /// Print the settings (one section, or all) as JSON.
    Get {
        section: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Replace one section with a JSON document; refused if anything in it is invalid.
    Set {
        section: String,
        json: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Print the whole configuration as one YAML file; secrets are named, never included.
    Export {
        /// Also write the values of the secrets the file names to this
        /// file, encrypted with a passphrase.
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        #[command(flatten)]
        passphrase: Passphrase,
        #[command(flatten)]
        data: DataDir,
    },
    /// Replace the whole configuration with a YAML file (from `settings
    /// export`), after the checks `check --file` makes; sections the file
    /// leaves out become their defaults.
    Import {
        file: PathBuf,
        /// An encrypted secrets bundle (from `settings export --secrets`).
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        #[command(flatten)]
        passphrase: Passphrase,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

/// The passphrase of a secrets bundle: never on the command line, where
/// every user's `ps` shows it.
#[derive(clap::Args)]
struct Passphrase {
    /// A file whose first line is the passphrase [default: the environment
    /// variable OBSBOX_SECRETS_PASSPHRASE].
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

impl Passphrase {
    fn read(&self) -> anyhow::Result<String> {
        let passphrase = match &self.passphrase_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            None => std::env::var("OBSBOX_SECRETS_PASSPHRASE").context(
                "a secrets bundle needs a passphrase: --passphrase-file or OBSBOX_SECRETS_PASSPHRASE",
            )?,
        };
        Ok(passphrase)
    }
}

fn main() -> ExitCode {
    // The cgroup guardian first, before anything else runs: it lives as long
    // as obsbox and needs nothing of its start-up (argument parser, logging,
    // allocator settings), whose pages would stay resident in it for nothing.
    if let Some(dir) = supervisor::cgroup::guard_dir(std::env::args_os()) {
        supervisor::cgroup::guard(&dir, init_logging);
        return ExitCode::SUCCESS;
    }
    // A fixed threshold: blocks of 128 KiB and more (a login's 7 MiB of
    // password hashing, log read buffers) get mappings of their own and go
    // back to the system when freed. glibc's default raises the threshold
    // after the first such free, and the memory then stays resident.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    let cli = Cli::parse();
    let own_log = init_logging();
    match run(cli.command, &own_log) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("obsbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, and to the returned log once `run` attaches it to a file.
fn init_logging() -> logs::OwnLog {
    // `target=level` directives, as RUST_LOG writes them; the simpler
    // `Targets` filter needs no regex engine, which a small box would carry
    // in memory for nothing.
    let filter: tracing_subscriber::filter::Targets = std::env::var("OBSBOX_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| "info".parse().expect("a constant filter parses"));
    // The same events go to `logs/obsbox/current` (plain text) once `run` attaches it.
    let own_log = logs::OwnLog::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(own_log.clone())
                .with_ansi(false)
                // The capture's own complaints (a full disk) would feed back
                // into the capture that cannot write them.
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    !meta.target().starts_with("obsbox::supervisor::logs")
                })),
        )
        .with(filter)
        .init();
    own_log
}

/// Raises the soft open-file limit to the hard one (a web client, a child's
/// pipe, a log segment each take a descriptor; 1024 runs out under load) and
/// returns the limit in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            1024
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: obsbox spawns children from it, so each child's
    // PR_SET_PDEATHSIG is tied to a thread that lives as long as obsbox.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command, own_log: &logs::OwnLog) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            data,
            listen,
            https_listen,
            firmware,
            reset_button,
            reset_led,
            reset_button_active_low,
            console,
            max_connections,
            data_device,
            data_problem,
        } => {
            // Before anything else runs: it edits the environment.
            let inherited = power::inherited();
            let open_files = raise_open_file_limit();
            let on = app::Listen {
                http: listen,
                https: https_listen,
                max_connections: max_connections
                    .map_or_else(|| web::serve::total_for(open_files), |n| n as usize),
            };
            let controls = reset::Controls {
                button: reset_button.map(|button| reset::ButtonLines {
                    button,
                    led: reset_led,
                    active_low: reset_button_active_low,
                }),
                console,
            };
            let data_boot = app::DataBoot {
                device: data_device,
                problem: data_problem,
            };
            let with = app::RunWith {
                firmware: firmware.as_deref(),
                controls: &controls,
                own_log,
                data: &data_boot,
            };
            let ended = runtime()?.block_on(app::run(&data.path(), &on, &with, inherited))?;
            // Held through a factory reset's wipe; the re-execution for a
            // reboot lets it go at the exec (close-on-exec) and takes it again.
            let _data_lock = ended.lock;
            match ended.ending {
                lifecycle::Ending::Stop | lifecycle::Ending::PowerOff => {
                    tracing::info!("bye");
                    return Ok(ExitCode::SUCCESS);
                }
                lifecycle::Ending::Reboot => {}
                lifecycle::Ending::FactoryReset => {
                    // Come back either way: a box that stays down helps nobody.
                    if let Err(e) = reset::wipe(&app::data_dir(&data.path())?) {
                        tracing::error!(error = %e, "the factory reset did not finish; rebooting anyway");
                    }
                }
            }
            Err(power::reboot(ended.sockets, ended.reboot_argument)).context("cannot reboot")
        }
        Command::Check { data, file } => {
            let text = file
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))
                })
                .transpose()?;
            let checked = runtime()?.block_on(app::check(&data.path(), text.as_deref()))?;
            Ok(report_check(checked))
        }
        Command::Settings { action } => settings_command(action),
        Command::Db { action } => db_command(action),
        Command::Dashboards { action } => dashboards_cli::command(action),
        Command::Backup { action } => backup_cli::command(action),
        Command::Bundle { action } => bundle_command(action),
        Command::Update { action } => update_command(action),
        Command::DataBoot { event } => match event {
            DataBootEvent::Failed { count_file } => {
                println!("{}", data_boot::record_failure(&count_file).word());
                Ok(ExitCode::SUCCESS)
            }
            DataBootEvent::Mounted { count_file } => {
                data_boot::record_mount(&count_file)
                    .with_context(|| format!("cannot clear {}", count_file.display()))?;
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// Prints a check's report (stdout) or its problems (stderr, non-zero exit).
fn report_check(checked: Result<Vec<String>, Vec<String>>) -> ExitCode {
    match checked {
        Ok(report) => {
            for line in report {
                println!("ok: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for line in problems {
                eprintln!("problem: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn settings_command(action: SettingsAction) -> anyhow::Result<ExitCode> {
    match action {
        SettingsAction::Get { section, data } => {
            let store = store::Store::open_existing(&app::existing_data_dir(&data.path())?)?;
            let all = serde_json::to_value(store.settings()?)?;
            let shown = match section {
                Some(name) => all
                    .get(&name)
                    .cloned()
                    .with_context(|| format!("no settings section named '{name}'"))?,
                None => all,
            };
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(ExitCode::SUCCESS)
        }
        SettingsAction::Set {
            section,
            json,
            data,
        } => {
            let value: serde_json::Value =
                serde_json::from_str(&json).context("the value is not JSON")?;
            let store = store::Store::open(&app::data_dir(&data.path())?)?;
            let settings = store.propose(&section, value)?;
            store.write_section(&settings, &section, "cli")?;
            println!(
                "{section} updated; a running obsbox applies it on SIGHUP or at its next start"
            );
            Ok(ExitCode::SUCCESS)
        }
        SettingsAction::Export {
            secrets,
            passphrase,
            data,
        } => {
            let store = store::Store::open_existing(&app::existing_data_dir(&data.path())?)?;
            let names = config::stored_secrets(&store)?;
            if let Some(path) = secrets {
                let values = config::read_secrets(&store, &names)?;
                let sealed = config::bundle::seal(&values, &passphrase.read()?)?;
                store::write_private(&path, &sealed, 0o600)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("{} secrets sealed into {}", values.len(), path.display());
            }
            print!("{}", config::export(&store.settings()?, &names)?);
            Ok(ExitCode::SUCCESS)
        }
        SettingsAction::Import {
            file,
            secrets,
            passphrase,
            dry_run,
            data,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            // A dry run creates nothing.
            let dir = if dry_run {
                app::existing_data_dir(&data.path())?
            } else {
                app::data_dir(&data.path())?
            };
            // The same checks as `obsbox check --file`, children's checkers included.
            let checked = runtime()?.block_on(app::check(&dir, Some(&text)))?;
            if checked.is_err() {
                return Ok(report_check(checked));
            }
            let bundle = match secrets {
                Some(path) => Some((
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    passphrase.read()?,
                )),
                None => None,
            };
            let store = if dry_run {
                store::Store::open_existing(&dir)?
            } else {
                store::Store::open(&dir)?
            };
            let import = config::Import {
                text: &text,
                bundle: bundle.as_ref().map(|(b, p)| (b.as_slice(), p.as_str())),
                dry_run,
                actor: "cli",
            };
            let plan = config::import_stored(&store, &import)?;
            for line in plan.describe() {
                println!("{line}");
            }
            if dry_run {
                println!("dry run: nothing was changed");
            } else {
                println!("imported; a running obsbox applies it on SIGHUP or at its next start");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn db_command(action: DbAction) -> anyhow::Result<ExitCode> {
    use store::copies;
    match action {
        DbAction::Copies { data } => {
            let dir = app::existing_data_dir(&data.path())?;
            let list = copies::list(&dir)?;
            if list.is_empty() {
                println!("no copies in {}", dir.join(copies::DIR).display());
            }
            for copy in list {
                let at = jiff::Timestamp::from_millisecond(copy.taken_at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                println!(
                    "{}  {at}  {} bytes  host {}",
                    copy.name,
                    copy.bytes,
                    copy.hostname.as_deref().unwrap_or("?")
                );
            }
        }
        DbAction::Restore { copy, data } => {
            let dir = app::existing_data_dir(&data.path())?;
            let restored = copies::restore(&dir, copy.as_deref())?;
            println!(
                "restored {} (host {}); the damaged files are in {}",
                restored.copy.name,
                restored.copy.hostname.as_deref().unwrap_or("?"),
                restored.damaged_kept_at.display()
            );
            println!("restart obsbox, or press \"Check again\" on its recovery page");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bundle_command(action: BundleAction) -> anyhow::Result<ExitCode> {
    use ota::bundle;
    match action {
        BundleAction::Keygen { secret, public } => {
            bundle::generate_keys(&secret, &public)?;
            println!("secret key: {} (keep it off the box)", secret.display());
            println!("public key: {} (ship it in the image)", public.display());
        }
        BundleAction::Create {
            key,
            version,
            compatible,
            rootfs,
            boot,
            output,
            level,
        } => {
            let mut images = vec![("rootfs", rootfs)];
            images.extend(boot.map(|b| ("boot", b)));
            let contents = bundle::Contents {
                version: &version,
                compatible: &compatible,
                images: &images,
                level,
            };
            let manifest = bundle::create(&contents, &bundle::read_secret_key(&key)?, &output)?;
            let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
            println!(
                "{}: version {} for {}, {} bytes",
                output.display(),
                manifest.version,
                manifest.compatible.join(", "),
                size
            );
        }
        BundleAction::Verify { public_key, bundle } => {
            let key = ota::bundle::read_public_key(&public_key)?;
            match ota::bundle::verify(&bundle, &key) {
                Ok(manifest) => println!(
                    "ok: version {} for {}",
                    manifest.version,
                    manifest.compatible.join(", ")
                ),
                Err(e) => {
                    eprintln!("refused: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        BundleAction::Inspect { bundle } => {
            let manifest = ota::bundle::inspect(&bundle)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn update_command(action: UpdateAction) -> anyhow::Result<ExitCode> {
    match action {
        UpdateAction::Status { box_, json } => {
            let status = box_.open(true)?.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", ota::describe(&status));
            }
        }
        UpdateAction::Install {
            source,
            force,
            box_,
        } => {
            let ota = box_.open(false)?;
            let source = if source.starts_with("http://") || source.starts_with("https://") {
                ota::Source::Url(source)
            } else {
                ota::Source::File(source.into())
            };
            let installed = ota.install(source, force)?;
            println!(
                "installed {} into slot {}: {} (written in {:.1} s, read back in {:.1} s)",
                installed.version,
                installed.slot,
                installed.next_boot,
                installed.write_seconds,
                installed.read_back_seconds
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
