//! The diagnostics bundle a user downloads and attaches to a bug report: a
//! zstd-compressed tar of what explains the box's state (rendered configs,
//! recent child output, versions, settings, service states, recent audit
//! entries). It is built only from those sources, never from the data
//! directory as a whole, so no secret (`secrets/`, the TLS key, the
//! children's copies of secrets) can end up in it.

use crate::services::{Services, ServicesError};
use crate::store::{Store, StoreError};
use crate::supervisor::{Reaper, Supervisor, SupervisorError};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Lines of each child's output in the bundle.
const LOG_LINES: usize = 1000;
/// Audit entries in the bundle.
const AUDIT_ENTRIES: u32 = 200;
/// How long a child's `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DiagnosticsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Services(#[from] ServicesError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("cannot pack the bundle: {0}")]
    Pack(#[from] std::io::Error),
    #[error("packing the bundle stopped: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
}

/// What the bundle is made from.
pub struct DiagnosticsContext {
    pub services: Arc<Services>,
    pub supervisor: Supervisor,
    pub store: Store,
    pub reaper: Reaper,
}

/// A finished bundle.
pub struct Bundle {
    /// `obsbox-diagnostics-<hostname>-<YYYYmmddTHHMMSSZ>.tar.zst`
    pub filename: String,
    pub bytes: Vec<u8>,
}

pub struct Diagnostics {
    ctx: DiagnosticsContext,
}

impl Diagnostics {
    pub fn new(ctx: DiagnosticsContext) -> Diagnostics {
        Diagnostics { ctx }
    }

    /// Gathers everything, then packs it off the async thread.
    pub async fn bundle(&self) -> Result<Bundle, DiagnosticsError> {
        let ctx = &self.ctx;
        let settings = ctx.store.settings()?;
        let status = ctx.supervisor.status().await?;
        let stem = format!(
            "obsbox-diagnostics-{}-{}",
            file_safe(&settings.general.hostname),
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        );
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("versions.txt".into(), self.versions().await?.into_bytes()),
            ("settings.json".into(), json(&settings)),
            ("services.json".into(), json(&status)),
            (
                "audit.json".into(),
                json(&ctx.store.audit_log(AUDIT_ENTRIES)?),
            ),
        ];
        for child in &status {
            for (path, contents) in ctx.services.rendered(&child.name) {
                files.push((format!("config/{path}"), contents.into_bytes()));
            }
            if let Some(lines) = ctx.supervisor.tail(&child.name, LOG_LINES).await? {
                let mut log = lines.join("\n");
                log.push('\n');
                files.push((format!("logs/{}.log", child.name), log.into_bytes()));
            }
        }
        let prefix = stem.clone();
        let bytes = tokio::task::spawn_blocking(move || pack(&prefix, &files)).await??;
        Ok(Bundle {
            filename: format!("{stem}.tar.zst"),
            bytes,
        })
    }

    /// obsbox's version, the kernel's, and each child's `--version`.
    async fn versions(&self) -> Result<String, DiagnosticsError> {
        let mut text = format!("obsbox {}\n", env!("CARGO_PKG_VERSION"));
        match nix::sys::utsname::uname() {
            Ok(u) => text.push_str(&format!(
                "uname: {} {} {} {} {}\n",
                u.sysname().to_string_lossy(),
                u.nodename().to_string_lossy(),
                u.release().to_string_lossy(),
                u.version().to_string_lossy(),
                u.machine().to_string_lossy()
            )),
            Err(e) => text.push_str(&format!("uname: {e}\n")),
        }
        let mut runs = tokio::task::JoinSet::new();
        for (order, (child, program)) in self.ctx.services.programs()?.into_iter().enumerate() {
            let reaper = self.ctx.reaper.clone();
            runs.spawn(async move {
                let mut cmd = Command::new(&program);
                cmd.arg("--version");
                let said = match reaper.output(cmd, VERSION_TIMEOUT).await {
                    Ok((_, output)) => output.trim().to_string(),
                    Err(e) => format!("(cannot run it: {e})"),
                };
                (order, child, program, said)
            });
        }
        let mut children: Vec<(usize, String, PathBuf, String)> = runs.join_all().await;
        children.sort_by_key(|c| c.0);
        for (_, child, program, said) in children {
            text.push_str(&format!("\n{child} ({}):\n{said}\n", program.display()));
        }
        Ok(text)
    }
}

/// A host name as it may stand in a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A zstd-compressed tar of `files`, each under `prefix/`.
fn pack(prefix: &str, files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3)?);
    for (name, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(now);
        tar.append_data(&mut header, format!("{prefix}/{name}"), contents.as_slice())?;
    }
    tar.into_inner()?.finish()
}

/// Pretty JSON, as a file of the bundle.
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_bundle_unpacks_to_its_files() {
        let files = vec![
            ("versions.txt".to_string(), b"obsbox 1\n".to_vec()),
            ("config/children/x/x.yml".to_string(), b"a: 1\n".to_vec()),
        ];
        let bytes = pack("diag", &files).unwrap();
        let mut archive = tar::Archive::new(zstd::Decoder::new(bytes.as_slice()).unwrap());
        let mut found = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            found.push((entry.path().unwrap().display().to_string(), text));
        }
        assert_eq!(
            found,
            [
                ("diag/versions.txt".to_string(), "obsbox 1\n".to_string()),
                ("diag/config/children/x/x.yml".into(), "a: 1\n".into())
            ]
        );
    }

    #[test]
    fn host_names_are_made_safe_for_file_names() {
        assert_eq!(file_safe("rack-1.lan"), "rack-1.lan");
        assert_eq!(file_safe("a\"b/c d"), "a-b-c-d");
    }
}
