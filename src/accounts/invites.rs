//! Invite links: an admin makes one (a role, how long it is valid, one use)
//! and hands on the link, shown once; whoever opens it picks their own user
//! name and password and is signed in. Only the SHA-256 of the link's token
//! is kept; revoking an invite deletes it. A used invite stays listed (who
//! used it, when) until it is deleted.

use super::{hash, stored_role, token_key, Accounts, AccountsError, NewSession, Role};
use crate::settings::Problem;
use crate::store::{now_millis, random_token};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// The longest an invite may stay open: a month.
const MAX_HOURS: u32 = 30 * 24;
const HOUR_MS: i64 = 3600 * 1000;

/// An invite as listed (never its token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InviteInfo {
    pub id: i64,
    pub role: Role,
    pub created_by: String,
    /// Unix milliseconds, as are the others.
    pub created_at: i64,
    pub expires_at: i64,
    /// The user who took it, once it is used.
    pub used_by: Option<String>,
    pub used_at: Option<i64>,
}

/// A new invite: its token, shown this once, and what is kept of it.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub token: String,
    pub info: InviteInfo,
}

/// An account taken through an invite.
#[derive(Clone, Copy)]
pub struct Acceptance<'a> {
    pub token: &'a str,
    pub name: &'a str,
    pub password: &'a str,
    pub confirm: &'a str,
}

/// Why an invite can no longer be taken at `now`, if so.
fn closed(invite: Option<&InviteInfo>, now: i64) -> Option<&'static str> {
    match invite {
        None => Some(
            "this invite link is not known: it was revoked or mistyped; ask an admin for a new one",
        ),
        Some(i) if i.used_at.is_some() => {
            Some("this invite link has been used already; ask an admin for a new one")
        }
        Some(i) if i.expires_at <= now => {
            Some("this invite link has expired; ask an admin for a new one")
        }
        Some(_) => None,
    }
}

fn hours_problems(hours: u32) -> Vec<Problem> {
    if (1..=MAX_HOURS).contains(&hours) {
        return Vec::new();
    }
    vec![Problem {
        field: "expires_hours".into(),
        message: format!("1 to {MAX_HOURS} hours"),
    }]
}

const COLUMNS: &str = "id, role, created_by, created_at, expires_at, used_by, used_at";

fn info(r: &rusqlite::Row) -> rusqlite::Result<InviteInfo> {
    Ok(InviteInfo {
        id: r.get(0)?,
        role: stored_role(r.get_ref(1)?.as_str()?),
        created_by: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        used_by: r.get(5)?,
        used_at: r.get(6)?,
    })
}

impl Accounts {
    /// A new invite for `role`, open for `hours`, made by `created_by`.
    pub fn create_invite(
        &self,
        created_by: &str,
        role: Role,
        hours: u32,
    ) -> Result<NewInvite, AccountsError> {
        let problems = hours_problems(hours);
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let token = random_token()?;
        let now = now_millis();
        let expires_at = now + i64::from(hours) * HOUR_MS;
        let id = self.store.with_conn(|c| {
            c.execute(
                "INSERT INTO invites (token_sha256, role, created_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    token_key(&token),
                    role.as_str(),
                    created_by,
                    now,
                    expires_at
                ],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        Ok(NewInvite {
            token,
            info: InviteInfo {
                id,
                role,
                created_by: created_by.to_string(),
                created_at: now,
                expires_at,
                used_by: None,
                used_at: None,
            },
        })
    }

    /// Every invite, newest first.
    pub fn invites(&self) -> Result<Vec<InviteInfo>, AccountsError> {
        Ok(self.store.with_conn(|c| {
            let mut query =
                c.prepare(&format!("SELECT {COLUMNS} FROM invites ORDER BY id DESC"))?;
            let rows = query.query_map([], info)?;
            rows.collect()
        })?)
    }

    /// Deletes an invite: its link stops working at once.
    pub fn revoke_invite(&self, id: i64) -> Result<InviteInfo, AccountsError> {
        let found = self.store.with_conn(|c| {
            c.query_row(
                &format!("DELETE FROM invites WHERE id = ?1 RETURNING {COLUMNS}"),
                params![id],
                info,
            )
            .optional()
        })?;
        found.ok_or(AccountsError::NoSuchInvite(id))
    }

    /// The invite behind a link, if it can still be taken.
    pub fn open_invite(&self, token: &str) -> Result<InviteInfo, AccountsError> {
        let found = self.store.with_conn(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM invites WHERE token_sha256 = ?1"),
                params![token_key(token)],
                info,
            )
            .optional()
        })?;
        match closed(found.as_ref(), now_millis()) {
            Some(why) => Err(AccountsError::InviteClosed(why)),
            None => Ok(found.expect("an open invite exists")),
        }
    }

    /// Makes the account an invite offers and signs it in; the invite is
    /// used up in the same transaction, so one link makes one account.
    pub async fn accept_invite(
        &self,
        accept: &Acceptance<'_>,
    ) -> Result<(InviteInfo, NewSession), AccountsError> {
        let invite = self.open_invite(accept.token)?;
        let mut problems = super::users::name_problems(accept.name);
        problems.extend(Self::password_problems(accept.password, accept.confirm));
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let hash = hash(accept.password.to_string()).await?;
        let (key, name) = (token_key(accept.token), accept.name.to_string());
        let now = now_millis();
        let outcome = self.store.with_conn(move |c| {
            let tx = c.transaction()?;
            let taken = tx.execute(
                "UPDATE invites SET used_by = ?2, used_at = ?3
                 WHERE token_sha256 = ?1 AND used_at IS NULL AND expires_at > ?3",
                params![key, name, now],
            )?;
            if taken == 0 {
                return Ok(Err(AccountsError::InviteClosed(
                    "this invite link has been used already; ask an admin for a new one",
                )));
            }
            let made = tx.execute(
                "INSERT INTO users (name, password_hash, created_at, password_changed_at, role)
                 VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                params![name, hash, now, invite.role.as_str()],
            )?;
            if made == 0 {
                return Ok(Err(AccountsError::UserExists(name)));
            }
            tx.commit()?;
            Ok(Ok(InviteInfo {
                used_by: Some(name),
                used_at: Some(now),
                ..invite
            }))
        })?;
        let invite = outcome?;
        let session = self.open_session(accept.name)?;
        Ok((invite, session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(expires_at: i64, used_at: Option<i64>) -> InviteInfo {
        InviteInfo {
            id: 1,
            role: Role::Operator,
            created_by: "admin".into(),
            created_at: 0,
            expires_at,
            used_by: used_at.map(|_| "olga".into()),
            used_at,
        }
    }

    #[test]
    fn an_invite_is_open_until_it_expires_or_is_used() {
        assert_eq!(closed(Some(&invite(100, None)), 99), None);
        assert!(closed(Some(&invite(100, None)), 100)
            .unwrap()
            .contains("expired"));
        assert!(closed(Some(&invite(100, Some(50))), 60)
            .unwrap()
            .contains("used already"));
        assert!(closed(None, 0).unwrap().contains("not known"));
    }

    #[test]
    fn an_invite_is_open_for_an_hour_to_a_month() {
        assert!(hours_problems(1).is_empty());
        assert!(hours_problems(MAX_HOURS).is_empty());
        assert_eq!(hours_problems(0)[0].field, "expires_hours");
        assert_eq!(hours_problems(MAX_HOURS + 1).len(), 1);
    }
}
