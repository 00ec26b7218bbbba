//! TOTP (RFC 6238) as a second step at login, for any user who enrols:
//! SHA-1, 6 digits, 30-second steps (what every authenticator app takes),
//! one step of clock drift either way, and each code accepted once. Enrolling
//! shows a QR code of the `otpauth://` URI; it is on only after a code from
//! the app confirms it, and then ten recovery codes are shown once (kept as
//! SHA-256, each good for one login).

use super::{constant_time_eq, token_key, Accounts, AccountsError};
use crate::settings::Problem;
use crate::store::StoreError;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::net::IpAddr;
use totp_rs::{Algorithm, TOTP};

const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;
/// Steps of clock drift accepted either side of now.
const SKEW: u8 = 1;
const SECRET_BYTES: usize = 20;
const RECOVERY_CODES: usize = 10;
/// Letters and digits that cannot be mistaken for each other.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_CHARS: usize = 10;
const ISSUER: &str = "obsbox";

/// What an authenticator app needs to start: the secret, as text and as
/// the URI its QR code holds.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    /// Base32, for typing into an app by hand.
    pub secret: String,
    pub uri: String,
    /// The QR code of `uri`, an SVG image.
    pub qr_svg: String,
}

fn totp(secret: Vec<u8>, account: &str) -> Result<TOTP, AccountsError> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW,
        STEP_SECONDS,
        secret,
        Some(ISSUER.into()),
        account.into(),
    )
    .map_err(|e| AccountsError::Refused(format!("cannot make a TOTP secret: {e}")))
}

/// The time step `code` belongs to, if it is right for a step within the
/// drift around `now` and later than `after` (so no code works twice).
fn matching_step(totp: &TOTP, code: &str, now: u64, after: u64) -> Option<u64> {
    let step = now / STEP_SECONDS;
    let skew = u64::from(SKEW);
    (step.saturating_sub(skew)..=step + skew)
        .filter(|s| *s > after)
        .find(|s| constant_time_eq(&totp.generate(s * STEP_SECONDS), code))
}

/// The TOTP of a stored base32 secret (`None` if it does not decode).
fn secret_totp(secret: &str) -> Result<Option<TOTP>, AccountsError> {
    let Ok(bytes) = totp_rs::Secret::Encoded(secret.to_string()).to_bytes() else {
        return Ok(None);
    };
    // The account name is only for the URI, which is not made here.
    Ok(Some(totp(bytes, "user")?))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A recovery code as typed, without case, spaces or dashes.
fn normalized(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn recovery_codes() -> Result<Vec<String>, AccountsError> {
    let mut bytes = [0u8; RECOVERY_CODES * RECOVERY_CHARS];
    getrandom::getrandom(&mut bytes).map_err(StoreError::Random)?;
    Ok(bytes
        .chunks(RECOVERY_CHARS)
        .map(|chunk| {
            let code: String = chunk
                .iter()
                // 256 is not a multiple of 31: a bias of under 1 %, harmless here.
                .map(|b| RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()] as char)
                .collect();
            format!("{}-{}", &code[..5], &code[5..])
        })
        .collect())
}

impl Accounts {
    pub fn totp_enabled(&self, user: &str) -> Result<bool, AccountsError> {
        let enabled: Option<bool> = self.store.with_conn(|c| {
            c.query_row(
                "SELECT totp_enabled FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(enabled.unwrap_or(false))
    }

    /// Starts enrolment with a new secret (replacing one not yet confirmed).
    /// `host` names the box in the app, next to the user.
    pub fn start_totp(&self, user: &str, host: &str) -> Result<Enrolment, AccountsError> {
        if self.totp_enabled(user)? {
            return Err(AccountsError::Refused(
                "TOTP is already on; turn it off first to enrol again".into(),
            ));
        }
        let mut secret = vec![0u8; SECRET_BYTES];
        getrandom::getrandom(&mut secret).map_err(StoreError::Random)?;
        let totp = totp(secret, &format!("{user}@{host}"))?;
        let encoded = totp.get_secret_base32();
        self.store.with_conn(|c| {
            c.execute(
                "UPDATE users SET totp_secret = ?2, totp_last_step = 0 WHERE name = ?1",
                params![user, encoded],
            )
        })?;
        let uri = totp.get_url();
        let qr_svg = qrcode::QrCode::new(uri.as_bytes())
            .map_err(|e| AccountsError::Refused(format!("cannot draw the QR code: {e}")))?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build();
        Ok(Enrolment {
            secret: encoded,
            uri,
            qr_svg,
        })
    }

    /// Turns TOTP on once a code from the app matches the pending secret;
    /// answers the recovery codes, which are shown this once.
    pub fn confirm_totp(&self, user: &str, code: &str) -> Result<Vec<String>, AccountsError> {
        let pending: Option<Option<String>> = self.store.with_conn(|c| {
            c.query_row(
                "SELECT totp_secret FROM users WHERE name = ?1 AND totp_enabled = 0",
                params![user],
                |r| r.get(0),
            )
            .optional()
        })?;
        let Some(Some(secret)) = pending else {
            return Err(AccountsError::Refused(
                "nothing to confirm: start enrolling first".into(),
            ));
        };
        let step = secret_totp(&secret)?
            .and_then(|totp| matching_step(&totp, code.trim(), unix_seconds(), 0))
            .ok_or_else(|| {
                AccountsError::Invalid(vec![Problem {
                    field: "code".into(),
                    message: "is not the code the app shows now".into(),
                }])
            })?;
        let codes = recovery_codes()?;
        let hashes: Vec<String> = codes.iter().map(|c| token_key(&normalized(c))).collect();
        self.store.with_conn(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE users SET totp_enabled = 1, totp_last_step = ?2 WHERE name = ?1",
                params![user, step as i64],
            )?;
            tx.execute("DELETE FROM recovery_codes WHERE user = ?1", params![user])?;
            for hash in &hashes {
                tx.execute(
                    "INSERT INTO recovery_codes (user, code_sha256) VALUES (?1, ?2)",
                    params![user, hash],
                )?;
            }
            tx.commit()
        })?;
        Ok(codes)
    }

    /// The user turns TOTP off, proving it is them with their password.
    pub async fn stop_totp(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<(), AccountsError> {
        self.check_password(peer, user, password).await?;
        self.reset_totp(user)
    }

    /// Turns TOTP off and forgets the secret and recovery codes (also what
    /// an admin does for a user who lost their phone).
    pub fn reset_totp(&self, user: &str) -> Result<(), AccountsError> {
        self.update_and_clear(
            user,
            "UPDATE users SET totp_enabled = 0, totp_secret = NULL, totp_last_step = 0
             WHERE name = ?1",
            params![user],
            "DELETE FROM recovery_codes WHERE user = ?1",
        )
    }

    /// Whether `code` is the user's current TOTP code (not used before) or
    /// one of their unused recovery codes; either is then used up.
    pub(super) fn second_factor(&self, user: &str, code: &str) -> Result<bool, AccountsError> {
        let recovery = normalized(code);
        if recovery.len() == RECOVERY_CHARS {
            let used = self.store.with_conn(|c| {
                c.execute(
                    "DELETE FROM recovery_codes WHERE user = ?1 AND code_sha256 = ?2",
                    params![user, token_key(&recovery)],
                )
            })?;
            return Ok(used == 1);
        }
        let stored: Option<(Option<String>, i64)> = self.store.with_conn(|c| {
            c.query_row(
                "SELECT totp_secret, totp_last_step FROM users
                 WHERE name = ?1 AND totp_enabled = 1",
                params![user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        let Some((Some(secret), last)) = stored else {
            return Ok(false);
        };
        let Some(step) = secret_totp(&secret)?
            .and_then(|totp| matching_step(&totp, code, unix_seconds(), last.max(0) as u64))
        else {
            return Ok(false);
        };
        // Only if no other login used this step meanwhile.
        let claimed = self.store.with_conn(|c| {
            c.execute(
                "UPDATE users SET totp_last_step = ?2 WHERE name = ?1 AND totp_last_step < ?2",
                params![user, step as i64],
            )
        })?;
        Ok(claimed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{accounts, login, PEER};
    use super::super::Credentials;
    use super::*;

    /// The code an authenticator app would show now for an enrolment.
    fn app_code(enrolment: &Enrolment, at: u64) -> String {
        let bytes = totp_rs::Secret::Encoded(enrolment.secret.clone())
            .to_bytes()
            .unwrap();
        totp(bytes, "app").unwrap().generate(at)
    }

    #[test]
    fn codes_match_rfc_6238_within_one_step_and_only_after_the_last_used() {
        // RFC 6238 appendix B: SHA-1, the ASCII secret "12345678901234567890".
        let rfc = totp(b"12345678901234567890".to_vec(), "rfc").unwrap();
        assert_eq!(rfc.generate(59), "287082");
        assert_eq!(rfc.generate(1111111109), "081804");
        let now = 1111111109;
        let step = now / STEP_SECONDS;
        assert_eq!(matching_step(&rfc, "081804", now, 0), Some(step));
        assert_eq!(matching_step(&rfc, "081804", now + 30, 0), Some(step));
        assert_eq!(matching_step(&rfc, "081804", now + 60, 0), None);
        assert_eq!(matching_step(&rfc, "081804", now, step), None);
        assert_eq!(matching_step(&rfc, "000000", now, 0), None);
    }

    #[tokio::test]
    async fn an_enrolled_user_needs_a_fresh_code_or_a_recovery_code() {
        let (_dir, accounts) = accounts();
        accounts
            .create_admin("admin password", "admin password")
            .await
            .unwrap();
        let enrolment = accounts.start_totp("admin", "box.lan").unwrap();
        assert!(enrolment
            .uri
            .starts_with("otpauth://totp/obsbox:admin%40box.lan?secret="));
        assert!(enrolment.qr_svg.contains("<svg"));
        // Not on until confirmed.
        assert!(!accounts.totp_enabled("admin").unwrap());
        assert!(matches!(
            accounts.confirm_totp("admin", "000000"),
            Err(AccountsError::Invalid(p)) if p[0].field == "code"
        ));
        let now = unix_seconds();
        let codes = accounts
            .confirm_totp("admin", &app_code(&enrolment, now))
            .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(accounts.totp_enabled("admin").unwrap());

        let with = |code| Credentials {
            code,
            ..login("admin", "admin password")
        };
        assert!(matches!(
            accounts.login(&with(None)).await,
            Err(AccountsError::CodeNeeded)
        ));
        // The code used to confirm is spent; the next step's works once.
        let spent = app_code(&enrolment, now);
        assert!(matches!(
            accounts.login(&with(Some(&spent))).await,
            Err(AccountsError::WrongCode)
        ));
        let next = app_code(&enrolment, now + STEP_SECONDS);
        assert!(accounts.login(&with(Some(&next))).await.is_ok());
        assert!(accounts.login(&with(Some(&next))).await.is_err());
        // A recovery code works once, however it is typed.
        let typed = codes[3].to_uppercase().replace('-', " ");
        assert!(accounts.login(&with(Some(&typed))).await.is_ok());
        assert!(matches!(
            accounts.login(&with(Some(&codes[3]))).await,
            Err(AccountsError::WrongCode)
        ));
        // Turning it off takes the password.
        assert!(accounts.stop_totp("admin", "wrong", PEER).await.is_err());
        accounts
            .stop_totp("admin", "admin password", PEER)
            .await
            .unwrap();
        assert!(accounts.login(&with(None)).await.is_ok());
    }

    #[test]
    fn recovery_codes_are_distinct_and_readable() {
        let codes = recovery_codes().unwrap();
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), RECOVERY_CHARS + 1);
            assert_eq!(normalized(code).len(), RECOVERY_CHARS);
        }
    }
}
