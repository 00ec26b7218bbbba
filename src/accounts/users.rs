//! What admins do to accounts: add a user with an initial password, change
//! a role, disable, delete, reset a password or a lost second factor. The box
//! always keeps one admin who can sign in.

use super::{hash, stored_role, Accounts, AccountsError, Role};
use crate::settings::Problem;
use crate::store::now_millis;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

/// A user as the Users page lists them (never their secrets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Whether they sign in with a TOTP code as well.
    pub totp: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub password_changed_at: i64,
}

/// A user to add, with the password the admin hands them.
#[derive(Clone, Copy)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub role: Role,
    pub password: &'a str,
    pub confirm: &'a str,
}

/// A change to a user; what is `None` stays.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

const MAX_NAME_CHARS: usize = 32;

/// What is wrong with a user name: 1 to 32 of `a-z 0-9 . _ -`, starting
/// with a letter or digit (names show in the audit log and in Grafana).
pub(super) fn name_problems(name: &str) -> Vec<Problem> {
    let fine = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if fine {
        return Vec::new();
    }
    vec![Problem {
        field: "name".into(),
        message: format!(
            "1 to {MAX_NAME_CHARS} characters of a-z, 0-9, '.', '_' and '-', \
             starting with a letter or digit"
        ),
    }]
}

/// Refuses a change that would leave no admin able to sign in; the caller
/// then rolls it back.
fn keeps_an_admin(tx: &Transaction, user: &str) -> Result<(), AccountsError> {
    let admins: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
            [],
            |r| r.get(0),
        )
        .map_err(crate::store::StoreError::from)?;
    if admins == 0 {
        return Err(AccountsError::LastAdmin(user.to_string()));
    }
    Ok(())
}

/// Commits a change to one user if they existed and an admin is left.
fn finish(tx: Transaction, user: &str, found: usize) -> Result<(), AccountsError> {
    if found == 0 {
        return Err(AccountsError::NoSuchUser(user.to_string()));
    }
    keeps_an_admin(&tx, user)?;
    tx.commit().map_err(crate::store::StoreError::from)?;
    Ok(())
}

impl Accounts {
    pub fn users(&self) -> Result<Vec<UserInfo>, AccountsError> {
        Ok(self.store.with_conn(|c| {
            let mut query = c.prepare(
                "SELECT name, role, disabled, totp_enabled, created_at, password_changed_at
                 FROM users ORDER BY name",
            )?;
            let rows = query.query_map([], |r| {
                Ok(UserInfo {
                    name: r.get(0)?,
                    role: stored_role(r.get_ref(1)?.as_str()?),
                    disabled: r.get(2)?,
                    totp: r.get(3)?,
                    created_at: r.get(4)?,
                    password_changed_at: r.get(5)?,
                })
            })?;
            rows.collect()
        })?)
    }

    /// A user's role; a user that does not exist is an error.
    pub(super) fn role_of(&self, user: &str) -> Result<Role, AccountsError> {
        let role: Option<String> = self.store.with_conn(|c| {
            c.query_row(
                "SELECT role FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )
            .optional()
        })?;
        role.map(|r| stored_role(&r))
            .ok_or_else(|| AccountsError::NoSuchUser(user.to_string()))
    }

    pub async fn add_user(&self, new: &NewUser<'_>) -> Result<(), AccountsError> {
        let mut problems = name_problems(new.name);
        problems.extend(Self::password_problems(new.password, new.confirm));
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let hash = hash(new.password.to_string()).await?;
        let now = now_millis();
        let inserted = self.store.with_conn(|c| {
            c.execute(
                "INSERT INTO users (name, password_hash, created_at, password_changed_at, role)
                 VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                params![new.name, hash, now, new.role.as_str()],
            )
        })?;
        if inserted == 0 {
            return Err(AccountsError::UserExists(new.name.to_string()));
        }
        Ok(())
    }

    /// Changes a user's role or whether they may sign in. Disabling ends
    /// their sessions; their API tokens stop working while disabled, and a
    /// lower role lowers what their tokens may do.
    pub fn change_user(&self, user: &str, change: UserChange) -> Result<(), AccountsError> {
        let outcome = self.store.with_conn(|c| {
            let tx = c.transaction()?;
            let found: usize = tx.query_row(
                "SELECT COUNT(*) FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )?;
            if let Some(role) = change.role {
                tx.execute(
                    "UPDATE users SET role = ?2 WHERE name = ?1",
                    params![user, role.as_str()],
                )?;
            }
            if let Some(disabled) = change.disabled {
                tx.execute(
                    "UPDATE users SET disabled = ?2 WHERE name = ?1",
                    params![user, disabled],
                )?;
                if disabled {
                    tx.execute("DELETE FROM sessions WHERE user = ?1", params![user])?;
                }
            }
            Ok(finish(tx, user, found))
        })?;
        outcome
    }

    /// Deletes a user with their sessions, tokens and recovery codes.
    pub fn delete_user(&self, user: &str) -> Result<(), AccountsError> {
        let outcome = self.store.with_conn(|c| {
            let tx = c.transaction()?;
            let found = tx.execute("DELETE FROM users WHERE name = ?1", params![user])?;
            Ok(finish(tx, user, found))
        })?;
        outcome
    }

    /// Sets a new password chosen by an admin and ends the user's sessions.
    pub async fn reset_password(
        &self,
        user: &str,
        password: &str,
        confirm: &str,
    ) -> Result<(), AccountsError> {
        let problems = Self::password_problems(password, confirm);
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let hash = hash(password.to_string()).await?;
        self.update_and_clear(
            user,
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE name = ?1",
            params![user, hash, now_millis()],
            "DELETE FROM sessions WHERE user = ?1",
        )
    }

    /// Updates `user`'s row (`update` with `values`, the name first) and
    /// deletes what the change voids (`clear`, the name as `?1`), in one
    /// transaction; a user that does not exist is an error.
    pub(super) fn update_and_clear(
        &self,
        user: &str,
        update: &str,
        values: &[&dyn rusqlite::ToSql],
        clear: &str,
    ) -> Result<(), AccountsError> {
        let found = self.store.with_conn(|c| {
            let tx = c.transaction()?;
            let found = tx.execute(update, values)?;
            tx.execute(clear, params![user])?;
            tx.commit()?;
            Ok(found)
        })?;
        if found == 0 {
            return Err(AccountsError::NoSuchUser(user.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{accounts, login};
    use super::*;

    async fn with_admin() -> (tempfile::TempDir, Accounts) {
        let (dir, accounts) = accounts();
        accounts
            .create_admin("admin password", "admin password")
            .await
            .unwrap();
        (dir, accounts)
    }

    fn user<'a>(name: &'a str, role: Role) -> NewUser<'a> {
        NewUser {
            name,
            role,
            password: "their password",
            confirm: "their password",
        }
    }

    #[tokio::test]
    async fn added_users_sign_in_with_their_role_until_disabled() {
        let (_dir, accounts) = with_admin().await;
        accounts
            .add_user(&user("olga", Role::Operator))
            .await
            .unwrap();
        let session = accounts
            .login(&login("olga", "their password"))
            .await
            .unwrap();
        assert_eq!(session.session.role, Role::Operator);
        accounts
            .change_user(
                "olga",
                UserChange {
                    role: Some(Role::Viewer),
                    ..UserChange::default()
                },
            )
            .unwrap();
        // A session follows the user's role as it is now.
        let now = accounts.session(&session.token).unwrap().unwrap();
        assert_eq!(now.role, Role::Viewer);
        accounts
            .change_user(
                "olga",
                UserChange {
                    disabled: Some(true),
                    ..UserChange::default()
                },
            )
            .unwrap();
        assert_eq!(accounts.session(&session.token).unwrap(), None);
        assert!(matches!(
            accounts.login(&login("olga", "their password")).await,
            Err(AccountsError::WrongPassword)
        ));
        let listed = accounts.users().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].disabled && listed[1].role == Role::Viewer);
    }

    #[tokio::test]
    async fn names_are_checked_and_unique() {
        let (_dir, accounts) = with_admin().await;
        for bad in ["", "Olga", "-x", "a b", &"x".repeat(33)] {
            assert!(
                matches!(
                    accounts.add_user(&user(bad, Role::Viewer)).await,
                    Err(AccountsError::Invalid(p)) if p[0].field == "name"
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            accounts
                .add_user(&user(super::super::ADMIN, Role::Viewer))
                .await,
            Err(AccountsError::UserExists(_))
        ));
    }

    #[tokio::test]
    async fn the_last_admin_cannot_be_deleted_demoted_or_disabled() {
        let (_dir, accounts) = with_admin().await;
        let admin = super::super::ADMIN;
        let demote = UserChange {
            role: Some(Role::Operator),
            ..UserChange::default()
        };
        let disable = UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        assert!(matches!(
            accounts.delete_user(admin),
            Err(AccountsError::LastAdmin(_))
        ));
        assert!(matches!(
            accounts.change_user(admin, demote),
            Err(AccountsError::LastAdmin(_))
        ));
        assert!(matches!(
            accounts.change_user(admin, disable),
            Err(AccountsError::LastAdmin(_))
        ));
        assert_eq!(accounts.users().unwrap()[0].role, Role::Admin);
        // A second admin who is disabled does not count.
        accounts.add_user(&user("ada", Role::Admin)).await.unwrap();
        accounts.change_user("ada", disable).unwrap();
        assert!(accounts.delete_user(admin).is_err());
        accounts
            .change_user(
                "ada",
                UserChange {
                    disabled: Some(false),
                    ..UserChange::default()
                },
            )
            .unwrap();
        accounts.delete_user(admin).unwrap();
        assert!(matches!(
            accounts.delete_user("nobody"),
            Err(AccountsError::NoSuchUser(_))
        ));
    }

    #[tokio::test]
    async fn a_reset_password_ends_the_users_sessions() {
        let (_dir, accounts) = with_admin().await;
        accounts.add_user(&user("vic", Role::Viewer)).await.unwrap();
        let session = accounts
            .login(&login("vic", "their password"))
            .await
            .unwrap();
        accounts
            .reset_password("vic", "a new password", "a new password")
            .await
            .unwrap();
        assert_eq!(accounts.session(&session.token).unwrap(), None);
        assert!(accounts
            .login(&login("vic", "a new password"))
            .await
            .is_ok());
        assert!(matches!(
            accounts
                .reset_password("nobody", "a new password", "a new password")
                .await,
            Err(AccountsError::NoSuchUser(_))
        ));
    }
}
