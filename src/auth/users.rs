//! Users of a host: administrators, proctors and students, with their profile
//! and credentials. Keyed by host and (lower-case) username.

use super::audit::{self, Event};
use super::{AuthError, Principal, Role, now_secs, password};
use crate::store::{ReadTx, Scan, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};

/// Longest accepted text fields, so one request cannot bloat the database.
pub const MAX_USERNAME: usize = 64;
pub const MAX_TEXT: usize = 200;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub host_id: String,
    pub username: String,
    pub nickname: String,
    pub email: Option<String>,
    pub language: Option<String>,
    pub role: Role,
    pub groups: Vec<String>,
    /// Object key of the profile photo.
    pub photo: Option<String>,
    pub disabled: bool,
    pub password_hash: Option<String>,
    /// Hashes of previous passwords, newest first.
    pub password_history: Vec<String>,
    pub must_change_password: bool,
    pub failed_attempts: u32,
    pub locked_until: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The user as the API shows it: no hashes, no lock-out counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub username: String,
    pub nickname: String,
    pub email: Option<String>,
    pub language: Option<String>,
    pub role: Role,
    pub groups: Vec<String>,
    pub photo: Option<String>,
    pub disabled: bool,
    pub locked: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

impl User {
    pub fn view(&self, now: u64) -> UserView {
        UserView {
            username: self.username.clone(),
            nickname: self.nickname.clone(),
            email: self.email.clone(),
            language: self.language.clone(),
            role: self.role,
            groups: self.groups.clone(),
            photo: self.photo.clone(),
            disabled: self.disabled,
            locked: self.locked_until > now,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Fields set on create and update; absent fields are left alone.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub username: Option<String>,
    pub nickname: Option<String>,
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub language: Option<Option<String>>,
    pub role: Option<String>,
    pub groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub photo: Option<Option<String>>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

pub fn key(host_id: &str, username: &str) -> Vec<u8> {
    let mut k = host_id.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(username.as_bytes());
    k
}

/// Lower-cases and checks a username.
pub fn normalize_username(raw: &str) -> Result<String, AuthError> {
    let u = raw.trim().to_lowercase();
    let ok = !u.is_empty()
        && u.chars().count() <= MAX_USERNAME
        && u.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if ok {
        Ok(u)
    } else {
        Err(AuthError::invalid(
            "username",
            format!("1 to {MAX_USERNAME} letters, digits or . _ - @ +"),
        ))
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<String, AuthError> {
    let v = value.trim();
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(AuthError::invalid(
            field,
            format!("at most {max} characters, no control characters"),
        ));
    }
    Ok(v.to_string())
}

pub fn load(tx: &dyn ReadTx, host_id: &str, username: &str) -> Result<Option<User>, StoreError> {
    tx.get_json(catalog::USERS, &key(host_id, username))
}

/// Reads one user of a host.
pub fn get(store: &dyn Store, host_id: &str, username: &str) -> Result<User, AuthError> {
    let username = normalize_username(username)?;
    store
        .read(|tx| load(tx, host_id, &username))?
        .ok_or_else(|| AuthError::NotFound(format!("user {username}")))
}

/// Applies `input` to `user`, validating every field; a password is checked
/// against the rule and hashed.
pub fn apply(
    user: &mut User,
    input: &UserInput,
    rule: &crate::config::PasswordRule,
) -> Result<(), AuthError> {
    if let Some(n) = &input.nickname {
        user.nickname = text("nickname", n, MAX_TEXT)?;
    }
    if let Some(email) = &input.email {
        user.email = match email {
            Some(e) if !e.trim().is_empty() => {
                let e = text("email", e, 254)?;
                if !e.contains('@') || e.contains(char::is_whitespace) {
                    return Err(AuthError::invalid(
                        "email",
                        format!("{e:?} is not an address"),
                    ));
                }
                Some(e)
            }
            _ => None,
        };
    }
    if let Some(lang) = &input.language {
        user.language = lang.as_ref().map(|l| text("language", l, 16)).transpose()?;
    }
    if let Some(role) = &input.role {
        user.role = Role::parse_host_role(role)
            .ok_or_else(|| AuthError::invalid("role", "one of student, proctor, administrator"))?;
    }
    if let Some(groups) = &input.groups {
        if groups.len() > 50 {
            return Err(AuthError::invalid("groups", "at most 50 groups"));
        }
        user.groups = groups
            .iter()
            .map(|g| text("groups", g, 64))
            .filter(|g| g.as_ref().map_or(true, |g| !g.is_empty()))
            .collect::<Result<_, _>>()?;
    }
    if let Some(photo) = &input.photo {
        user.photo = photo.as_ref().map(|p| text("photo", p, 1024)).transpose()?;
    }
    if let Some(d) = input.disabled {
        user.disabled = d;
    }
    if let Some(pw) = &input.password {
        if !rule.is_satisfied_by(pw) {
            return Err(AuthError::PasswordRejected(
                "the password does not satisfy PASSWORD_RULE".into(),
            ));
        }
        user.password_hash = Some(password::hash(pw)?);
        // An administrator set it: the user must choose their own.
        user.must_change_password = true;
    }
    Ok(())
}

/// A new user record with defaults (role student).
pub fn blank(host_id: &str, username: &str) -> User {
    let now = now_secs();
    User {
        host_id: host_id.to_string(),
        username: username.to_string(),
        nickname: username.to_string(),
        email: None,
        language: None,
        role: Role::Student,
        groups: Vec::new(),
        photo: None,
        disabled: false,
        password_hash: None,
        password_history: Vec::new(),
        must_change_password: false,
        failed_attempts: 0,
        locked_until: 0,
        created_at: now,
        updated_at: now,
    }
}

/// Inserts a new user inside a transaction; refuses an existing username.
pub fn insert(tx: &mut dyn WriteTx, user: &User) -> Result<(), AuthError> {
    let k = key(&user.host_id, &user.username);
    if tx.get(catalog::USERS, &k)?.is_some() {
        return Err(AuthError::Conflict(format!(
            "the username {} is taken",
            user.username
        )));
    }
    tx.put_json(catalog::USERS, &k, user)?;
    Ok(())
}

/// Creates a user of `host_id`.
pub fn create(
    store: &dyn Store,
    by: &Principal,
    host_id: &str,
    input: &UserInput,
    rule: &crate::config::PasswordRule,
    client: &str,
) -> Result<User, AuthError> {
    let username = normalize_username(
        input
            .username
            .as_deref()
            .ok_or_else(|| AuthError::invalid("username", "is required"))?,
    )?;
    let mut user = blank(host_id, &username);
    apply(&mut user, input, rule)?;
    store.write(|tx| {
        insert(tx, &user)?;
        audit::append(
            tx,
            host_id,
            Event::new(by.actor(), "user_created", &username)
                .client(client)
                .with("role", user.role.as_str()),
        )?;
        Ok(user.clone())
    })
}

/// Changes a user; role changes and disabling are audited.
pub fn update(
    store: &dyn Store,
    by: &Principal,
    host_id: &str,
    username: &str,
    input: &UserInput,
    rule: &crate::config::PasswordRule,
    client: &str,
) -> Result<User, AuthError> {
    let username = normalize_username(username)?;
    if input
        .username
        .as_ref()
        .is_some_and(|u| u.trim().to_lowercase() != username)
    {
        return Err(AuthError::invalid("username", "cannot be changed"));
    }
    store.write(|tx| {
        let mut user = load(tx, host_id, &username)?
            .ok_or_else(|| AuthError::NotFound(format!("user {username}")))?;
        let before = user.clone();
        apply(&mut user, input, rule)?;
        user.updated_at = now_secs();
        tx.put_json(catalog::USERS, &key(host_id, &username), &user)?;
        let mut event = Event::new(by.actor(), "user_changed", &username).client(client);
        if before.role != user.role {
            event = event
                .with("role_from", before.role.as_str())
                .with("role_to", user.role.as_str());
        }
        if before.disabled != user.disabled {
            event = event.with("disabled", user.disabled.to_string());
        }
        if input.password.is_some() {
            event = event.with("password", "set by administrator");
        }
        audit::append(tx, host_id, event)?;
        Ok(user)
    })
}

/// Deletes a user and their sign-in sessions.
pub fn delete(
    store: &dyn Store,
    by: &Principal,
    host_id: &str,
    username: &str,
    client: &str,
) -> Result<(), AuthError> {
    let username = normalize_username(username)?;
    store.write(|tx| {
        if !tx.delete(catalog::USERS, &key(host_id, &username))? {
            return Err(AuthError::NotFound(format!("user {username}")));
        }
        super::sessions::revoke_user_in(tx, host_id, &username)?;
        audit::append(
            tx,
            host_id,
            Event::new(by.actor(), "user_deleted", &username).client(client),
        )?;
        Ok(())
    })
}

/// Deletes a user's account and sign-in sessions inside the caller's
/// transaction (erasure, which writes its own audit entry); false if there was
/// no account.
pub fn remove_in(tx: &mut dyn WriteTx, host_id: &str, username: &str) -> Result<bool, AuthError> {
    let username = normalize_username(username)?;
    let existed = tx.delete(catalog::USERS, &key(host_id, &username))?;
    super::sessions::revoke_user_in(tx, host_id, &username)?;
    Ok(existed)
}

/// One page of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub items: Vec<UserView>,
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
}

/// Lists a host's users whose username, nickname or email contains `query`
/// (case-insensitive), optionally of one role, one page at a time.
pub fn search(
    store: &dyn Store,
    host_id: &str,
    query: Option<&str>,
    role: Option<Role>,
    page: usize,
    per_page: usize,
) -> Result<Page, AuthError> {
    let per_page = per_page.clamp(1, 200);
    let page = page.max(1);
    let needle = query.map(str::to_lowercase).filter(|q| !q.is_empty());
    let mut prefix = host_id.as_bytes().to_vec();
    prefix.push(0);
    let now = now_secs();
    let mut matched = Vec::new();
    for (_, v) in store.scan(catalog::USERS, &Scan::prefix(&prefix))? {
        let Ok(user) = serde_json::from_slice::<User>(&v) else {
            continue;
        };
        let hit = needle.as_ref().is_none_or(|q| {
            user.username.contains(q.as_str())
                || user.nickname.to_lowercase().contains(q.as_str())
                || user
                    .email
                    .as_ref()
                    .is_some_and(|e| e.to_lowercase().contains(q.as_str()))
        });
        if hit && role.is_none_or(|r| r == user.role) {
            matched.push(user.view(now));
        }
    }
    let total = matched.len();
    let items = matched
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    Ok(Page {
        items,
        total,
        page,
        per_page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordRule;
    use crate::store::MemoryStore;

    fn admin() -> Principal {
        Principal::User {
            host_id: "h1".into(),
            username: "admin".into(),
            role: Role::Administrator,
        }
    }

    fn input(username: &str, nickname: &str, role: &str) -> UserInput {
        UserInput {
            username: Some(username.into()),
            nickname: Some(nickname.into()),
            role: Some(role.into()),
            ..UserInput::default()
        }
    }

    #[test]
    fn create_search_update_delete() {
        let store = MemoryStore::new();
        let rule = PasswordRule::default();
        for (u, n, r) in [
            ("Ann", "Ann Smith", "student"),
            ("bob", "Bob", "proctor"),
            ("cy", "Cy Ann", "student"),
        ] {
            create(&store, &admin(), "h1", &input(u, n, r), &rule, "").unwrap();
        }
        create(
            &store,
            &admin(),
            "h2",
            &input("ann", "Other host", "student"),
            &rule,
            "",
        )
        .unwrap();
        let dup = create(
            &store,
            &admin(),
            "h1",
            &input("ANN", "x", "student"),
            &rule,
            "",
        );
        assert!(matches!(dup, Err(AuthError::Conflict(_))));
        let found = search(&store, "h1", Some("ann"), None, 1, 10).unwrap();
        assert_eq!(found.total, 2);
        let students = search(&store, "h1", None, Some(Role::Student), 1, 1).unwrap();
        assert_eq!((students.total, students.items.len()), (2, 1));
        let changed = update(
            &store,
            &admin(),
            "h1",
            "ann",
            &UserInput {
                role: Some("proctor".into()),
                ..UserInput::default()
            },
            &rule,
            "",
        )
        .unwrap();
        assert_eq!(changed.role, Role::Proctor);
        delete(&store, &admin(), "h1", "ann", "").unwrap();
        assert!(matches!(
            get(&store, "h1", "ann"),
            Err(AuthError::NotFound(_))
        ));
        assert_eq!(get(&store, "h2", "ann").unwrap().nickname, "Other host");
        assert_eq!(audit::verify(&store, "h1"), Ok(5));
    }

    #[test]
    fn bad_fields_are_named() {
        let rule = PasswordRule::default();
        let mut u = blank("h1", "x");
        let cases = [
            (
                UserInput {
                    email: Some(Some("nope".into())),
                    ..UserInput::default()
                },
                "email",
            ),
            (
                UserInput {
                    role: Some("manager".into()),
                    ..UserInput::default()
                },
                "role",
            ),
            (
                UserInput {
                    nickname: Some("x".repeat(201)),
                    ..UserInput::default()
                },
                "nickname",
            ),
        ];
        for (input, field) in cases {
            match apply(&mut u, &input, &rule) {
                Err(AuthError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let weak = UserInput {
            password: Some("short".into()),
            ..UserInput::default()
        };
        assert!(matches!(
            apply(&mut u, &weak, &rule),
            Err(AuthError::PasswordRejected(_))
        ));
        assert!(normalize_username("a b").is_err());
        assert_eq!(normalize_username(" Ann.Lee@x ").unwrap(), "ann.lee@x");
    }
}
