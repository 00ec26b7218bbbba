//! The encrypted secrets bundle: every secret an export names, sealed with a
//! passphrase. The key is derived with Argon2id (a fresh random salt per
//! bundle) and the secrets are sealed with ChaCha20-Poly1305 (ring), so a
//! wrong passphrase or a changed byte is refused, never half-read.
//!
//! Layout: `MAGIC` (8 bytes) | salt (16) | nonce (12) | sealed JSON object
//! `{name: base64(value)}` with its 16-byte tag. The header is authenticated
//! too (it is the AEAD's associated data).

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use std::collections::BTreeMap;

/// The first bytes of a bundle, and its format version.
const MAGIC: &[u8; 8] = b"OBSBXS01";
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN + NONCE_LEN;
/// Shorter passphrases are refused when sealing: the bundle may end up in Git.
pub const MIN_PASSPHRASE: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the passphrase must have at least {MIN_PASSPHRASE} characters")]
    WeakPassphrase,
    #[error("this is not an obsbox secrets bundle")]
    NotABundle,
    #[error("wrong passphrase, or the secrets bundle was changed or damaged")]
    Refused,
    #[error("the secrets bundle's contents do not parse: {0}")]
    Contents(String),
    #[error("the system has no randomness to offer: {0}")]
    Random(getrandom::Error),
    #[error("cannot derive the key: {0}")]
    Kdf(String),
}

/// Secrets by name (as stored under `<data>/secrets/`), values as bytes.
pub type Secrets = BTreeMap<String, Vec<u8>>;

/// Argon2id with OWASP's recommended minimum (19 MiB, 2 passes).
fn key(passphrase: &str, salt: &[u8]) -> Result<LessSafeKey, BundleError> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| BundleError::Kdf(e.to_string()))?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut bytes = [0u8; 32];
    kdf.hash_password_into(passphrase.as_bytes(), salt, &mut bytes)
        .map_err(|e| BundleError::Kdf(e.to_string()))?;
    let unbound =
        UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| BundleError::Kdf("key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Seals `secrets` with `passphrase`.
pub fn seal(secrets: &Secrets, passphrase: &str) -> Result<Vec<u8>, BundleError> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        return Err(BundleError::WeakPassphrase);
    }
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    getrandom::getrandom(&mut header[MAGIC.len()..]).map_err(BundleError::Random)?;
    let (salt, nonce) = header[MAGIC.len()..].split_at(SALT_LEN);
    let b64 = base64::engine::general_purpose::STANDARD;
    let contents: BTreeMap<&str, String> = secrets
        .iter()
        .map(|(name, value)| (name.as_str(), b64.encode(value)))
        .collect();
    let mut sealed =
        serde_json::to_vec(&contents).map_err(|e| BundleError::Contents(e.to_string()))?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| BundleError::NotABundle)?;
    key(passphrase, salt)?
        .seal_in_place_append_tag(nonce, Aad::from(&header), &mut sealed)
        .map_err(|_| BundleError::Refused)?;
    let mut bundle = header.to_vec();
    bundle.extend(sealed);
    Ok(bundle)
}

/// Opens a bundle made by [`seal`]; refused as a whole on a wrong passphrase.
pub fn open(bundle: &[u8], passphrase: &str) -> Result<Secrets, BundleError> {
    if bundle.len() < HEADER_LEN || &bundle[..MAGIC.len()] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let (header, sealed) = bundle.split_at(HEADER_LEN);
    let (salt, nonce) = header[MAGIC.len()..].split_at(SALT_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| BundleError::NotABundle)?;
    let mut sealed = sealed.to_vec();
    let plain = key(passphrase, salt)?
        .open_in_place(nonce, Aad::from(header), &mut sealed)
        .map_err(|_| BundleError::Refused)?;
    let contents: BTreeMap<String, String> =
        serde_json::from_slice(plain).map_err(|e| BundleError::Contents(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    contents
        .into_iter()
        .map(|(name, value)| {
            b64.decode(value)
                .map(|v| (name, v))
                .map_err(|e| BundleError::Contents(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        BTreeMap::from([
            (
                "alerting/receivers/mail/password".into(),
                b"hunter2 \n".to_vec(),
            ),
            ("backup/nightly/password".into(), vec![0, 255, 7]),
        ])
    }

    #[test]
    fn a_bundle_opens_with_its_passphrase_only() {
        let bundle = seal(&secrets(), "correct horse battery").unwrap();
        assert_eq!(open(&bundle, "correct horse battery").unwrap(), secrets());
        assert!(matches!(
            open(&bundle, "correct horse batterY"),
            Err(BundleError::Refused)
        ));
        // No value shows in the sealed bytes.
        assert!(!bundle.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let bundle = seal(&secrets(), "correct horse battery").unwrap();
        for at in [MAGIC.len() + 1, HEADER_LEN - 1, bundle.len() - 1] {
            let mut changed = bundle.clone();
            changed[at] ^= 1;
            assert!(
                open(&changed, "correct horse battery").is_err(),
                "byte {at}"
            );
        }
        assert!(matches!(
            open(b"# a yaml file", "correct horse battery"),
            Err(BundleError::NotABundle)
        ));
    }

    #[test]
    fn short_passphrases_are_refused_and_salts_differ() {
        assert!(matches!(
            seal(&secrets(), "short"),
            Err(BundleError::WeakPassphrase)
        ));
        let a = seal(&secrets(), "correct horse battery").unwrap();
        let b = seal(&secrets(), "correct horse battery").unwrap();
        assert_ne!(a[..HEADER_LEN], b[..HEADER_LEN]);
    }
}
