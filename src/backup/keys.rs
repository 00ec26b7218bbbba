//! Encryption keys made on the box. For PBS the client itself creates the key
//! file, kept as the job's `encryption-key` secret, so every later backup,
//! drill and restore uses it; its metadata comes back from `key show`, never
//! the key. Without a passphrase (`key create --kdf none`) the file is the
//! key, protected by being readable by root only, as PBS's own unattended
//! setups keep it; with one (`--kdf scrypt`, typed at the terminal the client
//! insists on) the file is useless without the passphrase, which is kept as
//! the job's `encryption-password` secret and reaches the client as
//! `PBS_ENCRYPTION_PASSWORD_FILE`.
//!
//! restic has no key apart from the repository's passwords: each password
//! opens a key of its own in the repository (`restic key list`), so a second
//! one (a recovery password kept off the box) can be added and removed, and
//! the job's own one changed (`key passwd`), always through a private file
//! (`--new-password-file`), never shown back.

use super::client::Client;
use super::paper::PaperKey;
use super::restore::capture;
use super::terminal::{check_passphrase, run_typing, typed_twice};
use super::{BackupError, Backups};
use crate::settings::BackupBackend;
use crate::store::Store;
use crate::supervisor::Reaper;
use serde::Serialize;

/// What `key show --output-format json` says of a key file: no key material.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    /// `none`, `scrypt` or `pbkdf2`: how the key file is protected.
    pub kdf: String,
    /// The key's fingerprint (colon-separated hex), as PBS shows it in each
    /// snapshot it encrypted.
    pub fingerprint: String,
    /// Unix seconds.
    pub created: Option<i64>,
    pub modified: Option<i64>,
}

/// Reads `key show --output-format json`.
pub fn key_info(json: &str) -> Result<KeyInfo, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the key's metadata is not JSON: {e}"))?;
    let text = |name: &str| {
        v[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("the key's metadata has no '{name}'"))
    };
    Ok(KeyInfo {
        kdf: text("kdf")?,
        fingerprint: text("fingerprint")?,
        created: v["created"].as_i64(),
        modified: v["modified"].as_i64(),
    })
}

fn key_show_args(path: &std::path::Path) -> Vec<String> {
    vec![
        "key".into(),
        "show".into(),
        path.display().to_string(),
        "--output-format".into(),
        "json".into(),
    ]
}

/// What the key operations of one job need: its client, the reaper its
/// client runs under, and the store its secrets and audit log are in. The
/// API builds it from the running service, `obsbox backup key` from the
/// stored settings.
pub(crate) struct KeyJob<'a> {
    pub client: Client,
    pub reaper: &'a Reaper,
    pub store: &'a Store,
}

impl Backups {
    /// `job`'s key operations.
    pub(crate) fn keys(&self, job: &str) -> Result<KeyJob<'_>, BackupError> {
        Ok(KeyJob {
            client: self.client_of(job)?,
            reaper: &self.ctx.reaper,
            store: &self.ctx.store,
        })
    }
}

impl KeyJob<'_> {
    fn job(&self) -> &str {
        &self.client.job.name
    }

    fn key_path(&self) -> Result<&std::path::Path, BackupError> {
        refuse_restic(&self.client)?;
        self.client
            .secrets
            .encryption_key
            .as_deref()
            .ok_or_else(|| {
                BackupError::NotFound(format!("backup job '{}' has no encryption key", self.job()))
            })
    }

    /// The metadata of the job's encryption key.
    pub async fn info(&self) -> Result<KeyInfo, BackupError> {
        let path = self.key_path()?;
        let (json, _) = capture(&self.client, self.reaper, &key_show_args(path)).await?;
        key_info(&json).map_err(BackupError::Client)
    }

    fn file(&self) -> Result<Vec<u8>, BackupError> {
        let path = self.key_path()?;
        std::fs::read(path).map_err(|e| BackupError::Client(format!("{}: {e}", path.display())))
    }

    /// The job's key file, for a copy kept off the box, handed to `actor`
    /// (audited).
    pub fn export(&self, actor: &str) -> Result<Vec<u8>, BackupError> {
        let key = self.file()?;
        self.store.audit(actor, "backup.key_export", self.job())?;
        Ok(key)
    }

    /// The job's key on paper, handed to `actor` (audited): PBS's key file,
    /// or restic's password (the key a restic user must keep).
    pub fn paper(&self, actor: &str) -> Result<PaperKey, BackupError> {
        let job = &self.client.job;
        let subject = format!("backup job {} ({})", job.name, job.repository);
        let made = match job.backend {
            BackupBackend::Restic => {
                let path = self.client.secrets.password.as_deref().ok_or_else(|| {
                    BackupError::NotFound(format!("backup job '{}' has no password", job.name))
                })?;
                let password = std::fs::read(path)
                    .map_err(|e| BackupError::Client(format!("{}: {e}", path.display())))?;
                PaperKey::restic(subject, &password)
            }
            BackupBackend::Pbs => PaperKey::pbs(subject, &self.file()?),
        };
        let paper = made.map_err(BackupError::Client)?;
        self.store.audit(actor, "backup.key_paperkey", &job.name)?;
        Ok(paper)
    }

    /// Has the client create a new key for the job, which has none yet (a
    /// key is never replaced here: snapshots made with it need it to
    /// restore), protected by `passphrase` when one is given.
    pub async fn create(
        &self,
        actor: &str,
        passphrase: Option<&str>,
    ) -> Result<KeyInfo, BackupError> {
        if let Some(passphrase) = passphrase {
            check_passphrase(passphrase).map_err(BackupError::Refused)?;
        }
        let (client, job) = (&self.client, self.job());
        refuse_restic(client)?;
        if client.secrets.encryption_key.is_some() {
            return Err(BackupError::Exists(format!(
                "the encryption key of '{job}'"
            )));
        }
        let store = self.store;
        let name = format!("backup/{job}/encryption-key");
        // The client refuses to write over a file: it makes a new one beside
        // the secret, which is then stored as the secret (0600) in one rename.
        let fresh = store.secret_path(&format!("{name}.new"));
        if let Some(dir) = fresh.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| BackupError::Client(format!("{}: {e}", dir.display())))?;
        }
        let _ = std::fs::remove_file(&fresh);
        let args = [
            "key".to_string(),
            "create".into(),
            fresh.display().to_string(),
            "--kdf".into(),
            if passphrase.is_some() {
                "scrypt"
            } else {
                "none"
            }
            .into(),
        ];
        let reaper = self.reaper;
        let made = match passphrase {
            Some(passphrase) => run_typing(client, reaper, &args, &typed_twice(passphrase))
                .await
                .map(drop),
            None => capture(client, reaper, &args).await.map(drop),
        };
        let password_name = format!("backup/{job}/encryption-password");
        let stored = made.and_then(|_| {
            let key = std::fs::read(&fresh).map_err(|e| BackupError::Client(e.to_string()))?;
            match passphrase {
                Some(passphrase) => store.put_secret(&password_name, passphrase.as_bytes())?,
                // A passphrase left from an uploaded key would be tried on this one.
                None => remove_secret(store, &password_name)?,
            }
            Ok(store.put_secret(&name, &key)?)
        });
        let _ = std::fs::remove_file(&fresh);
        stored?;
        let (json, _) = capture(client, reaper, &key_show_args(&store.secret_path(&name))).await?;
        let info = key_info(&json).map_err(BackupError::Client)?;
        store.audit(
            actor,
            "backup.secret",
            &format!(
                "{job}: encryption key created ({}, kdf {})",
                info.fingerprint, info.kdf
            ),
        )?;
        Ok(info)
    }
}

/// One of a restic repository's keys, from `restic key list --json`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ResticKey {
    /// Its short id, as `key remove` takes it.
    pub id: String,
    /// Whether the job's own password opens it.
    pub current: bool,
    #[serde(rename(deserialize = "userName"))]
    pub user: String,
    #[serde(rename(deserialize = "hostName"))]
    pub host: String,
    /// `YYYY-MM-DD HH:MM:SS`, as restic prints it.
    pub created: String,
}

/// Reads `restic key list --json`.
pub fn restic_keys(json: &str) -> Result<Vec<ResticKey>, String> {
    serde_json::from_str(json)
        .map_err(|e| format!("restic's key list is not what it should be: {e}"))
}

/// A new restic password: restic reads the first line of the file.
pub fn check_restic_password(password: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    if password.is_empty() {
        problems.push("the password must not be empty");
    }
    if password.len() > 4096 {
        problems.push("the password must be at most 4096 bytes long");
    }
    if password.contains(['\n', '\r']) {
        problems.push("the password must be one line");
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}

/// A restic key id as `key list` shows it (hex), so it is never taken for an option.
fn check_key_id(id: &str) -> Result<(), BackupError> {
    match !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => Ok(()),
        false => Err(BackupError::NotFound(format!("no restic key '{id}'"))),
    }
}

impl KeyJob<'_> {
    fn refuse_pbs(&self) -> Result<(), BackupError> {
        if self.client.job.backend != BackupBackend::Restic {
            return Err(BackupError::Refused(
                "only a restic repository has passwords of its own; a PBS job has an encryption key".into(),
            ));
        }
        Ok(())
    }

    /// The keys of the job's restic repository.
    pub async fn restic_keys(&self) -> Result<Vec<ResticKey>, BackupError> {
        self.refuse_pbs()?;
        let args = ["key", "list", "--json"].map(String::from);
        let (json, _) = capture(&self.client, self.reaper, &args).await?;
        restic_keys(&json).map_err(BackupError::Client)
    }

    /// Runs `restic key <command> --new-password-file` with `password` in a
    /// private scratch file, removed afterwards whatever happened.
    async fn with_new_password(&self, command: &str, password: &str) -> Result<(), BackupError> {
        self.refuse_pbs()?;
        check_restic_password(password).map_err(BackupError::Refused)?;
        let store = self.store;
        let mut nonce = [0u8; 8];
        getrandom::getrandom(&mut nonce).map_err(|e| BackupError::Client(e.to_string()))?;
        let scratch = format!("backup/{}/.new-password-{}", self.job(), hex::encode(nonce));
        store.put_secret(&scratch, password.as_bytes())?;
        let args = [
            "key".to_string(),
            command.into(),
            "--new-password-file".into(),
            store.secret_path(&scratch).display().to_string(),
        ];
        let done = capture(&self.client, self.reaper, &args).await;
        remove_secret(store, &scratch)?;
        done.map(drop)
    }

    /// Adds a password to the job's restic repository (e.g. a recovery
    /// password kept off the box); the job goes on using its own.
    pub async fn add_restic_key(
        &self,
        actor: &str,
        password: &str,
    ) -> Result<Vec<ResticKey>, BackupError> {
        let before = self.restic_keys().await?;
        self.with_new_password("add", password).await?;
        let after = self.restic_keys().await?;
        let added: Vec<&str> = after
            .iter()
            .filter(|k| !before.iter().any(|b| b.id == k.id))
            .map(|k| k.id.as_str())
            .collect();
        self.store.audit(
            actor,
            "backup.secret",
            &format!("{}: restic key {} added", self.job(), added.join(", ")),
        )?;
        Ok(after)
    }

    /// Removes a key from the job's restic repository; restic refuses to
    /// remove the one the job's password opens.
    pub async fn remove_restic_key(
        &self,
        actor: &str,
        id: &str,
    ) -> Result<Vec<ResticKey>, BackupError> {
        check_key_id(id)?;
        let keys = self.restic_keys().await?;
        let key = keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| BackupError::NotFound(format!("no restic key '{id}'")))?;
        if key.current {
            return Err(BackupError::Refused(
                "this key is the one the job's password opens: change the password instead".into(),
            ));
        }
        let args = ["key", "remove", id].map(String::from);
        capture(&self.client, self.reaper, &args).await?;
        self.store.audit(
            actor,
            "backup.secret",
            &format!("{}: restic key {id} removed", self.job()),
        )?;
        self.restic_keys().await
    }

    /// Changes the job's own password (`restic key passwd`: a new key, the
    /// old one removed), then keeps the new password as the job's secret.
    pub async fn change_restic_password(
        &self,
        actor: &str,
        password: &str,
    ) -> Result<Vec<ResticKey>, BackupError> {
        self.with_new_password("passwd", password).await?;
        let job = self.job();
        self.store
            .put_secret(&format!("backup/{job}/password"), password.as_bytes())?;
        self.store
            .audit(actor, "backup.secret", &format!("{job}: password changed"))?;
        self.restic_keys().await
    }
}

fn remove_secret(store: &crate::store::Store, name: &str) -> Result<(), BackupError> {
    match std::fs::remove_file(store.secret_path(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BackupError::Client(format!("{name}: {e}")))
        }
        _ => Ok(()),
    }
}

fn refuse_restic(client: &Client) -> Result<(), BackupError> {
    if client.job.backend == BackupBackend::Restic {
        return Err(BackupError::Refused(
            "restic encrypts with the job's password: it has no other key".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_metadata_is_read_without_the_key() {
        let info = key_info(
            r#"{"path":"\"/k.json\"","kdf":"none","created":1796600000,"modified":1796600000,"fingerprint":"ab:cd"}"#,
        )
        .unwrap();
        assert_eq!(info.kdf, "none");
        assert_eq!(info.fingerprint, "ab:cd");
        assert_eq!(info.created, Some(1_796_600_000));
        assert!(key_info(r#"{"kdf":"none"}"#).is_err());
        assert!(key_info("Error: no key").is_err());
    }

    #[test]
    fn restic_keys_are_read_from_its_json() {
        let keys = restic_keys(
            r#"[{"current":false,"id":"562296f6","userName":"root","hostName":"vm","created":"2026-12-07 09:55:30"},
                {"current":true,"id":"312a7b5f","userName":"root","hostName":"vm","created":"2026-12-07 09:55:27"}]"#,
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].id, "312a7b5f");
        assert!(keys[1].current && !keys[0].current);
        assert_eq!(
            (keys[0].user.as_str(), keys[0].host.as_str()),
            ("root", "vm")
        );
        let shown = serde_json::to_value(&keys[0]).unwrap();
        assert_eq!(shown["user"], "root");
        assert!(restic_keys("Fatal: wrong password").is_err());
    }

    #[test]
    fn a_new_restic_password_is_one_line_and_not_empty() {
        assert!(check_restic_password("recovery words here").is_ok());
        assert!(check_restic_password("").is_err());
        assert!(check_restic_password("two\nlines").is_err());
        assert!(check_restic_password(&"x".repeat(4097)).is_err());
        assert!(check_key_id("562296f6").is_ok());
        for bad in ["", "--help", "../x", &"a".repeat(65)] {
            assert!(check_key_id(bad).is_err(), "{bad}");
        }
    }
}
