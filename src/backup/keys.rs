//! Encryption keys made on the box. For PBS the client itself creates the key
//! file, kept as the job's `encryption-key` secret, so every later backup,
//! drill and restore uses it; its metadata comes back from `key show`, never
//! the key. Without a passphrase (`key create --kdf none`) the file is the
//! key, protected by being readable by root only, as PBS's own unattended
//! setups keep it; with one (`--kdf scrypt`, typed at the terminal the client
//! insists on) the file is useless without the passphrase, which is kept as
//! the job's `encryption-password` secret and reaches the client as
//! `PBS_ENCRYPTION_PASSWORD_FILE`. restic has no key apart from the
//! repository's password.

use super::restore::capture;
use super::terminal::{check_passphrase, run_typing, typed_twice};
use super::{BackupError, Backups};
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

impl Backups {
    /// The metadata of `job`'s encryption key.
    pub async fn key(&self, job: &str) -> Result<KeyInfo, BackupError> {
        let client = self.client_of(job)?;
        refuse_restic(&client)?;
        let path = client.secrets.encryption_key.clone().ok_or_else(|| {
            BackupError::NotFound(format!("backup job '{job}' has no encryption key"))
        })?;
        let (json, _) = capture(&client, &self.ctx.reaper, &key_show_args(&path)).await?;
        key_info(&json).map_err(BackupError::Client)
    }

    /// `job`'s key file, for a copy kept off the box.
    pub fn key_file(&self, job: &str) -> Result<Vec<u8>, BackupError> {
        let client = self.client_of(job)?;
        refuse_restic(&client)?;
        let path = client.secrets.encryption_key.ok_or_else(|| {
            BackupError::NotFound(format!("backup job '{job}' has no encryption key"))
        })?;
        std::fs::read(&path).map_err(|e| BackupError::Client(format!("{}: {e}", path.display())))
    }

    /// Has the client create a new key for `job`, which has none yet (a key
    /// is never replaced here: snapshots made with it need it to restore),
    /// protected by `passphrase` when one is given.
    pub async fn create_key(
        &self,
        job: &str,
        actor: &str,
        passphrase: Option<&str>,
    ) -> Result<KeyInfo, BackupError> {
        if let Some(passphrase) = passphrase {
            check_passphrase(passphrase).map_err(BackupError::Refused)?;
        }
        let client = self.client_of(job)?;
        refuse_restic(&client)?;
        if client.secrets.encryption_key.is_some() {
            return Err(BackupError::Exists(format!(
                "the encryption key of '{job}'"
            )));
        }
        let store = &self.ctx.store;
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
        let reaper = &self.ctx.reaper;
        let made = match passphrase {
            Some(passphrase) => run_typing(&client, reaper, &args, &typed_twice(passphrase))
                .await
                .map(drop),
            None => capture(&client, reaper, &args).await.map(drop),
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
        let info = self.key(job).await?;
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

fn remove_secret(store: &crate::store::Store, name: &str) -> Result<(), BackupError> {
    match std::fs::remove_file(store.secret_path(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BackupError::Client(format!("{name}: {e}")))
        }
        _ => Ok(()),
    }
}

fn refuse_restic(client: &super::client::Client) -> Result<(), BackupError> {
    if client.job.backend == crate::settings::BackupBackend::Restic {
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
}
