//! Unix users, read from `/etc/passwd` itself: NSS is unreliable in a static
//! binary, and a user that is not there must never silently become root.

/// A user's numeric ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
}

/// The user `name` in `/etc/passwd`, if there is one.
pub fn lookup(name: &str) -> Option<UserIds> {
    find(&std::fs::read_to_string("/etc/passwd").ok()?, name)
}

/// The user `name` in the text of a passwd file.
fn find(passwd: &str, name: &str) -> Option<UserIds> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if name.is_empty() || f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some(UserIds {
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
        })
    })
}

/// What `general.child_user` resolves to, given how users are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildUser {
    /// `""`: the children keep obsbox's own user (root when obsbox is root).
    Same,
    /// Run as this user.
    User(UserIds),
}

/// Resolves `general.child_user`: `""` keeps obsbox's user, `auto` is
/// `obsbox` or else `nobody`, anything else must exist. Never falls back to
/// root: the error says which user is missing.
pub fn child_user(
    setting: &str,
    lookup: impl Fn(&str) -> Option<UserIds>,
) -> Result<ChildUser, String> {
    match setting {
        "" => Ok(ChildUser::Same),
        "auto" => lookup("obsbox")
            .or_else(|| lookup("nobody"))
            .map(ChildUser::User)
            .ok_or_else(|| {
                "general.child_user is 'auto' but neither user 'obsbox' nor 'nobody' is in \
                 /etc/passwd; create one, name another user, or set \"\" to run children as root"
                    .to_string()
            }),
        name => lookup(name)
            .map(ChildUser::User)
            .ok_or_else(|| format!("no user '{name}' in /etc/passwd")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

    #[test]
    fn users_come_from_the_passwd_text() {
        assert_eq!(find(PASSWD, "root"), Some(UserIds { uid: 0, gid: 0 }));
        assert_eq!(find(PASSWD, "nob"), None);
        assert_eq!(find(PASSWD, ""), None);
        assert_eq!(lookup("root"), Some(UserIds { uid: 0, gid: 0 }));
        assert_eq!(lookup("no-such-user-here"), None);
    }

    #[test]
    fn a_missing_child_user_is_an_error_never_root() {
        let only_nobody = |name: &str| find(PASSWD, name);
        let nobody = UserIds {
            uid: 65534,
            gid: 65534,
        };
        assert_eq!(child_user("", only_nobody), Ok(ChildUser::Same));
        assert_eq!(child_user("auto", only_nobody), Ok(ChildUser::User(nobody)));
        assert_eq!(
            child_user("nobody", only_nobody),
            Ok(ChildUser::User(nobody))
        );
        let missing = child_user("ghost", only_nobody).unwrap_err();
        assert!(missing.contains("no user 'ghost'"), "{missing}");
        let neither = child_user("auto", |_| None).unwrap_err();
        assert!(
            neither.contains("neither user 'obsbox' nor 'nobody'"),
            "{neither}"
        );
    }
}
