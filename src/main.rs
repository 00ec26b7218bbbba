//! obsbox: the firmware service of an observability and backup appliance.

mod accounts;
mod alerts;
mod app;
mod backup;
mod diagnostics;
mod disks;
mod http_client;
mod power;
mod reset;
mod services;
mod settings;
mod store;
mod supervisor;
mod tls;
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
    /// Supervise every child and serve the web UI until SIGTERM or SIGINT.
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
    },
    /// Validate the settings and every rendered child config; exit non-zero on a problem.
    Check {
        #[command(flatten)]
        data: DataDir,
    },
    /// Read or write settings in the store (for setup and scripts; a running
    /// obsbox takes changes through its API).
    Settings {
        #[command(subcommand)]
        action: SettingsAction,
    },
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
}

fn main() -> ExitCode {
    // A fixed threshold: blocks of 128 KiB and more (a login's 7 MiB of
    // password hashing, log read buffers) get mappings of their own and go
    // back to the system when freed. glibc's default raises the threshold
    // after the first such free, and the memory then stays resident.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    let cli = Cli::parse();
    // `target=level` directives, as RUST_LOG writes them; the simpler
    // `Targets` filter needs no regex engine, which a small box would carry
    // in memory for nothing.
    let filter: tracing_subscriber::filter::Targets = std::env::var("OBSBOX_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| "info".parse().expect("a constant filter parses"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("obsbox: {e:#}");
            ExitCode::FAILURE
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

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            data,
            listen,
            https_listen,
            reset_button,
            reset_led,
            reset_button_active_low,
            console,
        } => {
            // Before anything else runs: it edits the environment.
            let inherited = power::inherited();
            let on = app::Listen {
                http: listen,
                https: https_listen,
            };
            let controls = reset::Controls {
                button: reset_button.map(|button| reset::ButtonLines {
                    button,
                    led: reset_led,
                    active_low: reset_button_active_low,
                }),
                console,
            };
            let (ending, sockets) =
                runtime()?.block_on(app::run(&data.path(), &on, &controls, inherited))?;
            match ending {
                app::Ending::Stop | app::Ending::PowerOff => {
                    tracing::info!("bye");
                    return Ok(ExitCode::SUCCESS);
                }
                app::Ending::Reboot => {}
                app::Ending::FactoryReset => {
                    // Come back either way: a box that stays down helps nobody.
                    if let Err(e) = reset::wipe(&app::data_dir(&data.path())?) {
                        tracing::error!(error = %e, "the factory reset did not finish; rebooting anyway");
                    }
                }
            }
            Err(power::reboot(sockets)).context("cannot reboot")
        }
        Command::Check { data } => match runtime()?.block_on(app::check(&data.path()))? {
            Ok(report) => {
                for line in report {
                    println!("ok: {line}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                for line in problems {
                    eprintln!("problem: {line}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Settings { action } => settings_command(action),
    }
}

fn settings_command(action: SettingsAction) -> anyhow::Result<ExitCode> {
    match action {
        SettingsAction::Get { section, data } => {
            let store = store::Store::open(&app::data_dir(&data.path())?)?;
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
            println!("{section} updated; a running obsbox applies it at its next start");
            Ok(ExitCode::SUCCESS)
        }
    }
}
