//! The box's users and their sessions: no default password (the first
//! visitor makes the first admin during setup, and admins make the others),
//! argon2 hashes, a role per user (`roles`), TOTP as an optional second step
//! at login (`totp`), API tokens for scripts (`tokens`), sessions kept in
//! SQLite by the SHA-256 of their cookie, each with its own CSRF token, and a
//! limit on failed logins per client address.

mod invites;
pub mod roles;
mod tokens;
mod totp;
mod users;

pub use invites::Acceptance;
pub use roles::Role;
pub use tokens::{Bearer, TokenRequest, TOKEN_PREFIX};
pub use users::{NewUser, UserChange};

use crate::settings::Problem;
use crate::store::{now_millis, random_token, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The account setup creates, the first admin.
pub const ADMIN: &str = "admin";

/// A session ends after this long without a request...
const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// ...and this long after login in any case.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// `last_seen_at` is written at most this often, not on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

const MIN_PASSWORD_CHARS: usize = 10;
/// Hashing cost grows with length; nobody types more than this.
const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("obsbox is already set up; log in instead")]
    AlreadySetUp,
    #[error("wrong user name or password")]
    WrongPassword,
    #[error("enter the code from your authenticator app (or a recovery code)")]
    CodeNeeded,
    #[error("wrong or already used code")]
    WrongCode,
    #[error("no user '{0}'")]
    NoSuchUser(String),
    #[error("there is already a user '{0}'")]
    UserExists(String),
    #[error("'{0}' is the last admin who can sign in; make another admin first")]
    LastAdmin(String),
    #[error("{0}")]
    Refused(String),
    #[error("no API token {0} of yours")]
    NoSuchToken(i64),
    #[error("no invite {0}")]
    NoSuchInvite(i64),
    /// An invite link that can no longer be taken, and why.
    #[error("{0}")]
    InviteClosed(&'static str),
    #[error("too many failed logins from this address; try again in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error("refused")]
    Invalid(Vec<Problem>),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A signed-in session as requests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

/// What a login hands out: the cookie value (shown once, stored only hashed)
/// and the session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub session: Session,
}

/// A password change as asked for.
#[derive(Clone, Copy)]
pub struct PasswordChange<'a> {
    pub user: &'a str,
    /// The current password, checked first.
    pub current: &'a str,
    pub password: &'a str,
    pub confirm: &'a str,
    /// The session making the change, which stays open.
    pub keep: &'a str,
    /// Where the request came from, for the rate limit.
    pub peer: IpAddr,
}

/// A login as asked for.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a str,
    /// The TOTP code or a recovery code, for a user who enrolled.
    pub code: Option<&'a str>,
    /// Where the request came from, for the rate limit.
    pub peer: IpAddr,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    failures: Arc<Mutex<LoginFailures>>,
    /// Set once an admin is known to exist: setup is never undone while
    /// obsbox runs (a factory reset restarts it), so the guard need not ask
    /// SQLite on every request.
    set_up: Arc<std::sync::atomic::AtomicBool>,
}

impl Accounts {
    pub fn new(store: Store) -> Accounts {
        Accounts {
            store,
            failures: Arc::default(),
            set_up: Arc::default(),
        }
    }

    /// Whether an admin exists; until then every page leads to setup.
    pub fn is_set_up(&self) -> Result<bool, AccountsError> {
        use std::sync::atomic::Ordering;
        if self.set_up.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let exists = self
            .store
            .with_conn(|c| c.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0)))?;
        self.set_up.store(exists, Ordering::Relaxed);
        Ok(exists)
    }

    /// What is wrong with a new password and its confirmation, field by field.
    pub fn password_problems(password: &str, confirm: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let chars = password.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            problems.push(Problem {
                field: "password".into(),
                message: format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            });
        } else if password.len() > MAX_PASSWORD_BYTES {
            problems.push(Problem {
                field: "password".into(),
                message: format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
            });
        }
        if password != confirm {
            problems.push(Problem {
                field: "confirm".into(),
                message: "does not match the password".into(),
            });
        }
        problems
    }

    /// Creates the admin; refused once one exists.
    pub async fn create_admin(&self, password: &str, confirm: &str) -> Result<(), AccountsError> {
        let problems = Self::password_problems(password, confirm);
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let hash = hash(password.to_string()).await?;
        let now = now_millis();
        let inserted = self.store.with_conn(|c| {
            c.execute(
                "INSERT INTO users (name, password_hash, created_at, password_changed_at, role)
                 SELECT ?1, ?2, ?3, ?3, 'admin' WHERE NOT EXISTS (SELECT 1 FROM users)",
                params![ADMIN, hash, now],
            )
        })?;
        if inserted == 0 {
            return Err(AccountsError::AlreadySetUp);
        }
        Ok(())
    }

    /// Checks the password, then for a user who enrolled in TOTP the code
    /// (or a recovery code), and opens a session. Failures of either count
    /// against `peer`; while it is locked out even the right answers are
    /// refused. A disabled user cannot sign in.
    pub async fn login(&self, login: &Credentials<'_>) -> Result<NewSession, AccountsError> {
        self.check_password(login.peer, login.user, login.password)
            .await?;
        if self.totp_enabled(login.user)? {
            let Some(code) = login.code.map(str::trim).filter(|c| !c.is_empty()) else {
                return Err(AccountsError::CodeNeeded);
            };
            if !self.second_factor(login.user, code)? {
                self.failures().record(login.peer, Instant::now());
                return Err(AccountsError::WrongCode);
            }
        }
        self.open_session(login.user)
    }

    /// Checks a signed-in user's password again before something sensitive
    /// (exporting an encryption key); failures count as failed logins do.
    pub async fn reauthenticate(
        &self,
        peer: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<(), AccountsError> {
        self.check_password(peer, user, password).await
    }

    /// Every check of a password goes through here: failures count against
    /// `peer`, and while it is locked out even the right password is refused.
    async fn check_password(
        &self,
        peer: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<(), AccountsError> {
        if let Some(wait) = self.failures().locked_out(peer, Instant::now()) {
            return Err(AccountsError::RateLimited(wait));
        }
        if !self.verify(user, password).await? {
            self.failures().record(peer, Instant::now());
            return Err(AccountsError::WrongPassword);
        }
        self.failures().clear(peer);
        Ok(())
    }

    /// For another secret checked before anyone signs in (a backup
    /// repository's password at first-boot setup): refused while `peer` is
    /// locked out by failed checks, as a login is.
    pub fn not_locked_out(&self, peer: IpAddr) -> Result<(), AccountsError> {
        match self.failures().locked_out(peer, Instant::now()) {
            Some(wait) => Err(AccountsError::RateLimited(wait)),
            None => Ok(()),
        }
    }

    /// Counts a wrong secret of that kind against `peer`, as a wrong password.
    pub fn failed_check(&self, peer: IpAddr) {
        self.failures().record(peer, Instant::now());
    }

    /// The session behind a cookie, if it is still valid.
    pub fn session(&self, token: &str) -> Result<Option<Session>, AccountsError> {
        let key = token_key(token);
        let now = now_millis();
        let found = self.store.with_conn(|c| {
            c.query_row(
                "SELECT s.user, s.csrf, s.created_at, s.last_seen_at, u.role
                 FROM sessions s JOIN users u ON u.name = s.user
                 WHERE s.token_sha256 = ?1 AND u.disabled = 0",
                params![key],
                |r| {
                    Ok((
                        Session {
                            user: r.get(0)?,
                            role: stored_role(r.get_ref(4)?.as_str()?),
                            csrf: r.get(1)?,
                        },
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((session, created, seen)) = found else {
            return Ok(None);
        };
        if expired(created, seen, now) {
            self.store.with_conn(|c| {
                c.execute("DELETE FROM sessions WHERE token_sha256 = ?1", params![key])
            })?;
            return Ok(None);
        }
        if now - seen > TOUCH_EVERY_MS {
            self.store.with_conn(|c| {
                c.execute(
                    "UPDATE sessions SET last_seen_at = ?2 WHERE token_sha256 = ?1",
                    params![key, now],
                )
            })?;
        }
        Ok(Some(session))
    }

    pub fn logout(&self, token: &str) -> Result<(), AccountsError> {
        self.store.with_conn(|c| {
            c.execute(
                "DELETE FROM sessions WHERE token_sha256 = ?1",
                params![token_key(token)],
            )
        })?;
        Ok(())
    }

    /// Replaces the user's password after checking the current one (rate
    /// limited as logins are), and ends every other session of theirs.
    pub async fn change_password(&self, change: &PasswordChange<'_>) -> Result<(), AccountsError> {
        let PasswordChange {
            user,
            current,
            password,
            confirm,
            keep,
            peer,
        } = *change;
        match self.check_password(peer, user, current).await {
            Err(AccountsError::WrongPassword) => {
                return Err(AccountsError::Invalid(vec![Problem {
                    field: "current".into(),
                    message: "is not the current password".into(),
                }]))
            }
            other => other?,
        }
        let problems = Self::password_problems(password, confirm);
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let hash = hash(password.to_string()).await?;
        let (user, keep) = (user.to_string(), token_key(keep));
        self.store.with_conn(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE name = ?1",
                params![user, hash, now_millis()],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE user = ?1 AND token_sha256 != ?2",
                params![user, keep],
            )?;
            tx.commit()
        })?;
        Ok(())
    }

    fn open_session(&self, user: &str) -> Result<NewSession, AccountsError> {
        let token = random_token()?;
        let role = self.role_of(user)?;
        let session = Session {
            user: user.to_string(),
            role,
            csrf: random_token()?,
        };
        let now = now_millis();
        self.store.with_conn(|c| {
            // Logging in is rare: a good moment to forget sessions that ended.
            c.execute(
                "DELETE FROM sessions WHERE created_at < ?1 OR last_seen_at < ?2",
                params![
                    now - SESSION_LIFETIME.as_millis() as i64,
                    now - IDLE_TIMEOUT.as_millis() as i64
                ],
            )?;
            c.execute(
                "INSERT INTO sessions (token_sha256, user, csrf, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![token_key(&token), session.user, session.csrf, now],
            )
        })?;
        Ok(NewSession { token, session })
    }

    /// Whether `password` is `user`'s. An unknown user costs as much time
    /// as a known one, so timing tells nothing.
    async fn verify(&self, user: &str, password: &str) -> Result<bool, AccountsError> {
        let stored: Option<String> = self.store.with_conn(|c| {
            c.query_row(
                "SELECT password_hash FROM users WHERE name = ?1 AND disabled = 0",
                params![user],
                |r| r.get(0),
            )
            .optional()
        })?;
        let known = stored.is_some();
        let stored = match stored {
            Some(hash) => hash,
            None => hash("no such user".into()).await?,
        };
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|parsed| {
                    hasher()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .map_err(|e| AccountsError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| AccountsError::Task(e.to_string()))??;
        Ok(known && matches)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, LoginFailures> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Argon2id with OWASP's low-memory parameters (7 MiB, 5 passes): a small
/// box must not spend 19 MiB, or seconds, on each login.
fn hasher() -> Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).expect("constant parameters are valid");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

async fn hash(password: String) -> Result<String, AccountsError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(StoreError::Random)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt).map_err(|e| AccountsError::Hash(e.to_string()))?;
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountsError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| AccountsError::Task(e.to_string()))?
}

/// A role as stored; the column only ever holds what `Role::as_str` wrote,
/// and anything else grants the least.
fn stored_role(text: &str) -> Role {
    Role::parse(text).unwrap_or(Role::Viewer)
}

/// Constant-time comparison, so response times leak nothing about a secret.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn token_key(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expired(created_ms: i64, last_seen_ms: i64, now_ms: i64) -> bool {
    now_ms - created_ms > SESSION_LIFETIME.as_millis() as i64
        || now_ms - last_seen_ms > IDLE_TIMEOUT.as_millis() as i64
}

/// Failed logins per client address: after `FREE_ATTEMPTS` in a row the
/// address waits, twice as long after each further failure, up to
/// `MAX_LOCKOUT`. A success clears the count; the table is bounded.
#[derive(Default)]
struct LoginFailures {
    by_peer: HashMap<IpAddr, Failures>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

const FREE_ATTEMPTS: u32 = 5;
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
const MAX_PEERS: usize = 4096;

impl LoginFailures {
    fn lockout(count: u32) -> Duration {
        if count < FREE_ATTEMPTS {
            return Duration::ZERO;
        }
        let doublings = (count - FREE_ATTEMPTS).min(16);
        (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT)
    }

    fn locked_out(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.by_peer.get(&peer)?;
        let until = f.last + Self::lockout(f.count);
        (until > now).then(|| until - now)
    }

    fn record(&mut self, peer: IpAddr, now: Instant) {
        if self.by_peer.len() >= MAX_PEERS && !self.by_peer.contains_key(&peer) {
            // Forget addresses whose lockout is long over; if none, the oldest.
            self.by_peer
                .retain(|_, f| now.duration_since(f.last) < MAX_LOCKOUT);
            if self.by_peer.len() >= MAX_PEERS {
                if let Some(oldest) = self
                    .by_peer
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(p, _)| *p)
                {
                    self.by_peer.remove(&oldest);
                }
            }
        }
        let entry = self.by_peer.entry(peer).or_insert(Failures {
            count: 0,
            last: now,
        });
        entry.count += 1;
        entry.last = now;
    }

    fn clear(&mut self, peer: IpAddr) {
        self.by_peer.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn accounts() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, Accounts::new(store))
    }

    pub(super) const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    pub(super) fn login<'a>(user: &'a str, password: &'a str) -> Credentials<'a> {
        Credentials {
            user,
            password,
            code: None,
            peer: PEER,
        }
    }

    #[tokio::test]
    async fn setup_happens_once_and_login_needs_the_password() {
        let (_dir, accounts) = accounts();
        assert!(!accounts.is_set_up().unwrap());
        accounts
            .create_admin("correct horse", "correct horse")
            .await
            .unwrap();
        assert!(accounts.is_set_up().unwrap());
        assert!(matches!(
            accounts.create_admin("another one!", "another one!").await,
            Err(AccountsError::AlreadySetUp)
        ));
        assert!(matches!(
            accounts.login(&login(ADMIN, "wrong horse")).await,
            Err(AccountsError::WrongPassword)
        ));
        let new = accounts
            .login(&login(ADMIN, "correct horse"))
            .await
            .unwrap();
        assert_eq!(new.session.user, ADMIN);
        assert_eq!(new.session.role, Role::Admin);
        assert_eq!(
            accounts.session(&new.token).unwrap(),
            Some(new.session.clone())
        );
        assert_eq!(accounts.session("forged").unwrap(), None);
        accounts.logout(&new.token).unwrap();
        assert_eq!(accounts.session(&new.token).unwrap(), None);
    }

    #[test]
    fn weak_or_mismatched_passwords_are_refused_by_field() {
        let fields = |p: &str, c: &str| -> Vec<String> {
            Accounts::password_problems(p, c)
                .into_iter()
                .map(|p| p.field)
                .collect()
        };
        assert_eq!(fields("short", "short"), ["password"]);
        assert_eq!(fields("long enough!", "long enough?"), ["confirm"]);
        assert!(fields("long enough!", "long enough!").is_empty());
        assert_eq!(fields(&"x".repeat(2000), &"x".repeat(2000)), ["password"]);
    }

    #[tokio::test]
    async fn a_password_change_ends_every_other_session() {
        let (_dir, accounts) = accounts();
        accounts
            .create_admin("first password", "first password")
            .await
            .unwrap();
        let mine = accounts
            .login(&login(ADMIN, "first password"))
            .await
            .unwrap();
        let other = accounts
            .login(&login(ADMIN, "first password"))
            .await
            .unwrap();
        let change = |current, keep| PasswordChange {
            user: ADMIN,
            current,
            password: "second password",
            confirm: "second password",
            keep,
            peer: PEER,
        };
        let wrong = accounts
            .change_password(&change("not it at all", &mine.token))
            .await;
        assert!(matches!(wrong, Err(AccountsError::Invalid(p)) if p[0].field == "current"));
        accounts
            .change_password(&change("first password", &mine.token))
            .await
            .unwrap();
        assert!(accounts.session(&mine.token).unwrap().is_some());
        assert!(accounts.session(&other.token).unwrap().is_none());
        assert!(accounts
            .login(&login(ADMIN, "first password"))
            .await
            .is_err());
        assert!(accounts
            .login(&login(ADMIN, "second password"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn repeated_failures_lock_the_address_out_even_for_the_right_password() {
        let (_dir, accounts) = accounts();
        accounts
            .create_admin("right password", "right password")
            .await
            .unwrap();
        for _ in 0..FREE_ATTEMPTS {
            assert!(matches!(
                accounts.login(&login(ADMIN, "wrong")).await,
                Err(AccountsError::WrongPassword)
            ));
        }
        assert!(matches!(
            accounts.login(&login(ADMIN, "right password")).await,
            Err(AccountsError::RateLimited(wait)) if wait <= FIRST_LOCKOUT
        ));
        let elsewhere: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(accounts
            .login(&Credentials {
                peer: elsewhere,
                ..login(ADMIN, "right password")
            })
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn wrong_repository_passwords_at_setup_lock_out_like_wrong_logins() {
        let (_dir, accounts) = accounts();
        for _ in 0..FREE_ATTEMPTS {
            assert!(accounts.not_locked_out(PEER).is_ok());
            accounts.failed_check(PEER);
        }
        assert!(matches!(
            accounts.not_locked_out(PEER),
            Err(AccountsError::RateLimited(wait)) if wait <= FIRST_LOCKOUT
        ));
        let elsewhere: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(accounts.not_locked_out(elsewhere).is_ok());
    }

    #[tokio::test]
    async fn the_current_password_of_a_change_is_rate_limited_too() {
        let (_dir, accounts) = accounts();
        accounts
            .create_admin("right password", "right password")
            .await
            .unwrap();
        let session = accounts
            .login(&login(ADMIN, "right password"))
            .await
            .unwrap();
        let change = |current| PasswordChange {
            user: ADMIN,
            current,
            password: "another password",
            confirm: "another password",
            keep: "",
            peer: PEER,
        };
        for _ in 0..FREE_ATTEMPTS {
            assert!(matches!(
                accounts.change_password(&change("wrong")).await,
                Err(AccountsError::Invalid(_))
            ));
        }
        assert!(matches!(
            accounts.change_password(&change("right password")).await,
            Err(AccountsError::RateLimited(_))
        ));
        // Guesses through the password change count for logins as well.
        assert!(matches!(
            accounts.login(&login(ADMIN, "right password")).await,
            Err(AccountsError::RateLimited(_))
        ));
        assert!(accounts.session(&session.token).unwrap().is_some());
    }

    #[test]
    fn lockouts_double_up_to_the_cap_and_the_table_stays_bounded() {
        assert_eq!(LoginFailures::lockout(FREE_ATTEMPTS - 1), Duration::ZERO);
        assert_eq!(LoginFailures::lockout(FREE_ATTEMPTS), FIRST_LOCKOUT);
        assert_eq!(LoginFailures::lockout(FREE_ATTEMPTS + 1), FIRST_LOCKOUT * 2);
        assert_eq!(LoginFailures::lockout(FREE_ATTEMPTS + 40), MAX_LOCKOUT);
        let mut failures = LoginFailures::default();
        let now = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 10) {
            failures.record(IpAddr::V4(i.into()), now);
        }
        assert!(failures.by_peer.len() <= MAX_PEERS);
    }

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let hour = 3_600_000;
        assert!(!expired(0, 0, hour));
        assert!(expired(0, 0, 13 * hour));
        assert!(!expired(0, 6 * 24 * hour, 6 * 24 * hour + hour));
        assert!(expired(0, 8 * 24 * hour - hour, 8 * 24 * hour));
    }
}
