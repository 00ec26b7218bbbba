//! API tokens for scripts: `obx_` and 64 hex digits, shown once at creation
//! and kept only as their SHA-256. Each is named, belongs to a user, carries
//! a role no higher than theirs (and never more than the user has now), may
//! expire, and is revoked by deleting it.

use super::{stored_role, token_key, Accounts, AccountsError, Role, TOUCH_EVERY_MS};
use crate::settings::Problem;
use crate::store::{now_millis, random_token};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// What every token starts with, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "obx_";
const MAX_NAME_CHARS: usize = 64;
const MAX_DAYS: u32 = 3650;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A token as asked for.
#[derive(Clone, Copy)]
pub struct TokenRequest<'a> {
    pub name: &'a str,
    pub role: Role,
    /// Days until it stops working; `None`: never.
    pub expires_days: Option<u32>,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Unix milliseconds, as are the others.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A new token: the secret, shown this once, and what is kept of it.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub info: TokenInfo,
}

/// Whom a presented token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Bearer {
    pub user: String,
    pub token_name: String,
    /// The token's role, or the user's if that is lower now.
    pub role: Role,
}

fn request_problems(request: &TokenRequest, owner_role: Role) -> Vec<Problem> {
    let mut problems = Vec::new();
    let name = request.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        problems.push(Problem {
            field: "name".into(),
            message: format!("1 to {MAX_NAME_CHARS} printable characters"),
        });
    }
    if request.role > owner_role {
        problems.push(Problem {
            field: "role".into(),
            message: format!("may be at most your own role, {}", owner_role.as_str()),
        });
    }
    if request.expires_days.is_some_and(|d| d == 0 || d > MAX_DAYS) {
        problems.push(Problem {
            field: "expires_days".into(),
            message: format!("1 to {MAX_DAYS} days, or none for a token that does not expire"),
        });
    }
    problems
}

impl Accounts {
    /// A new token of `user`'s, with a role no higher than theirs nor than
    /// `limit` (what the request asking for it may do: a token cannot make
    /// a stronger one).
    pub fn create_token(
        &self,
        user: &str,
        limit: Role,
        request: &TokenRequest,
    ) -> Result<NewToken, AccountsError> {
        let problems = request_problems(request, self.role_of(user)?.min(limit));
        if !problems.is_empty() {
            return Err(AccountsError::Invalid(problems));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_token()?);
        let now = now_millis();
        let name = request.name.trim().to_string();
        let expires_at = request.expires_days.map(|d| now + i64::from(d) * DAY_MS);
        let id = self.store.with_conn(|c| {
            let inserted = c.execute(
                "INSERT INTO api_tokens (user, name, role, token_sha256, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user, name) DO NOTHING",
                params![
                    user,
                    name,
                    request.role.as_str(),
                    token_key(&token),
                    now,
                    expires_at
                ],
            )?;
            Ok((inserted > 0).then(|| c.last_insert_rowid()))
        })?;
        let Some(id) = id else {
            return Err(AccountsError::Invalid(vec![Problem {
                field: "name".into(),
                message: "you already have a token of this name".into(),
            }]));
        };
        Ok(NewToken {
            token,
            info: TokenInfo {
                id,
                name,
                role: request.role,
                created_at: now,
                expires_at,
                last_used_at: None,
            },
        })
    }

    /// A user's tokens, newest first.
    pub fn tokens(&self, user: &str) -> Result<Vec<TokenInfo>, AccountsError> {
        Ok(self.store.with_conn(|c| {
            let mut query = c.prepare(
                "SELECT id, name, role, created_at, expires_at, last_used_at
                 FROM api_tokens WHERE user = ?1 ORDER BY id DESC",
            )?;
            let rows = query.query_map(params![user], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: stored_role(r.get_ref(2)?.as_str()?),
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                })
            })?;
            rows.collect()
        })?)
    }

    /// Revokes one of `user`'s tokens; it stops working at once.
    pub fn revoke_token(&self, user: &str, id: i64) -> Result<String, AccountsError> {
        let name: Option<String> = self.store.with_conn(|c| {
            c.query_row(
                "DELETE FROM api_tokens WHERE user = ?1 AND id = ?2 RETURNING name",
                params![user, id],
                |r| r.get(0),
            )
            .optional()
        })?;
        name.ok_or(AccountsError::NoSuchToken(id))
    }

    /// Whom `token` speaks for, if it is one of ours, not expired, and its
    /// user may still sign in. Notes when it was used.
    pub fn bearer(&self, token: &str) -> Result<Option<Bearer>, AccountsError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let key = token_key(token);
        let now = now_millis();
        let found = self.store.with_conn(|c| {
            c.query_row(
                "SELECT t.user, t.name, t.role, u.role, t.expires_at, t.last_used_at
                 FROM api_tokens t JOIN users u ON u.name = t.user
                 WHERE t.token_sha256 = ?1 AND u.disabled = 0",
                params![key],
                |r| {
                    let token_role = stored_role(r.get_ref(2)?.as_str()?);
                    let user_role = stored_role(r.get_ref(3)?.as_str()?);
                    Ok((
                        Bearer {
                            user: r.get(0)?,
                            token_name: r.get(1)?,
                            role: token_role.min(user_role),
                        },
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((bearer, expires_at, last_used)) = found else {
            return Ok(None);
        };
        if expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        if last_used.is_none_or(|at| now - at > TOUCH_EVERY_MS) {
            self.store.with_conn(|c| {
                c.execute(
                    "UPDATE api_tokens SET last_used_at = ?2 WHERE token_sha256 = ?1",
                    params![key, now],
                )
            })?;
        }
        Ok(Some(bearer))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::accounts;
    use super::super::{NewUser, UserChange};
    use super::*;

    async fn with_operator() -> (tempfile::TempDir, Accounts) {
        let (dir, accounts) = accounts();
        accounts
            .create_admin("admin password", "admin password")
            .await
            .unwrap();
        accounts
            .add_user(&NewUser {
                name: "olga",
                role: Role::Operator,
                password: "olga's password",
                confirm: "olga's password",
            })
            .await
            .unwrap();
        (dir, accounts)
    }

    fn request(name: &str, role: Role) -> TokenRequest<'_> {
        TokenRequest {
            name,
            role,
            expires_days: None,
        }
    }

    #[tokio::test]
    async fn a_token_speaks_for_its_user_until_revoked() {
        let (_dir, accounts) = with_operator().await;
        let new = accounts
            .create_token(
                "olga",
                Role::Admin,
                &request("backup script", Role::Operator),
            )
            .unwrap();
        assert!(new.token.starts_with("obx_") && new.token.len() == 68);
        let bearer = accounts.bearer(&new.token).unwrap().unwrap();
        assert_eq!(bearer.user, "olga");
        assert_eq!(bearer.role, Role::Operator);
        let listed = accounts.tokens("olga").unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_used_at.is_some());
        // Nobody else's to revoke; the secret is nowhere in the database.
        assert!(accounts.revoke_token("admin", new.info.id).is_err());
        let dump: String = accounts
            .store
            .with_conn(|c| {
                c.query_row(
                    "SELECT group_concat(token_sha256) FROM api_tokens",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert!(!dump.contains(&new.token[4..]));
        assert_eq!(
            accounts.revoke_token("olga", new.info.id).unwrap(),
            "backup script"
        );
        assert_eq!(accounts.bearer(&new.token).unwrap(), None);
        assert_eq!(accounts.bearer("obx_forged").unwrap(), None);
    }

    #[tokio::test]
    async fn a_token_never_does_more_than_its_user() {
        let (_dir, accounts) = with_operator().await;
        assert!(matches!(
            accounts.create_token("admin", Role::Viewer, &request("from a token", Role::Operator)),
            Err(AccountsError::Invalid(p)) if p[0].field == "role"
        ));
        assert!(matches!(
            accounts.create_token("olga", Role::Admin, &request("too much", Role::Admin)),
            Err(AccountsError::Invalid(p)) if p[0].field == "role"
        ));
        let new = accounts
            .create_token("olga", Role::Admin, &request("ops", Role::Operator))
            .unwrap();
        let lower = UserChange {
            role: Some(Role::Viewer),
            ..UserChange::default()
        };
        accounts.change_user("olga", lower).unwrap();
        assert_eq!(
            accounts.bearer(&new.token).unwrap().unwrap().role,
            Role::Viewer
        );
        let disable = UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        accounts.change_user("olga", disable).unwrap();
        assert_eq!(accounts.bearer(&new.token).unwrap(), None);
    }

    #[tokio::test]
    async fn expired_tokens_and_bad_requests_are_refused() {
        let (_dir, accounts) = with_operator().await;
        let new = accounts
            .create_token(
                "olga",
                Role::Admin,
                &TokenRequest {
                    expires_days: Some(1),
                    ..request("short-lived", Role::Viewer)
                },
            )
            .unwrap();
        assert!(accounts.bearer(&new.token).unwrap().is_some());
        accounts
            .store
            .with_conn(|c| {
                c.execute(
                    "UPDATE api_tokens SET expires_at = ?1",
                    params![now_millis() - 1],
                )
            })
            .unwrap();
        assert_eq!(accounts.bearer(&new.token).unwrap(), None);
        let fields = |r: &TokenRequest| -> Vec<String> {
            request_problems(r, Role::Viewer)
                .into_iter()
                .map(|p| p.field)
                .collect()
        };
        assert_eq!(
            fields(&TokenRequest {
                name: " ",
                role: Role::Operator,
                expires_days: Some(0)
            }),
            ["name", "role", "expires_days"]
        );
        assert!(matches!(
            accounts.create_token("olga", Role::Admin, &request("short-lived", Role::Viewer)),
            Err(AccountsError::Invalid(p)) if p[0].field == "name"
        ));
    }
}
